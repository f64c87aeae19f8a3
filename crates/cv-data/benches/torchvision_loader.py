#!/usr/bin/env python3
"""Baseline for the cv-data loader benchmark: torchvision's input pipeline, written exactly as a
PyTorch user writes it.

A Dataset whose __getitem__ opens the file with PIL and applies
RandomResizedCrop(224) -> RandomHorizontalFlip() -> ToTensor() -> Normalize(ImageNet), read by a
DataLoader(batch_size=32, shuffle=True, num_workers=W, drop_last=True). One batch warms up (and
starts the workers); then batches are timed until --images images have been delivered. If the
manifest runs out first, the next epoch's worker start-up and first batch are untimed warm-up
too. Prints one JSON line:
{"images_per_s": ..., "images": ..., "seconds": ..., "workers": W}

    CUDA_VISIBLE_DEVICES= python torchvision_loader.py --manifest /tmp/synth-bench/manifest.csv
"""

import argparse
import csv
import json
import os
import sys
import time

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

BATCH_SIZE = 32
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


class ManifestDataset(Dataset):
    """`path,label` CSV rows, paths relative to the manifest's folder."""

    def __init__(self, manifest, transform):
        root = os.path.dirname(os.path.abspath(manifest))
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
        classes = sorted({row["label"] for row in rows})
        index = {c: i for i, c in enumerate(classes)}
        self.samples = [(os.path.join(root, row["path"]), index[row["label"]]) for row in rows]
        self.transform = transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, i):
        path, label = self.samples[i]
        image = Image.open(path).convert("RGB")
        return self.transform(image), label


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--manifest", required=True, help="path,label CSV of 256x256 JPEGs")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader num_workers")
    parser.add_argument("--images", type=int, default=2048, help="images to time")
    parser.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    args = parser.parse_args()
    if args.images < BATCH_SIZE:
        parser.error(f"--images must be at least one batch ({BATCH_SIZE})")
    if args.workers < 0:
        parser.error("--workers must be 0 or more")

    torch.set_num_threads(args.threads)
    transform = transforms.Compose([
        transforms.RandomResizedCrop(224),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD),
    ])
    dataset = ManifestDataset(args.manifest, transform)
    if len(dataset) < BATCH_SIZE:
        sys.exit(f"{args.manifest} has {len(dataset)} images, fewer than one batch ({BATCH_SIZE})")
    loader = DataLoader(dataset, batch_size=BATCH_SIZE, shuffle=True,
                        num_workers=args.workers, drop_last=True)

    # One batch warms up (it also starts the workers); then batches are timed until enough
    # images have come. When an epoch runs out first, the next epoch's start (a fresh set of
    # workers: persistent_workers is off, the default) and its first batch are warm-up again and
    # are neither timed nor counted, so the figure is steady-state throughput however the
    # manifest's size compares with --images.
    batches = iter(loader)
    next(batches)
    images = 0
    seconds = 0.0
    start = time.perf_counter()
    while images < args.images:
        try:
            x, _ = next(batches)
        except StopIteration:
            seconds += time.perf_counter() - start
            del batches
            batches = iter(loader)
            next(batches)
            start = time.perf_counter()
            continue
        images += x.shape[0]
    seconds += time.perf_counter() - start
    del batches
    print(json.dumps({"images_per_s": images / seconds, "images": images,
                      "seconds": seconds, "workers": args.workers}))


if __name__ == "__main__":
    main()
