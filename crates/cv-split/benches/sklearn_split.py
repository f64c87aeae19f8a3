#!/usr/bin/env python3
"""scikit-learn's side of `cargo xtask bench split`: the same workload as `workload.rs`, one
JSON line per case with each repeat's seconds and the folds' checksum.

    python3 crates/cv-split/benches/sklearn_split.py [REPEATS]
"""
import json
import sys
import time

import numpy as np
from sklearn.model_selection import KFold, StratifiedKFold

CLASS_COUNTS = [300000, 200000, 140000, 100000, 80000, 60000, 45000, 35000, 25000, 15000]
MASK = (1 << 64) - 1


def labels():
    y = np.repeat(np.arange(10), CLASS_COUNTS)
    return y[np.random.RandomState(123).permutation(len(y))]


def checksum(folds):
    total = np.uint64(0)
    with np.errstate(over="ignore"):
        for f, (train, test) in enumerate(folds):
            for idx in (train, test):
                j = np.arange(1, len(idx) + 1, dtype=np.uint64)
                total += np.sum((idx.astype(np.uint64) + np.uint64(1)) * j * np.uint64(f + 1))
    return str(int(total) & MASK)


def main():
    repeats = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    y = labels()
    X = np.zeros((len(y), 1))
    cases = [
        ("StratifiedKFold(5, shuffle=True, random_state=0)",
         lambda: StratifiedKFold(5, shuffle=True, random_state=0).split(X, y)),
        ("StratifiedKFold(5)", lambda: StratifiedKFold(5).split(X, y)),
        ("KFold(5, shuffle=True, random_state=0)",
         lambda: KFold(5, shuffle=True, random_state=0).split(X)),
    ]
    for case, run in cases:
        seconds = []
        for _ in range(repeats):
            start = time.perf_counter()
            folds = list(run())  # materialise every (train, test) pair
            seconds.append(time.perf_counter() - start)
        print(json.dumps({"case": case, "seconds": seconds, "checksum": checksum(folds)}), flush=True)


if __name__ == "__main__":
    main()
