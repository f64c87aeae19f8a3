//! Trainable candle ResNets, the training loop and checkpoints for foldwise.

pub mod checkpoint;
pub mod device;
pub mod metrics;
pub mod params;

pub use device::DeviceSpec;
pub use metrics::{ConfusionMatrix, EpochMetrics};
pub use params::{Param, ParamKind, Params};
