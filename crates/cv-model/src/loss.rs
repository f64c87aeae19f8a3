//! Cross-entropy with label smoothing and class weights, as `torch.nn.functional.cross_entropy`.
//!
//! candle-nn's `loss::cross_entropy` has neither; this one follows PyTorch's formula exactly,
//! including the less obvious way PyTorch combines the two (see [`CrossEntropyLoss`]).

use candle_core::{DType, Device, Tensor, D};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Loss settings as they appear in a config file.
///
/// ```
/// let config: cv_model::loss::LossConfig =
///     toml::from_str("label_smoothing = 0.1\nclass_weights = [1.0, 2.0, 0.5]").unwrap();
/// assert_eq!(config.class_weights.as_deref(), Some(&[1.0f32, 2.0, 0.5][..]));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossConfig {
    /// ε in [0, 1]: the target distribution is (1 − ε)·one-hot + ε/C.
    pub label_smoothing: f64,
    /// One non-negative weight per class (PyTorch's `weight=`), or none for equal weights.
    pub class_weights: Option<Vec<f32>>,
}

/// Mean cross-entropy over a batch of logits `[N, C]` and `u32` targets `[N]`.
///
/// With ε = label smoothing, `w` = class weights (all 1 when absent), `lp = log_softmax(logits)`
/// and `W = Σ_i w[y_i]`, the loss is PyTorch's
///
/// ```text
/// (1 − ε) · Σ_i w[y_i]·(−lp[i, y_i]) / W  +  (ε / C) · Σ_i Σ_c w[c]·(−lp[i, c]) / W
/// ```
///
/// Note the smoothing term: PyTorch weights each class's term by that class's weight but
/// normalises by the weights of the *targets* (`cross_entropy_loss_label_smoothing` in ATen's
/// `LossNLL.cpp`), not by a per-sample mixture of weights. Without weights it is the plain batch
/// mean. The log-softmax subtracts the (gradient-free) row maximum first, so large logits do
/// not overflow. Differentiable through candle's autograd.
///
/// ```
/// use candle_core::{Device, Tensor};
/// use cv_model::loss::CrossEntropyLoss;
///
/// let logits = Tensor::new(&[[2.0f32, 0.0, 0.0], [0.0, 0.0, 0.0]], &Device::Cpu)?;
/// let targets = Tensor::new(&[0u32, 2], &Device::Cpu)?;
/// let loss = CrossEntropyLoss::new(0.0, None, &Device::Cpu)?.forward(&logits, &targets)?;
/// // (−ln(e²/(e²+2)) − ln(1/3)) / 2
/// let expected = ((2f32.exp() + 2.0).ln() - 2.0 + 3f32.ln()) / 2.0;
/// assert!((loss.to_scalar::<f32>()? - expected).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct CrossEntropyLoss {
    label_smoothing: f64,
    class_weights: Option<Tensor>,
}

impl CrossEntropyLoss {
    /// Checks ε ∈ [0, 1] and that every class weight is finite and ≥ 0 (with a positive sum),
    /// and uploads the weights to `device`.
    pub fn new(
        label_smoothing: f64,
        class_weights: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(ModelError::BadHyperparameter {
                field: "label_smoothing",
                value: label_smoothing.to_string(),
                expected: "a number in [0, 1] (0 turns smoothing off; 0.1 is usual)".into(),
            });
        }
        let class_weights = match class_weights {
            None => None,
            Some(weights) => {
                if let Some(bad) = weights.iter().find(|w| !w.is_finite() || **w < 0.0) {
                    return Err(ModelError::BadHyperparameter {
                        field: "class_weights",
                        value: bad.to_string(),
                        expected: "finite, non-negative weights".into(),
                    });
                }
                if weights.is_empty() || weights.iter().all(|w| *w == 0.0) {
                    return Err(ModelError::BadHyperparameter {
                        field: "class_weights",
                        value: format!("{weights:?}"),
                        expected: "one weight per class, at least one of them positive".into(),
                    });
                }
                Some(Tensor::from_slice(weights, weights.len(), device)?)
            }
        };
        Ok(Self {
            label_smoothing,
            class_weights,
        })
    }

    /// [`CrossEntropyLoss::new`] from a [`LossConfig`].
    pub fn from_config(config: &LossConfig, device: &Device) -> Result<Self> {
        Self::new(
            config.label_smoothing,
            config.class_weights.as_deref(),
            device,
        )
    }

    /// The scalar loss (a 0-dim tensor of the logits' dtype).
    ///
    /// Errors on wrong shapes or dtypes, a class-weight count that differs from `C`, and a
    /// target ≥ `C` (checked on the host: one small device-to-host copy of the maximum target).
    pub fn forward(&self, logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
        let shape_error = || ModelError::BadLossInput {
            logits: logits.dims().to_vec(),
            logits_dtype: format!("{:?}", logits.dtype()),
            targets: targets.dims().to_vec(),
            targets_dtype: format!("{:?}", targets.dtype()),
        };
        let (n, c) = logits.dims2().map_err(|_| shape_error())?;
        let n_targets = targets.dims1().map_err(|_| shape_error())?;
        if n == 0 || c == 0 || n_targets != n || targets.dtype() != DType::U32 {
            return Err(shape_error());
        }
        if !logits.dtype().is_float() {
            return Err(shape_error());
        }
        // A target out of range would make `gather` fail with an index error at best; say
        // which value is wrong instead.
        let max_target = targets.max(0)?.to_scalar::<u32>()?;
        if max_target as usize >= c {
            return Err(ModelError::TargetOutOfRange {
                target: max_target,
                num_classes: c,
            });
        }
        let weights = match &self.class_weights {
            None => None,
            Some(w) if w.elem_count() != c => {
                return Err(ModelError::ClassWeightCount {
                    count: w.elem_count(),
                    num_classes: c,
                })
            }
            Some(w) => Some(w.to_device(logits.device())?.to_dtype(logits.dtype())?),
        };

        let log_probs = log_softmax_rows(logits)?;
        // −log p of each sample's target: [N].
        let nll = log_probs
            .gather(&targets.unsqueeze(1)?, 1)?
            .squeeze(1)?
            .neg()?;
        let eps = self.label_smoothing;
        let loss = match &weights {
            None => {
                let nll = nll.mean(0)?;
                if eps == 0.0 {
                    nll
                } else {
                    let smooth = log_probs.sum(1)?.neg()?.mean(0)?;
                    ((nll * (1.0 - eps))? + (smooth * (eps / c as f64))?)?
                }
            }
            Some(w) => {
                let target_weights = w.index_select(targets, 0)?;
                let total_weight = target_weights.sum(0)?;
                let nll = (nll * &target_weights)?.sum(0)?.div(&total_weight)?;
                if eps == 0.0 {
                    nll
                } else {
                    let smooth = log_probs
                        .broadcast_mul(&w.unsqueeze(0)?)?
                        .sum(1)?
                        .neg()?
                        .sum(0)?
                        .div(&total_weight)?;
                    ((nll * (1.0 - eps))? + (smooth * (eps / c as f64))?)?
                }
            }
        };
        Ok(loss)
    }
}

/// Numerically stable log-softmax over the last dimension.
///
/// The row maximum is detached: log-softmax does not depend on it, and letting the gradient
/// flow through `max` would only add rounding noise to the arg-max entries.
fn log_softmax_rows(logits: &Tensor) -> Result<Tensor> {
    let max = logits.max_keepdim(D::Minus1)?.detach();
    let shifted = logits.broadcast_sub(&max)?;
    let log_sum_exp = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    Ok(shifted.broadcast_sub(&log_sum_exp)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (Tensor, Tensor) {
        let logits = Tensor::new(&[[1.0f32, 2.0, 3.0], [0.5, -1.0, 0.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[2u32, 0], &Device::Cpu).unwrap();
        (logits, targets)
    }

    #[test]
    fn matches_candle_nn_without_options() {
        let (logits, targets) = setup();
        let ours = CrossEntropyLoss::new(0.0, None, &Device::Cpu)
            .unwrap()
            .forward(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        let theirs = candle_nn::loss::cross_entropy(&logits, &targets)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((ours - theirs).abs() < 1e-6, "{ours} vs {theirs}");
    }

    #[test]
    fn rejects_bad_inputs() {
        let (logits, targets) = setup();
        let dev = &Device::Cpu;
        let plain = CrossEntropyLoss::new(0.0, None, dev).unwrap();
        assert!(matches!(
            plain.forward(&logits, &Tensor::new(&[3u32, 0], dev).unwrap()),
            Err(ModelError::TargetOutOfRange {
                target: 3,
                num_classes: 3
            })
        ));
        assert!(matches!(
            plain.forward(&logits, &Tensor::new(&[1i64, 0], dev).unwrap()),
            Err(ModelError::BadLossInput { .. })
        ));
        assert!(matches!(
            plain.forward(&logits.flatten_all().unwrap(), &targets),
            Err(ModelError::BadLossInput { .. })
        ));
        let two_weights = CrossEntropyLoss::new(0.0, Some(&[1.0, 2.0]), dev).unwrap();
        assert!(matches!(
            two_weights.forward(&logits, &targets),
            Err(ModelError::ClassWeightCount {
                count: 2,
                num_classes: 3
            })
        ));
        assert!(CrossEntropyLoss::new(1.5, None, dev).is_err());
        assert!(CrossEntropyLoss::new(-0.1, None, dev).is_err());
        assert!(CrossEntropyLoss::new(0.0, Some(&[1.0, -1.0, 1.0]), dev).is_err());
        assert!(CrossEntropyLoss::new(0.0, Some(&[0.0, 0.0]), dev).is_err());
        assert!(CrossEntropyLoss::new(0.0, Some(&[f32::NAN]), dev).is_err());
    }

    #[test]
    fn config_rejects_unknown_keys() {
        let err = toml::from_str::<LossConfig>("label_smothing = 0.1").unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
