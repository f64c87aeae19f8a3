//! Starting from pretrained weights: a local safetensors file with torchvision's state-dict
//! names (e.g. converted from `resnet50(weights="IMAGENET1K_V2").state_dict()`).
//!
//! The policy is strict so that a wrong file cannot silently leave most of a network random:
//! every variable outside the classifier must be in the file with the same shape, and the file
//! must hold nothing else (apart from `num_batches_tracked`, which foldwise does not keep).
//! Only the classifier may differ: a classifier of another shape (1000 ImageNet classes, 5
//! here) or none at all leaves the model's own seeded classifier in place.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::error::{ModelError, Result};
use crate::resnet::ResNet;

/// Why a tensor of the file was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SkipReason {
    /// PyTorch's BatchNorm step counter, which foldwise does not keep.
    NumBatchesTracked,
    /// A classifier tensor of another shape (another number of classes): the model keeps its
    /// seeded initialisation for it.
    ClassifierShape { file: Vec<usize>, model: Vec<usize> },
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SkipReason::NumBatchesTracked => f.write_str("num_batches_tracked is not kept"),
            SkipReason::ClassifierShape { file, model } => write!(
                f,
                "classifier shape {file:?} in the file, {model:?} in the model: \
                 re-initialised from the seed"
            ),
        }
    }
}

/// What a pretrained load did, every list in name order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Variables copied from the file.
    pub loaded: Vec<String>,
    /// Tensors of the file that were not copied, and why.
    pub skipped: Vec<(String, SkipReason)>,
    /// Variables of the model the file lacks (only classifier variables can be missing); they
    /// keep their seeded initialisation.
    pub missing: Vec<String>,
}

/// Copies the tensors of safetensors file `path` into `model` (see the module docs for the
/// policy). Tensors of another float dtype are converted to f32.
pub fn load_pretrained(model: &ResNet, path: impl AsRef<Path>) -> Result<LoadReport> {
    let path = path.as_ref();
    // Read to the CPU first: a mismatching file is then refused before anything is uploaded.
    let tensors = candle_core::safetensors::load(path, &Device::Cpu).map_err(|source| {
        ModelError::ReadPretrained {
            path: path.to_owned(),
            source,
        }
    })?;
    load_from(model, &tensors, &path.display().to_string())
}

/// [`load_pretrained`] from tensors already in memory (name → tensor).
pub fn load_tensors(model: &ResNet, tensors: &HashMap<String, Tensor>) -> Result<LoadReport> {
    load_from(model, tensors, "the given tensors")
}

fn load_from(
    model: &ResNet,
    tensors: &HashMap<String, Tensor>,
    origin: &str,
) -> Result<LoadReport> {
    let sorted: BTreeMap<&str, &Tensor> = tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let classifier: BTreeSet<&str> = model.classifier_names().into_iter().collect();
    let mut report = LoadReport::default();
    let mut to_copy = Vec::new();
    let mut to_reinit = Vec::new();
    let mut mismatches = Vec::new();

    for (&name, &tensor) in &sorted {
        if name.ends_with("num_batches_tracked") {
            report
                .skipped
                .push((name.to_owned(), SkipReason::NumBatchesTracked));
            continue;
        }
        let Some(param) = model.params().get(name) else {
            mismatches.push(format!("{name} is not in the model"));
            continue;
        };
        let (file, own) = (tensor.dims(), param.var.dims());
        if file == own {
            to_copy.push((name, tensor, param));
        } else if classifier.contains(name) {
            report.skipped.push((
                name.to_owned(),
                SkipReason::ClassifierShape {
                    file: file.to_vec(),
                    model: own.to_vec(),
                },
            ));
            to_reinit.push(name);
        } else {
            mismatches.push(format!(
                "{name} has shape {file:?} in the file, {own:?} in the model"
            ));
        }
    }
    for (name, _) in model.params().iter() {
        if !sorted.contains_key(name) {
            if classifier.contains(name) {
                report.missing.push(name.to_owned());
            } else {
                mismatches.push(format!("{name} is missing from the file"));
            }
        }
    }
    if !mismatches.is_empty() {
        return Err(ModelError::PretrainedMismatch {
            origin: origin.to_owned(),
            architecture: model.config().architecture.name(),
            count: mismatches.len(),
            examples: examples(&mismatches),
        });
    }

    for (name, tensor, param) in to_copy {
        let value = tensor.to_dtype(DType::F32)?.to_device(model.device())?;
        param.var.set(&value)?;
        report.loaded.push(name.to_owned());
    }
    // The model may have been trained before this call: put the classifier back to its seeded
    // start, so a pretrained start is the same whatever happened to the model earlier.
    for name in to_reinit
        .iter()
        .copied()
        .chain(report.missing.iter().map(String::as_str))
    {
        model.reinitialize(name)?;
    }
    Ok(report)
}

/// The first few mismatches, for an error message that stays readable.
fn examples(mismatches: &[String]) -> String {
    const SHOWN: usize = 4;
    let mut text = mismatches
        .iter()
        .take(SHOWN)
        .cloned()
        .collect::<Vec<_>>()
        .join("; ");
    if mismatches.len() > SHOWN {
        text.push_str(&format!("; and {} more", mismatches.len() - SHOWN));
    }
    text
}
