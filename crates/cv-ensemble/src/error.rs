//! What can go wrong when combining fold models.

use std::path::PathBuf;

/// An error of the ensemble crate, naming the model file at fault where there is one.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EnsembleError {
    #[error("no models to combine")]
    NoModels,
    /// Models that cannot be combined: other architecture, tensor names, shapes or classes.
    #[error("{path} cannot be combined with {first}: {reason}")]
    Mismatch {
        path: PathBuf,
        first: PathBuf,
        reason: String,
    },
    #[error("cannot read a batch: {0}")]
    Data(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Checkpoint(#[from] cv_model::checkpoint::CheckpointError),
    #[error(transparent)]
    Model(#[from] cv_model::ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    // --- Prediction, evaluation, out-of-fold and comparison errors
    // (softmax.rs, evaluate.rs, oof.rs, compare.rs) ---
    /// The batches held no sample.
    #[error("no samples to predict or evaluate")]
    NoSamples,
    /// A label that is not a class index.
    #[error("sample {sample}: label {label} is not a class (there are {n_classes})")]
    BadLabel {
        sample: usize,
        label: u32,
        n_classes: usize,
    },
    /// A low-memory pass over the data that did not see the first pass's samples.
    #[error(
        "{path}: the batches differ from the first model's pass ({reason}); they must give \
         the same samples in the same order on every call"
    )]
    UnstableBatches { path: PathBuf, reason: String },
    /// Predicting with one model of an ensemble failed.
    #[error("{path}: {error}")]
    Predict {
        path: PathBuf,
        #[source]
        error: Box<EnsembleError>,
    },
    /// A sample that no fold predicted.
    #[error(
        "sample {sample} ({path}) has no out-of-fold prediction: no fold's test indices hold it"
    )]
    OofMissing { sample: usize, path: String },
    /// A sample predicted by two folds (or twice by one).
    #[error("sample {sample} ({path}) is predicted twice: by fold {first} and by fold {second}")]
    OofDuplicate {
        sample: usize,
        path: String,
        first: usize,
        second: usize,
    },
    // --- end of prediction errors ---
    // --- Weight averaging errors (average.rs, recalibrate.rs, soup.rs) ---
    /// BatchNorm recalibration was given no batch.
    #[error("no batches to recalibrate BatchNorm statistics with")]
    NoBatches,
    /// A greedy soup's model without a validation score to rank it by.
    #[error("{path} has no validation score to rank it by")]
    NoScore { path: PathBuf },
    // --- end of weight averaging errors ---
}
