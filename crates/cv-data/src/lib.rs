//! Image datasets, transforms and a deterministic loader for foldwise.

pub mod check;
mod error;
mod image;
pub mod synth;
pub mod transform;

pub use crate::image::Image;
pub use error::DataError;
pub use transform::{Pipeline, Transform};
