//! Exponential moving average of a model's variables, as torch's
//! `AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=…)`.

use std::collections::BTreeMap;

use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::optim::lerp;
use crate::params::{ParamKind, Params};

/// What the EMA does with [`ParamKind::Buffer`]s (BatchNorm running statistics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EmaBuffers {
    /// Average them like the weights (torch `use_buffers=True`, timm `ModelEmaV2`).
    #[default]
    Average,
    /// Copy the live model's buffers at every update (torch `use_buffers=False`).
    Copy,
}

/// EMA settings as they appear in a config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EmaConfig {
    /// In [0, 1]: `ema ← decay·ema + (1 − decay)·p`. Default 0.999.
    pub decay: f64,
    pub buffers: EmaBuffers,
}

impl Default for EmaConfig {
    fn default() -> Self {
        Self {
            decay: 0.999,
            buffers: EmaBuffers::Average,
        }
    }
}

/// The averaged copy of every variable of a model (trainable ones and buffers), by name.
///
/// Semantics of torch's `AveragedModel` with `get_ema_multi_avg_fn(decay)`: [`Ema::new`] copies
/// the model; the first [`Ema::update`] copies it again (torch's `n_averaged == 0` case), and
/// each later one does `ema ← lerp(ema, p, 1 − decay)` = `decay·ema + (1 − decay)·p`. Call
/// `update` after every optimizer step. The EMA owns deep copies, so later in-place updates of
/// the model's `Var`s do not leak into it.
///
/// ```
/// use candle_core::{Device, Var};
/// use cv_model::ema::{Ema, EmaConfig};
/// use cv_model::{ParamKind, Params};
///
/// let w = Var::new(&[1.0f32], &Device::Cpu)?;
/// let mut params = Params::new();
/// params.insert("w", w.clone(), ParamKind::Weight);
/// let mut ema = Ema::new(&EmaConfig { decay: 0.5, ..EmaConfig::default() }, &params)?;
/// ema.update(&params)?; // first update: a copy
/// w.set(&candle_core::Tensor::new(&[3.0f32], &Device::Cpu)?)?;
/// ema.update(&params)?;
/// assert_eq!(ema.get("w").unwrap().to_vec1::<f32>()?, [2.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Ema {
    config: EmaConfig,
    n_averaged: u64,
    tensors: BTreeMap<String, Tensor>,
}

impl Ema {
    const TENSOR: &'static str = "ema";
    const COUNT: &'static str = "n_averaged";

    /// Validates the decay and copies every variable of `params`.
    pub fn new(config: &EmaConfig, params: &Params) -> Result<Self> {
        if !(0.0..=1.0).contains(&config.decay) {
            return Err(ModelError::BadHyperparameter {
                field: "decay",
                value: config.decay.to_string(),
                expected: "an EMA decay in [0, 1], e.g. 0.999".into(),
            });
        }
        let mut tensors = BTreeMap::new();
        for (name, param) in params.iter() {
            tensors.insert(name.to_string(), param.var.as_tensor().detach().copy()?);
        }
        Ok(Self {
            config: config.clone(),
            n_averaged: 0,
            tensors,
        })
    }

    pub fn config(&self) -> &EmaConfig {
        &self.config
    }

    /// Number of [`Ema::update`] calls so far.
    pub fn num_updates(&self) -> u64 {
        self.n_averaged
    }

    /// Folds the model's current values into the average (see the type's docs).
    ///
    /// Errors if `params` is not the model the EMA was made from (different names or shapes).
    pub fn update(&mut self, params: &Params) -> Result<()> {
        if params.len() != self.tensors.len() {
            return Err(ModelError::BadTrainState {
                what: "EMA",
                entry: "(all)".into(),
                reason: format!(
                    "the EMA holds {} variables but the model has {}",
                    self.tensors.len(),
                    params.len()
                ),
            });
        }
        let weight = 1.0 - self.config.decay;
        for (name, param) in params.iter() {
            let current = param.var.as_tensor().detach();
            let Some(ema) = self.tensors.get(name) else {
                return Err(ModelError::BadTrainState {
                    what: "EMA",
                    entry: name.to_string(),
                    reason: "the model has a variable the EMA was not made with".into(),
                });
            };
            if ema.dims() != current.dims() {
                return Err(ModelError::BadTrainState {
                    what: "EMA",
                    entry: name.to_string(),
                    reason: format!("shape {:?} vs the model's {:?}", ema.dims(), current.dims()),
                });
            }
            let copy = self.n_averaged == 0
                || (param.kind == ParamKind::Buffer && self.config.buffers == EmaBuffers::Copy)
                || !current.dtype().is_float();
            let next = if copy {
                current.copy()?
            } else {
                lerp(ema, &current, weight)?
            };
            self.tensors.insert(name.to_string(), next);
        }
        self.n_averaged += 1;
        Ok(())
    }

    /// The averaged value of variable `name`.
    pub fn get(&self, name: &str) -> Option<&Tensor> {
        self.tensors.get(name)
    }

    /// Every averaged variable by model name: what to load into a model to evaluate the EMA, or
    /// to save as the EMA model's weights.
    pub fn tensors(&self) -> &BTreeMap<String, Tensor> {
        &self.tensors
    }

    /// The state for resuming: `ema/<name>` for every variable plus `n_averaged` (an i64 scalar
    /// on the CPU), sorted by name.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out: Vec<(String, Tensor)> = self
            .tensors
            .iter()
            .map(|(n, t)| (format!("{}/{n}", Self::TENSOR), t.clone()))
            .collect();
        let count = i64::try_from(self.n_averaged).unwrap_or(i64::MAX);
        out.push((Self::COUNT.to_string(), Tensor::new(count, &Device::Cpu)?));
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Restores a state from [`Ema::state`]: every variable of the model must be present with
    /// its shape and dtype, and nothing else. Tensors move to the device of the model's
    /// variables.
    pub fn load_state(
        &mut self,
        params: &Params,
        state: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<()> {
        let bad = |entry: &str, reason: String| ModelError::BadTrainState {
            what: "EMA",
            entry: entry.to_string(),
            reason,
        };
        let mut tensors = BTreeMap::new();
        let mut count = None;
        for (entry, value) in state {
            if entry == Self::COUNT {
                let n = value
                    .to_dtype(DType::I64)
                    .and_then(|v| v.to_scalar::<i64>())
                    .ok()
                    .and_then(|n| u64::try_from(n).ok())
                    .ok_or_else(|| bad(&entry, "expected a scalar count >= 0".into()))?;
                count = Some(n);
                continue;
            }
            let name = entry
                .strip_prefix(Self::TENSOR)
                .and_then(|s| s.strip_prefix('/'))
                .ok_or_else(|| bad(&entry, "expected ema/<variable name> or n_averaged".into()))?;
            let like = params
                .get(name)
                .ok_or_else(|| bad(&entry, format!("the model has no variable {name:?}")))?
                .var
                .as_tensor();
            if value.dims() != like.dims() || value.dtype() != like.dtype() {
                return Err(bad(
                    &entry,
                    format!(
                        "saved {:?} {:?}, but the model has {:?} {:?}",
                        value.dims(),
                        value.dtype(),
                        like.dims(),
                        like.dtype()
                    ),
                ));
            }
            tensors.insert(name.to_string(), value.to_device(like.device())?);
        }
        if let Some((missing, _)) = params.iter().find(|(n, _)| !tensors.contains_key(*n)) {
            return Err(bad(
                &format!("ema/{missing}"),
                "missing from the saved state".into(),
            ));
        }
        let count = count.ok_or_else(|| bad(Self::COUNT, "missing from the saved state".into()))?;
        self.tensors = tensors;
        self.n_averaged = count;
        Ok(())
    }
}
