//! The trainable building blocks of a ResNet, on candle, with torchvision's semantics.
//!
//! Each layer creates its variables through an [`Initializer`] under torchvision's names
//! (`{prefix}.weight`, `{prefix}.running_mean`, ...), so a model's [`crate::Params`] is its
//! state dict.

use candle_core::{Device, Module, ModuleT, Tensor, Var};
use cv_seed::{Draw, SeedNode};

use crate::error::{ModelError, Result};
use crate::init::{Init, Initializer};
use crate::params::ParamKind;

/// PyTorch's BatchNorm defaults.
pub const BN_EPS: f64 = 1e-5;
/// PyTorch's BatchNorm momentum: `running = (1 - m) * running + m * batch_stat`.
pub const BN_MOMENTUM: f64 = 0.1;

/// `prefix.name`, or `name` alone at the top level.
pub fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_owned()
    } else {
        format!("{prefix}.{name}")
    }
}

/// A 2-D convolution without bias (ResNets follow every convolution with BatchNorm, which makes
/// a bias redundant), square kernel, symmetric zero padding.
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Var,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// Creates `{prefix}.weight` of shape `[out, in, k, k]`, Kaiming-normal (fan-out).
    pub fn new(
        init: &mut Initializer,
        prefix: &str,
        in_channels: usize,
        out_channels: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let weight = init.var(
            &join(prefix, "weight"),
            &[out_channels, in_channels, kernel, kernel],
            Init::KaimingNormalFanOut,
            ParamKind::Weight,
        )?;
        Ok(Self {
            weight,
            stride,
            padding,
        })
    }

    fn weight(&self) -> &Tensor {
        self.weight.as_tensor()
    }

    /// `[N, in, H, W]` → `[N, out, H', W']` (foldwise's own kernels on the CPU, candle's on
    /// CUDA).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(cv_kernels::conv2d(
            x,
            self.weight.as_tensor(),
            self.padding,
            self.stride,
        )?)
    }
}

/// 2-D BatchNorm with running statistics, PyTorch's conventions: batch statistics (biased
/// variance) to normalise in train mode, running statistics updated with momentum 0.1 and the
/// unbiased batch variance, eps 1e-5.
///
/// Built on `candle_nn::BatchNorm`, which does exactly that; its running statistics are the
/// very `Var`s registered in [`crate::Params`] as [`ParamKind::Buffer`] (they share storage), so
/// a train-mode forward updates what a checkpoint saves. On the CPU, train mode runs foldwise's
/// fused kernel (`cv_kernels::batch_norm_train`) and updates those variables the same way, and
/// eval mode `cv_kernels::batch_norm_eval` (candle's values, in one pass).
#[derive(Debug, Clone)]
pub struct BatchNorm2d {
    name: String,
    inner: candle_nn::BatchNorm,
}

impl BatchNorm2d {
    /// Creates `{prefix}.{weight,bias,running_mean,running_var}` of shape `[channels]`.
    pub fn new(init: &mut Initializer, prefix: &str, channels: usize) -> Result<Self> {
        let shape = [channels];
        let weight = init.var(
            &join(prefix, "weight"),
            &shape,
            Init::Constant(1.0),
            ParamKind::Norm,
        )?;
        let bias = init.var(
            &join(prefix, "bias"),
            &shape,
            Init::Constant(0.0),
            ParamKind::Norm,
        )?;
        let mean = init.var(
            &join(prefix, "running_mean"),
            &shape,
            Init::Constant(0.0),
            ParamKind::Buffer,
        )?;
        let var = init.var(
            &join(prefix, "running_var"),
            &shape,
            Init::Constant(1.0),
            ParamKind::Buffer,
        )?;
        // `Var::from_tensor` inside candle keeps a tensor that is already a variable as is, so
        // the running statistics candle updates are these variables, not copies.
        let inner = candle_nn::BatchNorm::new_with_momentum(
            channels,
            mean.as_tensor().clone(),
            var.as_tensor().clone(),
            weight.as_tensor().clone(),
            bias.as_tensor().clone(),
            BN_EPS,
            BN_MOMENTUM,
        )?;
        Ok(Self {
            name: prefix.to_owned(),
            inner,
        })
    }

    /// The weight of a batch's statistic in the running-statistics update (PyTorch's
    /// convention; [`BN_MOMENTUM`] unless changed with [`BatchNorm2d::set_momentum`]).
    pub fn momentum(&self) -> f64 {
        self.inner.momentum()
    }

    /// Sets the momentum of later train-mode forwards, in `[0, 1]`.
    ///
    /// candle fixes a BatchNorm's momentum when it is built, so this rebuilds it around the very
    /// same variables (running statistics, weight, bias). `torch.optim.swa_utils.update_bn`
    /// needs it: momentum `1 / k` on the `k`-th batch makes the running statistics the
    /// cumulative average of the batch statistics (PyTorch's `momentum=None`).
    pub fn set_momentum(&mut self, momentum: f64) -> Result<()> {
        let mean = self.inner.running_mean().clone();
        let var = self.inner.running_var().clone();
        let channels = mean.dim(0)?;
        let eps = self.inner.eps();
        // `running_mean()` is the variable's own tensor, so candle keeps it as the variable.
        self.inner = match self.inner.weight_and_bias() {
            Some((weight, bias)) => candle_nn::BatchNorm::new_with_momentum(
                channels,
                mean,
                var,
                weight.clone(),
                bias.clone(),
                eps,
                momentum,
            )?,
            None => {
                candle_nn::BatchNorm::new_no_bias_with_momentum(channels, mean, var, eps, momentum)?
            }
        };
        Ok(())
    }

    /// Normalises `[N, C, H, W]`; in train mode also updates the running statistics.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_activation_t(x, train, false)
    }

    /// [`relu`] of [`BatchNorm2d::forward_t`]: on the CPU, one fused kernel.
    pub fn forward_relu_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward_activation_t(x, train, true)
    }

    /// `self.forward_t(conv.forward(x), train)`, with the ReLU after it when `then_relu`. In
    /// train mode on the CPU, one fused kernel (`cv_kernels::conv2d_batch_norm_train`): the
    /// same values, and no gradient for candle to accumulate between the two.
    pub fn forward_conv_t(
        &self,
        conv: &Conv2d,
        x: &Tensor,
        train: bool,
        then_relu: bool,
    ) -> Result<Tensor> {
        let (weight, bias) = match self.inner.weight_and_bias() {
            Some(params) if train && cv_kernels::applies_to(x) => params,
            _ => return self.forward_activation_t(&conv.forward(x)?, train, then_relu),
        };
        let fused = if then_relu {
            cv_kernels::conv2d_batch_norm_relu_train
        } else {
            cv_kernels::conv2d_batch_norm_train
        };
        let eps = self.inner.eps();
        let (y, stats) = fused(
            x,
            conv.weight(),
            conv.padding,
            conv.stride,
            weight,
            bias,
            eps,
        )?;
        self.check_batch(y.dims())?;
        self.update_running(stats)?;
        Ok(y)
    }

    /// An error unless a train-mode batch of shape `dims` has two values per channel at
    /// least: candle would divide by `n − 1 = 0` for the running variance and store inf.
    fn check_batch(&self, dims: &[usize]) -> Result<()> {
        let per_channel: usize = dims
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != 1)
            .map(|(_, d)| d)
            .product();
        if per_channel <= 1 {
            return Err(ModelError::BatchNormSingleValue {
                name: self.name.clone(),
                shape: dims.to_vec(),
            });
        }
        Ok(())
    }

    fn forward_activation_t(&self, x: &Tensor, train: bool, then_relu: bool) -> Result<Tensor> {
        if train {
            self.check_batch(x.dims())?;
        }
        let fused = match self.inner.weight_and_bias() {
            Some((weight, bias)) if cv_kernels::applies_to(x) => Some(if train {
                self.forward_train_cpu(x, weight, bias, then_relu)?
            } else {
                cv_kernels::batch_norm_eval(
                    x,
                    weight,
                    bias,
                    self.inner.running_mean(),
                    self.inner.running_var(),
                    self.inner.eps(),
                    then_relu,
                )?
            }),
            _ => None,
        };
        match fused {
            Some(y) => Ok(y),
            None if then_relu => relu(&self.inner.forward_t(x, train)?),
            None => Ok(self.inner.forward_t(x, train)?),
        }
    }

    /// Train mode on the CPU: foldwise's fused kernel (with the ReLU after it when
    /// `then_relu`), then the running statistics updated.
    fn forward_train_cpu(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        then_relu: bool,
    ) -> Result<Tensor> {
        let eps = self.inner.eps();
        let (y, stats) = if then_relu {
            cv_kernels::batch_norm_relu_train(x, weight, bias, eps)?
        } else {
            cv_kernels::batch_norm_train(x, weight, bias, eps)?
        };
        self.update_running(stats)?;
        Ok(y)
    }

    /// The running statistics updated from a batch's, as candle would:
    /// `(1 − m)·running + m·batch`, the variance unbiased.
    fn update_running(&self, stats: cv_kernels::BatchStats) -> Result<()> {
        let m = self.inner.momentum();
        let channels = stats.mean.len();
        let device = self.inner.running_mean().device();
        let unbias = stats.count as f64 / (stats.count - 1) as f64;
        let update = |running: &Tensor, batch: Vec<f32>, scale: f64| -> Result<()> {
            let batch = Tensor::from_vec(batch, channels, device)?;
            let updated = ((running * (1.0 - m))? + (batch * (m * scale))?)?;
            // `running` is the variable's own tensor, so this is the variable a checkpoint saves.
            Ok(Var::from_tensor(running)?.set(&updated)?)
        };
        update(self.inner.running_mean(), stats.mean, 1.0)?;
        update(self.inner.running_var(), stats.variance, unbias)
    }
}

/// `x` with `left` and `right` slices of `-inf` added along `dim`.
fn pad_neg_inf(x: &Tensor, dim: usize, left: usize, right: usize) -> Result<Tensor> {
    let mut parts = Vec::with_capacity(3);
    let mut dims = x.dims().to_vec();
    if left > 0 {
        dims[dim] = left;
        parts.push(Tensor::full(
            f32::NEG_INFINITY,
            dims.as_slice(),
            x.device(),
        )?);
    }
    parts.push(x.clone());
    if right > 0 {
        dims[dim] = right;
        parts.push(Tensor::full(
            f32::NEG_INFINITY,
            dims.as_slice(),
            x.device(),
        )?);
    }
    Ok(Tensor::cat(&parts, dim)?)
}

/// Elements `offset, offset + 2, ...` (`count` of them) along `dim`: a stride-2 slice, made of
/// `narrow` + `reshape` because candle has no strided slicing. Needs `offset + 2 * count` to fit.
fn every_other(x: &Tensor, dim: usize, offset: usize, count: usize) -> Result<Tensor> {
    let narrowed = x.narrow(dim, offset, 2 * count)?;
    let mut dims = narrowed.dims().to_vec();
    dims[dim] = count;
    dims.insert(dim + 1, 2);
    Ok(narrowed
        .reshape(dims.as_slice())?
        .narrow(dim + 1, 0, 1)?
        .squeeze(dim + 1)?)
}

/// Max over a 3-wide, stride-2, pad-1 window along `dim` (`-inf` padding, as PyTorch).
fn max_3_stride_2(x: &Tensor, dim: usize) -> Result<Tensor> {
    let len = x.dim(dim)?;
    let out = (len + 2 - 3) / 2 + 1;
    // Padded length must reach 2 + 2 * out for the last shifted slice: 1 on the left, the rest
    // (1 or 2) on the right; the extra column is never the centre of a window.
    let padded = pad_neg_inf(x, dim, 1, 2 * out + 1 - len)?;
    let a = every_other(&padded, dim, 0, out)?;
    let b = every_other(&padded, dim, 1, out)?;
    let c = every_other(&padded, dim, 2, out)?;
    Ok(a.maximum(&b)?.maximum(&c)?)
}

/// torchvision's stem max-pool (`MaxPool2d(3, stride=2, padding=1)`), trainable.
///
/// On the CPU in `f32`, `cv_kernels::max_pool2d`, with PyTorch's gradient (all of it to the
/// first input of the window that holds the maximum). Elsewhere (candle's `max_pool2d` has no
/// backward unless kernel == stride) the window maximum is made of shifted stride-2 slices
/// combined with `maximum`, which has one: a 3×3 maximum is the maximum over rows of the
/// maximum over columns, so 3 + 3 slices and 4 `maximum`s give the same values as the 9 slices
/// of the full window. Where several elements tie for the maximum, candle's `maximum` splits
/// the gradient between them; the forward values are identical either way.
pub fn max_pool_3x3_s2(x: &Tensor) -> Result<Tensor> {
    if x.rank() != 4 || x.dim(2)? == 0 || x.dim(3)? == 0 {
        return Err(candle_core::Error::Msg(format!(
            "max-pool expects a non-empty [N, C, H, W] input, got {:?}",
            x.dims()
        ))
        .into());
    }
    if cv_kernels::applies_to(x) {
        return Ok(cv_kernels::max_pool2d(x, 3, 2, 1)?);
    }
    let rows = max_3_stride_2(x, 2)?;
    max_3_stride_2(&rows, 3)
}

/// Mean over H and W: `[N, C, H, W]` → `[N, C]` (torchvision's `AdaptiveAvgPool2d(1)` +
/// flatten; candle has no adaptive pooling).
pub fn global_avg_pool(x: &Tensor) -> Result<Tensor> {
    Ok(x.mean((2, 3))?)
}

/// A fully connected layer with bias, `y = x W^T + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    inner: candle_nn::Linear,
}

impl Linear {
    /// Creates `{prefix}.weight` `[out, in]` and `{prefix}.bias` `[out]`, both uniform
    /// `±1/sqrt(in)` (PyTorch's `nn.Linear` default).
    pub fn new(
        init: &mut Initializer,
        prefix: &str,
        in_features: usize,
        out_features: usize,
    ) -> Result<Self> {
        let rule = Init::UniformFanIn {
            fan_in: in_features,
        };
        let weight = init.var(
            &join(prefix, "weight"),
            &[out_features, in_features],
            rule,
            ParamKind::Weight,
        )?;
        let bias = init.var(
            &join(prefix, "bias"),
            &[out_features],
            rule,
            ParamKind::Bias,
        )?;
        Ok(Self {
            inner: candle_nn::Linear::new(
                weight.as_tensor().clone(),
                Some(bias.as_tensor().clone()),
            ),
        })
    }

    /// `[N, in]` → `[N, out]`.
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.inner.forward(x)?)
    }
}

/// Inverted dropout whose mask is drawn on the host from a caller-supplied seed node, never
/// from candle's unseedable generator.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// Drops each element with probability `p`, which must be in `[0, 1)`.
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(ModelError::BadDropout(p));
        }
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// The mask for `shape`: element `i` (row-major) is kept, scaled by `1 / (1 - p)`, when the
    /// `i`-th `uniform()` of `node`'s stream is at least `p`, and zeroed otherwise.
    pub fn mask(&self, node: &SeedNode, shape: &[usize], device: &Device) -> Result<Tensor> {
        let count: usize = shape.iter().product();
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let mut rng = node.rng();
        let values: Vec<f32> = (0..count)
            .map(|_| if rng.uniform() < self.p { 0.0 } else { scale })
            .collect();
        Ok(Tensor::from_vec(values, shape, device)?)
    }

    /// `x` times the mask drawn from `node` (`x` unchanged when `p == 0`).
    pub fn forward(&self, x: &Tensor, node: &SeedNode) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(x.clone());
        }
        let mask = self.mask(node, x.dims(), x.device())?;
        Ok(x.mul(&mask.to_dtype(x.dtype())?)?)
    }
}

/// ReLU (kept here so the model code reads like torchvision's): foldwise's kernel on the CPU,
/// whose gradient stops where the output is 0, as PyTorch's does.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    Ok(cv_kernels::relu(x)?)
}

/// `relu(a + b)`, the end of a residual block (one fused kernel on the CPU).
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    Ok(cv_kernels::add_relu(a, b)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cv_seed::SeedTree;

    fn values(t: &Tensor) -> Vec<f32> {
        t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    }

    #[test]
    fn set_momentum_keeps_the_variables_and_momentum_one_over_k_averages() {
        let device = Device::Cpu;
        let mut init = Initializer::new(&SeedTree::new(0).child("init"), &device);
        let mut bn = BatchNorm2d::new(&mut init, "bn", 1).unwrap();
        let (params, _) = init.finish();
        assert_eq!(bn.momentum(), BN_MOMENTUM);
        let batches = [vec![1.0f32, 3.0], vec![2.0, 6.0, 10.0], vec![0.0, 4.0]];
        for (k, batch) in batches.iter().enumerate() {
            bn.set_momentum(1.0 / (k + 1) as f64).unwrap();
            let x = Tensor::from_vec(batch.clone(), (batch.len(), 1, 1, 1), &device).unwrap();
            bn.forward_t(&x, true).unwrap();
        }
        // Batch means 2, 6, 2 and unbiased variances 2, 16, 8, averaged: the running
        // statistics are the variables in `params`, not copies.
        let mean = values(params.get("bn.running_mean").unwrap().var.as_tensor());
        let var = values(params.get("bn.running_var").unwrap().var.as_tensor());
        assert!((mean[0] - 10.0 / 3.0).abs() < 1e-6, "{mean:?}");
        assert!((var[0] - 26.0 / 3.0).abs() < 1e-5, "{var:?}");

        // Momentum back to the default: PyTorch's exponential update again.
        bn.set_momentum(BN_MOMENTUM).unwrap();
        let x = Tensor::from_vec(vec![1.0f32, 3.0], (2, 1, 1, 1), &device).unwrap();
        bn.forward_t(&x, true).unwrap();
        let mean = values(params.get("bn.running_mean").unwrap().var.as_tensor());
        assert!(
            (mean[0] - (0.9 * 10.0 / 3.0 + 0.1 * 2.0)).abs() < 1e-6,
            "{mean:?}"
        );
        assert!(bn.set_momentum(1.5).is_err());
    }
}
