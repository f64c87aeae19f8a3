//! A split as data: its folds, how they cover the samples, and a leak check.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{SplitError, SplitWarning};

/// A sample's position in the data set.
///
/// 32 bits: four billion samples is far past any image data set, and materialised folds of a
/// million samples take half the memory (and, on a fresh heap, half the time) of `usize`.
pub type SampleIndex = u32;

/// Refuses sample counts that [`SampleIndex`] cannot number.
pub(crate) fn check_n_samples(n_samples: usize) -> Result<(), SplitError> {
    if SampleIndex::try_from(n_samples).is_err() {
        return Err(SplitError::TooManySamples(n_samples));
    }
    Ok(())
}

/// One train/test pair. `fold` is its position in scikit-learn's order of `split()` results
/// (for repeated splitters it runs on across repeats: repeat `r`, fold `f` is `r * n_splits + f`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    pub fold: usize,
    pub train: Vec<SampleIndex>,
    pub test: Vec<SampleIndex>,
}

/// How a split's test sets cover the samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Coverage {
    /// k-fold types: within each repeat every sample is tested exactly once, and trained on in
    /// every other fold of that repeat.
    Partition { n_repeats: usize },
    /// Shuffle-split types: independent random draws; a sample may be tested many times or never.
    Sampled,
}

/// The result of a splitter: every fold, materialised, plus anything the user should be told.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Split {
    pub n_samples: usize,
    pub coverage: Coverage,
    pub folds: Vec<Fold>,
    /// scikit-learn's `UserWarning`s for this input; the library never prints them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<SplitWarning>,
}

/// The test fold of every sample in one repeat of a k-fold split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FoldAssignment {
    pub repeat: usize,
    /// `fold_of_sample[i]` is the (global) `Fold::fold` in which sample `i` is tested.
    pub fold_of_sample: Vec<usize>,
}

/// A fault found by [`Split::check_leaks`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LeakError {
    #[error("fold {fold}: sample {sample} is out of range for {n_samples} samples")]
    OutOfRange {
        fold: usize,
        sample: usize,
        n_samples: usize,
    },
    #[error("fold {fold}: sample {sample} appears more than once")]
    Duplicate { fold: usize, sample: usize },
    #[error("fold {fold}: sample {sample} is in both train and test")]
    TrainTestOverlap { fold: usize, sample: usize },
    #[error("fold {fold}: sample {sample} is neither trained nor tested on")]
    Unused { fold: usize, sample: usize },
    #[error("repeat {repeat}: sample {sample} is tested {times} times, not exactly once")]
    NotTestedOnce {
        repeat: usize,
        sample: usize,
        times: usize,
    },
}

impl Split {
    /// Builds the folds of a k-fold repeat from each sample's local fold number, with train and
    /// test indices sorted ascending as scikit-learn returns them.
    pub(crate) fn push_repeat<A>(folds: &mut Vec<Fold>, fold_of_sample: &[A], n_splits: usize)
    where
        A: Copy + Into<u32> + Sync,
    {
        let mut sizes = vec![0usize; n_splits];
        for &f in fold_of_sample {
            sizes[f.into() as usize] += 1;
        }
        let buffers = FoldBuffers::new(fold_of_sample.len(), &sizes);
        buffers.fill(folds, fold_of_sample);
    }

    /// The test fold of every sample, one entry per repeat; `None` for shuffle-split types,
    /// whose test sets do not partition the samples.
    pub fn assignments(&self) -> Option<Vec<FoldAssignment>> {
        let Coverage::Partition { n_repeats } = self.coverage else {
            return None;
        };
        let per_repeat = self.folds.len() / n_repeats.max(1);
        let assignments = self
            .folds
            .chunks(per_repeat.max(1))
            .enumerate()
            .map(|(repeat, folds)| {
                let mut fold_of_sample = vec![usize::MAX; self.n_samples];
                for fold in folds {
                    for &i in &fold.test {
                        fold_of_sample[i as usize] = fold.fold;
                    }
                }
                FoldAssignment {
                    repeat,
                    fold_of_sample,
                }
            })
            .collect();
        Some(assignments)
    }

    /// Checks that no fold leaks: indices in range, no duplicates, train and test disjoint; and
    /// for k-fold types that train ∪ test is every sample and that each repeat tests every
    /// sample exactly once.
    ///
    /// ```
    /// use cv_split::KFold;
    /// let split = KFold::new(3).unwrap().split(10).unwrap();
    /// split.check_leaks().unwrap();
    /// ```
    pub fn check_leaks(&self) -> Result<(), LeakError> {
        let n = self.n_samples;
        // 0 = unseen, 1 = train, 2 = test, reset per fold.
        let mut role = vec![0u8; n];
        let mut tested = vec![0usize; n];
        let partition = matches!(self.coverage, Coverage::Partition { .. });
        let per_repeat = match self.coverage {
            Coverage::Partition { n_repeats } => self.folds.len() / n_repeats.max(1),
            Coverage::Sampled => self.folds.len(),
        };
        for (position, fold) in self.folds.iter().enumerate() {
            role.fill(0);
            for (indices, mark) in [(&fold.train, 1u8), (&fold.test, 2u8)] {
                for &sample in indices {
                    let (fold, sample) = (fold.fold, sample as usize);
                    if sample >= n {
                        return Err(LeakError::OutOfRange {
                            fold,
                            sample,
                            n_samples: n,
                        });
                    }
                    match role[sample] {
                        0 => role[sample] = mark,
                        m if m == mark => return Err(LeakError::Duplicate { fold, sample }),
                        _ => return Err(LeakError::TrainTestOverlap { fold, sample }),
                    }
                }
            }
            if !partition {
                continue;
            }
            for (sample, &r) in role.iter().enumerate() {
                match r {
                    0 => {
                        return Err(LeakError::Unused {
                            fold: fold.fold,
                            sample,
                        })
                    }
                    2 => tested[sample] += 1,
                    _ => {}
                }
            }
            if (position + 1) % per_repeat.max(1) == 0 {
                let repeat = position / per_repeat.max(1);
                if let Some((sample, &times)) = tested.iter().enumerate().find(|(_, &t)| t != 1) {
                    return Err(LeakError::NotTestedOnce {
                        repeat,
                        sample,
                        times,
                    });
                }
                tested.fill(0);
            }
        }
        Ok(())
    }
}

/// The index lists of one k-fold repeat, allocated from the fold sizes before the assignment is
/// known.
///
/// Writing a million samples' folds means first touching tens of megabytes of fresh memory, and
/// the page faults cost as much as the writes. Splitters whose fold sizes are known in advance
/// build these buffers on a second core while the first draws the shuffle ([`rayon::join`]).
pub(crate) struct FoldBuffers {
    n_samples: usize,
    tests: Vec<Vec<SampleIndex>>,
    trains: Vec<Vec<SampleIndex>>,
}

impl FoldBuffers {
    pub(crate) fn new(n_samples: usize, test_sizes: &[usize]) -> Self {
        // Filled with a non-zero value so the pages are really touched now (zeroed memory can
        // come lazily from the kernel). One spare slot per list: see `fill`.
        let touched = |len: usize| vec![SampleIndex::MAX; len + 1];
        Self {
            n_samples,
            tests: test_sizes.iter().map(|&s| touched(s)).collect(),
            trains: test_sizes.iter().map(|&s| touched(n_samples - s)).collect(),
        }
    }

    /// Writes each fold from each sample's local fold number and appends the folds, numbered on
    /// from those already in `folds`.
    pub(crate) fn fill<A>(self, folds: &mut Vec<Fold>, fold_of_sample: &[A])
    where
        A: Copy + Into<u32> + Sync,
    {
        assert_eq!(fold_of_sample.len(), self.n_samples);
        let first = folds.len();
        // Each fold is written in one branch-free pass, one fold per thread: every index is
        // stored in both lists and only the cursor of the list it belongs to moves on (the spare
        // slot at the end of each list takes the stores that do not count).
        let built: Vec<Fold> = self
            .tests
            .into_par_iter()
            .zip(self.trains)
            .enumerate()
            .map(|(f, (mut test, mut train))| {
                let (mut t, mut r) = (0, 0);
                for (i, &a) in fold_of_sample.iter().enumerate() {
                    let is_test = usize::from(a.into() as usize == f);
                    test[t] = i as SampleIndex;
                    train[r] = i as SampleIndex;
                    t += is_test;
                    r += 1 - is_test;
                }
                test.truncate(t);
                train.truncate(r);
                Fold {
                    fold: first + f,
                    train,
                    test,
                }
            })
            .collect();
        folds.extend(built);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(folds: Vec<(Vec<SampleIndex>, Vec<SampleIndex>)>, coverage: Coverage) -> Split {
        Split {
            n_samples: 4,
            coverage,
            folds: folds
                .into_iter()
                .enumerate()
                .map(|(fold, (train, test))| Fold { fold, train, test })
                .collect(),
            warnings: vec![],
        }
    }

    #[test]
    fn leak_check_finds_each_kind_of_fault() {
        let partition = Coverage::Partition { n_repeats: 1 };
        let good = split(
            vec![(vec![2, 3], vec![0, 1]), (vec![0, 1], vec![2, 3])],
            partition,
        );
        assert_eq!(good.check_leaks(), Ok(()));
        let overlap = split(
            vec![(vec![1, 2, 3], vec![0, 1]), (vec![0, 1], vec![2, 3])],
            partition,
        );
        assert_eq!(
            overlap.check_leaks(),
            Err(LeakError::TrainTestOverlap { fold: 0, sample: 1 })
        );
        let twice = split(
            vec![(vec![2, 3], vec![0, 1]), (vec![2, 3], vec![0, 1])],
            partition,
        );
        assert_eq!(
            twice.check_leaks(),
            Err(LeakError::NotTestedOnce {
                repeat: 0,
                sample: 0,
                times: 2
            })
        );
        let unused = split(vec![(vec![3], vec![0, 1])], Coverage::Sampled);
        assert_eq!(unused.check_leaks(), Ok(()));
        let unused = split(vec![(vec![3], vec![0, 1])], partition);
        assert_eq!(
            unused.check_leaks(),
            Err(LeakError::Unused { fold: 0, sample: 2 })
        );
        let out = split(vec![(vec![4], vec![0])], Coverage::Sampled);
        assert!(matches!(
            out.check_leaks(),
            Err(LeakError::OutOfRange { sample: 4, .. })
        ));
    }
}
