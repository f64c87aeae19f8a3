//! Weight averaging and softmax ensembling of fold models for foldwise.

mod error;

pub use error::EnsembleError;
