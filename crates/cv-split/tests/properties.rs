//! Invariants that hold for every input: folds partition the samples, train and test never
//! share a sample (or a group), and stratified folds keep class counts within one of each other.

use std::collections::{HashMap, HashSet};

use cv_split::{
    GroupKFold, KFold, RepeatedStratifiedKFold, ShuffleSplit, Size, Split, SplitError,
    StratifiedGroupKFold, StratifiedKFold, StratifiedShuffleSplit,
};
use proptest::prelude::*;

fn labels_and_k() -> impl Strategy<Value = (Vec<u8>, usize, Option<u64>)> {
    (2usize..300, 1u8..8).prop_flat_map(|(n, classes)| {
        (
            prop::collection::vec(0..classes, n),
            2..=n.min(10),
            prop::option::of(any::<u32>().prop_map(u64::from)),
        )
    })
}

fn class_counts_per_fold(split: &Split, y: &[u8]) -> HashMap<u8, Vec<usize>> {
    let mut counts: HashMap<u8, Vec<usize>> = HashMap::new();
    for (f, fold) in split.folds.iter().enumerate() {
        for &i in &fold.test {
            counts
                .entry(y[i as usize])
                .or_insert_with(|| vec![0; split.folds.len()])[f] += 1;
        }
    }
    counts
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn kfold_partitions_with_sizes_within_one((y, k, seed) in labels_and_k()) {
        let mut kfold = KFold::new(k).unwrap();
        if let Some(seed) = seed { kfold = kfold.shuffle(seed); }
        let split = kfold.split(y.len()).unwrap();
        prop_assert!(split.check_leaks().is_ok());
        let sizes: Vec<usize> = split.folds.iter().map(|f| f.test.len()).collect();
        prop_assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1);
    }

    #[test]
    fn stratified_kfold_partitions_and_stratifies((y, k, seed) in labels_and_k()) {
        let mut skf = StratifiedKFold::new(k).unwrap();
        if let Some(seed) = seed { skf = skf.shuffle(seed); }
        let mut counts = HashMap::new();
        for &c in &y { *counts.entry(c).or_insert(0usize) += 1; }
        match skf.split(&y) {
            Err(SplitError::MoreSplitsThanClassMembers(_)) => {
                prop_assert!(counts.values().all(|&c| c < k));
            }
            Err(e) => prop_assert!(false, "unexpected error {e}"),
            Ok(split) => {
                prop_assert!(split.check_leaks().is_ok());
                for per_fold in class_counts_per_fold(&split, &y).values() {
                    let (lo, hi) = (per_fold.iter().min().unwrap(), per_fold.iter().max().unwrap());
                    prop_assert!(hi - lo <= 1, "class counts per fold {per_fold:?}");
                }
                let least = counts.values().min().unwrap();
                prop_assert_eq!(split.warnings.is_empty(), *least >= k);
            }
        }
    }

    #[test]
    fn repeated_stratified_kfold_stratifies_every_repeat((y, k, seed) in labels_and_k(), repeats in 1usize..4) {
        let Ok(split) = RepeatedStratifiedKFold::new(k, repeats, seed.unwrap_or(0)).unwrap().split(&y) else {
            return Ok(());
        };
        prop_assert!(split.check_leaks().is_ok());
        prop_assert_eq!(split.folds.len(), k * repeats);
        for repeat in split.folds.chunks(k) {
            let one = Split { folds: repeat.to_vec(), ..split.clone() };
            for per_fold in class_counts_per_fold(&one, &y).values() {
                prop_assert!(per_fold.iter().max().unwrap() - per_fold.iter().min().unwrap() <= 1);
            }
        }
    }

    #[test]
    fn group_splitters_never_split_a_group((y, k, seed) in labels_and_k(), n_groups in 1usize..40) {
        let groups: Vec<usize> = (0..y.len()).map(|i| (i * 7 + usize::from(y[i])) % n_groups).collect();
        let mut gkf = GroupKFold::new(k).unwrap();
        let mut sgkf = StratifiedGroupKFold::new(k).unwrap();
        if let Some(seed) = seed {
            gkf = gkf.shuffle(seed);
            sgkf = sgkf.shuffle(seed);
        }
        for split in [gkf.split(&groups), sgkf.split(&y, &groups)].into_iter().flatten() {
            prop_assert!(split.check_leaks().is_ok());
            for fold in &split.folds {
                let train: HashSet<usize> = fold.train.iter().map(|&i| groups[i as usize]).collect();
                prop_assert!(fold.test.iter().all(|&i| !train.contains(&groups[i as usize])));
            }
        }
    }

    #[test]
    fn shuffle_splits_are_disjoint_and_sized((y, k, seed) in labels_and_k(), test in 0.05f64..0.5) {
        let seed = seed.unwrap_or(0);
        let n = y.len();
        if let Ok(split) = ShuffleSplit::new(k, seed).unwrap().test_size(Size::Fraction(test)).split(n) {
            prop_assert!(split.check_leaks().is_ok());
            let n_test = (test * n as f64).ceil() as usize;
            for fold in &split.folds {
                prop_assert_eq!(fold.test.len(), n_test);
                prop_assert_eq!(fold.train.len(), n - n_test);
            }
        }
        if let Ok(split) = StratifiedShuffleSplit::new(k, seed).unwrap().test_size(Size::Fraction(test)).split(&y) {
            prop_assert!(split.check_leaks().is_ok());
            for fold in &split.folds {
                prop_assert_eq!(fold.test.len(), (test * n as f64).ceil() as usize);
            }
        }
    }
}
