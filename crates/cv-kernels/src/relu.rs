//! ReLU on the CPU with a one-pass backward.
//!
//! candle's ReLU backward builds a mask (`zeros_like`, `ge`, `to_dtype`) and multiplies: four
//! passes and three allocations per activation. Here it is one pass over the output and its
//! gradient, with PyTorch's convention: the gradient flows where the output is positive.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Error, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use crate::contiguous_f32;

/// Elements per parallel task: large enough that scheduling costs nothing.
const CHUNK: usize = 16 * 1024;

/// `max(x, 0)`, with the gradient passed where the output is positive (PyTorch's convention;
/// candle's own passes it at 0 too). CPU `f32`; elsewhere candle's `relu`.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[-1f32, 0., 2.], &Device::Cpu)?;
/// assert_eq!(cv_kernels::relu(&x)?.to_vec1::<f32>()?, [0., 0., 2.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if crate::is_cpu_f32(x) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "cv-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "relu", "input")?;
        let mut y = vec![0f32; x.len()];
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(y, x)| {
                for (y, &x) in y.iter_mut().zip(x) {
                    *y = x.max(0.0);
                }
            });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?))
    }
}

/// `dL/dx` from `(y, dL/dy)`: `dy` where `y > 0`, else 0.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "cv-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let y = contiguous_f32(s1, l1, "relu", "output")?;
        let grad = contiguous_f32(s2, l2, "relu", "output gradient")?;
        if l1.dims() != l2.dims() {
            return Err(Error::Msg(format!(
                "cv-kernels relu: the output gradient has shape {:?}, expected {:?}",
                l2.dims(),
                l1.dims()
            )));
        }
        let mut dx = vec![0f32; y.len()];
        dx.par_chunks_mut(CHUNK)
            .zip(y.par_chunks(CHUNK).zip(grad.par_chunks(CHUNK)))
            .for_each(|(dx, (y, grad))| {
                for ((dx, &y), &grad) in dx.iter_mut().zip(y).zip(grad) {
                    *dx = if y > 0.0 { grad } else { 0.0 };
                }
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
