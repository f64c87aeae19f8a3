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
}
