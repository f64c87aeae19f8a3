//! Errors and warnings, worded as scikit-learn words them so that a message found in a Python
//! notebook reads the same here.

use std::fmt;

use crate::Size;

/// Why a splitter refused its parameters or its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum SplitError {
    #[error(
        "k-fold cross-validation requires at least one train/test split by setting n_splits=2 or more, got n_splits={0}."
    )]
    TooFewFolds(usize),
    #[error("n_splits must be at least 1, got n_splits={0}.")]
    NoSplits(usize),
    #[error(
        "Cannot have number of splits n_splits={n_splits} greater than the number of samples: n_samples={n_samples}."
    )]
    MoreSplitsThanSamples { n_splits: usize, n_samples: usize },
    #[error(
        "Cannot have number of splits n_splits={n_splits} greater than the number of groups: {n_groups}."
    )]
    MoreSplitsThanGroups { n_splits: usize, n_groups: usize },
    #[error("n_splits={0} cannot be greater than the number of members in each class.")]
    MoreSplitsThanClassMembers(usize),
    #[error("Cannot perform LeaveOneOut with n_samples={0}.")]
    LeaveOneOutTooFewSamples(usize),
    #[error("{0} samples are more than foldwise can index (at most 4294967295)")]
    TooManySamples(usize),
    #[error("Seed must be between 0 and 2**32 - 1, got {0}.")]
    SeedOutOfRange(i128),
    #[error("Number of repetitions must be greater than 0.")]
    NoRepeats,
    #[error(
        "Found input variables with inconsistent numbers of samples: [{labels}, {groups}] (labels, groups)."
    )]
    LengthMismatch { labels: usize, groups: usize },
    #[error(
        "test_size={size} should be either positive and smaller than the number of samples {n_samples} or a float in the (0, 1) range"
    )]
    InvalidTestSize { size: Size, n_samples: usize },
    #[error(
        "train_size={size} should be either positive and smaller than the number of samples {n_samples} or a float in the (0, 1) range"
    )]
    InvalidTrainSize { size: Size, n_samples: usize },
    #[error(
        "The sum of test_size and train_size = {}, should be in the (0, 1) range. Reduce test_size and/or train_size.", PyFloat(*.0)
    )]
    FractionsSumPastOne(f64),
    #[error(
        "The sum of train_size and test_size = {total}, should be smaller than the number of samples {n_samples}. Reduce test_size and/or train_size."
    )]
    SizesPastSamples { total: usize, n_samples: usize },
    #[error(
        "With n_samples={n_samples}, test_size={} and train_size={}, the resulting train set will be empty. Adjust any of the aforementioned parameters.", OptSize(*.test_size), OptSize(*.train_size)
    )]
    EmptyTrainSet {
        n_samples: usize,
        test_size: Option<Size>,
        train_size: Option<Size>,
    },
    #[error(
        "The least populated classes in y have only 1 member, which is too few. The minimum number of groups for any class cannot be less than 2. Classes with too few members are: [{}]", .0.join(", ")
    )]
    SingletonClasses(Vec<String>),
    #[error("The train_size = {n_train} should be greater or equal to the number of classes = {n_classes}")]
    TrainSmallerThanClasses { n_train: usize, n_classes: usize },
    #[error("The test_size = {n_test} should be greater or equal to the number of classes = {n_classes}")]
    TestSmallerThanClasses { n_test: usize, n_classes: usize },
}

/// Something the caller should tell the user, where scikit-learn raises a `UserWarning`.
/// The library never prints it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub enum SplitWarning {
    /// Some class has fewer members than there are folds, so some folds lack it.
    LeastPopulatedClass { members: usize, n_splits: usize },
}

impl fmt::Display for SplitWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitWarning::LeastPopulatedClass { members, n_splits } => write!(
                f,
                "The least populated class in y has only {members} members, which is less than n_splits={n_splits}."
            ),
        }
    }
}

/// Formats an `f64` as Python's `repr` does for the values that appear in messages
/// (`0.0`, `0.25`, `1e-05`).
pub(crate) struct PyFloat(pub f64);

impl fmt::Display for PyFloat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let v = self.0;
        if v.is_finite() && v == v.trunc() && v.abs() < 1e16 {
            write!(f, "{v:.1}")
        } else {
            write!(f, "{v}")
        }
    }
}

struct OptSize(Option<Size>);

impl fmt::Display for OptSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(size) => size.fmt(f),
            None => f.write_str("None"),
        }
    }
}
