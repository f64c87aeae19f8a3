//! `cv_kernels::conv2d` against candle's own convolution and a direct float64 convolution:
//! values and both gradients over many shapes (1×1, 3×3, 5×5, 7×7 kernels, strides 1–3,
//! padding 0–3, batch 1), and the same bits with any number of threads.
//!
//! candle's own backward fails with a shape error where a strided convolution leaves input rows
//! or columns unread (`(H + 2p − k) % s != 0`); there the float64 loops are the only reference.

use candle_core::{Device, Result, Tensor, Var};
use cv_seed::{Draw, SeedTree};

/// `(batch, in_channels, height, width, out_channels, kernel, stride, padding)`.
type Case = (usize, usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (1, 1, 1, 1, 1, 1, 1, 0),
    (1, 3, 7, 7, 4, 3, 1, 1),
    (2, 3, 9, 8, 5, 3, 2, 1),
    (2, 4, 10, 10, 6, 1, 1, 0),
    (2, 4, 10, 10, 6, 1, 2, 0),
    (1, 3, 17, 15, 8, 7, 2, 3),
    (3, 5, 6, 6, 4, 3, 1, 0),
    (2, 2, 5, 5, 3, 5, 1, 2),
    (2, 3, 8, 8, 4, 3, 3, 1),
    (2, 16, 8, 8, 32, 3, 2, 1),
    (4, 8, 4, 4, 8, 3, 1, 1),
    (1, 2, 3, 3, 2, 7, 1, 3),
    (2, 3, 12, 9, 5, 7, 3, 2),
    // Same-size convolutions whose one-image im2col matrix (rows × positions, and for the
    // input gradient out_channels × k² × positions) exceeds the kernels' block: split into
    // spans of positions that end inside a row.
    (1, 8, 40, 36, 8, 3, 1, 1),
    (2, 4, 30, 30, 6, 5, 1, 2),
    // Wide channels on 2×2 images: blocks grow past the block size to reach enough columns.
    (20, 128, 2, 2, 8, 3, 1, 1),
];

fn normal(seed: &str, dims: &[usize]) -> Result<Tensor> {
    let mut rng = SeedTree::new(7).path(seed).rng();
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(values, dims, &Device::Cpu)
}

/// The random `x`, `weight` and output weights `r` of a case.
fn inputs(case: Case) -> Result<[Tensor; 3]> {
    let (n, c, h, w, o, k, stride, padding) = case;
    let tag = format!("{case:?}");
    let out = |side: usize| (side + 2 * padding - k) / stride + 1;
    Ok([
        normal(&format!("x{tag}"), &[n, c, h, w])?,
        normal(&format!("w{tag}"), &[o, c, k, k])?,
        normal(&format!("r{tag}"), &[n, o, out(h), out(w)])?,
    ])
}

/// Output, input gradient and weight gradient of `sum(conv(x, w) · r)` for a fixed random `r`.
fn run(
    case: Case,
    conv: impl Fn(&Tensor, &Tensor, usize, usize) -> Result<Tensor>,
) -> Result<[Vec<f32>; 3]> {
    let (.., stride, padding) = case;
    let [x, weight, r] = inputs(case)?;
    let (x, weight) = (Var::from_tensor(&x)?, Var::from_tensor(&weight)?);
    let y = conv(x.as_tensor(), weight.as_tensor(), padding, stride)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let dx = grads
        .get(&x)
        .ok_or(candle_core::Error::Msg("no dx".into()))?;
    let dw = grads
        .get(&weight)
        .ok_or(candle_core::Error::Msg("no dw".into()))?;
    Ok([y, dx.clone(), dw.clone()].map(|t| t.flatten_all().and_then(|t| t.to_vec1()).unwrap()))
}

/// The same three results by direct loops in float64.
fn direct(case: Case) -> Result<[Vec<f32>; 3]> {
    let (n, c, h, w, o, k, s, p) = case;
    let [x, weight, r] = inputs(case)?;
    let [x, weight, r] = [x, weight, r].map(|t| t.flatten_all().and_then(|t| t.to_vec1::<f32>()));
    let (x, weight, r) = (x?, weight?, r?);
    let (oh, ow) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut y = vec![0f64; n * o * oh * ow];
    let mut dx = vec![0f64; x.len()];
    let mut dw = vec![0f64; weight.len()];
    for (b, oc, oy, ox, ci, i, j) in (0..n).flat_map(|b| {
        (0..o).flat_map(move |oc| {
            (0..oh).flat_map(move |oy| {
                (0..ow).flat_map(move |ox| {
                    (0..c).flat_map(move |ci| {
                        (0..k).flat_map(move |i| (0..k).map(move |j| (b, oc, oy, ox, ci, i, j)))
                    })
                })
            })
        })
    }) {
        let (iy, ix) = (
            (oy * s + i) as isize - p as isize,
            (ox * s + j) as isize - p as isize,
        );
        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
            continue;
        }
        let xi = ((b * c + ci) * h + iy as usize) * w + ix as usize;
        let wi = ((oc * c + ci) * k + i) * k + j;
        let yi = ((b * o + oc) * oh + oy) * ow + ox;
        y[yi] += x[xi] as f64 * weight[wi] as f64;
        dx[xi] += r[yi] as f64 * weight[wi] as f64;
        dw[wi] += r[yi] as f64 * x[xi] as f64;
    }
    Ok([y, dx, dw].map(|v| v.into_iter().map(|e| e as f32).collect()))
}

fn candle_conv(x: &Tensor, w: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    x.conv2d(w, padding, stride, 1, 1)
}

/// Largest difference relative to the reference's largest magnitude.
fn relative_error(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    let scale = reference.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    ours.iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
        / scale
}

fn assert_close(ours: &[Vec<f32>; 3], reference: &[Vec<f32>; 3], name: &str, case: Case) {
    for (what, (a, b)) in ["output", "input grad", "weight grad"]
        .iter()
        .zip(ours.iter().zip(reference))
    {
        let error = relative_error(a, b);
        assert!(
            error < 2e-6,
            "{what} of {case:?} vs {name}: relative error {error}"
        );
    }
}

/// Compares with the float64 loops, and with candle where candle's backward works; returns
/// whether it did.
fn check(case: Case) -> Result<bool> {
    let ours = run(case, cv_kernels::conv2d)?;
    assert_close(&ours, &direct(case)?, "float64 loops", case);
    let (_, _, h, w, _, k, stride, padding) = case;
    let candle_works = (h + 2 * padding - k) % stride == 0 && (w + 2 * padding - k) % stride == 0;
    if candle_works {
        assert_close(&ours, &run(case, candle_conv)?, "candle", case);
    }
    Ok(candle_works)
}

#[test]
fn matches_candle_on_fixed_shapes() -> Result<()> {
    let mut against_candle = 0;
    for &case in CASES {
        against_candle += usize::from(check(case)?);
    }
    assert!(
        against_candle >= 9,
        "only {against_candle} cases checked against candle"
    );
    Ok(())
}

#[test]
fn matches_candle_on_random_shapes() -> Result<()> {
    let mut rng = SeedTree::new(11).path("shapes").rng();
    let mut against_candle = 0;
    for _ in 0..60 {
        let k = [1usize, 3, 5, 7][rng.below(4) as usize];
        let padding = rng.below(k as u64 / 2 + 2) as usize;
        let stride = 1 + rng.below(3) as usize;
        let min_side = k.saturating_sub(2 * padding).max(1);
        let h = min_side + rng.below(9) as usize;
        let w = min_side + rng.below(9) as usize;
        let case = (
            1 + rng.below(3) as usize,
            1 + rng.below(6) as usize,
            h,
            w,
            1 + rng.below(9) as usize,
            k,
            stride,
            padding,
        );
        against_candle += usize::from(check(case)?);
    }
    assert!(
        against_candle >= 20,
        "only {against_candle} cases checked against candle"
    );
    Ok(())
}

#[test]
fn same_bits_with_any_thread_count() -> Result<()> {
    // Many small blocks of images; and one image per block, split into spans of positions.
    for case in [(8, 16, 12, 12, 24, 3, 1, 1), (2, 8, 40, 36, 8, 3, 1, 1)] {
        let in_pool = |threads: usize| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| run(case, cv_kernels::conv2d))
        };
        let one = in_pool(1)?;
        for threads in [2, 3, 4] {
            let many = in_pool(threads)?;
            for (a, b) in one.iter().zip(&many) {
                let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
                assert!(same, "{threads} threads changed the bits of {case:?}");
            }
        }
    }
    Ok(())
}

#[test]
fn no_input_gradient_for_a_plain_input() -> Result<()> {
    let x = normal("plain-x", &[2, 3, 6, 6])?;
    let weight = Var::from_tensor(&normal("plain-w", &[4, 3, 3, 3])?)?;
    let y = cv_kernels::conv2d(&x, weight.as_tensor(), 1, 1)?;
    let grads = y.sum_all()?.backward()?;
    assert!(grads.get(&x).is_none());
    let reference = candle_conv(&x, weight.as_tensor(), 1, 1)?
        .sum_all()?
        .backward()?;
    let (ours, theirs) = (
        grads
            .get(&weight)
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?,
        reference
            .get(&weight)
            .unwrap()
            .flatten_all()?
            .to_vec1::<f32>()?,
    );
    assert!(relative_error(&ours, &theirs) < 2e-6);
    Ok(())
}

#[test]
fn refuses_mismatched_channels_and_oversized_kernels() -> Result<()> {
    let x = normal("bad-x", &[1, 3, 4, 4])?;
    let error = cv_kernels::conv2d(&x, &normal("bad-w", &[2, 4, 3, 3])?, 0, 1).unwrap_err();
    assert!(error.to_string().contains("3 channels"), "{error}");
    let error = cv_kernels::conv2d(&x, &normal("big-w", &[2, 3, 7, 7])?, 1, 1).unwrap_err();
    assert!(error.to_string().contains("does not fit"), "{error}");
    Ok(())
}
