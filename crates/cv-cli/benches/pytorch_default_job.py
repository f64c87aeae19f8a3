#!/usr/bin/env python3
"""PyTorch baseline of foldwise's default job (`configs/default.toml`, `cargo xtask train`), for
`cargo xtask bench train`.

The same job as `cv train --config configs/default.toml`, on the CPU:

* data: `data/digits/manifest.csv` (`path,label`, 1,797 8x8 grayscale PNGs read with Pillow),
  pixels / 255, then Normalize(mean 0.3, std 0.4); no augmentation;
* split: StratifiedShuffleSplit(n_splits=1, test_size=0.1, random_state=42) holds out 10%; the
  pool (the train part, sorted ascending) is split by StratifiedKFold(5, shuffle=True,
  random_state=42) on the pool's labels, fold indices mapped back through the sorted pool;
* model: CIFAR ResNet-20 (as cv-model's `cifar-resnet` depth 20) with 1 input channel,
  torchvision-style init (kaiming_normal fan_out/relu convs, BN 1/0, Linear default), the same
  initial weights for every fold (as cv does);
* training per fold: 15 epochs, batch 64 reshuffled each epoch (last batch kept), cross-entropy,
  SGD(lr 0.1, momentum 0.9, nesterov) with weight decay 5e-4 on conv/linear weights only,
  CosineAnnealingLR(T_max=15) stepped per epoch; after each epoch the fold's validation samples
  are evaluated (eval mode) and the best epoch's validation accuracy is kept.

Prints one line per epoch like `cv train`, then ONE JSON line:
{"mean_accuracy": ..., "std_accuracy": ..., "fold_accuracies": [...], "seconds": ...}
with the sample standard deviation (ddof 1) and `seconds` the wall time from the start of main
(after the imports) to the end.

    CUDA_VISIBLE_DEVICES= python crates/cv-cli/benches/pytorch_default_job.py --threads 2
"""

import argparse
import csv
import json
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from torch import nn

MEAN, STD = 0.3, 0.4
SEED = 42
N_SPLITS = 5
HOLDOUT = 0.1
EPOCHS = 15
BATCH = 64
LR = 0.1
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
CLASSES = 10


class BasicBlock(nn.Module):
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
    def __init__(self, depth=20, in_channels=1, num_classes=CLASSES):
        super().__init__()
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        channels = 16
        stages = []
        for planes, stride in [(16, 1), (32, 2), (64, 2)]:
            blocks = []
            for i in range(n):
                blocks.append(BasicBlock(channels, planes, stride if i == 0 else 1))
                channels = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def load(manifest):
    root = os.path.dirname(manifest)
    images, labels = [], []
    with open(manifest, newline="") as f:
        for row in csv.DictReader(f):
            with Image.open(os.path.join(root, row["path"])) as im:
                images.append(np.asarray(im.convert("L"), dtype=np.float32))
            labels.append(int(row["label"]))
    x = torch.from_numpy(np.stack(images)).unsqueeze(1) / 255.0
    x = (x - MEAN) / STD
    return x, np.asarray(labels)


def evaluate(model, x, y):
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(x[i:i + 256]) for i in range(0, len(x), 256)])
        loss = F.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--manifest", default="data/digits/manifest.csv")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quiet", action="store_true", help="print only the JSON line")
    args = parser.parse_args()
    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    x, labels = load(args.manifest)
    y = torch.from_numpy(labels).long()
    sss = StratifiedShuffleSplit(n_splits=1, test_size=HOLDOUT, random_state=SEED)
    pool, _holdout = next(sss.split(np.zeros(len(labels)), labels))
    pool = np.sort(pool)
    skf = StratifiedKFold(N_SPLITS, shuffle=True, random_state=SEED)
    folds = [(pool[tr], pool[va]) for tr, va in skf.split(np.zeros(len(pool)), labels[pool])]

    # Every fold starts from the same initial weights, as in cv.
    init = {k: v.clone() for k, v in CifarResNet().state_dict().items()}
    generator = torch.Generator().manual_seed(0)
    accuracies = []
    for k, (train_idx, valid_idx) in enumerate(folds):
        fold_started = time.perf_counter()
        model = CifarResNet()
        model.load_state_dict(init)
        decay = [p for n, p in model.named_parameters() if p.ndim > 1]  # conv/linear weights
        no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]  # BN, biases
        optimizer = torch.optim.SGD(
            [{"params": decay, "weight_decay": WEIGHT_DECAY},
             {"params": no_decay, "weight_decay": 0.0}],
            lr=LR, momentum=MOMENTUM, nesterov=True)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=EPOCHS)
        xt, yt = x[train_idx], y[train_idx]
        xv, yv = x[valid_idx], y[valid_idx]
        best_acc, best_epoch = -1.0, 0
        for epoch in range(EPOCHS):
            model.train()
            order = torch.randperm(len(xt), generator=generator)
            loss_sum, correct = 0.0, 0
            for i in range(0, len(order), BATCH):
                b = order[i:i + BATCH]
                logits = model(xt[b])
                loss = F.cross_entropy(logits, yt[b])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_sum += loss.item() * len(b)
                correct += (logits.argmax(1) == yt[b]).sum().item()
            scheduler.step()
            valid_loss, valid_acc = evaluate(model, xv, yv)
            best = valid_acc > best_acc
            if best:
                best_acc, best_epoch = valid_acc, epoch
            if not args.quiet:
                print(f"fold {k} ({k + 1}/{len(folds)}) epoch {epoch + 1}/{EPOCHS}: "
                      f"train loss {loss_sum / len(xt):.4f} acc {correct / len(xt):.4f} | "
                      f"valid loss {valid_loss:.4f} acc {valid_acc:.4f}{' *' if best else ''}",
                      flush=True)
        accuracies.append(best_acc)
        if not args.quiet:
            print(f"fold {k}: best epoch {best_epoch + 1} (valid accuracy {best_acc:.4f}), "
                  f"{time.perf_counter() - fold_started:.0f} s", flush=True)

    print(json.dumps({
        "mean_accuracy": statistics.mean(accuracies),
        "std_accuracy": statistics.stdev(accuracies),
        "fold_accuracies": accuracies,
        "seconds": time.perf_counter() - started,
    }), flush=True)


if __name__ == "__main__":
    main()
