#!/usr/bin/env python3
"""Baseline for the cv-model timing benchmark: the same ResNets, train step and forward in
PyTorch eager, as `examples/model_timing.rs` times ours.

Cases (10 classes), as in model_timing.rs: resnet18 (torchvision's, 3x64x64, batch 32) and
cifar-resnet-20 (defined below with the structure of cv-model's `cifar-resnet-20x1`, 3x32x32,
batch 32), the defaults; resnet50-224 (3x224x224, batch 64) and resnet18-224 (3x224x224,
batch 128). For each, a full train step (model.train(), forward, F.cross_entropy, backward,
SGD(lr=0.01, momentum=0.9) step) and inference (model.eval() under torch.no_grad(), forward
only). The input is one fixed batch of standard-normal pixels from a seeded CPU generator and
labels i % 10, moved to the device. Each case warms up with 2 iterations, then times K, each
ending once the device has finished. Prints one JSON line per case:
{"case": ..., "images_per_s": ..., "seconds_per_iter": [...], "parameters": P, "threads": T,
"device": D} with images_per_s = batch * K / sum(seconds) and P the number of trainable
parameters (the xtask checks that it equals cv-model's, a cheap check that the architectures
agree). On CUDA, TF32 stays off (PyTorch's default for matrix products, set here for
convolutions too), as in foldwise.

    CUDA_VISIBLE_DEVICES= python torch_models.py --train-iters 5 --infer-iters 10 --threads 2
    python torch_models.py --cases resnet50-224,resnet18-224 --device cuda
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

CLASSES = 10
WARM_UP = 2
LR = 0.01


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, stride on the first; a 1x1 conv + BN shortcut when the shape
    changes (option B), as cv-model's CIFAR ResNet (and torchvision's BasicBlock)."""

    def __init__(self, in_channels, planes, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or in_channels != planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, planes, 1, stride, 0, bias=False),
                nn.BatchNorm2d(planes),
            )

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class CifarResNet(nn.Module):
    """He et al.'s CIFAR ResNet, depth 6n + 2: a 3x3 stem of 16 channels, three stages of n
    BasicBlocks (16, 32, 64 channels, strides 1, 2, 2), no max-pool, global average pool, fc."""

    def __init__(self, depth=20, num_classes=CLASSES):
        super().__init__()
        assert (depth - 2) % 6 == 0, "depth must be 6n + 2"
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        in_channels = 16
        stages = []
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(in_channels, planes, stride if i == 0 else 1))
                in_channels = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


# name: (model, image size, batch)
CASES = {
    "resnet18": (lambda: torchvision.models.resnet18(num_classes=CLASSES), 64, 32),
    "cifar-resnet-20": (lambda: CifarResNet(20, CLASSES), 32, 32),
    "resnet50-224": (lambda: torchvision.models.resnet50(num_classes=CLASSES), 224, 64),
    "resnet18-224": (lambda: torchvision.models.resnet18(num_classes=CLASSES), 224, 128),
}


def batch(size, n, device):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=generator)
    labels = torch.arange(n) % CLASSES
    return images.to(device), labels.to(device)


def timed(iterations, run, device):
    def finish():
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(WARM_UP):
        run()
    finish()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        finish()
        seconds.append(time.perf_counter() - start)
    return seconds


def report(case, n, seconds, model, threads, device):
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"case": case, "images_per_s": n * len(seconds) / sum(seconds),
                      "seconds_per_iter": seconds, "parameters": parameters,
                      "threads": threads, "device": str(device)}), flush=True)


def case_list(text):
    names = [name.strip() for name in text.split(",")]
    for name in names:
        if name not in CASES:
            raise argparse.ArgumentTypeError(f"unknown case {name!r}: use {', '.join(CASES)}")
    return names


def positive(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-iters", type=positive, default=5, help="timed train steps")
    parser.add_argument("--infer-iters", type=positive, default=10, help="timed forwards")
    parser.add_argument("--threads", type=positive, default=2, help="torch.set_num_threads")
    parser.add_argument("--cases", type=case_list, default="resnet18,cifar-resnet-20",
                        help="comma-separated: " + ", ".join(CASES))
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)  # the weights' init

    for name in args.cases:
        make, size, n = CASES[name]
        images, labels = batch(size, n, device)
        shape = f"{n}x3x{size}x{size}"

        model = make().to(device).train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)

        def train_step():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            return loss.item()

        report(f"{name} {shape} train", n, timed(args.train_iters, train_step, device), model,
               args.threads, device)

        model = make().to(device).eval()

        def forward():
            with torch.no_grad():
                model(images)

        report(f"{name} {shape} inference", n, timed(args.infer_iters, forward, device), model,
               args.threads, device)


if __name__ == "__main__":
    main()
