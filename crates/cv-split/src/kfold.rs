//! `KFold`, `StratifiedKFold`, `LeaveOneOut` and their repeated forms.

use crate::labels::{encode_first_appearance, Encoded, Label};
use crate::split::{check_n_samples, Coverage, Fold, FoldBuffers, Split};
use crate::{RandomState, SplitError, SplitWarning};

/// `new(n_splits)` (refusing `n_splits < 2`, scikit-learn's `shuffle=False`) and
/// `shuffle(seed)` (`shuffle=True, random_state=seed`) for the k-fold splitters, which all hold
/// `n_splits` and an optional seed.
macro_rules! kfold_constructors {
    ($name:ident) => {
        impl $name {
            /// Without shuffling; refuses `n_splits < 2` with scikit-learn's message.
            pub fn new(n_splits: usize) -> Result<Self, SplitError> {
                $crate::kfold::check_n_splits(n_splits)?;
                Ok(Self {
                    n_splits,
                    seed: None,
                })
            }

            /// `shuffle=True, random_state=seed`.
            pub fn shuffle(mut self, seed: u64) -> Self {
                self.seed = Some(seed);
                self
            }
        }
    };
}
pub(crate) use kfold_constructors;

pub(crate) fn check_n_splits(n_splits: usize) -> Result<(), SplitError> {
    if n_splits <= 1 {
        return Err(SplitError::TooFewFolds(n_splits));
    }
    Ok(())
}

pub(crate) fn check_enough_samples(n_splits: usize, n_samples: usize) -> Result<(), SplitError> {
    check_n_samples(n_samples)?;
    if n_splits > n_samples {
        return Err(SplitError::MoreSplitsThanSamples {
            n_splits,
            n_samples,
        });
    }
    Ok(())
}

fn new_rng(seed: Option<u64>) -> Result<Option<RandomState>, SplitError> {
    seed.map(RandomState::new).transpose()
}

/// K-fold: consecutive chunks of the (optionally shuffled) samples; the first `n % k` folds
/// get one sample more.
///
/// ```
/// use cv_split::KFold;
/// // KFold(3).split(range(7)) in scikit-learn
/// let split = KFold::new(3).unwrap().split(7).unwrap();
/// assert_eq!(split.folds[0].test, vec![0, 1, 2]);
/// assert_eq!(split.folds[2].train, vec![0, 1, 2, 3, 4]);
/// // KFold(3, shuffle=True, random_state=0)
/// let split = KFold::new(3).unwrap().shuffle(0).split(7).unwrap();
/// assert_eq!(split.folds[0].test, vec![1, 2, 6]);
/// assert_eq!(split.folds[1].test, vec![0, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KFold {
    n_splits: usize,
    seed: Option<u64>,
}

kfold_constructors!(KFold);

impl KFold {
    pub fn split(&self, n_samples: usize) -> Result<Split, SplitError> {
        let mut rng = new_rng(self.seed)?;
        check_enough_samples(self.n_splits, n_samples)?;
        let mut folds = Vec::with_capacity(self.n_splits);
        push_kfold_repeat(&mut folds, self.n_splits, n_samples, || {
            kfold_assignment(self.n_splits, n_samples, rng.as_mut())
        });
        Ok(Split {
            n_samples,
            coverage: Coverage::Partition { n_repeats: 1 },
            folds,
            warnings: vec![],
        })
    }
}

/// Sizes of the k folds of n samples: the first `n % k` hold one sample more.
fn kfold_sizes(n_samples: usize, n_splits: usize) -> Vec<usize> {
    (0..n_splits)
        .map(|f| n_samples / n_splits + usize::from(f < n_samples % n_splits))
        .collect()
}

/// Each sample's fold: consecutive chunks of the (optionally shuffled) sample order.
fn kfold_assignment(n_splits: usize, n_samples: usize, rng: Option<&mut RandomState>) -> Vec<u32> {
    // u32 keeps the shuffled array half the size of usize (same draws, same result).
    let mut order: Vec<u32> = (0..n_samples as u32).collect();
    if let Some(rng) = rng {
        rng.shuffle(&mut order);
    }
    let mut assignment = vec![0u32; n_samples];
    let mut start = 0;
    for (f, size) in kfold_sizes(n_samples, n_splits).into_iter().enumerate() {
        for &i in &order[start..start + size] {
            assignment[i as usize] = f as u32;
        }
        start += size;
    }
    assignment
}

/// Stratified k-fold: each class is dealt round-robin over the folds, so every fold keeps the
/// class proportions (per-class counts per fold differ by at most one). With a seed, the fold
/// labels are shuffled within each class; the samples themselves keep their order.
///
/// ```
/// use cv_split::StratifiedKFold;
/// let y = [0, 0, 0, 0, 1, 1, 1, 1];
/// let split = StratifiedKFold::new(2).unwrap().split(&y).unwrap();
/// assert_eq!(split.folds[0].test, vec![0, 1, 4, 5]);
/// // Two folds but a class of one member: refused, as scikit-learn refuses it.
/// let err = StratifiedKFold::new(3).unwrap().split(&["a", "b", "a", "b"]).unwrap_err();
/// assert_eq!(err.to_string(), "n_splits=3 cannot be greater than the number of members in each class.");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StratifiedKFold {
    n_splits: usize,
    seed: Option<u64>,
}

kfold_constructors!(StratifiedKFold);

impl StratifiedKFold {
    pub fn split<L: Label>(&self, y: &[L]) -> Result<Split, SplitError> {
        let mut rng = new_rng(self.seed)?;
        let mut warnings = vec![];
        let encoded = encode_stratified(self.n_splits, y, &mut warnings)?;
        let mut folds = Vec::with_capacity(self.n_splits);
        push_stratified_repeat(&mut folds, self.n_splits, &encoded, rng.as_mut());
        Ok(Split {
            n_samples: y.len(),
            coverage: Coverage::Partition { n_repeats: 1 },
            folds,
            warnings,
        })
    }
}

/// The per-class checks shared by the stratified k-fold splitters.
pub(crate) fn check_class_counts(
    n_splits: usize,
    counts: &[usize],
    warnings: &mut Vec<SplitWarning>,
) -> Result<(), SplitError> {
    if counts.iter().all(|&c| n_splits > c) {
        return Err(SplitError::MoreSplitsThanClassMembers(n_splits));
    }
    let least = counts.iter().copied().min().unwrap_or(0);
    if n_splits > least {
        let warning = SplitWarning::LeastPopulatedClass {
            members: least,
            n_splits,
        };
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    Ok(())
}

/// StratifiedKFold's checks and its encoding: classes coded by first appearance.
fn encode_stratified<L: Label>(
    k: usize,
    y: &[L],
    warnings: &mut Vec<SplitWarning>,
) -> Result<Encoded, SplitError> {
    check_enough_samples(k, y.len())?;
    let (encoded, _) = encode_first_appearance(y);
    check_class_counts(k, &encoded.counts, warnings)?;
    Ok(encoded)
}

/// Appends one k-fold repeat whose fold sizes are KFold's (true of StratifiedKFold too: its
/// round-robin deal gives fold f the same count). The output buffers are built on a second core
/// while `assign` draws each sample's fold.
fn push_kfold_repeat<A>(
    folds: &mut Vec<Fold>,
    n_splits: usize,
    n_samples: usize,
    assign: impl FnOnce() -> Vec<A> + Send,
) where
    A: Copy + Into<u32> + Send + Sync,
{
    let sizes = kfold_sizes(n_samples, n_splits);
    let (assignment, buffers) = rayon::join(assign, || FoldBuffers::new(n_samples, &sizes));
    buffers.fill(folds, &assignment);
}

/// Appends one stratified repeat. Fold labels are bytes when they fit: the shuffles then stay in
/// cache and the folds are built from a quarter of the memory (same draws, same result, as
/// numpy's shuffle does not depend on the dtype).
fn push_stratified_repeat(
    folds: &mut Vec<Fold>,
    k: usize,
    encoded: &Encoded,
    rng: Option<&mut RandomState>,
) {
    let n = encoded.codes.len();
    if k <= 256 {
        push_kfold_repeat(folds, k, n, || deal_fold_labels::<u8>(k, encoded, rng));
    } else {
        push_kfold_repeat(folds, k, n, || deal_fold_labels::<u32>(k, encoded, rng));
    }
}

/// Each sample's fold: every class's fold labels dealt round-robin, optionally shuffled.
fn deal_fold_labels<T>(k: usize, encoded: &Encoded, mut rng: Option<&mut RandomState>) -> Vec<T>
where
    T: Copy + TryFrom<usize>,
{
    let label = |f: usize| T::try_from(f).unwrap_or_else(|_| unreachable!("k fits the type"));
    // scikit-learn deals the sorted codes round-robin: fold f takes positions f, f+k, f+2k, …
    // Class c holds positions [start, start + count), so its share of fold f is a difference
    // of two counts of positions ≡ f (mod k).
    let below = |x: usize, f: usize| if x <= f { 0 } else { (x - f).div_ceil(k) };
    let mut labels_by_class: Vec<T> = Vec::with_capacity(encoded.codes.len());
    let mut class_start = Vec::with_capacity(encoded.n_classes());
    let mut start = 0;
    for &count in &encoded.counts {
        let first = labels_by_class.len();
        class_start.push(first);
        for f in 0..k {
            let share = below(start + count, f) - below(start, f);
            labels_by_class.extend(std::iter::repeat_n(label(f), share));
        }
        if let Some(rng) = rng.as_deref_mut() {
            rng.shuffle(&mut labels_by_class[first..]);
        }
        start += count;
    }
    // The j-th sample of a class (in index order) takes that class's j-th fold label.
    let mut cursor = class_start;
    encoded
        .codes
        .iter()
        .map(|&c| {
            let at = &mut cursor[c as usize];
            *at += 1;
            labels_by_class[*at - 1]
        })
        .collect()
}

/// Leave-one-out: split `i` tests sample `i` alone.
///
/// ```
/// use cv_split::LeaveOneOut;
/// let split = LeaveOneOut.split(3).unwrap();
/// assert_eq!(split.folds[1].train, vec![0, 2]);
/// assert_eq!(split.folds[1].test, vec![1]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeaveOneOut;

impl LeaveOneOut {
    pub fn split(&self, n_samples: usize) -> Result<Split, SplitError> {
        if n_samples <= 1 {
            return Err(SplitError::LeaveOneOutTooFewSamples(n_samples));
        }
        check_n_samples(n_samples)?;
        let assignment: Vec<u32> = (0..n_samples as u32).collect();
        let mut folds = Vec::with_capacity(n_samples);
        Split::push_repeat(&mut folds, &assignment, n_samples);
        Ok(Split {
            n_samples,
            coverage: Coverage::Partition { n_repeats: 1 },
            folds,
            warnings: vec![],
        })
    }
}

fn check_repeats(n_repeats: usize) -> Result<(), SplitError> {
    if n_repeats == 0 {
        return Err(SplitError::NoRepeats);
    }
    Ok(())
}

/// `RepeatedKFold`: `n_repeats` shuffled k-folds drawn from one generator, so repeat `r`
/// continues the stream where repeat `r - 1` stopped (scikit-learn does not re-seed).
///
/// ```
/// use cv_split::RepeatedKFold;
/// let split = RepeatedKFold::new(2, 3, 0).unwrap().split(4).unwrap();
/// assert_eq!(split.folds.len(), 6);
/// split.check_leaks().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedKFold {
    n_splits: usize,
    n_repeats: usize,
    seed: u64,
}

impl RepeatedKFold {
    pub fn new(n_splits: usize, n_repeats: usize, seed: u64) -> Result<Self, SplitError> {
        check_repeats(n_repeats)?;
        check_n_splits(n_splits)?;
        Ok(Self {
            n_splits,
            n_repeats,
            seed,
        })
    }

    pub fn split(&self, n_samples: usize) -> Result<Split, SplitError> {
        let mut rng = RandomState::new(self.seed)?;
        let mut folds = Vec::with_capacity(self.n_splits * self.n_repeats);
        check_enough_samples(self.n_splits, n_samples)?;
        for _ in 0..self.n_repeats {
            push_kfold_repeat(&mut folds, self.n_splits, n_samples, || {
                kfold_assignment(self.n_splits, n_samples, Some(&mut rng))
            });
        }
        Ok(Split {
            n_samples,
            coverage: Coverage::Partition {
                n_repeats: self.n_repeats,
            },
            folds,
            warnings: vec![],
        })
    }
}

/// `RepeatedStratifiedKFold`: `n_repeats` shuffled stratified k-folds from one generator.
///
/// ```
/// use cv_split::RepeatedStratifiedKFold;
/// let y = ["a", "b", "a", "b", "a", "b"];
/// let split = RepeatedStratifiedKFold::new(3, 2, 42).unwrap().split(&y).unwrap();
/// assert_eq!(split.folds.len(), 6);
/// split.check_leaks().unwrap();
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepeatedStratifiedKFold {
    n_splits: usize,
    n_repeats: usize,
    seed: u64,
}

impl RepeatedStratifiedKFold {
    pub fn new(n_splits: usize, n_repeats: usize, seed: u64) -> Result<Self, SplitError> {
        check_repeats(n_repeats)?;
        check_n_splits(n_splits)?;
        Ok(Self {
            n_splits,
            n_repeats,
            seed,
        })
    }

    pub fn split<L: Label>(&self, y: &[L]) -> Result<Split, SplitError> {
        let mut rng = RandomState::new(self.seed)?;
        let mut warnings = vec![];
        let mut folds = Vec::with_capacity(self.n_splits * self.n_repeats);
        let encoded = encode_stratified(self.n_splits, y, &mut warnings)?;
        for _ in 0..self.n_repeats {
            push_stratified_repeat(&mut folds, self.n_splits, &encoded, Some(&mut rng));
        }
        Ok(Split {
            n_samples: y.len(),
            coverage: Coverage::Partition {
                n_repeats: self.n_repeats,
            },
            folds,
            warnings,
        })
    }
}
