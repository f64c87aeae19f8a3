//! Image datasets, transforms and a deterministic loader for foldwise.

mod image;
pub mod transform;

pub use crate::image::Image;
pub use transform::{Pipeline, Transform};
