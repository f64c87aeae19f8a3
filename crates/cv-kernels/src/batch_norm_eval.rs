//! Eval-mode 2-D BatchNorm on the CPU (running statistics), optionally with a ReLU, in one pass.
//!
//! candle's eval-mode BatchNorm is four broadcast ops, each a pass over the activations with an
//! allocation, and a ReLU after it a fifth; validation and prediction run them after every
//! convolution. Here it is one pass, with candle's very arithmetic per element
//! (`(x − mean) / sqrt(var + eps) · weight + bias`), so the values are the same bits.

use candle_core::{CpuStorage, CustomOp3, Error, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::batch_norm::{per_channel, relu_if, unpack_grads, Geometry, Grads};
use crate::{chunk_of, contiguous_f32, par_collect_chunks, same_shape};

/// Eval-mode BatchNorm of `x [N, C, H, W]` (or `[N, C]`) with the running statistics
/// `running_mean` and `running_var` (`[C]`, not trained: they get no gradient), then a ReLU
/// when `then_relu`. The values are those of `candle_nn::BatchNorm::forward_t(x, false)`
/// (followed by `relu`), bit for bit; `x`, `weight` and `bias` get their gradients. CPU `f32`
/// only (see [`crate::applies_to`]).
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[[1f32, -3.], [3., 5.]], &Device::Cpu)?; // [N = 2, C = 2]
/// let ones = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu)?;
/// let zeros = ones.zeros_like()?;
/// let y = cv_kernels::batch_norm_eval(&x, &ones, &zeros, &zeros, &ones, 0.0, true)?;
/// assert_eq!(y.to_vec2::<f32>()?, [[1., 0.], [3., 5.]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn batch_norm_eval(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    eps: f64,
    then_relu: bool,
) -> Result<Tensor> {
    let host = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
    // candle's `running_var + eps` on an f32 tensor: the f64 eps rounded to f32, then added.
    let std = host(running_var)?
        .into_iter()
        .map(|v| (v + eps as f32).sqrt())
        .collect();
    let op = BatchNormEval {
        mean: host(running_mean)?,
        std,
        relu: then_relu,
    };
    x.contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)
}

/// The per-channel constants of the normalisation; `relu` when a ReLU follows.
#[derive(Debug, Clone)]
struct BatchNormEval {
    mean: Vec<f32>,
    std: Vec<f32>,
    relu: bool,
}

impl BatchNormEval {
    fn check(&self, g: &Geometry) -> Result<()> {
        if self.mean.len() == g.channels && self.std.len() == g.channels {
            Ok(())
        } else {
            Err(Error::Msg(format!(
                "cv-kernels batch_norm_eval: running statistics of {} and {} values for {} channels",
                self.mean.len(),
                self.std.len(),
                g.channels
            )))
        }
    }

    /// Channel `c`'s output before the ReLU, as candle computes it.
    fn normalise(&self, c: usize, x: f32, weight: &[f32], bias: &[f32]) -> f32 {
        (x - self.mean[c]) / self.std[c] * weight[c] + bias[c]
    }
}

impl CustomOp3 for BatchNormEval {
    fn name(&self) -> &'static str {
        "cv-batch-norm-eval"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1)?;
        self.check(&g)?;
        let x = contiguous_f32(s1, l1, "batch_norm_eval", "input")?;
        let weight = per_channel(s2, l2, "weight", &g)?;
        let bias = per_channel(s3, l3, "bias", &g)?;
        let y = par_collect_chunks(x.len(), g.plane, x.len(), |q| {
            let c = q % g.channels;
            chunk_of(x, g.plane, q)
                .iter()
                .map(move |&x| relu_if(self.relu, self.normalise(c, x, weight, bias)))
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        bias: &Tensor,
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<Grads> {
        let op = BatchNormEvalGrad {
            forward: self.clone(),
            bias: bias.flatten_all()?.to_vec1::<f32>()?,
        };
        // One flat result: dx, then d(weight), then d(bias).
        unpack_grads(
            &x.apply_op3_no_bwd(&grad.contiguous()?, weight, &op)?,
            x,
            weight,
        )
    }
}

/// The backward from `(x, dL/dy, weight)`, packed as `[dx…, dweight…, dbias…]`, with `dy`
/// zeroed first where a fused ReLU's output was not positive: `dx = dy · weight / std`,
/// `dweight = Σ dy · (x − mean) / std`, `dbias = Σ dy`.
struct BatchNormEvalGrad {
    forward: BatchNormEval,
    bias: Vec<f32>,
}

impl CustomOp3 for BatchNormEvalGrad {
    fn name(&self) -> &'static str {
        "cv-batch-norm-eval-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1)?;
        let f = &self.forward;
        f.check(&g)?;
        let x = contiguous_f32(s1, l1, "batch_norm_eval", "input")?;
        let grad = contiguous_f32(s2, l2, "batch_norm_eval", "output gradient")?;
        let weight = per_channel(s3, l3, "weight", &g)?;
        same_shape(l1, l2, "batch_norm_eval", "output gradient")?;
        if self.bias.len() != g.channels {
            return Err(Error::Msg(format!(
                "cv-kernels batch_norm_eval: a bias of {} values for {} channels",
                self.bias.len(),
                g.channels
            )));
        }
        // `dy`, or 0 where the fused ReLU's output `max(v, 0)` was not positive.
        let masked = |c: usize, dy: f32, x: f32| {
            let clipped = f.relu && f.normalise(c, x, weight, &self.bias).max(0.0) <= 0.0;
            if clipped {
                0.0
            } else {
                dy
            }
        };
        let (sum_dy, sum_dy_xhat): (Vec<f64>, Vec<f64>) = (0..g.channels)
            .into_par_iter()
            .map(|c| {
                let (mean, std) = (f.mean[c] as f64, f.std[c] as f64);
                g.planes(grad, c)
                    .flatten()
                    .zip(g.planes(x, c).flatten())
                    .fold((0f64, 0f64), |(dy, dy_xhat), (&d, &v)| {
                        let d = masked(c, d, v) as f64;
                        (dy + d, dy_xhat + d * (v as f64 - mean) / std)
                    })
            })
            .unzip();
        let total = x.len();
        let mut out = par_collect_chunks(total, g.plane, total + 2 * g.channels, |q| {
            let c = q % g.channels;
            let scale = weight[c] / f.std[c];
            let (dy, x) = (chunk_of(grad, g.plane, q), chunk_of(x, g.plane, q));
            dy.iter()
                .zip(x)
                .map(move |(&dy, &x)| masked(c, dy, x) * scale)
        });
        out.extend(sum_dy_xhat.iter().map(|&v| v as f32));
        out.extend(sum_dy.iter().map(|&v| v as f32));
        Ok((CpuStorage::F32(out), Shape::from(total + 2 * g.channels)))
    }
}
