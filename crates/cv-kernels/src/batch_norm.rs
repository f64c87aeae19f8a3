//! Train-mode 2-D BatchNorm on the CPU as one custom op with its own backward.
//!
//! candle composes a train-mode BatchNorm from a dozen tensor ops (mean, centring, square,
//! mean, sqrt, division, affine), each a pass over the activations with a fresh allocation, and
//! its backward from as many again; after the convolutions, that was most of a ResNet train
//! step. Here the forward is two passes (statistics, then normalise and scale) and the backward
//! two (per-channel sums, then the input gradient). A ReLU after it can be fused in
//! ([`batch_norm_relu_train`]): no separate pass, allocation or autograd node for it.
//!
//! Deterministic: each channel's sums run on one thread in a fixed order (in `f64`), every other
//! element is written by one thread, so the bits never depend on the thread count.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp3, Error, Layout, Result, Shape, Tensor};

use crate::{chunk_of, contiguous_f32, par_collect_chunks, same_shape};
use rayon::prelude::*;

/// The statistics of one batch, per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchStats {
    /// Mean over the batch and the spatial positions.
    pub mean: Vec<f32>,
    /// Biased variance (divided by the count), as used to normalise.
    pub variance: Vec<f32>,
    /// Values per channel the statistics were taken over (`N·H·W`).
    pub count: usize,
}

/// Train-mode BatchNorm of `x [N, C, H, W]` (or `[N, C]`): `(x − mean) / sqrt(var + eps) · weight
/// + bias` with the batch's own per-channel mean and biased variance, which are returned beside
/// the output so that the caller can update its running statistics. CPU and `f32` only (see
/// [`crate::applies_to`]); `weight` and `bias` are `[C]`.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[[1f32, 3.], [3., 5.]], &Device::Cpu)?; // [N = 2, C = 2]
/// let ones = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu)?;
/// let (y, stats) = cv_kernels::batch_norm_train(&x, &ones, &ones.zeros_like()?, 0.0)?;
/// assert_eq!(stats.mean, [2., 4.]);
/// assert_eq!(y.to_vec2::<f32>()?, [[-1., -1.], [1., 1.]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn batch_norm_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    apply(x, weight, bias, eps, false)
}

/// [`batch_norm_train`] followed by a ReLU, in the same passes: the same bits as
/// `cv_kernels::relu` of its output, and the same gradients (the gradient flows where the
/// output is positive).
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[[1f32, 3.], [3., 5.]], &Device::Cpu)?; // [N = 2, C = 2]
/// let ones = Tensor::ones(2, candle_core::DType::F32, &Device::Cpu)?;
/// let (y, _) = cv_kernels::batch_norm_relu_train(&x, &ones, &ones.zeros_like()?, 0.0)?;
/// assert_eq!(y.to_vec2::<f32>()?, [[0., 0.], [1., 1.]]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn batch_norm_relu_train(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    apply(x, weight, bias, eps, true)
}

fn apply(
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    let saved = Arc::new(Mutex::new(None));
    let op = BatchNorm {
        eps,
        relu,
        saved: Arc::clone(&saved),
    };
    let y = x
        .contiguous()?
        .apply_op3(&weight.contiguous()?, &bias.contiguous()?, op)?;
    let stats = kept(
        &saved,
        "cv-kernels batch_norm: the forward kept no statistics",
    )?
    .stats;
    Ok((y, stats))
}

/// The sizes of one BatchNorm input: `N`, `C` and the positions per plane (`H·W`, or 1).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Geometry {
    pub(crate) batch: usize,
    pub(crate) channels: usize,
    pub(crate) plane: usize,
}

impl Geometry {
    pub(crate) fn new(layout: &Layout) -> Result<Self> {
        match *layout.dims() {
            [batch, channels] => Ok(Self {
                batch,
                channels,
                plane: 1,
            }),
            [batch, channels, h, w] => Ok(Self {
                batch,
                channels,
                plane: h * w,
            }),
            ref dims => Err(Error::Msg(format!(
                "cv-kernels batch_norm: expects [N, C, H, W] or [N, C], got shape {dims:?}"
            ))),
        }
    }

    fn count(&self) -> usize {
        self.batch * self.plane
    }

    /// The planes (`plane` values each) of channel `c`, one per image.
    pub(crate) fn planes<'a>(&self, t: &'a [f32], c: usize) -> impl Iterator<Item = &'a [f32]> {
        let (plane, channels) = (self.plane, self.channels);
        (0..self.batch).map(move |n| &t[(n * channels + c) * plane..][..plane])
    }
}

/// The statistics a forward leaves for its backward (and for the caller).
#[derive(Debug, Clone)]
pub(crate) struct Saved {
    pub(crate) stats: BatchStats,
    inv_std: Vec<f32>,
}

impl Saved {
    /// Channel `c`'s normalisation as `x · scale + shift`.
    fn affine(&self, c: usize, weight: &[f32], bias: &[f32]) -> (f32, f32) {
        let scale = weight[c] * self.inv_std[c];
        (scale, bias[c] - self.stats.mean[c] * scale)
    }
}

/// Per-channel mean and biased variance, two passes in `f64`.
fn statistics(x: &[f32], g: &Geometry, eps: f64) -> Saved {
    let count = g.count().max(1) as f64;
    let (mean, (variance, inv_std)): (Vec<f32>, (Vec<f32>, Vec<f32>)) = (0..g.channels)
        .into_par_iter()
        .map(|c| {
            let sum: f64 = g.planes(x, c).flatten().map(|&v| v as f64).sum();
            let mean = sum / count;
            let squares: f64 = g
                .planes(x, c)
                .flatten()
                .map(|&v| (v as f64 - mean).powi(2))
                .sum();
            let variance = squares / count;
            (
                mean as f32,
                (variance as f32, (1.0 / (variance + eps).sqrt()) as f32),
            )
        })
        .unzip();
    Saved {
        stats: BatchStats {
            mean,
            variance,
            count: g.count(),
        },
        inv_std,
    }
}

/// A copy of what a forward kept in `saved` (copied, not taken: the caller and the backward
/// both read it), or the error `missing` if it kept nothing.
pub(crate) fn kept<T: Clone>(saved: &Mutex<Option<T>>, missing: &str) -> Result<T> {
    saved
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .ok_or_else(|| Error::Msg(missing.into()))
}

/// A per-channel parameter: `[C]`, f32.
pub(crate) fn per_channel<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    what: &str,
    g: &Geometry,
) -> Result<&'a [f32]> {
    let data = contiguous_f32(storage, layout, "batch_norm", what)?;
    if layout.dims() != [g.channels] {
        return Err(Error::Msg(format!(
            "cv-kernels batch_norm: the {what} has shape {:?}, expected [{}]",
            layout.dims(),
            g.channels
        )));
    }
    Ok(data)
}

/// The gradients of a BatchNorm's `(x, weight, bias)`.
pub(crate) type Grads = (Option<Tensor>, Option<Tensor>, Option<Tensor>);

/// `(dx, dweight, dbias)` from a backward's one flat result `[dx…, dweight…, dbias…]`.
pub(crate) fn unpack_grads(packed: &Tensor, x: &Tensor, weight: &Tensor) -> Result<Grads> {
    let (total, channels) = (x.elem_count(), weight.elem_count());
    let dx = packed.narrow(0, 0, total)?.reshape(x.shape())?;
    let dweight = packed.narrow(0, total, channels)?;
    let dbias = packed.narrow(0, total + channels, channels)?;
    Ok((Some(dx), Some(dweight), Some(dbias)))
}

/// `max(v, 0)` when `relu`, else `v`: a fused ReLU.
pub(crate) fn relu_if(relu: bool, v: f32) -> f32 {
    if relu {
        v.max(0.0)
    } else {
        v
    }
}

/// The forward (with a ReLU after it when `relu`); keeps its statistics in `saved` for the
/// caller and the backward.
struct BatchNorm {
    eps: f64,
    relu: bool,
    saved: Arc<Mutex<Option<Saved>>>,
}

impl CustomOp3 for BatchNorm {
    fn name(&self) -> &'static str {
        "cv-batch-norm"
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
        let x = contiguous_f32(s1, l1, "batch_norm", "input")?;
        let weight = per_channel(s2, l2, "weight", &g)?;
        let bias = per_channel(s3, l3, "bias", &g)?;
        let (y, saved) = normalize(x, &g, weight, bias, self.eps, self.relu);
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = Some(saved);
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
        let saved = kept(
            &self.saved,
            "cv-kernels batch_norm: backward before forward",
        )?;
        unpack_grads(
            &gradients(saved, self.relu, x, weight, bias, grad)?,
            x,
            weight,
        )
    }
}

/// Train-mode BatchNorm of `x` (ReLU after it when `relu`): the output, and what its backward
/// needs.
pub(crate) fn normalize(
    x: &[f32],
    g: &Geometry,
    weight: &[f32],
    bias: &[f32],
    eps: f64,
    relu: bool,
) -> (Vec<f32>, Saved) {
    let saved = statistics(x, g, eps);
    let y = par_collect_chunks(x.len(), g.plane, x.len(), |q| {
        let (scale, shift) = saved.affine(q % g.channels, weight, bias);
        chunk_of(x, g.plane, q)
            .iter()
            .map(move |&x| relu_if(relu, x * scale + shift))
    });
    (y, saved)
}

/// The backward of [`normalize`] for the output's `grad`: one flat tensor, `dL/dx`, then
/// `dL/dweight`, then `dL/dbias`.
pub(crate) fn gradients(
    saved: Saved,
    relu: bool,
    x: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    grad: &Tensor,
) -> Result<Tensor> {
    // The ReLU's mask is recomputed from `x` (the forward's very arithmetic, so the very
    // bits): a custom op takes three inputs at most, and the bias is needed only then.
    let relu_bias = if relu {
        Some(bias.flatten_all()?.to_vec1::<f32>()?)
    } else {
        None
    };
    let op = BatchNormGrad { saved, relu_bias };
    x.apply_op3_no_bwd(&grad.contiguous()?, weight, &op)
}

struct BatchNormGrad {
    saved: Saved,
    relu_bias: Option<Vec<f32>>,
}

impl BatchNormGrad {
    /// Channel `c`'s output gradients `dy`, masked by the fused ReLU if there is one.
    fn masked<'a>(
        &'a self,
        c: usize,
        weight: &[f32],
        dy: &'a [f32],
        x: &'a [f32],
    ) -> impl Iterator<Item = (f32, f32)> + 'a {
        let affine = self
            .relu_bias
            .as_deref()
            .map(|bias| self.saved.affine(c, weight, bias));
        dy.iter().zip(x).map(move |(&d, &v)| match affine {
            // As `relu`'s own backward: no gradient unless the output `max(v, 0)` is positive.
            Some((scale, shift)) if (v * scale + shift).max(0.0) <= 0.0 => (0.0, v),
            _ => (d, v),
        })
    }
}

impl CustomOp3 for BatchNormGrad {
    fn name(&self) -> &'static str {
        "cv-batch-norm-grad"
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
        let x = contiguous_f32(s1, l1, "batch_norm", "input")?;
        let grad = contiguous_f32(s2, l2, "batch_norm", "output gradient")?;
        let weight = per_channel(s3, l3, "weight", &g)?;
        same_shape(l1, l2, "batch_norm", "output gradient")?;
        let Saved { stats, inv_std } = &self.saved;
        let (sum_dy, sum_dy_xhat): (Vec<f64>, Vec<f64>) = (0..g.channels)
            .into_par_iter()
            .map(|c| {
                let (mean, inv_std) = (stats.mean[c] as f64, inv_std[c] as f64);
                g.planes(grad, c)
                    .zip(g.planes(x, c))
                    .flat_map(|(dy, x)| self.masked(c, weight, dy, x))
                    .fold((0f64, 0f64), |(dy, dy_xhat), (d, v)| {
                        let d = d as f64;
                        (dy + d, dy_xhat + d * (v as f64 - mean) * inv_std)
                    })
            })
            .unzip();
        let count = g.count().max(1) as f32;
        let total = x.len();
        let mut out = par_collect_chunks(total, g.plane, total + 2 * g.channels, |q| {
            let c = q % g.channels;
            let (mean, inv_std) = (stats.mean[c], inv_std[c]);
            let scale = weight[c] * inv_std;
            let mean_dy = sum_dy[c] as f32 / count;
            let mean_dy_xhat = sum_dy_xhat[c] as f32 / count;
            let (dy, x) = (chunk_of(grad, g.plane, q), chunk_of(x, g.plane, q));
            self.masked(c, weight, dy, x).map(move |(dy, x)| {
                let xhat = (x - mean) * inv_std;
                scale * (dy - mean_dy - xhat * mean_dy_xhat)
            })
        });
        out.extend(sum_dy_xhat.iter().map(|&v| v as f32));
        out.extend(sum_dy.iter().map(|&v| v as f32));
        Ok((CpuStorage::F32(out), Shape::from(total + 2 * g.channels)))
    }
}
