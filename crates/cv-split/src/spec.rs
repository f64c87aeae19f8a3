//! A splitter chosen by name and parameters, as a config file or the command line gives it.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::labels::Label;
use crate::{
    GroupKFold, GroupShuffleSplit, KFold, LeaveOneOut, RepeatedKFold, RepeatedStratifiedKFold,
    ShuffleSplit, Size, Split, SplitError, StratifiedGroupKFold, StratifiedKFold,
    StratifiedShuffleSplit,
};

/// Every splitter, by the name the CLI and configs use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    Kfold,
    StratifiedKfold,
    Loo,
    GroupKfold,
    StratifiedGroupKfold,
    ShuffleSplit,
    StratifiedShuffleSplit,
    GroupShuffleSplit,
    RepeatedKfold,
    RepeatedStratifiedKfold,
}

impl Method {
    pub const ALL: [Method; 10] = [
        Method::Kfold,
        Method::StratifiedKfold,
        Method::Loo,
        Method::GroupKfold,
        Method::StratifiedGroupKfold,
        Method::ShuffleSplit,
        Method::StratifiedShuffleSplit,
        Method::GroupShuffleSplit,
        Method::RepeatedKfold,
        Method::RepeatedStratifiedKfold,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Method::Kfold => "kfold",
            Method::StratifiedKfold => "stratified-kfold",
            Method::Loo => "loo",
            Method::GroupKfold => "group-kfold",
            Method::StratifiedGroupKfold => "stratified-group-kfold",
            Method::ShuffleSplit => "shuffle-split",
            Method::StratifiedShuffleSplit => "stratified-shuffle-split",
            Method::GroupShuffleSplit => "group-shuffle-split",
            Method::RepeatedKfold => "repeated-kfold",
            Method::RepeatedStratifiedKfold => "repeated-stratified-kfold",
        }
    }

    /// Whether the method reads group labels.
    pub fn uses_groups(self) -> bool {
        matches!(
            self,
            Method::GroupKfold | Method::StratifiedGroupKfold | Method::GroupShuffleSplit
        )
    }

    /// Whether the method always draws random numbers (and so needs a seed).
    pub fn always_random(self) -> bool {
        matches!(
            self,
            Method::ShuffleSplit
                | Method::StratifiedShuffleSplit
                | Method::GroupShuffleSplit
                | Method::RepeatedKfold
                | Method::RepeatedStratifiedKfold
        )
    }

    /// scikit-learn's default `n_splits` for the method.
    pub fn default_n_splits(self) -> usize {
        match self {
            Method::ShuffleSplit | Method::StratifiedShuffleSplit => 10,
            _ => 5,
        }
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Method::ALL
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| {
                let names: Vec<_> = Method::ALL.iter().map(|m| m.name()).collect();
                format!(
                    "unknown split method {s:?}; expected one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A splitter and its parameters. `seed: None` means no shuffling for the k-fold types
/// (scikit-learn's `shuffle=False`); `Some(s)` shuffles with `random_state=s`.
///
/// ```
/// use cv_split::{Method, SplitSpec};
/// let spec = SplitSpec { n_splits: Some(3), seed: Some(42), ..SplitSpec::new(Method::StratifiedKfold) };
/// let y = [0, 1, 0, 1, 0, 1];
/// let split = spec.split(y.len(), Some(&y[..]), None::<&[u8]>).unwrap();
/// assert_eq!(split.folds.len(), 3);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    pub method: Method,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_splits: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub n_repeats: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_size: Option<Size>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_size: Option<Size>,
}

/// What a [`SplitSpec`] could not do with the input it was given.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    #[error("{method} needs class labels")]
    MissingLabels { method: Method },
    #[error("The 'groups' parameter should not be None. ({method} needs group labels)")]
    MissingGroups { method: Method },
    #[error("{method} always shuffles, so it needs a seed")]
    MissingSeed { method: Method },
    #[error("{param} does not apply to {method}")]
    Unused { param: &'static str, method: Method },
    #[error(
        "Found input variables with inconsistent numbers of samples: [{n_samples}, {len}] ({what})"
    )]
    LengthMismatch {
        what: &'static str,
        n_samples: usize,
        len: usize,
    },
    #[error(transparent)]
    Split(#[from] SplitError),
}

impl SplitSpec {
    /// A spec with every parameter at its default.
    pub fn new(method: Method) -> Self {
        Self {
            method,
            n_splits: None,
            seed: None,
            n_repeats: None,
            test_size: None,
            train_size: None,
        }
    }

    /// Runs the splitter on `n_samples` samples with the labels and groups it needs.
    pub fn split<L, G>(
        &self,
        n_samples: usize,
        labels: Option<&[L]>,
        groups: Option<&[G]>,
    ) -> Result<Split, SpecError>
    where
        L: Label + fmt::Display,
        G: Label,
    {
        let method = self.method;
        let k = self.n_splits.unwrap_or(method.default_n_splits());
        for (what, len) in [
            ("labels", labels.map(<[L]>::len)),
            ("groups", groups.map(<[G]>::len)),
        ] {
            if let Some(len) = len.filter(|&len| len != n_samples) {
                return Err(SpecError::LengthMismatch {
                    what,
                    n_samples,
                    len,
                });
            }
        }
        let is_shuffle_split = matches!(
            method,
            Method::ShuffleSplit | Method::StratifiedShuffleSplit | Method::GroupShuffleSplit
        );
        let is_repeated = matches!(
            method,
            Method::RepeatedKfold | Method::RepeatedStratifiedKfold
        );
        let unused = |param| Err(SpecError::Unused { param, method });
        if self.n_repeats.is_some() && !is_repeated {
            return unused("n_repeats");
        }
        if self.test_size.is_some() && !is_shuffle_split {
            return unused("test_size");
        }
        if self.train_size.is_some() && !is_shuffle_split {
            return unused("train_size");
        }
        if method == Method::Loo && self.n_splits.is_some() {
            return unused("n_splits");
        }
        if method == Method::Loo && self.seed.is_some() {
            return unused("seed");
        }
        let seed = match (self.seed, method.always_random()) {
            (None, true) => return Err(SpecError::MissingSeed { method }),
            (seed, _) => seed,
        };
        let need_labels = || labels.ok_or(SpecError::MissingLabels { method });
        let need_groups = || groups.ok_or(SpecError::MissingGroups { method });
        let n_repeats = self.n_repeats.unwrap_or(10);
        let sized = |mut s: ShuffleSplit| {
            if let Some(size) = self.test_size {
                s = s.test_size(size);
            }
            if let Some(size) = self.train_size {
                s = s.train_size(size);
            }
            s
        };
        let seed_or_zero = seed.unwrap_or(0);
        let split = match method {
            Method::Kfold => with_seed(KFold::new(k)?, seed, KFold::shuffle).split(n_samples)?,
            Method::StratifiedKfold => {
                with_seed(StratifiedKFold::new(k)?, seed, StratifiedKFold::shuffle)
                    .split(need_labels()?)?
            }
            Method::Loo => LeaveOneOut.split(n_samples)?,
            Method::GroupKfold => {
                with_seed(GroupKFold::new(k)?, seed, GroupKFold::shuffle).split(need_groups()?)?
            }
            Method::StratifiedGroupKfold => with_seed(
                StratifiedGroupKFold::new(k)?,
                seed,
                StratifiedGroupKFold::shuffle,
            )
            .split(need_labels()?, need_groups()?)?,
            Method::ShuffleSplit => sized(ShuffleSplit::new(k, seed_or_zero)?).split(n_samples)?,
            Method::StratifiedShuffleSplit => {
                let s = sized(ShuffleSplit::new(k, seed_or_zero)?);
                StratifiedShuffleSplit::from(s).split(need_labels()?)?
            }
            Method::GroupShuffleSplit => {
                let s = sized(ShuffleSplit::new(k, seed_or_zero)?);
                GroupShuffleSplit::from(s).split(need_groups()?)?
            }
            Method::RepeatedKfold => {
                RepeatedKFold::new(k, n_repeats, seed_or_zero)?.split(n_samples)?
            }
            Method::RepeatedStratifiedKfold => {
                RepeatedStratifiedKFold::new(k, n_repeats, seed_or_zero)?.split(need_labels()?)?
            }
        };
        Ok(split)
    }
}

fn with_seed<S>(splitter: S, seed: Option<u64>, shuffle: fn(S, u64) -> S) -> S {
    match seed {
        Some(seed) => shuffle(splitter, seed),
        None => splitter,
    }
}
