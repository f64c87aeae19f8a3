//! Fold model files (safetensors + sidecar, as `cv_model::checkpoint` writes them) as models.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use cv_model::checkpoint::{load_sidecar, load_tensors, ModelSidecar};
use cv_model::{build, ModelConfig, ResNet};

use crate::EnsembleError;

/// A model file read into memory: its path, sidecar and tensors (on the CPU).
#[derive(Debug, Clone)]
pub struct ModelFile {
    pub path: PathBuf,
    pub sidecar: ModelSidecar,
    pub tensors: BTreeMap<String, Tensor>,
}

impl ModelFile {
    /// Reads `path` and its sidecar (`path` with the extension `.json`).
    pub fn read(path: &Path) -> Result<Self, EnsembleError> {
        Ok(Self {
            path: path.to_path_buf(),
            sidecar: load_sidecar(path)?,
            tensors: load_tensors(path)?,
        })
    }

    /// The model configuration recorded in the sidecar.
    pub fn config(&self) -> Result<ModelConfig, EnsembleError> {
        serde_json::from_value(self.sidecar.architecture.clone()).map_err(|e| {
            EnsembleError::Invalid(format!(
                "{}: the sidecar's architecture is not a model configuration: {e}",
                self.path.display()
            ))
        })
    }

    /// Builds the network the sidecar describes and sets `tensors` (which may differ from the
    /// file's, e.g. averaged weights) into it.
    pub fn instantiate(
        &self,
        tensors: &BTreeMap<String, Tensor>,
        device: &Device,
    ) -> Result<ResNet, EnsembleError> {
        // The init seed does not matter: every variable is overwritten below.
        let model = build(
            &self.config()?,
            &cv_seed::SeedTree::new(0).child("init"),
            device,
        )?;
        for (name, param) in model.params().iter() {
            let tensor = tensors.get(name).ok_or_else(|| EnsembleError::Mismatch {
                path: self.path.clone(),
                first: self.path.clone(),
                reason: format!("no tensor named {name}"),
            })?;
            if tensor.dims() != param.var.dims() {
                return Err(EnsembleError::Mismatch {
                    path: self.path.clone(),
                    first: self.path.clone(),
                    reason: format!(
                        "{name} has shape {:?}, the model needs {:?}",
                        tensor.dims(),
                        param.var.dims()
                    ),
                });
            }
            param
                .var
                .set(&tensor.to_dtype(param.var.dtype())?.to_device(device)?)?;
        }
        Ok(model)
    }

    /// The model with the file's own weights.
    pub fn load(&self, device: &Device) -> Result<ResNet, EnsembleError> {
        self.instantiate(&self.tensors, device)
    }
}
