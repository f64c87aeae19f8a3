//! Trainable candle ResNets, the training loop and checkpoints for foldwise.

pub mod checkpoint;
pub mod clip;
pub mod device;
pub mod ema;
pub mod error;
pub mod init;
pub mod layers;
pub mod loss;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod pretrained;
pub mod resnet;
pub mod schedule;
pub mod train;

pub use clip::{clip_grad_norm, grad_norm};
pub use device::DeviceSpec;
pub use ema::{Ema, EmaBuffers, EmaConfig};
pub use error::{ModelError, Result};
pub use loss::{CrossEntropyLoss, LossConfig};
pub use metrics::{ConfusionMatrix, EpochMetrics};
pub use optim::{AdamW, AdamWConfig, Optimizer, OptimizerConfig, Sgd, SgdConfig};
pub use params::{Param, ParamKind, Params};
pub use pretrained::{load_pretrained, LoadReport, SkipReason};
pub use resnet::{build, Architecture, ModelConfig, ResNet};
pub use schedule::{LrSchedule, ScheduleConfig};
pub use train::{evaluate, train_fold, FoldOutcome, Progress, SelectBy, TrainConfig, TrainError};
