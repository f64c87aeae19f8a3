//! Softmax ensembling: the fold models' class probabilities, combined per sample (arithmetic or
//! renormalised geometric mean), streamed over batches of images.
//!
//! Probabilities are computed on the host in `f64` from each model's `f32` logits and reported
//! as `f32`; combining accumulates in `f64`, always in model order, so the low-memory mode (one
//! model at a time, one pass over the data per model) and the in-memory mode (every model
//! loaded, one pass) give the same bits.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cv_model::checkpoint::load_sidecar;
use cv_model::train::Batches;
use cv_model::ResNet;
use serde::{Deserialize, Serialize};

use crate::{EnsembleError, ModelFile};

/// How the models' probabilities are combined per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Combine {
    /// The arithmetic mean of the probabilities (`mean`).
    #[default]
    Mean,
    /// The geometric mean of the probabilities, renormalised so that each row sums to 1
    /// (`geometric-mean`). Computed as the softmax of the mean log-probabilities (the same
    /// thing), from the logits, so that a probability that underflows to 0 in `f32` cannot
    /// zero a whole row.
    GeometricMean,
}

/// Class probabilities of a set of samples, with their labels.
///
/// `probabilities` is row-major: sample `i`'s row is `probabilities[i * n_classes..][..n_classes]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Predictions {
    pub n_classes: usize,
    pub probabilities: Vec<f32>,
    /// The labels the batches carried, in sample order.
    pub labels: Vec<u32>,
}

impl Predictions {
    /// Checks that there is one row of `n_classes` probabilities per label and that every label
    /// is a class.
    ///
    /// ```
    /// use cv_ensemble::Predictions;
    /// let p = Predictions::new(2, vec![0.25, 0.75, 0.5, 0.5], vec![1, 0]).unwrap();
    /// assert_eq!(p.row(0), &[0.25, 0.75]);
    /// assert_eq!(p.predicted(), vec![1, 0]); // a tie goes to the first class, as numpy's argmax
    /// assert!(Predictions::new(2, vec![0.5; 4], vec![2, 0]).is_err());
    /// ```
    pub fn new(
        n_classes: usize,
        probabilities: Vec<f32>,
        labels: Vec<u32>,
    ) -> Result<Self, EnsembleError> {
        let p = Self {
            n_classes,
            probabilities,
            labels,
        };
        p.validate()?;
        Ok(p)
    }

    /// The checks of [`Predictions::new`], for values built field by field.
    pub fn validate(&self) -> Result<(), EnsembleError> {
        if self.n_classes == 0 {
            return Err(EnsembleError::Invalid("predictions over no classes".into()));
        }
        if self.probabilities.len() != self.labels.len() * self.n_classes {
            return Err(EnsembleError::Invalid(format!(
                "{} probabilities cannot be {} rows of {} classes",
                self.probabilities.len(),
                self.labels.len(),
                self.n_classes
            )));
        }
        check_labels(&self.labels, 0, self.n_classes)
    }

    /// The number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Sample `i`'s probabilities.
    ///
    /// # Panics
    /// If `i` is not below [`Predictions::len`].
    pub fn row(&self, i: usize) -> &[f32] {
        &self.probabilities[i * self.n_classes..(i + 1) * self.n_classes]
    }

    /// Every sample's probabilities, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f32]> + '_ {
        // `max(1)`: fields are public, and chunks of 0 would panic; `validate` refuses 0 classes.
        self.probabilities.chunks_exact(self.n_classes.max(1))
    }

    /// The predicted class of each sample: the arg-max of its row, the first on ties (numpy's
    /// `argmax`).
    pub fn predicted(&self) -> Vec<u32> {
        self.rows().map(argmax).collect()
    }
}

fn argmax(row: &[f32]) -> u32 {
    let mut best = 0;
    for (c, &p) in row.iter().enumerate() {
        // Strictly greater: the first maximum wins, and a NaN never does.
        if p > row[best] {
            best = c;
        }
    }
    best as u32
}

fn check_labels(labels: &[u32], offset: usize, n_classes: usize) -> Result<(), EnsembleError> {
    match labels.iter().position(|&l| l as usize >= n_classes) {
        Some(i) => Err(EnsembleError::BadLabel {
            sample: offset + i,
            label: labels[i],
            n_classes,
        }),
        None => Ok(()),
    }
}

/// `model`'s softmax probabilities (eval mode) on every image of `batches`.
///
/// The softmax is taken on the host in `f64` from the `f32` logits and rounded to `f32`.
pub fn predict_probabilities(
    model: &ResNet,
    batches: Batches<'_>,
) -> Result<Predictions, EnsembleError> {
    let n_classes = model.config().num_classes;
    let mut acc = Accumulator::new(Combine::Mean, n_classes);
    for batch in batches {
        let (images, labels) = batch.map_err(EnsembleError::Data)?;
        let labels = host_labels(&labels, acc.labels.len(), n_classes)?;
        let offset = acc.labels.len();
        acc.labels.extend_from_slice(&labels);
        acc.sums.resize(acc.labels.len() * n_classes, 0.0);
        let logits = host_logits(model, &images, labels.len())?;
        acc.add(offset, &logits)?;
    }
    acc.finish(1)
}

/// The ensemble of `models`' softmax probabilities on the images of `batches()`.
///
/// Every model must have the same classes (in the same order); architectures may differ.
/// With `low_memory`, one network is on `device` at a time and `batches()` is called once per
/// model (it must give the same images in the same order each time; the labels are checked);
/// otherwise every network is loaded and `batches()` is called once. Both give the same bits.
/// The models' tensors are all in host memory already: to hold only one model's weights at a
/// time, use [`ensemble_probabilities_from_files`].
pub fn ensemble_probabilities<'a>(
    models: &[ModelFile],
    batches: impl FnMut() -> Batches<'a>,
    combine: Combine,
    low_memory: bool,
    device: &Device,
) -> Result<Predictions, EnsembleError> {
    let first = models.first().ok_or(EnsembleError::NoModels)?;
    for model in models {
        check_classes(
            &model.path,
            &first.path,
            &model.sidecar.classes,
            &first.sidecar.classes,
        )?;
    }
    let paths: Vec<PathBuf> = models.iter().map(|m| m.path.clone()).collect();
    let n_classes = first.sidecar.classes.len();
    run(
        &paths,
        |i| load_checked(&models[i], n_classes, device),
        batches,
        combine,
        low_memory,
        n_classes,
    )
}

/// [`ensemble_probabilities`] of the model files at `paths`: the sidecars are read (and the
/// classes checked) first; with `low_memory` each model's weights are then read only when its
/// turn comes, so that one model is in host and device memory at a time.
pub fn ensemble_probabilities_from_files<'a>(
    paths: &[PathBuf],
    batches: impl FnMut() -> Batches<'a>,
    combine: Combine,
    low_memory: bool,
    device: &Device,
) -> Result<Predictions, EnsembleError> {
    let first = paths.first().ok_or(EnsembleError::NoModels)?;
    let first_classes = load_sidecar(first)?.classes;
    for path in paths {
        check_classes(path, first, &load_sidecar(path)?.classes, &first_classes)?;
    }
    let n_classes = first_classes.len();
    let load = |i: usize| {
        let file = ModelFile::read(&paths[i])?;
        // The sidecar could have been replaced since it was checked above.
        check_classes(&paths[i], first, &file.sidecar.classes, &first_classes)?;
        load_checked(&file, n_classes, device)
    };
    run(paths, load, batches, combine, low_memory, n_classes)
}

fn check_classes(
    path: &Path,
    first: &Path,
    classes: &[String],
    first_classes: &[String],
) -> Result<(), EnsembleError> {
    if classes != first_classes {
        return Err(EnsembleError::Mismatch {
            path: path.to_path_buf(),
            first: first.to_path_buf(),
            reason: format!("its classes are {classes:?}, the first model's {first_classes:?}"),
        });
    }
    Ok(())
}

fn load_checked(
    file: &ModelFile,
    n_classes: usize,
    device: &Device,
) -> Result<ResNet, EnsembleError> {
    let model = file.load(device)?;
    if model.config().num_classes != n_classes {
        return Err(EnsembleError::Invalid(format!(
            "{}: the model has {} outputs but its sidecar names {n_classes} classes",
            file.path.display(),
            model.config().num_classes
        )));
    }
    Ok(model)
}

/// Both modes, over models `0..paths.len()` that `load` builds.
fn run<'a>(
    paths: &[PathBuf],
    mut load: impl FnMut(usize) -> Result<ResNet, EnsembleError>,
    mut batches: impl FnMut() -> Batches<'a>,
    combine: Combine,
    low_memory: bool,
    n_classes: usize,
) -> Result<Predictions, EnsembleError> {
    let mut acc = Accumulator::new(combine, n_classes);
    if low_memory {
        for (m, path) in paths.iter().enumerate() {
            let model = load(m)?;
            // The first pass records the labels; the others must see the same samples.
            let mut seen = 0usize;
            for batch in batches() {
                let (images, labels) = batch.map_err(EnsembleError::Data)?;
                let labels = host_labels(&labels, seen, n_classes)?;
                if m == 0 {
                    acc.labels.extend_from_slice(&labels);
                    acc.sums.resize(acc.labels.len() * n_classes, 0.0);
                } else {
                    check_same_labels(path, &acc.labels, seen, &labels)?;
                }
                let logits =
                    host_logits(&model, &images, labels.len()).map_err(|e| e.in_model(path))?;
                acc.add(seen, &logits).map_err(|e| e.in_model(path))?;
                seen += labels.len();
            }
            if seen != acc.labels.len() {
                return Err(EnsembleError::UnstableBatches {
                    path: path.clone(),
                    reason: format!(
                        "this pass gave {seen} samples, the first gave {}",
                        acc.labels.len()
                    ),
                });
            }
        }
    } else {
        let models = (0..paths.len())
            .map(&mut load)
            .collect::<Result<Vec<_>, _>>()?;
        for batch in batches() {
            let (images, labels) = batch.map_err(EnsembleError::Data)?;
            // Once per batch rather than once per model (a no-op when already there).
            let images = match models.first() {
                Some(model) => images.to_device(model.device())?,
                None => images,
            };
            let offset = acc.labels.len();
            let labels = host_labels(&labels, offset, n_classes)?;
            acc.labels.extend_from_slice(&labels);
            acc.sums.resize(acc.labels.len() * n_classes, 0.0);
            for (model, path) in models.iter().zip(paths) {
                let logits =
                    host_logits(model, &images, labels.len()).map_err(|e| e.in_model(path))?;
                acc.add(offset, &logits).map_err(|e| e.in_model(path))?;
            }
        }
    }
    acc.finish(paths.len())
}

fn check_same_labels(
    path: &Path,
    recorded: &[u32],
    offset: usize,
    labels: &[u32],
) -> Result<(), EnsembleError> {
    let unstable = |reason: String| EnsembleError::UnstableBatches {
        path: path.to_path_buf(),
        reason,
    };
    let expected = recorded.get(offset..offset + labels.len()).ok_or_else(|| {
        unstable(format!(
            "this pass gave more than the first pass's {} samples",
            recorded.len()
        ))
    })?;
    if let Some(i) = (0..labels.len()).find(|&i| labels[i] != expected[i]) {
        return Err(unstable(format!(
            "sample {} has label {} in this pass but {} in the first",
            offset + i,
            labels[i],
            expected[i]
        )));
    }
    Ok(())
}

/// A batch's labels on the host, checked against the number of classes.
fn host_labels(
    labels: &Tensor,
    offset: usize,
    n_classes: usize,
) -> Result<Vec<u32>, EnsembleError> {
    let labels = labels
        .to_dtype(DType::U32)?
        .flatten_all()?
        .to_vec1::<u32>()?;
    check_labels(&labels, offset, n_classes)?;
    Ok(labels)
}

/// The model's logits `[n, C]` (eval mode) on the host, flattened.
fn host_logits(model: &ResNet, images: &Tensor, n: usize) -> Result<Vec<f32>, EnsembleError> {
    let logits = model.forward_t(&images.to_device(model.device())?, false)?;
    let (rows, _) = logits.dims2()?;
    if rows != n {
        return Err(EnsembleError::Invalid(format!(
            "a batch of {rows} images came with {n} labels"
        )));
    }
    Ok(logits
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?)
}

/// Per-sample sums over the models, in model order.
struct Accumulator {
    combine: Combine,
    n_classes: usize,
    sums: Vec<f64>,
    labels: Vec<u32>,
}

impl Accumulator {
    fn new(combine: Combine, n_classes: usize) -> Self {
        Self {
            combine,
            n_classes,
            sums: Vec::new(),
            labels: Vec::new(),
        }
    }

    /// Adds one model's contribution for the samples from `offset` on: its `f32`-rounded
    /// probabilities (mean) or its log-probabilities (geometric mean).
    fn add(&mut self, offset: usize, logits: &[f32]) -> Result<(), EnsembleError> {
        let c = self.n_classes;
        if logits.len() % c != 0 {
            return Err(EnsembleError::Invalid(format!(
                "the model gives {} logits, not a multiple of {c} classes",
                logits.len()
            )));
        }
        let mut scratch = vec![0f64; c];
        for (i, row) in logits.chunks_exact(c).enumerate() {
            if row.iter().any(|x| !x.is_finite()) {
                return Err(EnsembleError::Invalid(format!(
                    "sample {}: the model's logits are not finite: {row:?}",
                    offset + i
                )));
            }
            let max = row
                .iter()
                .fold(f64::NEG_INFINITY, |m, &x| m.max(f64::from(x)));
            let mut total = 0f64;
            for (s, &x) in scratch.iter_mut().zip(row) {
                *s = f64::from(x) - max;
                total += s.exp();
            }
            let sums = &mut self.sums[(offset + i) * c..(offset + i + 1) * c];
            match self.combine {
                Combine::Mean => {
                    for (sum, s) in sums.iter_mut().zip(&scratch) {
                        // Rounded to f32 first: the model's own reported probability.
                        *sum += f64::from((s.exp() / total) as f32);
                    }
                }
                Combine::GeometricMean => {
                    let log_total = total.ln();
                    for (sum, s) in sums.iter_mut().zip(&scratch) {
                        *sum += s - log_total;
                    }
                }
            }
        }
        Ok(())
    }

    fn finish(self, n_models: usize) -> Result<Predictions, EnsembleError> {
        if self.labels.is_empty() {
            return Err(EnsembleError::NoSamples);
        }
        let k = n_models as f64;
        let c = self.n_classes;
        let probabilities = match self.combine {
            Combine::Mean => self.sums.iter().map(|s| (s / k) as f32).collect(),
            Combine::GeometricMean => {
                let mut out = Vec::with_capacity(self.sums.len());
                for row in self.sums.chunks_exact(c) {
                    // Softmax of the mean log-probabilities = the renormalised geometric mean.
                    let max = row.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x / k));
                    let exps: Vec<f64> = row.iter().map(|&x| (x / k - max).exp()).collect();
                    let total: f64 = exps.iter().sum();
                    out.extend(exps.iter().map(|e| (e / total) as f32));
                }
                out
            }
        };
        Predictions::new(c, probabilities, self.labels)
    }
}

impl EnsembleError {
    /// Names the model in a prediction error.
    fn in_model(self, path: &Path) -> Self {
        EnsembleError::Predict {
            path: path.to_path_buf(),
            error: Box::new(self),
        }
    }
}
