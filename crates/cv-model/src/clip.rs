//! Gradient-norm clipping, as `torch.nn.utils.clip_grad_norm_`.

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor};

use crate::error::{ModelError, Result};
use crate::params::Params;

/// Global L2 norm of the gradients of all trainable parameters (buffers excluded, parameters
/// without a gradient skipped), as f32 widened to f64; 0 when there are none.
///
/// Computed like torch: the norm of each gradient, in name order, then the norm of those norms.
pub fn grad_norm(params: &Params, grads: &GradStore) -> Result<f64> {
    Ok(f64::from(total_norm(params, grads)?))
}

fn total_norm(params: &Params, grads: &GradStore) -> Result<f32> {
    let mut norms = Vec::new();
    for (_, param) in params.trainable() {
        if let Some(g) = grads.get(param.var.as_tensor()) {
            let g = g.detach().to_dtype(DType::F32)?;
            norms.push(g.sqr()?.sum_all()?.sqrt()?);
        }
    }
    if norms.is_empty() {
        return Ok(0.0);
    }
    // Norms live on the gradients' device; stacking keeps the reduction there.
    Ok(Tensor::stack(&norms, 0)?
        .sqr()?
        .sum_all()?
        .sqrt()?
        .to_scalar::<f32>()?)
}

/// Scales the trainable parameters' gradients in `grads` so that their global L2 norm is at
/// most `max_norm`, and returns the norm before clipping.
///
/// As torch: `coef = max_norm / (total_norm + 1e-6)` (in f32), and the gradients are multiplied
/// by `coef` only when it is below 1. A non-finite norm (a NaN or infinite gradient) is returned
/// and the gradients are left alone, so the caller can check `is_finite()` and skip the step.
///
/// ```
/// use candle_core::{Device, Var};
/// use cv_model::clip::clip_grad_norm;
/// use cv_model::{ParamKind, Params};
///
/// let w = Var::new(&[3.0f32, 4.0], &Device::Cpu)?;
/// let mut params = Params::new();
/// params.insert("w", w.clone(), ParamKind::Weight);
/// let loss = (w.as_tensor().sqr()?.sum_all()? * 0.5)?; // gradient = w, norm 5
/// let mut grads = loss.backward()?;
/// let norm = clip_grad_norm(&params, &mut grads, 1.0)?;
/// assert_eq!(norm, 5.0);
/// let clipped = grads.get(w.as_tensor()).unwrap().to_vec1::<f32>()?;
/// assert!((clipped[0] - 0.6).abs() < 1e-6 && (clipped[1] - 0.8).abs() < 1e-6);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn clip_grad_norm(params: &Params, grads: &mut GradStore, max_norm: f64) -> Result<f64> {
    if !(max_norm.is_finite() && max_norm > 0.0) {
        return Err(ModelError::BadHyperparameter {
            field: "clip_grad_norm",
            value: max_norm.to_string(),
            expected: "a finite norm > 0 (e.g. 1.0), or no clipping at all".into(),
        });
    }
    let total = total_norm(params, grads)?;
    // torch computes `max_norm / (total + 1e-6)` on an f32 tensor, and `float / tensor` is
    // `tensor.reciprocal() * float` there.
    let coef = (1.0f32 / (total + 1e-6f32)) * (max_norm as f32);
    if coef < 1.0 {
        for (_, param) in params.trainable() {
            let var = param.var.as_tensor();
            if let Some(g) = grads.get(var) {
                let scaled = (g.detach() * f64::from(coef))?;
                grads.insert(var, scaled);
            }
        }
    }
    Ok(f64::from(total))
}
