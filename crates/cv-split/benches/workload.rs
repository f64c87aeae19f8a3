// The benchmark workload, shared by the criterion bench and the side-by-side timing example,
// and reproduced line for line by `sklearn_split.py`: 1,000,000 labels in 10 imbalanced classes,
// in an order drawn by numpy's `RandomState(123).permutation`.

use cv_split::{RandomState, Split};

/// Samples per class (sum 1,000,000; the largest class 20× the smallest).
pub const CLASS_COUNTS: [usize; 10] = [
    300_000, 200_000, 140_000, 100_000, 80_000, 60_000, 45_000, 35_000, 25_000, 15_000,
];

/// `np.repeat(np.arange(10), CLASS_COUNTS)[RandomState(123).permutation(n)]`
pub fn labels() -> Vec<i64> {
    let sorted: Vec<i64> = CLASS_COUNTS
        .iter()
        .enumerate()
        .flat_map(|(class, &count)| std::iter::repeat_n(class as i64, count))
        .collect();
    let order = RandomState::new(123)
        .expect("123 is a valid seed")
        .permutation(sorted.len());
    order.into_iter().map(|i| sorted[i]).collect()
}

/// Σ over folds f, positions j of (index + 1)(j + 1)(f + 1), train and test, mod 2^64: equal
/// checksums in Rust and Python mean equal folds.
#[allow(dead_code)]
pub fn checksum(split: &Split) -> u64 {
    let mut total = 0u64;
    for (f, fold) in split.folds.iter().enumerate() {
        for list in [&fold.train, &fold.test] {
            for (j, &i) in list.iter().enumerate() {
                total = total.wrapping_add(
                    (u64::from(i) + 1)
                        .wrapping_mul(j as u64 + 1)
                        .wrapping_mul(f as u64 + 1),
                );
            }
        }
    }
    total
}
