//! BatchNorm recalibration of an averaged model (`torch.optim.swa_utils.update_bn`).
//!
//! An average of fold models has BatchNorm running statistics that are averages of other
//! networks' statistics; the averaged network's own activations have other means and variances.
//! [`update_bn`] replaces them with statistics of the averaged network on training data.

use candle_core::Tensor;
use cv_model::train::Batches;
use cv_model::{ParamKind, ResNet};

use crate::EnsembleError;

/// What [`update_bn`] saw, for the caller to record with the model (which data was used is the
/// caller's to record: it chose the batches).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BnReport {
    /// Batches run through the model.
    pub batches: usize,
    /// Images in them.
    pub samples: usize,
}

/// Recomputes every BatchNorm's running statistics of `model` from `batches` (images
/// `[N, C, H, W]`; labels are ignored), exactly as `torch.optim.swa_utils.update_bn`:
///
/// 1. every `running_mean` is set to 0 and every `running_var` to 1;
/// 2. one pass over the batches in train mode, each BatchNorm with PyTorch's `momentum=None`,
///    the cumulative moving average: after batch `k` (1-based),
///    `running = running + (batch_stat - running) / k`, with the unbiased batch variance for
///    `running_var`; the result is the plain mean over batches of the per-batch statistics,
///    not the statistics of all the images pooled;
/// 3. the model keeps its own momentum for later training (the cumulative average runs on a
///    clone, which shares the model's variables).
///
/// Dropout, which comes after the last BatchNorm, plays no part. Batches of one image whose
/// last stage is 1×1 give a BatchNorm a single value per channel, which is an error (as in
/// PyTorch); so is an empty iterator, or a batch that cannot be read. On any error, the running
/// statistics are put back as they were.
///
/// ```no_run
/// # use cv_ensemble::{average, update_bn, ModelFile};
/// # fn main() -> Result<(), cv_ensemble::EnsembleError> {
/// # let models: Vec<ModelFile> = Vec::new();
/// # let train_batches = || -> cv_model::train::Batches<'static> { Box::new(std::iter::empty()) };
/// let averaged = average(&models)?;
/// let model = models[0].instantiate(&averaged.tensors, &candle_core::Device::Cpu)?;
/// let report = update_bn(&model, train_batches())?;
/// println!("recalibrated on {} images in {} batches", report.samples, report.batches);
/// # Ok(()) }
/// ```
pub fn update_bn(model: &ResNet, mut batches: Batches<'_>) -> Result<BnReport, EnsembleError> {
    // Nothing is touched before there is a batch to compute statistics from.
    let first = match batches.next() {
        None => return Err(EnsembleError::NoBatches),
        Some(batch) => batch.map_err(EnsembleError::Data)?,
    };
    let saved: Vec<(&cv_model::Param, Tensor)> = model
        .params()
        .iter()
        .filter(|(_, p)| p.kind == ParamKind::Buffer)
        .map(|(_, p)| Ok((p, p.var.as_tensor().copy()?)))
        .collect::<Result<_, candle_core::Error>>()?;
    let result = recalibrate(model, std::iter::once(Ok(first)).chain(batches));
    if result.is_err() {
        for (param, value) in &saved {
            param.var.set(value)?;
        }
    }
    result
}

fn recalibrate(
    model: &ResNet,
    batches: impl Iterator<Item = cv_model::train::BatchResult>,
) -> Result<BnReport, EnsembleError> {
    for (name, param) in model.params().iter() {
        if param.kind != ParamKind::Buffer {
            continue;
        }
        let var = &param.var;
        if name.ends_with("running_mean") {
            var.set(&var.as_tensor().zeros_like()?)?;
        } else if name.ends_with("running_var") {
            var.set(&var.as_tensor().ones_like()?)?;
        }
    }
    // The clone's BatchNorms update the model's own running-statistic variables.
    let mut cumulative = model.clone();
    let mut report = BnReport {
        batches: 0,
        samples: 0,
    };
    for batch in batches {
        let (images, _labels) = batch.map_err(EnsembleError::Data)?;
        // PyTorch's momentum=None: the factor 1 / num_batches_tracked, counted from 1.
        cumulative.set_bn_momentum(1.0 / (report.batches + 1) as f64)?;
        let images = images.to_device(model.device())?;
        cumulative.features(&images, true)?;
        report.batches += 1;
        report.samples += images.dim(0)?;
    }
    Ok(report)
}
