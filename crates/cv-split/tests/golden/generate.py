#!/usr/bin/env python3
"""Writes cases.json: scikit-learn's folds for every cv-split splitter, to compare index for index.

Run by hand, in a virtualenv with the versions below, when the fixture must change:

    python3 -m venv /tmp/sk && /tmp/sk/bin/pip install scikit-learn==1.9.1 numpy==2.4.6
    /tmp/sk/bin/python crates/cv-split/tests/golden/generate.py

CI never runs this; it only reads the committed cases.json.

For k-fold types (every sample tested once per repeat) a case stores, per repeat, the global fold
index of each sample ("assignments"): scikit-learn returns sorted test indices and train as their
sorted complement (checked here), so this is lossless and keeps the file small. Shuffle-split types
store train and test lists in scikit-learn's order.
"""
import json
import os
import warnings

import numpy as np
import sklearn
from sklearn.datasets import load_digits
from sklearn.model_selection import (
    GroupKFold,
    GroupShuffleSplit,
    KFold,
    LeaveOneOut,
    RepeatedKFold,
    RepeatedStratifiedKFold,
    ShuffleSplit,
    StratifiedGroupKFold,
    StratifiedKFold,
    StratifiedShuffleSplit,
)

assert sklearn.__version__ == "1.9.1", sklearn.__version__
assert np.__version__ == "2.4.6", np.__version__

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "cases.json")
SEEDS = [0, 1, 42, 2024, 2**32 - 1]
PARTITION = {
    "kfold",
    "stratified-kfold",
    "loo",
    "group-kfold",
    "stratified-group-kfold",
    "repeated-kfold",
    "repeated-stratified-kfold",
}


def label_sets():
    gen = np.random.RandomState(12345)
    sets = {}
    sets["digits"] = load_digits().target.tolist()
    sets["imbalanced5"] = gen.choice(5, size=503, p=[0.6, 0.15, 0.12, 0.08, 0.05]).tolist()
    sets["sorted-binary"] = [0] * 23 + [1] * 17
    cassava = ["cbb", "cbsd", "cgm", "cmd", "healthy"]
    sets["strings"] = [cassava[i] for i in gen.choice(5, size=150, p=[0.1, 0.2, 0.1, 0.5, 0.1])]
    sets["random10"] = gen.randint(0, 10, size=2000).tolist()
    sets["rare"] = [0] * 30 + [1] * 25 + [2] * 2
    gen.shuffle(sets["rare"])
    sets["negative-ints"] = gen.choice([-3, 7, 100, -20], size=61).tolist()
    return sets


def group_sets(gen, n):
    layouts = {}
    layouts["random"] = gen.randint(0, max(3, n // 7), size=n).tolist()
    layouts["singletons"] = list(range(n))
    layouts["pairs"] = [i // 2 for i in range(n)]
    names = ["plant-%02d" % i for i in range(max(4, n // 10))]
    layouts["strings"] = [names[i] for i in gen.randint(0, len(names), size=n)]
    return layouts


def make(method, k, seed, n_repeats, test_size, train_size):
    shuffle = seed is not None
    if method == "kfold":
        return KFold(k, shuffle=shuffle, random_state=seed)
    if method == "stratified-kfold":
        return StratifiedKFold(k, shuffle=shuffle, random_state=seed)
    if method == "loo":
        return LeaveOneOut()
    if method == "group-kfold":
        return GroupKFold(k, shuffle=shuffle, random_state=seed)
    if method == "stratified-group-kfold":
        return StratifiedGroupKFold(k, shuffle=shuffle, random_state=seed)
    if method == "repeated-kfold":
        return RepeatedKFold(n_splits=k, n_repeats=n_repeats, random_state=seed)
    if method == "repeated-stratified-kfold":
        return RepeatedStratifiedKFold(n_splits=k, n_repeats=n_repeats, random_state=seed)
    kw = dict(n_splits=k, test_size=test_size, train_size=train_size, random_state=seed)
    if method == "shuffle-split":
        return ShuffleSplit(**kw)
    if method == "stratified-shuffle-split":
        return StratifiedShuffleSplit(**kw)
    if method == "group-shuffle-split":
        return GroupShuffleSplit(**kw)
    raise ValueError(method)


def case(name, method, labels, groups=None, k=None, seed=None, n_repeats=None,
         test_size=None, train_size=None):
    n = len(labels)
    params = {"method": method}
    if k is not None:
        params["n_splits"] = k
    if seed is not None:
        params["seed"] = seed
    if n_repeats is not None:
        params["n_repeats"] = n_repeats
    if test_size is not None:
        params["test_size"] = test_size
    if train_size is not None:
        params["train_size"] = train_size
    out = {"name": name, "params": params, "labels": labels, "groups": groups}
    default_k = 10 if method in ("shuffle-split", "stratified-shuffle-split") else 5
    kk = default_k if k is None else k
    cv = make(method, kk, seed, 10 if n_repeats is None else n_repeats, test_size, train_size)
    X = np.zeros((n, 1))
    y = np.asarray(labels)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            folds = [(np.asarray(tr), np.asarray(te)) for tr, te in cv.split(X, y, groups)]
        except ValueError as e:
            out["error"] = str(e)
            return out
    out["warnings"] = sorted({str(w.message) for w in caught if issubclass(w.category, UserWarning)})
    if method in PARTITION:
        per_repeat = n if method == "loo" else kk
        assignments = []
        for s, (tr, te) in enumerate(folds):
            r = s // per_repeat
            if r == len(assignments):
                assignments.append([-1] * n)
            assert list(te) == sorted(te), (name, "test not sorted")
            assert list(tr) == sorted(set(range(n)) - set(te.tolist())), (name, "train not complement")
            for i in te:
                assert assignments[r][i] == -1
                assignments[r][i] = s
        assert all(a >= 0 for row in assignments for a in row)
        out["assignments"] = assignments
    else:
        out["folds"] = [{"train": tr.tolist(), "test": te.tolist()} for tr, te in folds]
    return out


def main():
    sets = label_sets()
    gen = np.random.RandomState(777)
    cases = []
    kfold_sets = ["digits", "imbalanced5", "sorted-binary", "strings", "random10", "rare"]
    for lname in kfold_sets:
        y = sets[lname]
        for k in [2, 3, 5, 10]:
            for seed in [None] + SEEDS:
                for method in ["kfold", "stratified-kfold"]:
                    if method == "kfold" and lname not in ("digits", "sorted-binary", "rare"):
                        continue
                    cases.append(case(f"{method}/{lname}/k{k}/s{seed}", method, y, k=k, seed=seed))
    for n in [2, 3, 7, 25]:
        cases.append(case(f"loo/n{n}", "loo", list(range(n))))
    cases.append(case("stratified-kfold/negative-ints/k3/s7", "stratified-kfold",
                      sets["negative-ints"], k=3, seed=7))
    for lname in ["imbalanced5", "strings", "sorted-binary"]:
        y = sets[lname]
        for k, r in [(2, 3), (5, 2), (3, 10)]:
            for seed in SEEDS[:3]:
                cases.append(case(f"repeated-kfold/{lname}/k{k}/r{r}/s{seed}", "repeated-kfold",
                                  y, k=k, seed=seed, n_repeats=r))
                cases.append(case(f"repeated-stratified-kfold/{lname}/k{k}/r{r}/s{seed}",
                                  "repeated-stratified-kfold", y, k=k, seed=seed, n_repeats=r))
    for lname in ["imbalanced5", "strings", "rare", "random10"]:
        y = sets[lname]
        for k, test_size, train_size in [(3, None, None), (5, 0.25, None), (4, None, 0.5),
                                          (2, 30, 100), (6, 0.1, 0.7)]:
            for seed in SEEDS:
                for method in ["shuffle-split", "stratified-shuffle-split"]:
                    nm = f"{method}/{lname}/k{k}/t{test_size}/tr{train_size}/s{seed}"
                    cases.append(case(nm, method, y, k=k, seed=seed, test_size=test_size,
                                      train_size=train_size))
    # Group layouts: 40 random ones plus named ones, each over a few label sets.
    layouts = []
    for i in range(40):
        n = int(gen.randint(12, 300))
        n_groups = int(gen.randint(3, max(4, n // 2)))
        n_classes = int(gen.randint(2, 6))
        y = gen.randint(0, n_classes, size=n).tolist()
        groups = gen.randint(0, n_groups, size=n).tolist()
        layouts.append((f"random{i}", y, groups))
    for lname in ["imbalanced5", "strings"]:
        y = sets[lname]
        for gname, groups in group_sets(gen, len(y)).items():
            layouts.append((f"{lname}-{gname}", y, groups))
    for lname, y, groups in layouts:
        for k in [2, 3, 5]:
            for seed in [None, 0, 42]:
                for method in ["group-kfold", "stratified-group-kfold"]:
                    cases.append(case(f"{method}/{lname}/k{k}/s{seed}", method, y, groups,
                                      k=k, seed=seed))
        for seed in [0, 2**32 - 1]:
            cases.append(case(f"group-shuffle-split/{lname}/s{seed}", "group-shuffle-split",
                              y, groups, k=4, seed=seed, test_size=0.3 if seed else None))
    # Refusals, with scikit-learn's words.
    errors = [
        ("kfold", dict(k=5), list(range(3))),
        ("stratified-kfold", dict(k=3), ["a", "b", "a", "b"]),
        ("stratified-kfold", dict(k=4, seed=0), [0, 0, 1, 1, 1, 2]),
        ("loo", {}, [0]),
        ("shuffle-split", dict(k=2, seed=0, test_size=1.5), list(range(10))),
        ("shuffle-split", dict(k=2, seed=0, test_size=10), list(range(10))),
        ("shuffle-split", dict(k=2, seed=0, train_size=0.0), list(range(10))),
        ("shuffle-split", dict(k=2, seed=0, test_size=0.6, train_size=0.6), list(range(10))),
        ("shuffle-split", dict(k=2, seed=0, test_size=5, train_size=6), list(range(10))),
        ("shuffle-split", dict(k=2, seed=0, test_size=0.99), list(range(10))),
        ("stratified-shuffle-split", dict(k=2, seed=0), [0, 0, 1, 1, 2]),
        ("stratified-shuffle-split", dict(k=2, seed=0, test_size=2), [0, 0, 1, 1, 2, 2]),
        ("stratified-shuffle-split", dict(k=2, seed=0, train_size=2), [0, 0, 1, 1, 2, 2]),
    ]
    for i, (method, kw, y) in enumerate(errors):
        cases.append(case(f"error{i}/{method}", method, y, **kw))
    for i, (method, kw, y, groups) in enumerate([
        ("group-kfold", dict(k=3), [0, 1, 0, 1], [1, 1, 2, 2]),
        ("stratified-group-kfold", dict(k=3), [0, 1, 0, 1, 0, 1], [1, 1, 2, 2, 1, 2]),
    ]):
        cases.append(case(f"group-error{i}/{method}", method, y, groups, **kw))
    n_ok = sum("error" not in c for c in cases)
    print(f"{len(cases)} cases ({n_ok} splits, {len(cases) - n_ok} refusals)")
    with open(OUT, "w") as f:
        json.dump({"sklearn": sklearn.__version__, "numpy": np.__version__, "cases": cases}, f,
                  separators=(",", ":"))
        f.write("\n")


if __name__ == "__main__":
    main()
