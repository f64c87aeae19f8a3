//! The error type of cv-model.

use std::path::PathBuf;

/// Everything that can go wrong building, running or loading a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// CIFAR ResNets have 3 stages of n two-conv blocks plus the stem and the classifier.
    #[error("cifar-resnet depth must be 6n+2 with n >= 1 (20, 32, 44, 56, 110, ...), got {0}")]
    BadCifarDepth(usize),
    #[error("cifar-resnet width must be at least 1, got {0}")]
    BadCifarWidth(usize),
    #[error("in_channels must be at least 1 (1 for grayscale, 3 for RGB), got 0")]
    NoInputChannels,
    #[error("num_classes must be at least 1, got 0")]
    NoClasses,
    #[error("dropout must be in [0, 1), got {0}")]
    BadDropout(f64),
    /// A train-mode forward of a model with dropout needs a seed node for the mask.
    #[error(
        "this model has dropout {0}: a train-mode forward needs a seed node for the mask \
         (use ResNet::forward_train)"
    )]
    DropoutNeedsSeed(f64),
    #[error("the model expects input [batch, {expected_channels}, height, width], got {got:?}")]
    BadInput {
        expected_channels: usize,
        got: Vec<usize>,
    },
    /// PyTorch refuses this too: the batch variance of a single value is undefined.
    #[error(
        "batch norm {name} in train mode needs more than one value per channel, got input {shape:?} \
         (use a larger batch or input)"
    )]
    BatchNormSingleValue { name: String, shape: Vec<usize> },
    #[error("no variable named {0} in this model")]
    UnknownParam(String),
    #[error("could not read pretrained weights from {path}: {source}")]
    ReadPretrained {
        path: PathBuf,
        source: candle_core::Error,
    },
    /// The file was written for another architecture (or another input channel count).
    #[error(
        "pretrained weights {origin} do not fit this {architecture} model: {count} mismatch(es) \
         outside the classifier, e.g. {examples}"
    )]
    PretrainedMismatch {
        /// The file (or "the given tensors").
        origin: String,
        architecture: String,
        count: usize,
        examples: String,
    },
    // ---- Training maths (loss.rs, optim.rs, schedule.rs, clip.rs, ema.rs) ----
    /// A training hyperparameter (optimizer, schedule, loss, clipping, EMA) outside its range.
    #[error("{field} = {value} is invalid: {expected}")]
    BadHyperparameter {
        /// The config key, e.g. `momentum` or `warmup_start_factor`.
        field: &'static str,
        value: String,
        /// What would be accepted, phrased as the fix.
        expected: String,
    },
    #[error(
        "cross-entropy needs float logits [batch, classes] and u32 targets [batch] with batch >= 1, \
         got logits {logits:?} ({logits_dtype}) and targets {targets:?} ({targets_dtype})"
    )]
    BadLossInput {
        logits: Vec<usize>,
        logits_dtype: String,
        targets: Vec<usize>,
        targets_dtype: String,
    },
    #[error(
        "target {target} is out of range for {num_classes} classes (targets must be < \
         {num_classes})"
    )]
    TargetOutOfRange { target: u32, num_classes: usize },
    #[error(
        "{count} class weights given for {num_classes} classes: give exactly one weight per class"
    )]
    ClassWeightCount { count: usize, num_classes: usize },
    /// Restoring optimizer or EMA state that does not fit the model or the optimizer.
    #[error("cannot restore {what} state entry {entry:?}: {reason}")]
    BadTrainState {
        /// `optimizer` or `EMA`.
        what: &'static str,
        entry: String,
        reason: String,
    },
    // ---- end of training maths ----
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// cv-model's result type.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
