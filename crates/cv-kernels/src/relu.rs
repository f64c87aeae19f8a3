//! ReLU on the CPU with a one-pass backward, alone or after a residual sum.
//!
//! candle's ReLU backward builds a mask (`zeros_like`, `ge`, `to_dtype`) and multiplies: four
//! passes and three allocations per activation. Here it is one pass over the output and its
//! gradient, with PyTorch's convention: the gradient flows where the output is positive.
//! [`add_relu`] also folds in the sum before it (a ResNet block's end), one autograd node
//! instead of two.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};

use crate::{chunk_of, contiguous_f32, par_collect_chunks, same_shape, CHUNK};

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
    if crate::applies_to(x) {
        x.contiguous()?.apply_op1(Relu)
    } else {
        x.relu()
    }
}

/// `max(a + b, 0)`: [`relu`] of the sum, the same bits and gradients, in one pass (and one
/// backward pass) instead of two. CPU `f32`; elsewhere candle's ops.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let a = Tensor::new(&[-1f32, 1., 2.], &Device::Cpu)?;
/// let b = Tensor::new(&[0.5f32, -1., 1.], &Device::Cpu)?;
/// assert_eq!(cv_kernels::add_relu(&a, &b)?.to_vec1::<f32>()?, [0., 0., 3.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn add_relu(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    if crate::applies_to(a) && crate::applies_to(b) {
        a.contiguous()?.apply_op2(&b.contiguous()?, AddRelu)
    } else {
        (a + b)?.relu()
    }
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "cv-relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = contiguous_f32(storage, layout, "relu", "input")?;
        let y = par_collect_chunks(x.len(), CHUNK, x.len(), |i| {
            chunk_of(x, CHUNK, i).iter().map(|&x| x.max(0.0))
        });
        Ok((CpuStorage::F32(y), layout.shape().clone()))
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?))
    }
}

struct AddRelu;

impl CustomOp2 for AddRelu {
    fn name(&self) -> &'static str {
        "cv-add-relu"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let a = contiguous_f32(s1, l1, "add_relu", "first input")?;
        let b = contiguous_f32(s2, l2, "add_relu", "second input")?;
        same_shape(l1, l2, "add_relu", "second input")?;
        let y = par_collect_chunks(a.len(), CHUNK, a.len(), |i| {
            let (a, b) = (chunk_of(a, CHUNK, i), chunk_of(b, CHUNK, i));
            a.iter().zip(b).map(|(&a, &b)| (a + b).max(0.0))
        });
        Ok((CpuStorage::F32(y), l1.shape().clone()))
    }

    fn bwd(
        &self,
        _a: &Tensor,
        _b: &Tensor,
        y: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        // Both summands get the same gradient: one tensor, shared.
        let dx = y.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?;
        Ok((Some(dx.clone()), Some(dx)))
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
        same_shape(l1, l2, "relu", "output gradient")?;
        let dx = par_collect_chunks(y.len(), CHUNK, y.len(), |i| {
            let (y, grad) = (chunk_of(y, CHUNK, i), chunk_of(grad, CHUNK, i));
            y.iter()
                .zip(grad)
                .map(|(&y, &grad)| if y > 0.0 { grad } else { 0.0 })
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}
