//! Weight averaging of fold models: the element-wise mean of the parameters of k model files of
//! the same network (Polyak averaging across folds, the "uniform soup" of Wortsman et al., 2022).
//!
//! Averaging only makes sense for models that share an architecture, tensor names and shapes and
//! classes, which [`check_compatible`] enforces; and it usually only works for models that started
//! from the same initial weights (in the same loss basin), which [`average`] cannot enforce but
//! reports as an [`AverageWarning`]. The BatchNorm running statistics of an average are averages
//! of statistics of other networks, not of this one: recalibrate them with
//! [`crate::update_bn`] before using the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cv_model::checkpoint::{save_model, weights_hash, ModelSidecar};

use crate::{EnsembleError, ModelFile};

/// The `init_hash` written for an average of models that did not share their initial weights.
pub const MIXED_INIT: &str = "mixed";

/// Something about an average that the caller should tell the user (the library never prints).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AverageWarning {
    /// The models' sidecars record different initial weights (`init_hash`). `paths` holds the
    /// first model, then every model whose `init_hash` differs from the first's.
    DifferentInit { paths: Vec<PathBuf> },
}

impl std::fmt::Display for AverageWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AverageWarning::DifferentInit { paths } => {
                let (first, others) = match paths.split_first() {
                    Some((first, others)) => (first.display().to_string(), others),
                    None => (String::from("the first model"), &[][..]),
                };
                let others: Vec<String> = others.iter().map(|p| p.display().to_string()).collect();
                write!(
                    f,
                    "{} did not start from the same initial weights as {first}; averaging \
                     independently initialised networks rarely works (train the folds from one \
                     init seed to average them)",
                    others.join(", ")
                )
            }
        }
    }
}

/// The mean of several models' tensors, and what the caller should be warned about.
#[derive(Debug, Clone)]
pub struct Averaged {
    /// Every tensor name of the models, each the element-wise mean, in the first model's dtype.
    pub tensors: BTreeMap<String, Tensor>,
    pub warnings: Vec<AverageWarning>,
}

/// Checks that `models` can be averaged: the same architecture (as recorded in the sidecar),
/// the same classes in the same order, and the same tensor names with the same shapes.
///
/// The error names the first file that differs and the first model it was compared with.
pub fn check_compatible(models: &[ModelFile]) -> Result<(), EnsembleError> {
    let (first, others) = models.split_first().ok_or(EnsembleError::NoModels)?;
    for model in others {
        let mismatch = |reason: String| EnsembleError::Mismatch {
            path: model.path.clone(),
            first: first.path.clone(),
            reason,
        };
        if model.sidecar.architecture != first.sidecar.architecture {
            return Err(mismatch(format!(
                "the architecture {} differs from {}",
                model.sidecar.architecture, first.sidecar.architecture
            )));
        }
        if model.sidecar.classes != first.sidecar.classes {
            return Err(mismatch(format!(
                "the classes {:?} differ from {:?}",
                model.sidecar.classes, first.sidecar.classes
            )));
        }
        compare_tensors(&first.tensors, &model.tensors).map_err(mismatch)?;
    }
    Ok(())
}

/// Why `other` does not have `reference`'s tensor names and shapes, if it does not.
fn compare_tensors(
    reference: &BTreeMap<String, Tensor>,
    other: &BTreeMap<String, Tensor>,
) -> Result<(), String> {
    if let Some(name) = reference.keys().find(|n| !other.contains_key(*n)) {
        return Err(format!("it has no tensor named {name}"));
    }
    if let Some(name) = other.keys().find(|n| !reference.contains_key(*n)) {
        return Err(format!(
            "it has a tensor named {name} that the first has not"
        ));
    }
    for (name, tensor) in reference {
        if let Some(t) = other.get(name) {
            if t.dims() != tensor.dims() {
                return Err(format!(
                    "{name} has shape {:?}, not {:?}",
                    t.dims(),
                    tensor.dims()
                ));
            }
        }
    }
    Ok(())
}

/// The `init_hash` the models share, if they all share one.
pub fn common_init_hash(models: &[ModelFile]) -> Option<&str> {
    let (first, others) = models.split_first()?;
    let hash = first.sidecar.init_hash.as_str();
    others
        .iter()
        .all(|m| m.sidecar.init_hash == hash)
        .then_some(hash)
}

/// A running sum of models' tensors in f64 on the CPU, so that a mean does not depend on the
/// rounding of partial sums in the tensors' own precision.
#[derive(Debug, Clone)]
pub(crate) struct Accumulator {
    sums: BTreeMap<String, Tensor>,
    dtypes: BTreeMap<String, DType>,
    count: usize,
}

impl Accumulator {
    /// A sum holding `tensors` alone.
    pub(crate) fn new(tensors: &BTreeMap<String, Tensor>) -> Result<Self, EnsembleError> {
        let mut sums = BTreeMap::new();
        let mut dtypes = BTreeMap::new();
        for (name, tensor) in tensors {
            sums.insert(name.clone(), to_f64(tensor)?);
            dtypes.insert(name.clone(), tensor.dtype());
        }
        Ok(Self {
            sums,
            dtypes,
            count: 1,
        })
    }

    /// Adds a model with the same names and shapes (checked by the caller).
    pub(crate) fn add(&mut self, tensors: &BTreeMap<String, Tensor>) -> Result<(), EnsembleError> {
        self.sums = self.sums_with(tensors)?;
        self.count += 1;
        Ok(())
    }

    /// The mean of the models added so far.
    pub(crate) fn mean(&self) -> Result<BTreeMap<String, Tensor>, EnsembleError> {
        self.divide(&self.sums, self.count)
    }

    /// The mean of the models added so far and `tensors`, leaving the sum as it is.
    pub(crate) fn mean_with(
        &self,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, EnsembleError> {
        self.divide(&self.sums_with(tensors)?, self.count + 1)
    }

    fn sums_with(
        &self,
        tensors: &BTreeMap<String, Tensor>,
    ) -> Result<BTreeMap<String, Tensor>, EnsembleError> {
        self.sums
            .iter()
            .map(|(name, sum)| {
                let tensor = tensors.get(name).ok_or_else(|| {
                    EnsembleError::Invalid(format!("no tensor named {name} to add"))
                })?;
                Ok((name.clone(), (sum + to_f64(tensor)?)?))
            })
            .collect()
    }

    fn divide(
        &self,
        sums: &BTreeMap<String, Tensor>,
        count: usize,
    ) -> Result<BTreeMap<String, Tensor>, EnsembleError> {
        // A true division (not a multiplication by 1/count, which is inexact for count = 3):
        // the mean of identical models is then that model, bit for bit.
        let count = Tensor::new(count as f64, &Device::Cpu)?;
        sums.iter()
            .map(|(name, sum)| {
                let dtype = self.dtypes.get(name).copied().unwrap_or(DType::F32);
                Ok((name.clone(), sum.broadcast_div(&count)?.to_dtype(dtype)?))
            })
            .collect()
    }
}

fn to_f64(tensor: &Tensor) -> Result<Tensor, EnsembleError> {
    Ok(tensor.to_device(&Device::Cpu)?.to_dtype(DType::F64)?)
}

/// The element-wise mean of every tensor of `models` (BatchNorm running statistics included),
/// accumulated in f64 in the order given and rounded once to each tensor's dtype (the first
/// model's): the mean of identical models is that model bit for bit, and the mean of two models
/// is their exact mean rounded once.
///
/// Refuses models that [`check_compatible`] refuses. Models with different `init_hash` values
/// are averaged, with an [`AverageWarning::DifferentInit`].
///
/// ```no_run
/// use cv_ensemble::{average, save_averaged, ModelFile};
/// # fn main() -> Result<(), cv_ensemble::EnsembleError> {
/// let models = (0..5)
///     .map(|k| ModelFile::read(format!("run/fold-{k}/model.safetensors").as_ref()))
///     .collect::<Result<Vec<_>, _>>()?;
/// let averaged = average(&models)?;
/// for warning in &averaged.warnings {
///     eprintln!("warning: {warning}");
/// }
/// let metrics = Default::default();
/// save_averaged("run/averaged.safetensors".as_ref(), &models, &averaged.tensors, metrics)?;
/// # Ok(()) }
/// ```
pub fn average(models: &[ModelFile]) -> Result<Averaged, EnsembleError> {
    check_compatible(models)?;
    let (first, others) = models.split_first().ok_or(EnsembleError::NoModels)?;
    let mut sum = Accumulator::new(&first.tensors)?;
    for model in others {
        sum.add(&model.tensors)?;
    }
    Ok(Averaged {
        tensors: sum.mean()?,
        warnings: init_warnings(models),
    })
}

/// The warnings about `models`' initial weights.
pub(crate) fn init_warnings(models: &[ModelFile]) -> Vec<AverageWarning> {
    let Some((first, others)) = models.split_first() else {
        return Vec::new();
    };
    let differing: Vec<PathBuf> = others
        .iter()
        .filter(|m| m.sidecar.init_hash != first.sidecar.init_hash)
        .map(|m| m.path.clone())
        .collect();
    if differing.is_empty() {
        return Vec::new();
    }
    let mut paths = vec![first.path.clone()];
    paths.extend(differing);
    vec![AverageWarning::DifferentInit { paths }]
}

/// Writes averaged `tensors` of `models` as a normal model file (safetensors + sidecar, through
/// [`cv_model::checkpoint::save_model`]) that [`ModelFile::read`] and `load` accept, and returns
/// the sidecar written.
///
/// The sidecar takes the architecture and classes of the first model, no epoch, `metrics` (e.g.
/// the averaged model's own validation metrics; the folds' are no longer true of it), the
/// `init_hash` the models share or [`MIXED_INIT`], and the hash of `tensors`. The tensors must
/// have the first model's names and shapes.
pub fn save_averaged(
    path: &Path,
    models: &[ModelFile],
    tensors: &BTreeMap<String, Tensor>,
    metrics: BTreeMap<String, f64>,
) -> Result<ModelSidecar, EnsembleError> {
    let first = models.first().ok_or(EnsembleError::NoModels)?;
    compare_tensors(&first.tensors, tensors).map_err(|reason| {
        EnsembleError::Invalid(format!(
            "the tensors to write to {} are not those of {}: {reason}",
            path.display(),
            first.path.display()
        ))
    })?;
    let sidecar = ModelSidecar {
        architecture: first.sidecar.architecture.clone(),
        classes: first.sidecar.classes.clone(),
        epoch: None,
        metrics,
        init_hash: common_init_hash(models).unwrap_or(MIXED_INIT).to_owned(),
        weights_hash: weights_hash(tensors)?,
    };
    save_model(path, tensors, &sidecar)?;
    Ok(sidecar)
}
