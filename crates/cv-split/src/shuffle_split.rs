//! `ShuffleSplit`, `StratifiedShuffleSplit` and `GroupShuffleSplit`: independent random
//! train/test draws. Unlike the k-fold types, their indices come back in drawn order, not sorted.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::PyFloat;
use crate::labels::{encode_sorted, Label};
use crate::split::{check_n_samples, Coverage, Fold, SampleIndex, Split};
use crate::{RandomState, SplitError};

/// A train or test size: a fraction of the samples in `(0, 1)`, or an absolute count.
///
/// Parsed from text as Python reads a literal: `0.2` is a fraction, `20` a count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Size {
    Count(usize),
    Fraction(f64),
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Size::Count(n) => n.fmt(f),
            Size::Fraction(v) => PyFloat(v).fmt(f),
        }
    }
}

impl FromStr for Size {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Ok(n) = s.parse::<usize>() {
            return Ok(Size::Count(n));
        }
        match s.parse::<f64>() {
            Ok(v) if v.is_finite() => Ok(Size::Fraction(v)),
            _ => Err(format!(
                "invalid size {s:?}: expected a fraction such as 0.2 or a count such as 20"
            )),
        }
    }
}

/// scikit-learn's `_validate_shuffle_split`: the train and test counts for `n_samples`.
pub(crate) fn train_test_counts(
    n_samples: usize,
    test_size: Option<Size>,
    train_size: Option<Size>,
    default_test: f64,
) -> Result<(usize, usize), SplitError> {
    let test_size = match (test_size, train_size) {
        (None, None) => Some(Size::Fraction(default_test)),
        _ => test_size,
    };
    let out_of_range = |size: Size| match size {
        Size::Count(n) => n >= n_samples || n == 0,
        Size::Fraction(v) => v <= 0.0 || v >= 1.0,
    };
    if let Some(size) = test_size.filter(|&s| out_of_range(s)) {
        return Err(SplitError::InvalidTestSize { size, n_samples });
    }
    if let Some(size) = train_size.filter(|&s| out_of_range(s)) {
        return Err(SplitError::InvalidTrainSize { size, n_samples });
    }
    if let (Some(Size::Fraction(train)), Some(Size::Fraction(test))) = (train_size, test_size) {
        if train + test > 1.0 {
            return Err(SplitError::FractionsSumPastOne(train + test));
        }
    }
    let n_test = test_size.map(|s| match s {
        Size::Fraction(v) => (v * n_samples as f64).ceil() as usize,
        Size::Count(n) => n,
    });
    let n_train = train_size.map(|s| match s {
        Size::Fraction(v) => (v * n_samples as f64).floor() as usize,
        Size::Count(n) => n,
    });
    let (n_train, n_test) = match (n_train, n_test) {
        (Some(train), Some(test)) => (train, test),
        (None, Some(test)) => (n_samples.saturating_sub(test), test),
        (Some(train), None) => (train, n_samples.saturating_sub(train)),
        (None, None) => unreachable!("a default test size was filled in above"),
    };
    if n_train + n_test > n_samples {
        return Err(SplitError::SizesPastSamples {
            total: n_train + n_test,
            n_samples,
        });
    }
    if n_train == 0 {
        return Err(SplitError::EmptyTrainSet {
            n_samples,
            test_size,
            train_size,
        });
    }
    Ok((n_train, n_test))
}

fn check_n_splits(n_splits: usize) -> Result<(), SplitError> {
    if n_splits == 0 {
        return Err(SplitError::NoSplits(n_splits));
    }
    Ok(())
}

/// Random permutation splits: each split draws `permutation(n)`, tests the first `n_test`
/// samples and trains on the next `n_train`. Default: 10 splits, `test_size=0.1`.
///
/// ```
/// use cv_split::{ShuffleSplit, Size};
/// let split = ShuffleSplit::new(3, 0).unwrap().test_size(Size::Count(2)).split(10).unwrap();
/// // Drawn order, not sorted, as scikit-learn returns it.
/// assert_eq!(split.folds[0].test, vec![2, 8]);
/// assert_eq!(split.folds[0].train, vec![4, 9, 1, 6, 7, 3, 0, 5]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ShuffleSplit {
    n_splits: usize,
    seed: u64,
    test_size: Option<Size>,
    train_size: Option<Size>,
}

impl ShuffleSplit {
    pub fn new(n_splits: usize, seed: u64) -> Result<Self, SplitError> {
        check_n_splits(n_splits)?;
        Ok(Self {
            n_splits,
            seed,
            test_size: None,
            train_size: None,
        })
    }

    pub fn test_size(mut self, size: Size) -> Self {
        self.test_size = Some(size);
        self
    }

    pub fn train_size(mut self, size: Size) -> Self {
        self.train_size = Some(size);
        self
    }

    pub fn split(&self, n_samples: usize) -> Result<Split, SplitError> {
        self.split_with_default(n_samples, 0.1)
    }

    fn split_with_default(&self, n_samples: usize, default_test: f64) -> Result<Split, SplitError> {
        check_n_samples(n_samples)?;
        let (n_train, n_test) =
            train_test_counts(n_samples, self.test_size, self.train_size, default_test)?;
        let mut rng = RandomState::new(self.seed)?;
        let folds = (0..self.n_splits)
            .map(|fold| {
                let p = rng.permutation_of::<SampleIndex>(n_samples);
                Fold {
                    fold,
                    test: p[..n_test].to_vec(),
                    train: p[n_test..n_test + n_train].to_vec(),
                }
            })
            .collect();
        Ok(Split {
            n_samples,
            coverage: Coverage::Sampled,
            folds,
            warnings: vec![],
        })
    }
}

/// `new`, `test_size` and `train_size` for the splitters built on [`ShuffleSplit`]'s sizes and
/// generator, forwarding to it.
macro_rules! wraps_shuffle_split {
    ($name:ident) => {
        impl $name {
            /// `n_splits` draws with `random_state=seed`; refuses `n_splits == 0`.
            pub fn new(n_splits: usize, seed: u64) -> Result<Self, SplitError> {
                Ok(Self {
                    inner: ShuffleSplit::new(n_splits, seed)?,
                })
            }

            pub fn test_size(self, size: Size) -> Self {
                Self {
                    inner: self.inner.test_size(size),
                }
            }

            pub fn train_size(self, size: Size) -> Self {
                Self {
                    inner: self.inner.train_size(size),
                }
            }
        }

        impl From<ShuffleSplit> for $name {
            fn from(inner: ShuffleSplit) -> Self {
                Self { inner }
            }
        }
    };
}

/// ShuffleSplit over whole groups: the sizes count groups (default `test_size=0.2`), and the
/// sample indices come back sorted. Default in scikit-learn: 5 splits.
///
/// ```
/// use cv_split::GroupShuffleSplit;
/// let groups = [1, 1, 2, 2, 3, 3, 4, 4, 5, 5];
/// let split = GroupShuffleSplit::new(2, 0).unwrap().split(&groups).unwrap();
/// for fold in &split.folds {
///     assert_eq!(fold.test.len(), 2); // one group of five
/// }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct GroupShuffleSplit {
    inner: ShuffleSplit,
}

wraps_shuffle_split!(GroupShuffleSplit);

impl GroupShuffleSplit {
    pub fn split<G: Label>(&self, groups: &[G]) -> Result<Split, SplitError> {
        check_n_samples(groups.len())?;
        let (encoded, _) = encode_sorted(groups);
        let by_group = self.inner.split_with_default(encoded.n_classes(), 0.2)?;
        let mut side = vec![0u8; encoded.n_classes()];
        let folds = by_group
            .folds
            .into_iter()
            .map(|fold| {
                side.fill(0);
                for &g in &fold.train {
                    side[g as usize] = 1;
                }
                for &g in &fold.test {
                    side[g as usize] = 2;
                }
                let members = |mark: u8| {
                    (0..groups.len() as SampleIndex)
                        .filter(|&i| side[encoded.codes[i as usize] as usize] == mark)
                        .collect()
                };
                Fold {
                    fold: fold.fold,
                    train: members(1),
                    test: members(2),
                }
            })
            .collect();
        Ok(Split {
            n_samples: groups.len(),
            coverage: Coverage::Sampled,
            folds,
            warnings: vec![],
        })
    }
}

/// Stratified random splits: per class, as many train and test samples as its share
/// (scikit-learn's `_approximate_mode`, with its random tie-breaking). Default: 10 splits,
/// `test_size=0.1`.
///
/// ```
/// use cv_split::{StratifiedShuffleSplit, Size};
/// let y = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1];
/// let split = StratifiedShuffleSplit::new(1, 0).unwrap().test_size(Size::Fraction(0.5)).split(&y).unwrap();
/// let test_ones = split.folds[0].test.iter().filter(|&&i| y[i as usize] == 1).count();
/// assert_eq!(test_ones, 2);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StratifiedShuffleSplit {
    inner: ShuffleSplit,
}

wraps_shuffle_split!(StratifiedShuffleSplit);

impl StratifiedShuffleSplit {
    pub fn split<L: Label + fmt::Display>(&self, y: &[L]) -> Result<Split, SplitError> {
        let n_samples = y.len();
        check_n_samples(n_samples)?;
        let ShuffleSplit {
            n_splits,
            seed,
            test_size,
            train_size,
        } = self.inner;
        let (n_train, n_test) = train_test_counts(n_samples, test_size, train_size, 0.1)?;
        let (encoded, classes) = encode_sorted(y);
        let n_classes = encoded.n_classes();
        let singletons: Vec<String> = classes
            .iter()
            .zip(&encoded.counts)
            .filter(|(_, &c)| c < 2)
            .map(|(class, _)| class.to_string())
            .collect();
        if !singletons.is_empty() {
            return Err(SplitError::SingletonClasses(singletons));
        }
        if n_train < n_classes {
            return Err(SplitError::TrainSmallerThanClasses { n_train, n_classes });
        }
        if n_test < n_classes {
            return Err(SplitError::TestSmallerThanClasses { n_test, n_classes });
        }
        // Members of each class in ascending index order.
        let mut members: Vec<Vec<SampleIndex>> = encoded
            .counts
            .iter()
            .map(|&c| Vec::with_capacity(c))
            .collect();
        for (i, &c) in encoded.codes.iter().enumerate() {
            members[c as usize].push(i as SampleIndex);
        }
        let mut rng = RandomState::new(seed)?;
        let folds = (0..n_splits)
            .map(|fold| {
                let n_i = approximate_mode(&encoded.counts, n_train, &mut rng);
                let remaining: Vec<usize> = encoded
                    .counts
                    .iter()
                    .zip(&n_i)
                    .map(|(c, n)| c - n)
                    .collect();
                let t_i = approximate_mode(&remaining, n_test, &mut rng);
                let mut train = Vec::with_capacity(n_train);
                let mut test = Vec::with_capacity(n_test);
                for (k, class_members) in members.iter().enumerate() {
                    let p = rng.permutation(class_members.len());
                    train.extend(p[..n_i[k]].iter().map(|&j| class_members[j]));
                    test.extend(p[n_i[k]..n_i[k] + t_i[k]].iter().map(|&j| class_members[j]));
                }
                rng.shuffle(&mut train);
                rng.shuffle(&mut test);
                Fold { fold, train, test }
            })
            .collect();
        Ok(Split {
            n_samples,
            coverage: Coverage::Sampled,
            folds,
            warnings: vec![],
        })
    }
}

/// scikit-learn's `_approximate_mode`: floor each class's share of `n_draws`, then hand the
/// remaining draws to the largest remainders, breaking ties with the generator.
fn approximate_mode(counts: &[usize], n_draws: usize, rng: &mut RandomState) -> Vec<usize> {
    let total: usize = counts.iter().sum();
    let continuous: Vec<f64> = counts
        .iter()
        .map(|&c| c as f64 / total as f64 * n_draws as f64)
        .collect();
    let mut floored: Vec<usize> = continuous.iter().map(|v| v.floor() as usize).collect();
    let mut need = n_draws.saturating_sub(floored.iter().sum());
    if need > 0 {
        let remainder: Vec<f64> = continuous
            .iter()
            .zip(&floored)
            .map(|(&c, &f)| c - f as f64)
            .collect();
        let mut values = remainder.clone();
        values.sort_by(|a, b| b.total_cmp(a));
        values.dedup();
        for value in values {
            let inds: Vec<usize> = (0..remainder.len())
                .filter(|&i| remainder[i] == value)
                .collect();
            let add = inds.len().min(need);
            // rng.choice(inds, add, replace=False) = inds[permutation(len)[:add]]
            let chosen = rng.permutation(inds.len());
            for &j in &chosen[..add] {
                floored[inds[j]] += 1;
            }
            need -= add;
            if need == 0 {
                break;
            }
        }
    }
    floored
}
