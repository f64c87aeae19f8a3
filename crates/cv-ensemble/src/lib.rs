//! Weight averaging and softmax ensembling of fold models for foldwise.

mod error;
mod model_file;

pub use error::EnsembleError;
pub use model_file::ModelFile;
