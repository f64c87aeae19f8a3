//! SGD (momentum, Nesterov, L2 or decoupled weight decay) and AdamW, matching `torch.optim`.
//!
//! candle-nn's `SGD` has no momentum or weight decay, and its `AdamW` decays every variable,
//! BatchNorm's included. These optimizers:
//!
//! - visit parameters in name order ([`Params`] is a sorted map), so results never depend on
//!   hash order;
//! - never touch [`ParamKind::Buffer`]s (BatchNorm running statistics), even if a gradient for
//!   one is present, and skip parameters that have no gradient this step (their state does not
//!   advance either, as in PyTorch);
//! - decay [`ParamKind::Weight`] only, unless `decay_norm_and_bias = true`;
//! - take the learning rate at every [`Optimizer::step`], so an
//!   [`LrSchedule`](crate::schedule::LrSchedule) drives it and a resumed run needs no scheduler
//!   state;
//! - follow the op order of PyTorch's single-tensor (`foreach=False`) code paths, so f32 results
//!   agree with PyTorch to a few ulps (the golden tests in `tests/training_math.rs`);
//! - expose their whole state as named tensors ([`Optimizer::state`] /
//!   [`Optimizer::load_state`]) for bit-exact resume.

use std::collections::BTreeMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::params::{Param, ParamKind, Params};

/// Which optimizer, and its hyperparameters (everything but the learning rate, which comes from
/// the schedule).
///
/// ```
/// use cv_model::optim::{OptimizerConfig, SgdConfig};
///
/// let config: OptimizerConfig = toml::from_str(
///     r#"
///     type = "sgd"
///     momentum = 0.9
///     weight_decay = 5e-4
///     "#,
/// )
/// .unwrap();
/// assert_eq!(
///     config,
///     OptimizerConfig::Sgd(SgdConfig { weight_decay: 5e-4, ..SgdConfig::default() })
/// );
/// let adamw: OptimizerConfig = toml::from_str(r#"type = "adamw""#).unwrap();
/// assert!(matches!(adamw, OptimizerConfig::AdamW(c) if c.weight_decay == 0.01));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum OptimizerConfig {
    /// `torch.optim.SGD` with dampening 0.
    Sgd(SgdConfig),
    /// `torch.optim.AdamW` (amsgrad off). Written `"adamw"` (`"adam-w"` is accepted too).
    #[serde(rename = "adamw", alias = "adam-w")]
    AdamW(AdamWConfig),
}

impl Default for OptimizerConfig {
    /// SGD with momentum 0.9: the reference transfer-learning recipe.
    fn default() -> Self {
        OptimizerConfig::Sgd(SgdConfig::default())
    }
}

impl OptimizerConfig {
    /// Checks every hyperparameter's range; the error names the key and the accepted range.
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::Sgd(c) => c.validate(),
            OptimizerConfig::AdamW(c) => c.validate(),
        }
    }
}

/// SGD hyperparameters. Defaults: momentum 0.9, no Nesterov, no weight decay.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// In [0, 1); 0 is plain SGD (no momentum buffer is kept).
    pub momentum: f64,
    /// Nesterov momentum (needs momentum > 0).
    pub nesterov: bool,
    /// ≥ 0.
    pub weight_decay: f64,
    /// `false`: L2, `grad += wd·p` before momentum (PyTorch's `SGD(weight_decay=…)`).
    /// `true`: decoupled, `p ← p·(1 − lr·wd)` before the update (as AdamW does it).
    pub decoupled_weight_decay: bool,
    /// Decay biases and BatchNorm scales/shifts too (off: only [`ParamKind::Weight`]).
    pub decay_norm_and_bias: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        Self {
            momentum: 0.9,
            nesterov: false,
            weight_decay: 0.0,
            decoupled_weight_decay: false,
            decay_norm_and_bias: false,
        }
    }
}

impl SgdConfig {
    fn validate(&self) -> Result<()> {
        check_range("momentum", self.momentum, 0.0, 1.0, "in [0, 1), e.g. 0.9")?;
        check_non_negative("weight_decay", self.weight_decay)?;
        if self.nesterov && self.momentum == 0.0 {
            return Err(ModelError::BadHyperparameter {
                field: "nesterov",
                value: "true".into(),
                expected: "Nesterov momentum needs momentum > 0 (set momentum = 0.9, or \
                           nesterov = false)"
                    .into(),
            });
        }
        Ok(())
    }
}

/// AdamW hyperparameters. Defaults as `torch.optim.AdamW`: betas (0.9, 0.999), eps 1e-8,
/// weight decay 0.01.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AdamWConfig {
    /// (β1, β2), each in [0, 1).
    pub betas: [f64; 2],
    /// ≥ 0, added to √v̂.
    pub eps: f64,
    /// ≥ 0, decoupled: `p ← p·(1 − lr·wd)` before the Adam update.
    pub weight_decay: f64,
    /// Decay biases and BatchNorm scales/shifts too (off: only [`ParamKind::Weight`]).
    pub decay_norm_and_bias: bool,
}

impl Default for AdamWConfig {
    fn default() -> Self {
        Self {
            betas: [0.9, 0.999],
            eps: 1e-8,
            weight_decay: 0.01,
            decay_norm_and_bias: false,
        }
    }
}

impl AdamWConfig {
    fn validate(&self) -> Result<()> {
        check_range("betas[0]", self.betas[0], 0.0, 1.0, "in [0, 1), e.g. 0.9")?;
        check_range("betas[1]", self.betas[1], 0.0, 1.0, "in [0, 1), e.g. 0.999")?;
        check_non_negative("eps", self.eps)?;
        check_non_negative("weight_decay", self.weight_decay)
    }
}

/// `lo <= value < hi`, finite.
fn check_range(field: &'static str, value: f64, lo: f64, hi: f64, expected: &str) -> Result<()> {
    if value.is_finite() && value >= lo && value < hi {
        Ok(())
    } else {
        Err(ModelError::BadHyperparameter {
            field,
            value: value.to_string(),
            expected: expected.into(),
        })
    }
}

fn check_non_negative(field: &'static str, value: f64) -> Result<()> {
    if value.is_finite() && value >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::BadHyperparameter {
            field,
            value: value.to_string(),
            expected: "a finite number >= 0".into(),
        })
    }
}

fn check_lr(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(ModelError::BadHyperparameter {
            field: "lr",
            value: lr.to_string(),
            expected: "a finite learning rate >= 0".into(),
        })
    }
}

/// Whether weight decay applies to a parameter of this kind.
fn decays(kind: ParamKind, decay_norm_and_bias: bool) -> bool {
    match kind {
        ParamKind::Weight => true,
        ParamKind::Bias | ParamKind::Norm => decay_norm_and_bias,
        ParamKind::Buffer => false,
    }
}

/// The trainable parameters that have a gradient this step, in name order, detached so that
/// the update arithmetic builds no autograd graph.
fn with_grads<'a>(
    params: &'a Params,
    grads: &'a GradStore,
) -> impl Iterator<Item = (&'a str, &'a Param, Tensor, Tensor)> {
    params.trainable().filter_map(move |(name, param)| {
        let grad = grads.get(param.var.as_tensor())?;
        Some((name, param, param.var.as_tensor().detach(), grad.detach()))
    })
}

/// torch's `lerp(start, end, weight)` for a scalar weight, in its two-branch form (the branch
/// keeps the result exact at weight 0 and 1).
pub(crate) fn lerp(start: &Tensor, end: &Tensor, weight: f64) -> Result<Tensor> {
    // torch evaluates the weight and 1 − weight in the tensor's precision.
    let w32 = weight as f32;
    let diff = (end - start)?;
    if w32.abs() < 0.5 {
        Ok((start + (diff * f64::from(w32))?)?)
    } else {
        Ok((end - (diff * f64::from(1.0f32 - w32))?)?)
    }
}

/// A scalar (0-dim) tensor with `like`'s dtype and device.
fn scalar_like(value: f64, like: &Tensor) -> Result<Tensor> {
    Ok(Tensor::new(value, like.device())?.to_dtype(like.dtype())?)
}

/// Separator between the state kind and the parameter name in state entry names
/// (`momentum_buffer/layer1.0.conv1.weight`); kinds never contain it, so the first one splits.
const SEP: char = '/';

/// Splits a state entry name into (state kind, parameter name), checking that the parameter
/// exists and is trainable.
fn parse_entry<'a>(entry: &'a str, params: &Params) -> Result<(&'a str, &'a str)> {
    let bad = |reason: String| ModelError::BadTrainState {
        what: "optimizer",
        entry: entry.to_string(),
        reason,
    };
    let (kind, name) = entry
        .split_once(SEP)
        .ok_or_else(|| bad(format!("expected <kind>{SEP}<parameter name>")))?;
    match params.get(name) {
        None => Err(bad(format!("the model has no parameter {name:?}"))),
        Some(p) if !p.kind.is_trainable() => Err(bad(format!(
            "{name:?} is a buffer; optimizers keep no state for buffers"
        ))),
        Some(_) => Ok((kind, name)),
    }
}

/// Moves a loaded state tensor next to its parameter, refusing shape or dtype changes (a silent
/// conversion would break bit-exact resume).
fn restore_like(entry: &str, value: Tensor, like: &Tensor) -> Result<Tensor> {
    if value.dims() != like.dims() || value.dtype() != like.dtype() {
        return Err(ModelError::BadTrainState {
            what: "optimizer",
            entry: entry.to_string(),
            reason: format!(
                "saved {:?} {:?}, but the parameter is {:?} {:?}",
                value.dims(),
                value.dtype(),
                like.dims(),
                like.dtype()
            ),
        });
    }
    Ok(value.to_device(like.device())?)
}

fn restore_step(entry: &str, value: &Tensor) -> Result<u64> {
    let step = value
        .to_dtype(DType::I64)
        .and_then(|v| v.to_scalar::<i64>())
        .ok()
        .and_then(|s| u64::try_from(s).ok())
        .filter(|s| *s >= 1);
    step.ok_or_else(|| ModelError::BadTrainState {
        what: "optimizer",
        entry: entry.to_string(),
        reason: format!("expected a scalar step count >= 1, got {value}"),
    })
}

/// SGD with momentum (dampening 0), Nesterov and L2 or decoupled weight decay.
///
/// Per parameter with gradient `g`, exactly as `torch.optim.SGD`:
/// ```text
/// decoupled:  p ← p·(1 − lr·wd)                (if decayed)
/// L2:         g ← g + wd·p                     (if decayed)
/// momentum:   b ← g on the first step, else b ← μ·b + g
///             g ← g + μ·b (Nesterov) or g ← b
/// update:     p ← p − lr·g
/// ```
#[derive(Debug, Clone)]
pub struct Sgd {
    config: SgdConfig,
    /// Momentum buffers by parameter name; absent until the parameter's first gradient.
    momentum_buffers: BTreeMap<String, Tensor>,
}

impl Sgd {
    const BUFFER: &'static str = "momentum_buffer";

    /// Validates `config`; state starts empty.
    pub fn new(config: SgdConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            momentum_buffers: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &SgdConfig {
        &self.config
    }

    /// One update of every trainable parameter that has a gradient in `grads`.
    pub fn step(&mut self, params: &Params, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr)?;
        let c = &self.config;
        for (name, param, mut p, mut g) in with_grads(params, grads) {
            if c.weight_decay != 0.0 && decays(param.kind, c.decay_norm_and_bias) {
                if c.decoupled_weight_decay {
                    p = (p * (1.0 - lr * c.weight_decay))?;
                } else {
                    g = (g + (&p * c.weight_decay)?)?;
                }
            }
            if c.momentum != 0.0 {
                let buffer = match self.momentum_buffers.get(name) {
                    // torch starts the buffer at the gradient itself, with no dampening.
                    None => g.clone(),
                    Some(b) => ((b * c.momentum)? + &g)?,
                };
                g = if c.nesterov {
                    (&g + (&buffer * c.momentum)?)?
                } else {
                    buffer.clone()
                };
                self.momentum_buffers.insert(name.to_string(), buffer);
            }
            param.var.set(&(p - (g * lr)?)?)?;
        }
        Ok(())
    }

    /// `momentum_buffer/<name>` for every parameter that has one, in name order.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        Ok(self
            .momentum_buffers
            .iter()
            .map(|(n, t)| (format!("{}{SEP}{n}", Self::BUFFER), t.clone()))
            .collect())
    }

    /// Replaces the whole state with `state` (as returned by [`Sgd::state`]), checking every
    /// entry against `params`.
    pub fn load_state(
        &mut self,
        params: &Params,
        state: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<()> {
        let mut buffers = BTreeMap::new();
        for (entry, value) in state {
            let (kind, name) = parse_entry(&entry, params)?;
            if kind != Self::BUFFER || self.config.momentum == 0.0 {
                return Err(ModelError::BadTrainState {
                    what: "optimizer",
                    entry: entry.clone(),
                    reason: format!(
                        "not part of SGD's state (momentum {}): was it saved by another \
                         optimizer?",
                        self.config.momentum
                    ),
                });
            }
            let like = params.get(name).map(|p| p.var.as_tensor());
            if let Some(like) = like {
                buffers.insert(name.to_string(), restore_like(&entry, value, like)?);
            }
        }
        self.momentum_buffers = buffers;
        Ok(())
    }
}

/// Per-parameter AdamW state.
#[derive(Debug, Clone)]
struct AdamState {
    step: u64,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
}

/// AdamW, as `torch.optim.AdamW` (amsgrad off, bias correction on).
///
/// Per parameter with gradient `g`, at its `t`-th update:
/// ```text
/// p ← p·(1 − lr·wd)                    (if decayed)
/// m ← lerp(m, g, 1 − β1)
/// v ← β2·v + (1 − β2)·g²
/// p ← p − (lr / (1 − β1ᵗ)) · m / (√v / √(1 − β2ᵗ) + eps)
/// ```
#[derive(Debug, Clone)]
pub struct AdamW {
    config: AdamWConfig,
    state: BTreeMap<String, AdamState>,
}

impl AdamW {
    const STEP: &'static str = "step";
    const EXP_AVG: &'static str = "exp_avg";
    const EXP_AVG_SQ: &'static str = "exp_avg_sq";

    /// Validates `config`; state starts empty.
    pub fn new(config: AdamWConfig) -> Result<Self> {
        config.validate()?;
        Ok(Self {
            config,
            state: BTreeMap::new(),
        })
    }

    pub fn config(&self) -> &AdamWConfig {
        &self.config
    }

    /// One update of every trainable parameter that has a gradient in `grads`.
    pub fn step(&mut self, params: &Params, grads: &GradStore, lr: f64) -> Result<()> {
        check_lr(lr)?;
        let c = &self.config;
        let [beta1, beta2] = c.betas;
        for (name, param, mut p, g) in with_grads(params, grads) {
            let (step, exp_avg, exp_avg_sq) = match self.state.get(name) {
                Some(s) => (s.step + 1, s.exp_avg.clone(), s.exp_avg_sq.clone()),
                None => (1, g.zeros_like()?, g.zeros_like()?),
            };
            if c.weight_decay != 0.0 && decays(param.kind, c.decay_norm_and_bias) {
                p = (p * (1.0 - lr * c.weight_decay))?;
            }
            let exp_avg = lerp(&exp_avg, &g, 1.0 - beta1)?;
            // torch: exp_avg_sq.mul_(β2).addcmul_(g, g, value=1 − β2), i.e. ((1 − β2)·g)·g.
            let exp_avg_sq = ((exp_avg_sq * beta2)? + ((&g * (1.0 - beta2))? * &g)?)?;
            // The scalar maths is f64 as in torch (Python floats); `powf`, not `powi`, because
            // Python's `beta ** step` is C's pow.
            let t = step as f64;
            let bias_correction1 = 1.0 - beta1.powf(t);
            let bias_correction2 = 1.0 - beta2.powf(t);
            let step_size = lr / bias_correction1;
            let bias_correction2_sqrt = bias_correction2.powf(0.5);
            // torch divides by the scalar (no reciprocal) and then adds eps.
            let denom = (exp_avg_sq
                .sqrt()?
                .broadcast_div(&scalar_like(bias_correction2_sqrt, &exp_avg_sq)?)?
                + c.eps)?;
            // addcdiv: p + (value·m) / denom.
            let update = (&exp_avg * -step_size)?.div(&denom)?;
            param.var.set(&(p + update)?)?;
            self.state.insert(
                name.to_string(),
                AdamState {
                    step,
                    exp_avg,
                    exp_avg_sq,
                },
            );
        }
        Ok(())
    }

    /// `exp_avg/<name>`, `exp_avg_sq/<name>` and `step/<name>` (an i64 scalar) for every
    /// parameter updated so far, sorted by entry name.
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        let mut out = Vec::with_capacity(3 * self.state.len());
        for (name, s) in &self.state {
            out.push((format!("{}{SEP}{name}", Self::EXP_AVG), s.exp_avg.clone()));
            out.push((
                format!("{}{SEP}{name}", Self::EXP_AVG_SQ),
                s.exp_avg_sq.clone(),
            ));
            // The count is host bookkeeping: keep it on the CPU whatever the device.
            let step = i64::try_from(s.step).unwrap_or(i64::MAX);
            out.push((
                format!("{}{SEP}{name}", Self::STEP),
                Tensor::new(step, &Device::Cpu)?,
            ));
        }
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// Replaces the whole state with `state` (as returned by [`AdamW::state`]), checking every
    /// entry against `params`; each parameter needs all three entries or none.
    pub fn load_state(
        &mut self,
        params: &Params,
        state: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<()> {
        #[derive(Default)]
        struct Partial {
            step: Option<u64>,
            exp_avg: Option<Tensor>,
            exp_avg_sq: Option<Tensor>,
        }
        let mut partial: BTreeMap<String, Partial> = BTreeMap::new();
        for (entry, value) in state {
            let (kind, name) = parse_entry(&entry, params)?;
            let like = match params.get(name) {
                Some(p) => p.var.as_tensor(),
                None => continue, // parse_entry has checked it exists
            };
            let slot = partial.entry(name.to_string()).or_default();
            match kind {
                Self::STEP => slot.step = Some(restore_step(&entry, &value)?),
                Self::EXP_AVG => slot.exp_avg = Some(restore_like(&entry, value, like)?),
                Self::EXP_AVG_SQ => slot.exp_avg_sq = Some(restore_like(&entry, value, like)?),
                _ => {
                    return Err(ModelError::BadTrainState {
                        what: "optimizer",
                        entry: entry.clone(),
                        reason: "not part of AdamW's state: was it saved by another optimizer?"
                            .into(),
                    })
                }
            }
        }
        let mut state = BTreeMap::new();
        for (name, p) in partial {
            match (p.step, p.exp_avg, p.exp_avg_sq) {
                (Some(step), Some(exp_avg), Some(exp_avg_sq)) => {
                    state.insert(
                        name,
                        AdamState {
                            step,
                            exp_avg,
                            exp_avg_sq,
                        },
                    );
                }
                _ => {
                    return Err(ModelError::BadTrainState {
                        what: "optimizer",
                        entry: name,
                        reason: "AdamW needs step, exp_avg and exp_avg_sq for each parameter"
                            .into(),
                    })
                }
            }
        }
        self.state = state;
        Ok(())
    }
}

/// Either optimizer, built from an [`OptimizerConfig`].
///
/// ```
/// use candle_core::{Device, Tensor, Var};
/// use cv_model::optim::{Optimizer, OptimizerConfig};
/// use cv_model::{ParamKind, Params};
///
/// let w = Var::new(&[1.0f32, -2.0], &Device::Cpu)?;
/// let mut params = Params::new();
/// params.insert("fc.weight", w.clone(), ParamKind::Weight);
/// let mut opt = Optimizer::new(&OptimizerConfig::default())?; // SGD, momentum 0.9
/// let loss = w.as_tensor().sqr()?.sum_all()?; // gradient 2w
/// opt.step(&params, &loss.backward()?, 0.1)?;
/// assert_eq!(w.as_tensor().to_vec1::<f32>()?, [0.8, -1.6]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub enum Optimizer {
    Sgd(Sgd),
    AdamW(AdamW),
}

impl Optimizer {
    /// Validates `config` and builds the optimizer with empty state.
    pub fn new(config: &OptimizerConfig) -> Result<Self> {
        Ok(match config {
            OptimizerConfig::Sgd(c) => Optimizer::Sgd(Sgd::new(c.clone())?),
            OptimizerConfig::AdamW(c) => Optimizer::AdamW(AdamW::new(c.clone())?),
        })
    }

    /// The configuration it was built from.
    pub fn config(&self) -> OptimizerConfig {
        match self {
            Optimizer::Sgd(o) => OptimizerConfig::Sgd(o.config().clone()),
            Optimizer::AdamW(o) => OptimizerConfig::AdamW(o.config().clone()),
        }
    }

    /// One update with learning rate `lr` (≥ 0); see [`Sgd::step`] and [`AdamW::step`].
    pub fn step(&mut self, params: &Params, grads: &GradStore, lr: f64) -> Result<()> {
        match self {
            Optimizer::Sgd(o) => o.step(params, grads, lr),
            Optimizer::AdamW(o) => o.step(params, grads, lr),
        }
    }

    /// The whole state as `(entry name, tensor)` pairs sorted by name, tensors on the
    /// parameters' device; save them with the model (e.g. `candle_core::safetensors::save`).
    pub fn state(&self) -> Result<Vec<(String, Tensor)>> {
        match self {
            Optimizer::Sgd(o) => o.state(),
            Optimizer::AdamW(o) => o.state(),
        }
    }

    /// Restores a state saved by [`Optimizer::state`]; continuing then gives bit-identical
    /// results to an uninterrupted run (same device, same build).
    pub fn load_state(
        &mut self,
        params: &Params,
        state: impl IntoIterator<Item = (String, Tensor)>,
    ) -> Result<()> {
        match self {
            Optimizer::Sgd(o) => o.load_state(params, state),
            Optimizer::AdamW(o) => o.load_state(params, state),
        }
    }
}
