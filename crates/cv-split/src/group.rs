//! `GroupKFold` and `StratifiedGroupKFold`: no group is split between train and test.

use crate::kfold::{check_class_counts, check_enough_samples, kfold_constructors};
use crate::labels::{encode_sorted, Label};
use crate::split::{Coverage, Split};
use crate::{RandomState, SplitError};

fn check_lengths(labels: usize, groups: usize) -> Result<(), SplitError> {
    if labels != groups {
        return Err(SplitError::LengthMismatch { labels, groups });
    }
    Ok(())
}

fn check_enough_groups(n_splits: usize, n_groups: usize) -> Result<(), SplitError> {
    if n_splits > n_groups {
        return Err(SplitError::MoreSplitsThanGroups { n_splits, n_groups });
    }
    Ok(())
}

fn partition_by_group(group_of_sample: &[u32], fold_of_group: &[u32], n_splits: usize) -> Split {
    let assignment: Vec<u32> = group_of_sample
        .iter()
        .map(|&g| fold_of_group[g as usize])
        .collect();
    let mut folds = Vec::with_capacity(n_splits);
    Split::push_repeat(&mut folds, &assignment, n_splits);
    Split {
        n_samples: group_of_sample.len(),
        coverage: Coverage::Partition { n_repeats: 1 },
        folds,
        warnings: vec![],
    }
}

/// Group k-fold. Without a seed, groups go largest first to the fold holding the fewest samples
/// so far (folds balanced by size). With a seed, the sorted groups are permuted and cut into
/// `n_splits` nearly equal runs (scikit-learn ≥ 1.6's `shuffle=True`).
///
/// ```
/// use cv_split::GroupKFold;
/// let groups = ["a", "a", "a", "b", "c", "c"];
/// let split = GroupKFold::new(2).unwrap().split(&groups).unwrap();
/// assert_eq!(split.folds[0].test, vec![0, 1, 2]);
/// assert_eq!(split.folds[1].test, vec![3, 4, 5]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupKFold {
    n_splits: usize,
    seed: Option<u64>,
}

kfold_constructors!(GroupKFold);

impl GroupKFold {
    pub fn split<G: Label>(&self, groups: &[G]) -> Result<Split, SplitError> {
        let k = self.n_splits;
        check_enough_samples(k, groups.len())?;
        let (encoded, _) = encode_sorted(groups);
        let n_groups = encoded.n_classes();
        check_enough_groups(k, n_groups)?;
        let mut fold_of_group = vec![0u32; n_groups];
        if let Some(seed) = self.seed {
            // np.array_split: the first n_groups % k runs hold one group more.
            let order = RandomState::new(seed)?.permutation(n_groups);
            let mut start = 0;
            for f in 0..k {
                let size = n_groups / k + usize::from(f < n_groups % k);
                for &g in &order[start..start + size] {
                    fold_of_group[g] = f as u32;
                }
                start += size;
            }
        } else {
            // argsort(counts, kind="stable")[::-1]: descending size, ties to the higher index.
            let mut order: Vec<usize> = (0..n_groups).collect();
            order.sort_by_key(|&g| encoded.counts[g]);
            let mut load = vec![0usize; k];
            for &g in order.iter().rev() {
                let lightest = (0..k).min_by_key(|&f| load[f]).unwrap_or(0);
                load[lightest] += encoded.counts[g];
                fold_of_group[g] = lightest as u32;
            }
        }
        Ok(partition_by_group(&encoded.codes, &fold_of_group, k))
    }
}

/// Stratified group k-fold: groups are placed, most class-skewed first, in the fold that keeps
/// the class proportions most even (scikit-learn's greedy heuristic, reproduced down to its
/// floating-point tie-breaking).
///
/// ```
/// use cv_split::StratifiedGroupKFold;
/// let y = [0, 0, 1, 1, 0, 1];
/// let groups = [1, 1, 2, 2, 3, 3];
/// let split = StratifiedGroupKFold::new(3).unwrap().split(&y, &groups).unwrap();
/// assert_eq!(split.folds[0].test, vec![0, 1]);
/// assert_eq!(split.folds[2].train, vec![0, 1, 2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StratifiedGroupKFold {
    n_splits: usize,
    seed: Option<u64>,
}

kfold_constructors!(StratifiedGroupKFold);

impl StratifiedGroupKFold {
    pub fn split<L: Label, G: Label>(&self, y: &[L], groups: &[G]) -> Result<Split, SplitError> {
        let k = self.n_splits;
        check_lengths(y.len(), groups.len())?;
        check_enough_samples(k, y.len())?;
        let mut rng = self.seed.map(RandomState::new).transpose()?;
        let mut warnings = vec![];
        let (classes, _) = encode_sorted(y);
        check_class_counts(k, &classes.counts, &mut warnings)?;
        let n_classes = classes.n_classes();
        let (group_codes, _) = encode_sorted(groups);
        let n_groups = group_codes.n_classes();
        check_enough_groups(k, n_groups)?;

        // Class counts per group, one row per group.
        let mut per_group = vec![0f64; n_groups * n_classes];
        for (&c, &g) in classes.codes.iter().zip(&group_codes.codes) {
            per_group[g as usize * n_classes + c as usize] += 1.0;
        }
        // Row r of the table describes original group row_group[r].
        let mut row_group: Vec<usize> = (0..n_groups).collect();
        if let Some(rng) = rng.as_mut() {
            rng.shuffle(&mut row_group);
        }
        let row = |r: usize| {
            let g = row_group[r];
            &per_group[g * n_classes..(g + 1) * n_classes]
        };
        // argsort(-std(rows, axis=1), kind="stable")
        let spread: Vec<f64> = (0..n_groups).map(|r| -numpy::std(row(r))).collect();
        let mut order: Vec<usize> = (0..n_groups).collect();
        order.sort_by(|&a, &b| spread[a].total_cmp(&spread[b]));

        let class_totals: Vec<f64> = classes.counts.iter().map(|&c| c as f64).collect();
        let mut per_fold = vec![0f64; k * n_classes];
        let mut fold_of_group = vec![0u32; n_groups];
        let mut scratch = Scratch::new(k, n_classes);
        for &r in &order {
            let counts = row(r);
            let best = best_fold(&mut per_fold, &class_totals, counts, &mut scratch);
            for (slot, &v) in per_fold[best * n_classes..(best + 1) * n_classes]
                .iter_mut()
                .zip(counts)
            {
                *slot += v;
            }
            fold_of_group[row_group[r]] = best as u32;
        }
        let mut split = partition_by_group(&group_codes.codes, &fold_of_group, k);
        split.warnings = warnings;
        Ok(split)
    }
}

struct Scratch {
    normalised: Vec<f64>,
    std_per_class: Vec<f64>,
}

impl Scratch {
    fn new(k: usize, n_classes: usize) -> Self {
        Self {
            normalised: vec![0.0; k * n_classes],
            std_per_class: vec![0.0; n_classes],
        }
    }
}

/// scikit-learn's `_find_best_fold`: the fold whose class spread after adding the group is
/// smallest; near-ties (`np.isclose`) go to the fold holding fewer samples.
fn best_fold(per_fold: &mut [f64], class_totals: &[f64], counts: &[f64], s: &mut Scratch) -> usize {
    let c = class_totals.len();
    let k = per_fold.len() / c;
    let mut best = 0;
    let mut min_eval = f64::INFINITY;
    let mut min_samples = f64::INFINITY;
    for i in 0..k {
        let fold = i * c..(i + 1) * c;
        for (slot, &v) in per_fold[fold.clone()].iter_mut().zip(counts) {
            *slot += v;
        }
        for (out, (&v, &total)) in s
            .normalised
            .iter_mut()
            .zip(per_fold.iter().zip(class_totals.iter().cycle()))
        {
            *out = v / total;
        }
        numpy::std_axis0(&s.normalised, k, c, &mut s.std_per_class);
        for (slot, &v) in per_fold[fold.clone()].iter_mut().zip(counts) {
            *slot -= v;
        }
        let eval = numpy::mean(&s.std_per_class);
        let samples = numpy::sum(&per_fold[fold]);
        if eval < min_eval || (numpy::isclose(eval, min_eval) && samples < min_samples) {
            min_eval = eval;
            min_samples = samples;
            best = i;
        }
    }
    best
}

/// numpy's float64 reductions, with numpy's summation order, so that ties break as they do in
/// scikit-learn.
mod numpy {
    /// `np.add.reduce` over a contiguous run: pairwise summation with 8 accumulators.
    pub fn sum(a: &[f64]) -> f64 {
        pairwise(a)
    }

    fn pairwise(a: &[f64]) -> f64 {
        let n = a.len();
        if n < 8 {
            let mut res = 0.0;
            for &v in a {
                res += v;
            }
            res
        } else if n <= 128 {
            let mut r = [0.0f64; 8];
            r.copy_from_slice(&a[..8]);
            let mut i = 8;
            while i < n - n % 8 {
                for j in 0..8 {
                    r[j] += a[i + j];
                }
                i += 8;
            }
            let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
            for &v in &a[i..] {
                res += v;
            }
            res
        } else {
            let mut half = n / 2;
            half -= half % 8;
            pairwise(&a[..half]) + pairwise(&a[half..])
        }
    }

    pub fn mean(a: &[f64]) -> f64 {
        sum(a) / a.len() as f64
    }

    /// `np.std(a)` of a contiguous row (population standard deviation).
    pub fn std(a: &[f64]) -> f64 {
        let mean = mean(a);
        let squares: Vec<f64> = a.iter().map(|&v| (v - mean) * (v - mean)).collect();
        (sum(&squares) / a.len() as f64).sqrt()
    }

    /// `np.std(m, axis=0)` of a row-major `rows × cols` matrix: numpy sums down the rows one
    /// at a time.
    pub fn std_axis0(m: &[f64], rows: usize, cols: usize, out: &mut [f64]) {
        for (c, out) in out.iter_mut().enumerate() {
            let mut total = 0.0;
            for r in 0..rows {
                total += m[r * cols + c];
            }
            let mean = total / rows as f64;
            let mut squares = 0.0;
            for r in 0..rows {
                let d = m[r * cols + c] - mean;
                squares += d * d;
            }
            *out = (squares / rows as f64).sqrt();
        }
    }

    /// `np.isclose(a, b)` with its default tolerances.
    pub fn isclose(a: f64, b: f64) -> bool {
        if a.is_infinite() || b.is_infinite() {
            return a == b;
        }
        (a - b).abs() <= 1e-8 + 1e-5 * b.abs()
    }

    #[cfg(test)]
    mod tests {
        #[test]
        fn pairwise_sum_uses_numpys_blocking() {
            // With 9 values the 9th is added after the 8 accumulators combine.
            let a = [1e16, 1.0, -1e16, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0];
            assert_eq!(super::sum(&a), ((1e16 + 1.0) + (-1e16 + 1.0)) + 1.0);
        }
    }
}
