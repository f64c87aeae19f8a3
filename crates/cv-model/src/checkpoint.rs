//! Model files: safetensors with torchvision names (loadable by PyTorch's `load_state_dict`),
//! a JSON sidecar describing them, written atomically; and a stable hash of a set of weights.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::Params;

/// Why a model file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("{path} does not fit this model: {message}")]
    Mismatch { path: PathBuf, message: String },
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
}

/// What a model file is: saved beside it as `<name>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSidecar {
    /// The model's configuration, as the model crate serialises it.
    pub architecture: serde_json::Value,
    /// Class names in label order.
    pub classes: Vec<String>,
    /// The epoch these weights come from (0-based), if from training.
    pub epoch: Option<usize>,
    /// Validation metrics of that epoch, by name.
    #[serde(default)]
    pub metrics: BTreeMap<String, f64>,
    /// [`weights_hash`] of the initial weights the training started from: fold models with the
    /// same value started from the same point (what weight averaging needs).
    pub init_hash: String,
    /// [`weights_hash`] of the weights in the file.
    pub weights_hash: String,
}

/// SHA-256 over every tensor in name order: its name, its shape and its f32 values
/// (little-endian), as lowercase hex. Equal hashes mean equal weights, bit for bit.
pub fn weights_hash(tensors: &BTreeMap<String, Tensor>) -> Result<String, CheckpointError> {
    let mut hasher = Sha256::new();
    for (name, tensor) in tensors {
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((tensor.rank() as u64).to_le_bytes());
        for &d in tensor.dims() {
            hasher.update((d as u64).to_le_bytes());
        }
        let values = tensor
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1::<f32>()?;
        for v in values {
            hasher.update(v.to_le_bytes());
        }
    }
    Ok(format!("{:x}", hasher.finalize()))
}

/// The sidecar's path for a model file: `fold-0/model.safetensors` → `fold-0/model.json`.
pub fn sidecar_path(model: &Path) -> PathBuf {
    model.with_extension("json")
}

/// Writes `bytes` to `path` through a temporary file in the same folder and a rename, so that a
/// reader (or a crash) never sees half a file.
pub fn write_atomic(
    path: &Path,
    write: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<(), CheckpointError> {
    let fail = |source| CheckpointError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let result = write(&tmp)
        .and_then(|()| std::fs::File::open(&tmp)?.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(fail)
}

/// Saves weights as safetensors (names sorted, no metadata: equal weights give equal bytes) and
/// the sidecar as JSON, each atomically; the weights first, so a sidecar never describes a file
/// that is not there.
pub fn save_model(
    path: &Path,
    tensors: &BTreeMap<String, Tensor>,
    sidecar: &ModelSidecar,
) -> Result<(), CheckpointError> {
    let map: HashMap<String, Tensor> = tensors
        .iter()
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    write_atomic(path, |tmp| {
        candle_core::safetensors::save(&map, tmp).map_err(std::io::Error::other)
    })?;
    let json = serde_json::to_vec_pretty(sidecar).map_err(|e| CheckpointError::Write {
        path: sidecar_path(path),
        source: std::io::Error::other(e),
    })?;
    write_atomic(&sidecar_path(path), |tmp| {
        let mut file = std::fs::File::create(tmp)?;
        file.write_all(&json)?;
        file.write_all(b"\n")
    })
}

/// Reads a safetensors file's tensors (on the CPU).
pub fn load_tensors(path: &Path) -> Result<BTreeMap<String, Tensor>, CheckpointError> {
    let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu).map_err(|e| {
        CheckpointError::Read {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    Ok(tensors.into_iter().collect())
}

/// Reads a model's sidecar.
pub fn load_sidecar(model: &Path) -> Result<ModelSidecar, CheckpointError> {
    let path = sidecar_path(model);
    let read = |message: String| CheckpointError::Read {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| read(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| read(e.to_string()))
}

/// Sets every variable of `params` from a file holding exactly the same names and shapes
/// (PyTorch's `num_batches_tracked` entries, if present, are ignored).
pub fn load_into(params: &Params, path: &Path) -> Result<(), CheckpointError> {
    let tensors = load_tensors(path)?;
    let mismatch = |message: String| CheckpointError::Mismatch {
        path: path.to_path_buf(),
        message,
    };
    for (name, param) in params.iter() {
        let tensor = tensors
            .get(name)
            .ok_or_else(|| mismatch(format!("it has no tensor named {name}")))?;
        if tensor.dims() != param.var.dims() {
            return Err(mismatch(format!(
                "{name} has shape {:?} in the file but {:?} in the model",
                tensor.dims(),
                param.var.dims()
            )));
        }
        let value = tensor
            .to_dtype(param.var.dtype())?
            .to_device(param.var.device())?;
        param.var.set(&value)?;
    }
    if let Some(extra) = tensors
        .keys()
        .find(|n| params.get(n).is_none() && !n.ends_with("num_batches_tracked"))
    {
        return Err(mismatch(format!("the model has no variable named {extra}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamKind;
    use candle_core::{Device, Var};

    fn params(scale: f32) -> Params {
        let mut p = Params::new();
        let w =
            Tensor::from_vec(vec![1.0f32 * scale, 2.0, 3.0, 4.0], (2, 2), &Device::Cpu).unwrap();
        let b = Tensor::from_vec(vec![0.5f32, -0.5], 2, &Device::Cpu).unwrap();
        p.insert(
            "fc.weight",
            Var::from_tensor(&w).unwrap(),
            ParamKind::Weight,
        );
        p.insert("fc.bias", Var::from_tensor(&b).unwrap(), ParamKind::Bias);
        p
    }

    fn sidecar(p: &Params) -> ModelSidecar {
        let hash = weights_hash(&p.tensors()).unwrap();
        ModelSidecar {
            architecture: serde_json::json!({"name": "toy"}),
            classes: vec!["a".into(), "b".into()],
            epoch: Some(3),
            metrics: BTreeMap::from([("accuracy".into(), 0.5)]),
            init_hash: hash.clone(),
            weights_hash: hash,
        }
    }

    #[test]
    fn save_load_round_trip_is_byte_identical() {
        let dir = tempfile::tempdir().unwrap();
        let p = params(1.0);
        let a = dir.path().join("a.safetensors");
        let b = dir.path().join("b.safetensors");
        save_model(&a, &p.tensors(), &sidecar(&p)).unwrap();
        save_model(&b, &p.tensors(), &sidecar(&p)).unwrap();
        assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
        assert_eq!(load_sidecar(&a).unwrap(), sidecar(&p));
        let q = params(7.0);
        assert_ne!(
            weights_hash(&q.tensors()).unwrap(),
            sidecar(&p).weights_hash
        );
        load_into(&q, &a).unwrap();
        assert_eq!(
            weights_hash(&q.tensors()).unwrap(),
            sidecar(&p).weights_hash
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 4, "temporary files left behind");
    }

    #[test]
    fn a_file_of_another_model_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let mut other = Params::new();
        let w = Tensor::zeros((3, 2), DType::F32, &Device::Cpu).unwrap();
        other.insert(
            "fc.weight",
            Var::from_tensor(&w).unwrap(),
            ParamKind::Weight,
        );
        save_model(&path, &other.tensors(), &sidecar(&other)).unwrap();
        let err = load_into(&params(1.0), &path).unwrap_err().to_string();
        assert!(err.contains("fc.bias") || err.contains("shape"), "{err}");
    }

    #[test]
    fn hash_is_pinned() {
        // SHA-256 of the documented byte layout for the two toy tensors; a change to the layout
        // would silently change every recorded init hash.
        let h = weights_hash(&params(1.0).tensors()).unwrap();
        assert_eq!(h.len(), 64);
        let mut manual = Sha256::new();
        for (name, shape, values) in [
            ("fc.bias", vec![2u64], vec![0.5f32, -0.5]),
            ("fc.weight", vec![2, 2], vec![1.0, 2.0, 3.0, 4.0]),
        ] {
            manual.update((name.len() as u64).to_le_bytes());
            manual.update(name.as_bytes());
            manual.update((shape.len() as u64).to_le_bytes());
            for d in shape {
                manual.update(d.to_le_bytes());
            }
            for v in values {
                manual.update(v.to_le_bytes());
            }
        }
        assert_eq!(h, format!("{:x}", manual.finalize()));
    }
}
