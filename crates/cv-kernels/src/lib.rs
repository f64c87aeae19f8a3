//! CPU training kernels for candle, owned by foldwise.
//!
//! candle 0.11 trains convolutional networks on the CPU about ten times slower than PyTorch:
//! its convolution's input gradient is a plain-loop transposed convolution, and BatchNorm and
//! ReLU are chains of small ops, each a pass over memory with an allocation. The ops here are
//! candle custom ops with a backward of their own: convolutions as large GEMMs (the `gemm`
//! crate candle already uses), BatchNorm and ReLU in two passes or one. All are deterministic:
//! the same inputs give the same bits with any number of threads. They run on the CPU in `f32`;
//! elsewhere [`conv2d`] and [`relu`] fall back to candle's own ops.

mod batch_norm;
mod batch_norm_eval;
mod conv2d;
mod max_pool;
mod relu;

pub use batch_norm::{batch_norm_relu_train, batch_norm_train, BatchStats};
pub use batch_norm_eval::batch_norm_eval;
pub use conv2d::conv2d;
pub use max_pool::max_pool2d;
pub use relu::{add_relu, relu};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Error, Layout, Result, Tensor};

/// Whether `t` lives on the CPU in `f32`: where the kernels of this crate apply.
pub fn is_cpu_f32(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The `f32` elements of a contiguous CPU tensor, the `what` operand of `op`.
fn contiguous_f32<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> Result<&'a [f32]> {
    let CpuStorage::F32(data) = storage else {
        return Err(Error::Msg(format!(
            "cv-kernels {op}: the {what} must be f32, got {:?}",
            storage.dtype()
        )));
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => Err(Error::Msg(format!(
            "cv-kernels {op}: the {what} must be contiguous"
        ))),
    }
}
