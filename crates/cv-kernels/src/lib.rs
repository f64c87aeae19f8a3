//! CPU training kernels for candle, owned by foldwise.
//!
//! candle 0.11 trains convolutional networks on the CPU about ten times slower than PyTorch:
//! its convolution's input gradient is a plain-loop transposed convolution, and BatchNorm and
//! ReLU are chains of small ops, each a pass over memory with an allocation. The ops here are
//! candle custom ops with a backward of their own: convolutions as large GEMMs (the `gemm`
//! crate candle already uses), BatchNorm and ReLU in two passes or one. All are deterministic:
//! the same inputs give the same bits with any number of threads. They run on the CPU in `f32`;
//! elsewhere [`conv2d`] and [`relu`] fall back to candle's own ops, and callers choose by
//! [`applies_to`]. [`with_candle_ops`] turns the kernels off, so that a CPU can check the path a
//! GPU takes.

mod batch_norm;
mod batch_norm_eval;
mod conv2d;
mod conv_batch_norm;
mod max_pool;
mod relu;

pub use batch_norm::{batch_norm_relu_train, batch_norm_train, BatchStats};
pub use batch_norm_eval::batch_norm_eval;
pub use conv2d::conv2d;
pub use conv_batch_norm::{conv2d_batch_norm_relu_train, conv2d_batch_norm_train};
pub use max_pool::max_pool2d;
pub use relu::{add_relu, relu};

use std::cell::Cell;

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, DType, Error, Layout, Result, Tensor};

thread_local! {
    static CANDLE_OPS_ONLY: Cell<bool> = const { Cell::new(false) };
}

/// Whether the kernels of this crate apply to `t`: it lives on the CPU in `f32`, and the calling
/// thread is not inside [`with_candle_ops`].
pub fn applies_to(t: &Tensor) -> bool {
    !CANDLE_OPS_ONLY.get() && t.device().is_cpu() && t.dtype() == DType::F32
}

/// Runs `f` with this crate's kernels off on the calling thread: every choice made by
/// [`applies_to`] in it takes candle's own ops, the path a GPU runs. For tests and comparisons:
/// the CPU can check that path's values and gradients against the kernels' without a GPU.
/// (The choice is made when a graph is built; its backward follows the ops it was built of.)
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::new(&[-1f32, 2.], &Device::Cpu)?;
/// assert!(cv_kernels::applies_to(&x));
/// let y = cv_kernels::with_candle_ops(|| {
///     assert!(!cv_kernels::applies_to(&x));
///     cv_kernels::relu(&x) // candle's `relu`
/// })?;
/// assert_eq!(y.to_vec1::<f32>()?, [0., 2.]);
/// assert!(cv_kernels::applies_to(&x));
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn with_candle_ops<T>(f: impl FnOnce() -> T) -> T {
    /// Restores the previous setting, also when `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            CANDLE_OPS_ONLY.set(self.0);
        }
    }
    let _restore = Restore(CANDLE_OPS_ONLY.replace(true));
    f()
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

/// An error unless the `what` operand of `op` (layout `other`) has the shape of `first`.
fn same_shape(first: &Layout, other: &Layout, op: &str, what: &str) -> Result<()> {
    if first.dims() == other.dims() {
        Ok(())
    } else {
        Err(Error::Msg(format!(
            "cv-kernels {op}: the {what} has shape {:?}, expected {:?}",
            other.dims(),
            first.dims()
        )))
    }
}

/// Elements per parallel task of an element-wise pass: large enough that scheduling costs
/// nothing.
const CHUNK: usize = 16 * 1024;

/// `len` floats computed in parallel, chunk by chunk: chunk `i` (`chunk` long, the last one
/// shorter) holds the values of `values(i)`, with room for `capacity` floats in all.
///
/// `vec![0.0; len]` and then writing would first zero the whole output on the calling thread,
/// a serial pass over every activation (about a twentieth of a ResNet train step); here each
/// worker writes its chunk once.
///
/// # Panics
/// If `values(i)` yields fewer values than chunk `i` holds (a bug in this crate).
fn par_collect_chunks<I>(
    len: usize,
    chunk: usize,
    capacity: usize,
    values: impl Fn(usize) -> I + Sync,
) -> Vec<f32>
where
    I: Iterator<Item = f32>,
{
    use rayon::prelude::*;
    let mut out = Vec::with_capacity(capacity.max(len));
    out.spare_capacity_mut()[..len]
        .par_chunks_mut(chunk.max(1))
        .enumerate()
        .for_each(|(i, slots)| {
            let mut written = 0;
            for (slot, value) in slots.iter_mut().zip(values(i)) {
                slot.write(value);
                written += 1;
            }
            assert_eq!(written, slots.len(), "cv-kernels: a chunk left unwritten");
        });
    // SAFETY: every chunk wrote each of its slots (asserted above: a panic never gets here).
    unsafe { out.set_len(len) };
    out
}

/// Chunk `i` of `t` in chunks of `chunk` (the last one shorter), as [`par_collect_chunks`]
/// counts them.
fn chunk_of(t: &[f32], chunk: usize, i: usize) -> &[f32] {
    let start = (i * chunk).min(t.len());
    &t[start..(start + chunk).min(t.len())]
}

/// `len` zeros, written in parallel (not, as `vec![0.0; len]` would, on the calling thread
/// alone), for outputs that are accumulated into or written through `gemm`.
fn par_zeros(len: usize) -> Vec<f32> {
    par_collect_chunks(len, CHUNK, len, |i| {
        std::iter::repeat_n(0.0, CHUNK.min(len - i * CHUNK))
    })
}
