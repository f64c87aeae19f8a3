//! 2-D max-pooling on the CPU as one custom op, with PyTorch's gradient.
//!
//! candle 0.11 has no max-pool with a backward, so a ResNet's stem pool was built from padded,
//! shifted slices and `maximum`s: about ten passes over the stem's activations forward and as
//! many back, and at a tie `maximum` splits the gradient where PyTorch gives it to one input.
//! Here the forward is one pass that also records which input won each window; the backward
//! adds each output's gradient into that input.
//!
//! Deterministic: every plane (one image, one channel) is pooled and back-propagated by one
//! thread, in a fixed order.

use std::sync::{Arc, Mutex, PoisonError};

use candle_core::{CpuStorage, CustomOp1, Error, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::{contiguous_f32, par_zeros};

/// Max-pooling of `x [N, C, H, W]` over `kernel × kernel` windows at `stride`, with `padding`
/// on every side that never wins (PyTorch's `max_pool2d`, `ceil_mode=False`, no dilation). The
/// gradient of each output goes to the first input of its window, in row-major order, that
/// holds the maximum (a NaN wins), as in PyTorch. CPU `f32` only (see [`crate::applies_to`]).
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[[[[1f32, 2.], [4., 3.]]]], &Device::Cpu)?;
/// let y = cv_kernels::max_pool2d(&x, 2, 2, 0)?;
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [4.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn max_pool2d(x: &Tensor, kernel: usize, stride: usize, padding: usize) -> Result<Tensor> {
    let op = MaxPool {
        window: Window {
            kernel,
            stride,
            padding,
        },
        winners: Arc::new(Mutex::new(None)),
    };
    x.contiguous()?.apply_op1(op)
}

#[derive(Debug, Clone, Copy)]
struct Window {
    kernel: usize,
    stride: usize,
    padding: usize,
}

/// The sizes of one pooling: input planes `height × width`, output planes `out_h × out_w`.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    window: Window,
    height: usize,
    width: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn new(layout: &Layout, window: Window) -> Result<([usize; 4], Self)> {
        let dims: [usize; 4] = layout.dims().try_into().map_err(|_| {
            Error::Msg(format!(
                "cv-kernels max_pool2d: expects [N, C, H, W], got shape {:?}",
                layout.dims()
            ))
        })?;
        let Window {
            kernel,
            stride,
            padding,
        } = window;
        let [_, _, height, width] = dims;
        // PyTorch's conditions; with them every window holds at least one input.
        if kernel == 0 || stride == 0 || padding > kernel / 2 || height == 0 || width == 0 {
            return Err(Error::Msg(format!(
                "cv-kernels max_pool2d: kernel {kernel}, stride {stride} and padding {padding} \
                 on a {height}x{width} input: needs kernel >= 1, stride >= 1, \
                 padding <= kernel / 2 and a non-empty input"
            )));
        }
        if height + 2 * padding < kernel || width + 2 * padding < kernel {
            return Err(Error::Msg(format!(
                "cv-kernels max_pool2d: a {kernel}x{kernel} window does not fit a \
                 {height}x{width} input padded by {padding}"
            )));
        }
        Ok((
            dims,
            Self {
                window,
                height,
                width,
                out_h: (height + 2 * padding - kernel) / stride + 1,
                out_w: (width + 2 * padding - kernel) / stride + 1,
            },
        ))
    }

    /// The input rows (or columns, with `len` the width) of window `o`.
    fn span(&self, o: usize, len: usize) -> std::ops::Range<usize> {
        let Window {
            kernel,
            stride,
            padding,
        } = self.window;
        let start = o * stride;
        start.saturating_sub(padding)..(start + kernel).saturating_sub(padding).min(len)
    }

    /// Pools one plane into `out`, and each window's winning input (its index in the plane)
    /// into `winners`.
    fn pool(&self, plane: &[f32], out: &mut [f32], winners: &mut [u32]) {
        let outputs = out.iter_mut().zip(winners.iter_mut());
        for (o, (out, winner)) in outputs.enumerate() {
            let (oy, ox) = (o / self.out_w, o % self.out_w);
            let (mut best, mut at) = (f32::NEG_INFINITY, None);
            for y in self.span(oy, self.height) {
                for x in self.span(ox, self.width) {
                    let i = y * self.width + x;
                    let v = plane[i];
                    if at.is_none() || v > best || (v.is_nan() && !best.is_nan()) {
                        (best, at) = (v, Some(i));
                    }
                }
            }
            *out = best;
            // Every window holds an input (checked in `new`); u32 holds any plane index
            // (checked in `cpu_fwd`).
            *winner = at.unwrap_or(0) as u32;
        }
    }
}

/// The forward; keeps each window's winner for the backward.
struct MaxPool {
    window: Window,
    winners: Arc<Mutex<Option<Arc<Vec<u32>>>>>,
}

impl CustomOp1 for MaxPool {
    fn name(&self) -> &'static str {
        "cv-max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let ([n, c, _, _], g) = Geometry::new(layout, self.window)?;
        let x = contiguous_f32(storage, layout, "max_pool2d", "input")?;
        let (plane, out_plane) = (g.height * g.width, g.out_h * g.out_w);
        if u32::try_from(plane).is_err() {
            return Err(Error::Msg(format!(
                "cv-kernels max_pool2d: planes of {} x {} are too large",
                g.height, g.width
            )));
        }
        let mut y = vec![0f32; n * c * out_plane];
        let mut winners = vec![0u32; y.len()];
        if !y.is_empty() {
            y.par_chunks_mut(out_plane)
                .zip(winners.par_chunks_mut(out_plane))
                .zip(x.par_chunks(plane))
                .for_each(|((y, winners), x)| g.pool(x, y, winners));
        }
        *self.winners.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(winners));
        Ok((CpuStorage::F32(y), Shape::from((n, c, g.out_h, g.out_w))))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let winners = self
            .winners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| Error::Msg("cv-kernels max_pool2d: backward before forward".into()))?;
        let plane = x.dim(2)? * x.dim(3)?;
        let op = MaxPoolGrad {
            winners,
            input: x.shape().clone(),
            plane,
        };
        Ok(Some(grad.contiguous()?.apply_op1_no_bwd(&op)?))
    }
}

/// `dL/dx` from `dL/dy`: each output's gradient added into its window's winner.
struct MaxPoolGrad {
    winners: Arc<Vec<u32>>,
    input: Shape,
    plane: usize,
}

impl CustomOp1 for MaxPoolGrad {
    fn name(&self) -> &'static str {
        "cv-max-pool2d-grad"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let grad = contiguous_f32(storage, layout, "max_pool2d", "output gradient")?;
        if grad.len() != self.winners.len() {
            return Err(Error::Msg(format!(
                "cv-kernels max_pool2d: the output gradient has shape {:?}, not the output's",
                layout.dims()
            )));
        }
        let mut dx = par_zeros(self.input.elem_count());
        let planes = dx.len() / self.plane.max(1);
        if let Some(out_plane) = grad.len().checked_div(planes) {
            dx.par_chunks_mut(self.plane)
                .zip(
                    grad.par_chunks(out_plane)
                        .zip(self.winners.par_chunks(out_plane)),
                )
                .for_each(|(dx, (dy, winners))| {
                    for (&dy, &at) in dy.iter().zip(winners) {
                        dx[at as usize] += dy;
                    }
                });
        }
        Ok((CpuStorage::F32(dx), self.input.clone()))
    }
}
