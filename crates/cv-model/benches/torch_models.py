#!/usr/bin/env python3
"""Baseline for the cv-model timing benchmark: the same ResNets, train step and forward in
PyTorch eager on the CPU, as `examples/model_timing.rs` times ours.

Cases: torchvision.models.resnet18(num_classes=10) on 3x64x64 images and a CIFAR ResNet-20
(defined below with the structure of cv-model's `cifar-resnet-20x1`) on 3x32x32, batch 32.
For each, a full train step (model.train(), forward, F.cross_entropy, backward,
SGD(lr=0.01, momentum=0.9) step) and inference (model.eval() under torch.no_grad(), forward
only). The input is one fixed batch of standard-normal pixels from a seeded CPU generator and
labels i % 10. Each case warms up with 2 iterations, then times K. Prints one JSON line per case:
{"case": ..., "images_per_s": ..., "seconds_per_iter": [...], "parameters": P, "threads": T}
with images_per_s = 32 * K / sum(seconds) and P the number of trainable parameters (the xtask
checks that it equals cv-model's, a cheap check that the architectures agree).

    CUDA_VISIBLE_DEVICES= python torch_models.py --train-iters 5 --infer-iters 10 --threads 2
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

BATCH = 32
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


def batch(size):
    generator = torch.Generator().manual_seed(0)
    images = torch.randn(BATCH, 3, size, size, generator=generator)
    labels = torch.arange(BATCH) % CLASSES
    return images, labels


def timed(iterations, run):
    for _ in range(WARM_UP):
        run()
    seconds = []
    for _ in range(iterations):
        start = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - start)
    return seconds


def report(case, seconds, model, threads):
    parameters = sum(p.numel() for p in model.parameters())
    print(json.dumps({"case": case, "images_per_s": BATCH * len(seconds) / sum(seconds),
                      "seconds_per_iter": seconds, "parameters": parameters,
                      "threads": threads}), flush=True)


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
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)  # the weights' init

    cases = [
        ("resnet18", lambda: torchvision.models.resnet18(num_classes=CLASSES), 64),
        ("cifar-resnet-20", lambda: CifarResNet(20, CLASSES), 32),
    ]
    for name, make, size in cases:
        images, labels = batch(size)
        shape = f"{BATCH}x3x{size}x{size}"

        model = make().train()
        optimizer = torch.optim.SGD(model.parameters(), lr=LR, momentum=0.9)

        def train_step():
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            return loss.item()

        report(f"{name} {shape} train", timed(args.train_iters, train_step), model,
               args.threads)

        model = make().eval()

        def forward():
            with torch.no_grad():
                model(images)

        report(f"{name} {shape} inference", timed(args.infer_iters, forward), model,
               args.threads)


if __name__ == "__main__":
    main()
