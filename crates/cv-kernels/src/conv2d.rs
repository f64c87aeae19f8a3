//! 2-D convolution for training on the CPU: im2col + GEMM forward, and a backward of its own
//! (input gradient as a transposed convolution, or by GEMM + col2im where the convolution is
//! strided; weight gradient by GEMM), plugged into candle as a custom op.
//!
//! candle 0.11 computes a CPU convolution's input gradient with a plain-loop
//! `conv_transpose2d`, and computes it even for a network's first layer, where nothing needs it;
//! that made a ResNet train step ~10× slower than PyTorch's. Here all three products are GEMMs
//! over the whole batch at once (the `gemm` crate candle uses), on a channel-major layout
//! (`[C·KH·KW, N·H'·W']`), so every GEMM is large even when the images are small.
//!
//! Deterministic: each output element is written by one thread in a fixed order (im2col, col2im
//! and the layout changes are split over rows, planes or channels; `gemm` splits over the
//! output's rows and columns only, never the summed dimension), so the results and gradients
//! are the same bits with any number of threads.

use candle_core::{CpuStorage, CustomOp2, DType, Error, Layout, Result, Shape, Tensor};
use rayon::prelude::*;
use std::cell::RefCell;
use std::mem::MaybeUninit;

use crate::{contiguous_f32, par_zeros};

/// `x [N, C, H, W]` convolved with `weight [O, C, KH, KW]` → `[N, O, H', W']`: zero padding of
/// `padding` on every side, the same `stride` in both directions, no dilation, one group,
/// no bias (the contract of candle's `Tensor::conv2d(weight, padding, stride, 1, 1)`).
///
/// On the CPU in `f32`, the foldwise kernels with their own backward; anywhere else (CUDA,
/// other dtypes), candle's own convolution.
///
/// ```
/// use candle_core::{Device, Tensor};
///
/// let x = Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let w = Tensor::ones((1, 1, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
/// let y = cv_kernels::conv2d(&x, &w, 1, 1)?;
/// // The centre sees all nine ones; a corner sees four.
/// assert_eq!(y.flatten_all()?.to_vec1::<f32>()?, [4., 6., 4., 6., 9., 6., 4., 6., 4.]);
/// # Ok::<(), candle_core::Error>(())
/// ```
pub fn conv2d(x: &Tensor, weight: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if crate::applies_to(x) && weight.dtype() == DType::F32 {
        x.contiguous()?
            .apply_op2(&weight.contiguous()?, Conv2d { padding, stride })
    } else {
        x.conv2d(weight, padding, stride, 1, 1)
    }
}

/// The sizes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geometry {
    batch: usize,
    in_channels: usize,
    height: usize,
    width: usize,
    out_channels: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    padding: usize,
    out_h: usize,
    out_w: usize,
}

impl Geometry {
    fn new(
        [batch, in_channels, height, width]: [usize; 4],
        out_channels: usize,
        (kernel_h, kernel_w): (usize, usize),
        conv: Conv2d,
    ) -> Result<Self> {
        let Conv2d { padding, stride } = conv;
        if stride == 0 {
            return Err(Error::Msg(
                "cv-kernels conv2d: stride must be at least 1".into(),
            ));
        }
        let (padded_h, padded_w) = (height + 2 * padding, width + 2 * padding);
        if kernel_h == 0 || kernel_w == 0 || padded_h < kernel_h || padded_w < kernel_w {
            return Err(Error::Msg(format!(
                "cv-kernels conv2d: a {kernel_h}x{kernel_w} kernel does not fit a \
                 {height}x{width} input padded by {padding}"
            )));
        }
        Ok(Self {
            batch,
            in_channels,
            height,
            width,
            out_channels,
            kernel_h,
            kernel_w,
            stride,
            padding,
            out_h: (padded_h - kernel_h) / stride + 1,
            out_w: (padded_w - kernel_w) / stride + 1,
        })
    }

    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    fn rows(&self) -> usize {
        self.in_channels * self.kernel_h * self.kernel_w
    }

    /// Output positions of one image.
    fn positions(&self) -> usize {
        self.out_h * self.out_w
    }

    fn output_dims(&self) -> [usize; 4] {
        [self.batch, self.out_channels, self.out_h, self.out_w]
    }

    /// The output columns `ox` whose input column `ox·stride + j − padding` lies inside the
    /// image, for kernel column `j`.
    fn valid_cols(&self, j: usize) -> std::ops::Range<usize> {
        let (s, p) = (self.stride, self.padding);
        // With more padding than image, a kernel column can miss the image altogether.
        let lo = p.saturating_sub(j).div_ceil(s).min(self.out_w);
        let hi = if self.width + p > j {
            ((self.width + p - j - 1) / s + 1).min(self.out_w)
        } else {
            0
        };
        lo..hi.max(lo)
    }

    /// Whether the output has the input's size at stride 1 (a square kernel of side
    /// `2·padding + 1`), the convolutions of a ResNet's blocks: then [`im2col_same_size`]
    /// moves whole planes at once.
    fn same_size(&self) -> bool {
        self.stride == 1 && self.out_h == self.height && self.out_w == self.width
    }

    /// For each kernel column `j` of a [`Geometry::same_size`] convolution, bit masks for the
    /// output positions `span`: all ones where output column `ox` reads inside the image,
    /// zero where a shifted plane wraps into the neighbouring row (see [`im2col_same_size`]).
    fn wrap_masks(&self, span: std::ops::Range<usize>) -> Vec<u32> {
        let mut masks = Vec::with_capacity(self.kernel_w * span.len());
        for j in 0..self.kernel_w {
            let kept = self.valid_cols(j);
            // The column of each position, counted rather than divided: this runs per call.
            let mut ox = span.start % self.width.max(1);
            for _ in span.clone() {
                masks.push(if kept.contains(&ox) { !0 } else { 0 });
                ox += 1;
                if ox == self.width {
                    ox = 0;
                }
            }
        }
        masks
    }

    /// The input row of output row `oy` for kernel row `i`, if inside the image.
    fn input_row(&self, oy: usize, i: usize) -> Option<usize> {
        (oy * self.stride + i)
            .checked_sub(self.padding)
            .filter(|&y| y < self.height)
    }
}

/// `value` where `mask` is all ones, `+0.0` where it is zero.
fn masked(value: f32, mask: u32) -> f32 {
    f32::from_bits(value.to_bits() & mask)
}

/// Scratch floats one block of images (or span of positions) may use for its im2col matrix:
/// half of a 512 KB L2 cache, so that the matrix and `gemm`'s packed copy of it are still
/// cached when the GEMM reads them. Measured on a 2-core EPYC (ResNet-20 train step, 5 runs
/// each): 32K floats 0.93×, 96K 0.97×, 160K 0.95× the speed of 64K.
const BLOCK_FLOATS: usize = 64 * 1024;

/// Columns (output positions) a block's GEMM has at least, where the batch has them: wide
/// layers on tiny images (resnet18's 512 channels at 2×2) would otherwise multiply matrices
/// only a few columns wide.
const MIN_BLOCK_COLS: usize = 64;

/// Weight-gradient partial sums at most: blocks are dealt round-robin to this many
/// accumulators (a number fixed by the shape, never by the thread count, so the summation order
/// and the bits stay the same with any number of threads).
const MAX_PARTIALS: usize = 8;

/// Weight elements up to which the weight gradient is computed transposed (`[C·KH·KW, O]`,
/// then transposed): measured faster for small weights with few output channels (16 to 64),
/// where the other orientation's GEMM is narrow; for large weights the transpose itself costs
/// more than the GEMM saves.
const TRANSPOSED_WEIGHT_GRAD_MAX: usize = 64 * 1024;

/// Columns (output positions) a weight-gradient GEMM sums over at least, where the batch has
/// them: fewer would spend the time re-reading the partial sum instead of multiplying.
const MIN_WEIGHT_GRAD_COLS: usize = 512;

impl Geometry {
    /// Images per block: as many as fit [`BLOCK_FLOATS`], at least one.
    fn block_images(&self) -> usize {
        let fit = BLOCK_FLOATS / (self.rows() * self.positions()).max(1);
        let enough = MIN_BLOCK_COLS.div_ceil(self.positions().max(1));
        fit.max(enough).clamp(1, self.batch.max(1))
    }

    /// Spans of one image's output positions whose im2col matrices fit [`BLOCK_FLOATS`]: only
    /// [`Geometry::same_size`] convolutions are split (by [`im2col_same_size`]); the GEMM is
    /// much faster on a matrix that stays in the L2 cache (37 against 28 GFLOP/s for
    /// ResNet-20's first stage, whose 32×32 images have a 590 KB matrix).
    fn position_spans(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let positions = self.positions();
        let span = if self.same_size() {
            (BLOCK_FLOATS / self.rows().max(1)).clamp(1, positions.max(1))
        } else {
            positions.max(1)
        };
        (0..positions)
            .step_by(span)
            .map(move |start| start..(start + span).min(positions))
    }

    /// Images per block of the weight gradient: also enough for [`MIN_WEIGHT_GRAD_COLS`].
    fn weight_grad_block_images(&self) -> usize {
        let enough = MIN_WEIGHT_GRAD_COLS.div_ceil(self.positions().max(1));
        self.block_images().max(enough).min(self.batch.max(1))
    }
}

/// Writes the im2col matrix `[C·KH·KW, nb·H'·W']` of the `nb` images `x [nb, C, H, W]` into
/// `col`: row `(c, i, j)`, column `(n, oy, ox)` holds `x[n, c, oy·s + i − p, ox·s + j − p]`, or
/// 0 in the padding (every entry is written: `col` is reused scratch).
fn im2col(x: &[f32], g: &Geometry, col: &mut [f32]) {
    let (positions, plane) = (g.positions(), g.height * g.width);
    let images = x.len() / (g.in_channels * plane).max(1);
    let cols = images * positions;
    if g.same_size() {
        return im2col_same_size(x, g, 0..positions, col);
    }
    for (r, row) in col.chunks_exact_mut(cols.max(1)).enumerate() {
        let (c, i, j) = (
            r / (g.kernel_h * g.kernel_w),
            (r / g.kernel_w) % g.kernel_h,
            r % g.kernel_w,
        );
        let valid = g.valid_cols(j);
        for n in 0..images {
            let image = &x[(n * g.in_channels + c) * plane..][..plane];
            let out = &mut row[n * positions..][..positions];
            for (oy, dst) in out.chunks_exact_mut(g.out_w).enumerate() {
                let Some(y) = g.input_row(oy, i) else {
                    dst.fill(0.0);
                    continue;
                };
                let src = &image[y * g.width..][..g.width];
                dst[..valid.start].fill(0.0);
                dst[valid.end..].fill(0.0);
                if g.stride == 1 {
                    let shift = valid.start + j - g.padding;
                    dst[valid.clone()].copy_from_slice(&src[shift..][..valid.len()]);
                } else {
                    for ox in valid.clone() {
                        dst[ox] = src[ox * g.stride + j - g.padding];
                    }
                }
            }
        }
    }
}

/// [`im2col`] of a same-size convolution for the output positions `span` of every image, a
/// whole span per kernel position: output `t` of position `(i, j)` reads input
/// `t + (i − p)·W + (j − p)`. Each input plane is first copied between zero margins, so that
/// rows above and below the image read zeros; the [`Geometry::wrap_masks`] zero the columns
/// that would wrap into the neighbouring row. One vectorised loop per plane and position,
/// with no short copies or fills: those cost a library call each, a quarter of the time of a
/// network on 8×8 images.
fn im2col_same_size(x: &[f32], g: &Geometry, span: std::ops::Range<usize>, col: &mut [f32]) {
    let plane = g.height * g.width;
    let images = x.len() / (g.in_channels * plane).max(1);
    let (len, cols) = (span.len(), images * span.len());
    let (p, w) = (g.padding as isize, g.width as isize);
    let margin = g.padding * (g.width + 1);
    let masks = g.wrap_masks(span.clone());
    let mut padded = vec![0f32; plane + 2 * margin];
    for (q, image) in x.chunks_exact(plane.max(1)).enumerate() {
        let (n, c) = (q / g.in_channels, q % g.in_channels);
        padded[margin..][..plane].copy_from_slice(image);
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                let r = (c * g.kernel_h + i) * g.kernel_w + j;
                let shift = (i as isize - p) * w + (j as isize - p);
                let start = (margin as isize + shift) as usize + span.start;
                let src = &padded[start..][..len];
                let out = &mut col[r * cols + n * len..][..len];
                let mask = &masks[j * len..][..len];
                for ((o, &v), &m) in out.iter_mut().zip(src).zip(mask) {
                    *o = masked(v, m);
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each entry of `dcol [C·KH·KW, nb·H'·W']` into the input
/// position it was copied from, in `dx [nb, C, H, W]` (zeroed by the caller). Used for the
/// convolutions that are not same-size (see [`input_grad`]).
fn col2im(dcol: &[f32], g: &Geometry, dx: &mut [f32]) {
    let (positions, plane) = (g.positions(), g.height * g.width);
    let images = dx.len() / (g.in_channels * plane).max(1);
    let cols = images * positions;
    for (q, image) in dx.chunks_exact_mut(plane.max(1)).enumerate() {
        let (n, c) = (q / g.in_channels, q % g.in_channels);
        for i in 0..g.kernel_h {
            for j in 0..g.kernel_w {
                let r = (c * g.kernel_h + i) * g.kernel_w + j;
                let src = &dcol[r * cols + n * positions..][..positions];
                let valid = g.valid_cols(j);
                if valid.is_empty() {
                    continue;
                }
                for (oy, line) in src.chunks_exact(g.out_w).enumerate() {
                    let Some(y) = g.input_row(oy, i) else {
                        continue;
                    };
                    // Input columns `ox·s + j − p` for `ox` in `valid`: a slice from `first`.
                    let first = valid.start * g.stride + j - g.padding;
                    let dst = image[y * g.width + first..(y + 1) * g.width]
                        .iter_mut()
                        .step_by(g.stride);
                    // A plain zip of slices (stride 1) vectorises.
                    for (d, &v) in dst.zip(&line[valid.clone()]) {
                        *d += v;
                    }
                }
            }
        }
    }
}

/// `t [nb, C, P]` as `[C, nb·P]`: `t` itself for one image, else a copy into `scratch`.
fn channel_major<'a>(
    t: &'a [f32],
    channels: usize,
    positions: usize,
    scratch: &'a mut Vec<f32>,
) -> &'a [f32] {
    let images = t.len() / (channels * positions).max(1);
    if images == 1 {
        return t;
    }
    scratch.resize(t.len(), 0.0);
    for (c, row) in scratch.chunks_exact_mut(images * positions).enumerate() {
        for (n, dst) in row.chunks_exact_mut(positions).enumerate() {
            dst.copy_from_slice(&t[(n * channels + c) * positions..][..positions]);
        }
    }
    scratch
}

/// Reusable buffers of one worker thread.
#[derive(Default)]
struct Scratch {
    col: Vec<f32>,
    product: Vec<f32>,
    gathered: Vec<f32>,
}

thread_local! {
    /// Each thread's [`Scratch`], kept from call to call: fresh buffers (rayon's `*_init`
    /// makes one per task, not per thread) are zeroed as they grow, a pass over the whole
    /// im2col matrix each time.
    static SCRATCH: RefCell<Scratch> = RefCell::default();
}

/// `f` with this thread's [`Scratch`], or with fresh buffers where it is already in use: a
/// thread waiting inside a threaded `gemm` may take on another block of the same op.
fn with_scratch<R>(f: impl FnOnce(&mut Scratch) -> R) -> R {
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => f(&mut scratch),
        Err(_) => f(&mut Scratch::default()),
    })
}

/// Resized `buffer`, `len` long.
fn sized(buffer: &mut Vec<f32>, len: usize) -> &mut [f32] {
    buffer.resize(len, 0.0);
    &mut buffer[..len]
}

/// A matrix operand: element `(r, k)` at `data[r·row_stride + k·col_stride]`.
struct Strided<'a> {
    data: &'a [f32],
    row_stride: usize,
    col_stride: usize,
}

impl<'a> Strided<'a> {
    fn row_major(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }

    /// The transpose of the row-major matrix with `cols` columns in `data`.
    fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self {
            data,
            row_stride: 1,
            col_stride: cols,
        }
    }

    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// Where a product goes: written over memory that need not be initialised, or added to
/// values already there.
enum Dst<'a> {
    Overwrite(&'a mut [MaybeUninit<f32>]),
    Accumulate(&'a mut [f32]),
}

impl<'a> Dst<'a> {
    /// `dst`, accumulated into when `accumulate`, else overwritten.
    fn of(dst: &'a mut [f32], accumulate: bool) -> Self {
        if accumulate {
            Dst::Accumulate(dst)
        } else {
            // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and `gemm` writes only
            // floats through it, so `dst` stays initialised.
            Dst::Overwrite(unsafe { &mut *(dst as *mut [f32] as *mut [MaybeUninit<f32>]) })
        }
    }
}

/// `dst [m, n] (row stride `dst_stride`) = lhs [m, k] · rhs [k, n]`, or `+=` for
/// [`Dst::Accumulate`]. `threaded`: let `gemm` split the product over the current rayon pool
/// (its split never changes the bits).
fn matmul(
    (m, n, k): (usize, usize, usize),
    dst: Dst<'_>,
    dst_stride: usize,
    lhs: Strided<'_>,
    rhs: Strided<'_>,
    threaded: bool,
) {
    let (dst, len, accumulate) = match dst {
        Dst::Overwrite(d) => {
            if k == 0 {
                for row in d.chunks_mut(dst_stride.max(1)).take(m) {
                    row.iter_mut().take(n).for_each(|v| {
                        v.write(0.0);
                    });
                }
            }
            (d.as_mut_ptr().cast::<f32>(), d.len(), false)
        }
        Dst::Accumulate(d) => (d.as_mut_ptr(), d.len(), true),
    };
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    // The bounds `gemm` relies on; a failure here is a bug in this module, not a user error.
    assert!(
        dst_stride >= n && len >= (m - 1) * dst_stride + n && lhs.covers(m, k) && rhs.covers(k, n),
        "cv-kernels matmul operands out of bounds"
    );
    let threads = rayon::current_num_threads();
    let parallelism = if threaded && threads > 1 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: `dst` holds m rows of n elements, `dst_stride` apart, read only when
    // `accumulate` (then initialised: `Dst::Accumulate`); both operands were checked above to
    // lie inside their slices for every (row, col) the product reads.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_stride as isize,
            accumulate,
            lhs.data.as_ptr(),
            lhs.col_stride as isize,
            lhs.row_stride as isize,
            rhs.data.as_ptr(),
            rhs.col_stride as isize,
            rhs.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `y [N, O, H', W']` of `x` and `weight [O, C·KH·KW]`: per block of images, im2col then one
/// GEMM. `y` is written once, by the workers, with no zeroing pass first.
fn forward(x: &[f32], weight: &[f32], g: &Geometry) -> Vec<f32> {
    let per_block = g.block_images();
    let block_len = per_block * g.out_channels * g.positions();
    let len = g.batch * g.out_channels * g.positions();
    let mut y = Vec::with_capacity(len);
    if len == 0 {
        return y;
    }
    y.spare_capacity_mut()[..len]
        .par_chunks_mut(block_len)
        .enumerate()
        .for_each(|(block, y)| {
            let x = &x[block * per_block * g.in_channels * g.height * g.width..];
            with_scratch(|scratch| forward_block(x, weight, g, scratch, y));
        });
    // SAFETY: the blocks cover `y[..len]`, and each block wrote all of its floats (see
    // [`forward_block`]).
    unsafe { y.set_len(len) };
    y
}

/// One block of [`forward`]: the outputs `y` of the images at the start of `x`, every float
/// written (through `gemm` for one image, whose spans cover its positions in all `O`
/// channels; else plane by plane from the product).
fn forward_block(
    x: &[f32],
    weight: &[f32],
    g: &Geometry,
    scratch: &mut Scratch,
    y: &mut [MaybeUninit<f32>],
) {
    let (rows, positions, o) = (g.rows(), g.positions(), g.out_channels);
    let images = y.len() / (o * positions);
    let x = &x[..images * g.in_channels * g.height * g.width];
    let threaded = g.batch.div_ceil(g.block_images()) < rayon::current_num_threads();
    let weight = || Strided::row_major(weight, rows);
    if images == 1 {
        // GEMMs write straight into `y`, span by span of the image's positions.
        for span in g.position_spans() {
            let cols = span.len();
            let col = sized(&mut scratch.col, rows * cols);
            if span.len() == positions {
                im2col(x, g, col);
            } else {
                im2col_same_size(x, g, span.clone(), col);
            }
            let dst = Dst::Overwrite(&mut y[span.start..]);
            let col = Strided::row_major(col, cols);
            matmul((o, cols, rows), dst, positions, weight(), col, threaded);
        }
        return;
    }
    let cols = images * positions;
    let col = sized(&mut scratch.col, rows * cols);
    im2col(x, g, col);
    let product = sized(&mut scratch.product, o * cols);
    let dst = Dst::of(product, false);
    matmul(
        (o, cols, rows),
        dst,
        cols,
        weight(),
        Strided::row_major(col, cols),
        threaded,
    );
    for (n, y) in y.chunks_exact_mut(o * positions).enumerate() {
        for (c, y) in y.chunks_exact_mut(positions).enumerate() {
            let product = &product[c * cols + n * positions..][..positions];
            for (y, &v) in y.iter_mut().zip(product) {
                y.write(v);
            }
        }
    }
}

/// `dL/dx [N, C, H, W]` from `dL/dy` and the weight.
///
/// A same-size convolution's input gradient is itself a same-size convolution of `dL/dy`,
/// with the weight's channels swapped and its kernel flipped: one GEMM that sums over
/// `O·KH·KW` values into the small `dx`, where `weightᵀ · dy` sums over only `O` into a
/// matrix `KH·KW` times larger that `col2im` must then fold (the bulk of a backward pass on
/// 16- and 32-channel layers). Other convolutions take that route, per block of images.
fn input_grad(grad: &[f32], weight: &[f32], g: &Geometry) -> Vec<f32> {
    if g.same_size() {
        let transposed = Geometry {
            in_channels: g.out_channels,
            out_channels: g.in_channels,
            ..*g
        };
        return forward(grad, &flipped_transpose(weight, g), &transposed);
    }
    col2im_input_grad(grad, weight, g)
}

/// `weight [O, C, KH, KW]` as `[C, O, KH, KW]`, each kernel turned by 180°: the weight of
/// the transposed convolution.
fn flipped_transpose(weight: &[f32], g: &Geometry) -> Vec<f32> {
    let (o, c, taps) = (g.out_channels, g.in_channels, g.kernel_h * g.kernel_w);
    let mut out = Vec::with_capacity(weight.len());
    for ci in 0..c {
        for oi in 0..o {
            let kernel = &weight[(oi * c + ci) * taps..][..taps];
            out.extend(kernel.iter().rev());
        }
    }
    out
}

/// [`input_grad`] per block of images: `col2im(weightᵀ · dy)`.
fn col2im_input_grad(grad: &[f32], weight: &[f32], g: &Geometry) -> Vec<f32> {
    let (rows, positions, o) = (g.rows(), g.positions(), g.out_channels);
    let per_block = g.block_images();
    let image_in = g.in_channels * g.height * g.width;
    let mut dx = par_zeros(g.batch * image_in);
    let threaded = g.batch.div_ceil(per_block) < rayon::current_num_threads();
    if dx.is_empty() {
        return dx;
    }
    dx.par_chunks_mut(per_block * image_in)
        .enumerate()
        .for_each(|(block, dx)| {
            with_scratch(|scratch| {
                let images = dx.len() / image_in;
                let cols = images * positions;
                let grad = &grad[block * per_block * o * positions..][..images * o * positions];
                let grad = channel_major(grad, o, positions, &mut scratch.gathered);
                let dcol = sized(&mut scratch.col, rows * cols);
                let (lhs, rhs) = (
                    Strided::transposed(weight, rows),
                    Strided::row_major(grad, cols),
                );
                matmul(
                    (rows, cols, o),
                    Dst::of(dcol, false),
                    cols,
                    lhs,
                    rhs,
                    threaded,
                );
                col2im(dcol, g, dx);
            })
        });
    dx
}

/// `dL/dweight [O, C·KH·KW]` from `x` and `dL/dy`: `Σ dy · im2col(x)ᵀ` over blocks, dealt
/// round-robin to at most [`MAX_PARTIALS`] partial sums added in a fixed order (each in the
/// orientation [`TRANSPOSED_WEIGHT_GRAD_MAX`] picks for the shape).
fn weight_grad(x: &[f32], grad: &[f32], g: &Geometry) -> Vec<f32> {
    let (rows, positions, o) = (g.rows(), g.positions(), g.out_channels);
    let per_block = g.weight_grad_block_images();
    let image_in = g.in_channels * g.height * g.width;
    let blocks = g.batch.div_ceil(per_block);
    let partials = blocks.min(MAX_PARTIALS);
    let threaded = partials < rayon::current_num_threads();
    let transposed = o * rows <= TRANSPOSED_WEIGHT_GRAD_MAX;
    let sums: Vec<Vec<f32>> = (0..partials)
        .into_par_iter()
        .map(|first| {
            with_scratch(|scratch| {
                let mut sum = vec![0f32; o * rows];
                for block in (first..blocks).step_by(partials) {
                    let start = block * per_block;
                    let images = per_block.min(g.batch - start);
                    let cols = images * positions;
                    let col = sized(&mut scratch.col, rows * cols);
                    im2col(&x[start * image_in..][..images * image_in], g, col);
                    let grad = &grad[start * o * positions..][..images * o * positions];
                    let grad = channel_major(grad, o, positions, &mut scratch.gathered);
                    let dst = Dst::of(&mut sum, block != first);
                    if transposed {
                        // dWᵀ [K, O] = col · dyᵀ
                        let (col, dy) = (
                            Strided::row_major(col, cols),
                            Strided::transposed(grad, cols),
                        );
                        matmul((rows, o, cols), dst, o, col, dy, threaded);
                    } else {
                        // dW [O, K] = dy · colᵀ, straight into the weight's layout.
                        let (dy, col) = (
                            Strided::row_major(grad, cols),
                            Strided::transposed(col, cols),
                        );
                        matmul((o, rows, cols), dst, rows, dy, col, threaded);
                    }
                }
                sum
            })
        })
        .collect();
    let mut sums = sums.into_iter();
    let mut dw = sums.next().unwrap_or_else(|| vec![0f32; o * rows]);
    for partial in sums {
        for (total, value) in dw.iter_mut().zip(partial) {
            *total += value;
        }
    }
    if transposed {
        transpose(&dw, rows, o)
    } else {
        dw
    }
}

/// The transpose `[cols, rows]` of the row-major `t [rows, cols]`, in cache-sized tiles.
fn transpose(t: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    const TILE: usize = 32;
    let mut out = vec![0f32; t.len()];
    for r0 in (0..rows).step_by(TILE) {
        for c0 in (0..cols).step_by(TILE) {
            for r in r0..(r0 + TILE).min(rows) {
                for c in c0..(c0 + TILE).min(cols) {
                    out[c * rows + r] = t[r * cols + c];
                }
            }
        }
    }
    out
}

fn dims4(layout: &Layout, what: &str) -> Result<[usize; 4]> {
    layout.dims().try_into().map_err(|_| {
        Error::Msg(format!(
            "cv-kernels conv2d: the {what} must have 4 dimensions, got shape {:?}",
            layout.dims()
        ))
    })
}

/// The convolution; its backward applies [`InputGrad`] and [`WeightGrad`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Conv2d {
    pub(crate) padding: usize,
    pub(crate) stride: usize,
}

impl Conv2d {
    /// The output `[N, O, H', W']` of the input `(s1, l1)` and the weight `(s2, l2)`.
    pub(crate) fn values(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(Vec<f32>, Shape)> {
        let [out_channels, in_channels, kernel_h, kernel_w] = dims4(l2, "weight")?;
        let input = dims4(l1, "input")?;
        if input[1] != in_channels {
            return Err(Error::Msg(format!(
                "cv-kernels conv2d: the input has {} channels, the weight expects {in_channels}",
                input[1]
            )));
        }
        let g = Geometry::new(input, out_channels, (kernel_h, kernel_w), *self)?;
        let (x, weight) = (
            contiguous_f32(s1, l1, "conv2d", "input")?,
            contiguous_f32(s2, l2, "conv2d", "weight")?,
        );
        Ok((
            forward(x, weight, &g),
            Shape::from(g.output_dims().to_vec()),
        ))
    }

    /// The gradients of the input `x` and the weight from the output's `grad`, each only where
    /// it is tracked: a network's input needs none, which skips the largest product of its
    /// first layer.
    pub(crate) fn gradients(
        &self,
        x: &Tensor,
        weight: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let dx = if x.track_op() {
            let op = InputGrad {
                conv: *self,
                height: x.dim(2)?,
                width: x.dim(3)?,
            };
            Some(grad.apply_op2_no_bwd(weight, &op)?)
        } else {
            None
        };
        let dw = if weight.track_op() {
            let op = WeightGrad {
                conv: *self,
                kernel: (weight.dim(2)?, weight.dim(3)?),
            };
            Some(x.apply_op2_no_bwd(&grad, &op)?)
        } else {
            None
        };
        Ok((dx, dw))
    }
}

impl CustomOp2 for Conv2d {
    fn name(&self) -> &'static str {
        "cv-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (y, shape) = self.values(s1, l1, s2, l2)?;
        Ok((CpuStorage::F32(y), shape))
    }

    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _output: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        self.gradients(x, weight, grad)
    }
}

/// Checks that `grad` has the shape the convolution of geometry `g` outputs.
fn check_grad(grad: [usize; 4], g: &Geometry) -> Result<()> {
    if grad == g.output_dims() {
        Ok(())
    } else {
        Err(Error::Msg(format!(
            "cv-kernels conv2d: the output gradient has shape {grad:?}, expected {:?}",
            g.output_dims()
        )))
    }
}

/// `dL/dx` from `(dL/dy, weight)`: `col2im(weightᵀ · dy)`.
struct InputGrad {
    conv: Conv2d,
    height: usize,
    width: usize,
}

impl CustomOp2 for InputGrad {
    fn name(&self) -> &'static str {
        "cv-conv2d-input-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let grad_dims = dims4(l1, "output gradient")?;
        let [out_channels, in_channels, kernel_h, kernel_w] = dims4(l2, "weight")?;
        let input = [grad_dims[0], in_channels, self.height, self.width];
        let g = Geometry::new(input, out_channels, (kernel_h, kernel_w), self.conv)?;
        check_grad(grad_dims, &g)?;
        let (grad, weight) = (
            contiguous_f32(s1, l1, "conv2d", "output gradient")?,
            contiguous_f32(s2, l2, "conv2d", "weight")?,
        );
        let dx = input_grad(grad, weight, &g);
        Ok((CpuStorage::F32(dx), Shape::from(input.to_vec())))
    }
}

/// `dL/dweight` from `(x, dL/dy)`: `dy · im2col(x)ᵀ`.
struct WeightGrad {
    conv: Conv2d,
    kernel: (usize, usize),
}

impl CustomOp2 for WeightGrad {
    fn name(&self) -> &'static str {
        "cv-conv2d-weight-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let input = dims4(l1, "input")?;
        let grad_dims = dims4(l2, "output gradient")?;
        let out_channels = grad_dims[1];
        let g = Geometry::new(input, out_channels, self.kernel, self.conv)?;
        check_grad(grad_dims, &g)?;
        let (x, grad) = (
            contiguous_f32(s1, l1, "conv2d", "input")?,
            contiguous_f32(s2, l2, "conv2d", "output gradient")?,
        );
        let dw = weight_grad(x, grad, &g);
        let (kernel_h, kernel_w) = self.kernel;
        let shape = Shape::from((out_channels, g.in_channels, kernel_h, kernel_w));
        Ok((CpuStorage::F32(dw), shape))
    }
}
