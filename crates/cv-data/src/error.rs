//! What can go wrong with data, each naming the file, row or key at fault.

use std::path::PathBuf;

/// An error of the data crate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Manifest { path: PathBuf, message: String },
    #[error("cannot decode {path}: {message}")]
    Decode { path: PathBuf, message: String },
    #[error("invalid {transform} transform: {reason}")]
    InvalidTransform {
        transform: &'static str,
        reason: String,
    },
    #[error("{0}")]
    Check(crate::check::CheckReport),
    #[error("cannot make a tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("{0}")]
    Invalid(String),
}
