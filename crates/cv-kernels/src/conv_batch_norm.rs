//! A convolution and the train-mode BatchNorm after it (and the ReLU after that, if any) as one
//! custom op: the ResNet's `conv → bn (→ relu)`.
//!
//! Apart, the two ops leave candle's `backward` one more gradient to accumulate: for every
//! edge of the graph it adds the incoming gradient to a fresh zero tensor, two serial passes
//! over an activation on the calling thread while the workers wait. As one op the BatchNorm's
//! input gradient goes straight into the convolution's backward. The arithmetic is that of
//! [`crate::conv2d`] and [`crate::batch_norm_train`], so are the values.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp3, Device, Error, Layout, Result, Shape, Tensor};

use crate::batch_norm::{gradients, kept, normalize, Geometry, Saved};
use crate::conv2d::Conv2d;
use crate::{contiguous_f32, BatchStats};

/// [`crate::batch_norm_train`] of [`crate::conv2d`]`(x, conv_weight, padding, stride)`, as one
/// op with one backward. CPU and `f32` only (see [`crate::applies_to`]).
///
/// ```
/// use candle_core::{DType, Device, Tensor};
///
/// let x = Tensor::new(&[1f32, 2., 3., 4.], &Device::Cpu)?.reshape((4, 1, 1, 1))?;
/// let w = Tensor::full(2f32, (1, 1, 1, 1), &Device::Cpu)?; // 2·x: mean 5, variance 5
/// let ones = Tensor::ones(1, DType::F32, &Device::Cpu)?;
/// let (y, stats) = cv_kernels::conv2d_batch_norm_train(&x, &w, 0, 1, &ones, &ones, 0.0)?;
/// assert_eq!(stats.mean, [5.]);
/// let separate = cv_kernels::batch_norm_train(&cv_kernels::conv2d(&x, &w, 0, 1)?, &ones, &ones, 0.0)?.0;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, separate.flatten_all()?.to_vec1::<f32>()?);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d_batch_norm_train(
    x: &Tensor,
    conv_weight: &Tensor,
    padding: usize,
    stride: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    apply(
        x,
        conv_weight,
        Conv2d { padding, stride },
        (weight, bias),
        eps,
        false,
    )
}

/// [`conv2d_batch_norm_train`] with the ReLU after it fused in, as
/// [`crate::batch_norm_relu_train`].
pub fn conv2d_batch_norm_relu_train(
    x: &Tensor,
    conv_weight: &Tensor,
    padding: usize,
    stride: usize,
    weight: &Tensor,
    bias: &Tensor,
    eps: f64,
) -> Result<(Tensor, BatchStats)> {
    apply(
        x,
        conv_weight,
        Conv2d { padding, stride },
        (weight, bias),
        eps,
        true,
    )
}

fn apply(
    x: &Tensor,
    conv_weight: &Tensor,
    conv: Conv2d,
    (weight, bias): (&Tensor, &Tensor),
    eps: f64,
    relu: bool,
) -> Result<(Tensor, BatchStats)> {
    let saved = Arc::new(Mutex::new(None));
    let op = ConvBatchNorm {
        conv,
        eps,
        relu,
        saved: Arc::clone(&saved),
    };
    // A custom op takes three inputs: the BatchNorm's two parameters travel as one (the
    // concatenation's backward splits their gradient again).
    let params = Tensor::cat(&[weight.flatten_all()?, bias.flatten_all()?], 0)?;
    let y = x
        .contiguous()?
        .apply_op3(&conv_weight.contiguous()?, &params, op)?;
    let (_, batch) = kept(
        &saved,
        "cv-kernels conv2d_batch_norm: the forward kept no statistics",
    )?;
    let stats = batch.stats;
    Ok((y, stats))
}

/// The fused op: inputs `x`, the convolution's weight, and `[weight; bias]` of the BatchNorm.
struct ConvBatchNorm {
    conv: Conv2d,
    eps: f64,
    relu: bool,
    /// The convolution's output (the BatchNorm's input) and the batch statistics, for the
    /// backward.
    saved: Arc<Mutex<Option<(Tensor, Saved)>>>,
}

impl CustomOp3 for ConvBatchNorm {
    fn name(&self) -> &'static str {
        "cv-conv2d-batch-norm"
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
        let (conv_out, shape) = self.conv.values(s1, l1, s2, l2)?;
        let g = Geometry::new(&Layout::contiguous(&shape))?;
        let params = contiguous_f32(s3, l3, "conv2d_batch_norm", "BatchNorm parameters")?;
        if params.len() != 2 * g.channels {
            return Err(Error::Msg(format!(
                "cv-kernels conv2d_batch_norm: {} BatchNorm parameters for {} channels, \
                 expected weight and bias, {} in all",
                params.len(),
                g.channels,
                2 * g.channels
            )));
        }
        let (weight, bias) = params.split_at(g.channels);
        let (y, saved) = normalize(&conv_out, &g, weight, bias, self.eps, self.relu);
        let conv_out = Tensor::from_vec(conv_out, shape.clone(), &Device::Cpu)?;
        *self.saved.lock().unwrap_or_else(PoisonError::into_inner) = Some((conv_out, saved));
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        conv_weight: &Tensor,
        params: &Tensor,
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (conv_out, saved) = kept(
            &self.saved,
            "cv-kernels conv2d_batch_norm: backward before forward",
        )?;
        let channels = conv_out.dim(1)?;
        let (weight, bias) = (
            params.narrow(0, 0, channels)?,
            params.narrow(0, channels, channels)?,
        );
        // One flat result: the BatchNorm's input gradient, then its parameters' in the order
        // of `params`.
        let packed = gradients(saved, self.relu, &conv_out, &weight, &bias, grad)?;
        let total = conv_out.elem_count();
        let conv_grad = packed.narrow(0, 0, total)?.reshape(conv_out.shape())?;
        let (dx, dw) = self.conv.gradients(x, conv_weight, &conv_grad)?;
        Ok((dx, dw, Some(packed.narrow(0, total, 2 * channels)?)))
    }
}
