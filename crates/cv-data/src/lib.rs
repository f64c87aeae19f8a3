//! Image datasets, transforms and a deterministic loader for foldwise.

mod cache;
pub mod check;
mod dataset;
pub mod decode;
mod error;
mod image;
mod loader;
pub mod synth;
pub mod transform;

pub use crate::image::Image;
pub use cache::ImageCache;
pub use check::{check, CheckReport, Problem};
pub use dataset::{ClassMap, Dataset, ManifestColumns, Origin, Sample, IMAGE_EXTENSIONS};
pub use error::DataError;
pub use loader::{Batch, Batches, Loader, LoaderConfig, Sampling};
pub use transform::{Pipeline, Transform, Transforms};
