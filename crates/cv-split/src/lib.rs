//! Cross-validation splitters that give scikit-learn's folds index for index.
//!
//! For an integer seed, every splitter here returns exactly the train and test indices that
//! scikit-learn 1.9 returns for the same `random_state`, in the same order, because it draws from
//! a bit-exact port of numpy's legacy `RandomState` ([`RandomState`]) in the same sequence. An
//! experiment ported from Python keeps its folds.
//!
//! The crate knows nothing of images or tensors: it maps a number of samples, their class labels
//! and their groups to folds.
//!
//! ```
//! use cv_split::StratifiedKFold;
//!
//! // StratifiedKFold(n_splits=2, shuffle=True, random_state=0).split(X, y)
//! let y = ["cat", "dog", "cat", "dog", "cat", "dog", "cat", "dog"];
//! let split = StratifiedKFold::new(2).unwrap().shuffle(0).split(&y).unwrap();
//! assert_eq!(split.folds[0].train, vec![0, 2, 3, 7]);
//! assert_eq!(split.folds[0].test, vec![1, 4, 5, 6]);
//! split.check_leaks().unwrap();
//! let json = serde_json::to_string(&split.folds[0]).unwrap();
//! assert!(json.starts_with(r#"{"fold":0,"train":["#));
//! ```
//!
//! Conventions, as in scikit-learn: the k-fold types return sorted indices; the shuffle-split
//! types return them in drawn order (group shuffle-split sorts them). Where scikit-learn warns,
//! the warning is returned in [`Split::warnings`], never printed.

mod error;
mod group;
mod kfold;
mod labels;
mod random_state;
mod shuffle_split;
mod spec;
mod split;

pub use error::{SplitError, SplitWarning};
pub use group::{GroupKFold, StratifiedGroupKFold};
pub use kfold::{KFold, LeaveOneOut, RepeatedKFold, RepeatedStratifiedKFold, StratifiedKFold};
pub use labels::{Label, LabelValue};
pub use random_state::RandomState;
pub use shuffle_split::{GroupShuffleSplit, ShuffleSplit, Size, StratifiedShuffleSplit};
pub use spec::{Method, SpecError, SplitSpec};
pub use split::{Coverage, Fold, FoldAssignment, LeakError, SampleIndex, Split};
