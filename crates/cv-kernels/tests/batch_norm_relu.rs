//! `cv_kernels::batch_norm_train` and `cv_kernels::relu` against the same computations made of
//! candle's own ops (values, statistics and every gradient; BatchNorm's reference in float64),
//! over several shapes, and the same bits with any number of threads; the fused
//! `batch_norm_relu_train` and `add_relu` against the unfused kernels, bit for bit; eval mode
//! (`batch_norm_eval`) against candle's ops, its values bit for bit.

use candle_core::{DType, Device, Result, Tensor, Var, D};
use cv_seed::{Draw, SeedTree};

const EPS: f64 = 1e-5;

fn normal(seed: &str, dims: &[usize], scale: f64, shift: f64) -> Result<Tensor> {
    let mut rng = SeedTree::new(5).path(seed).rng();
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| (rng.normal() * scale + shift) as f32)
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1()).unwrap()
}

/// Train-mode BatchNorm made of candle ops, as `candle_nn::BatchNorm` computes it.
fn candle_batch_norm(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let channels = x.dim(1)?;
    let per_channel = |t: &Tensor| t.reshape((1, channels, 1, 1));
    let moved = x.transpose(0, 1)?.flatten_from(1)?; // [C, N·H·W]
    let mean = moved.mean_keepdim(D::Minus1)?;
    let centred = moved.broadcast_sub(&mean)?;
    let variance = centred.sqr()?.mean_keepdim(D::Minus1)?;
    let normalised = x
        .broadcast_sub(&per_channel(&mean)?)?
        .broadcast_div(&per_channel(&(variance + EPS)?.sqrt()?)?)?;
    normalised
        .broadcast_mul(&per_channel(weight)?)?
        .broadcast_add(&per_channel(bias)?)
}

/// `y`, `dx`, `dweight`, `dbias` of `sum(bn(x) · r)`.
fn run_batch_norm(
    dims: [usize; 4],
    bn: impl Fn(&Tensor, &Tensor, &Tensor) -> Result<Tensor>,
) -> Result<[Vec<f32>; 4]> {
    let tag = format!("{dims:?}");
    let x = Var::from_tensor(&normal(&format!("x{tag}"), &dims, 3.0, 1.5)?)?;
    let weight = Var::from_tensor(&normal(&format!("w{tag}"), &[dims[1]], 0.5, 1.0)?)?;
    let bias = Var::from_tensor(&normal(&format!("b{tag}"), &[dims[1]], 0.5, 0.0)?)?;
    let r = normal(&format!("r{tag}"), &dims, 1.0, 0.0)?;
    let y = bn(x.as_tensor(), weight.as_tensor(), bias.as_tensor())?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let grad = |v: &Var| to_vec(grads.get(v).expect("a gradient"));
    Ok([to_vec(&y), grad(&x), grad(&weight), grad(&bias)])
}

/// [`candle_batch_norm`] on the same inputs in float64: the reference the kernel's float32
/// result is held to. (candle's float32 ops are no reference where the input gradient is all
/// cancellation, e.g. a channel of two values, whose gradient is nearly zero.)
fn reference(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let f64 = |t: &Tensor| t.to_dtype(DType::F64);
    candle_batch_norm(&f64(x)?, &f64(weight)?, &f64(bias)?)?.to_dtype(DType::F32)
}

fn ours(x: &Tensor, weight: &Tensor, bias: &Tensor) -> Result<Tensor> {
    Ok(cv_kernels::batch_norm_train(x, weight, bias, EPS)?.0)
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

const SHAPES: &[[usize; 4]] = &[
    [1, 1, 2, 1],
    [2, 3, 4, 4],
    [1, 8, 7, 5],
    [32, 16, 8, 8],
    [4, 64, 2, 2],
    [16, 5, 1, 1],
];

#[test]
fn batch_norm_matches_candle_ops() -> Result<()> {
    for &dims in SHAPES {
        let (a, b) = (
            run_batch_norm(dims, ours)?,
            run_batch_norm(dims, reference)?,
        );
        for (what, (a, b)) in ["output", "input grad", "weight grad", "bias grad"]
            .iter()
            .zip(a.iter().zip(&b))
        {
            let error = if *what == "input grad" {
                absolute_error(a, b) / input_grad_scale(dims)?
            } else {
                relative_error(a, b)
            };
            assert!(error < 2e-5, "{what} of {dims:?}: relative error {error}");
        }
    }
    Ok(())
}

/// Largest difference.
fn absolute_error(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len());
    ours.iter()
        .zip(reference)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()))
}

/// The size of the terms that the input gradient `weight·inv_std·(dy − mean(dy) − x̂·mean(dy·x̂))`
/// is a difference of: `max |weight_c · inv_std_c| · max |dy|`. The gradient itself can be far
/// smaller (for a channel of two values it is nearly zero: all cancellation), so float32 is held
/// to this scale, not to the gradient's own.
fn input_grad_scale(dims: [usize; 4]) -> Result<f32> {
    let tag = format!("{dims:?}");
    let x = normal(&format!("x{tag}"), &dims, 3.0, 1.5)?;
    let weight = to_vec(&normal(&format!("w{tag}"), &[dims[1]], 0.5, 1.0)?);
    let dy = to_vec(&normal(&format!("r{tag}"), &dims, 1.0, 0.0)?);
    let moved = x.transpose(0, 1)?.flatten_from(1)?.to_dtype(DType::F64)?; // [C, N·H·W]
    let variance = moved
        .broadcast_sub(&moved.mean_keepdim(D::Minus1)?)?
        .sqr()?
        .mean(D::Minus1)?
        .to_vec1::<f64>()?;
    let scale = weight
        .iter()
        .zip(&variance)
        .fold(0f64, |m, (&w, &v)| m.max(w.abs() as f64 / (v + EPS).sqrt()));
    let dy_max = dy.iter().fold(0f32, |m, v| m.max(v.abs()));
    Ok((scale * dy_max as f64) as f32)
}

#[test]
fn batch_norm_statistics_are_the_batch_mean_and_biased_variance() -> Result<()> {
    let dims = [3, 4, 5, 6];
    let x = normal("stats", &dims, 2.0, -1.0)?;
    let ones = Tensor::ones(4, DType::F32, &Device::Cpu)?;
    let (_, stats) = cv_kernels::batch_norm_train(&x, &ones, &ones.zeros_like()?, EPS)?;
    assert_eq!(stats.count, 3 * 5 * 6);
    let values = to_vec(&x);
    for c in 0..4 {
        let channel: Vec<f64> = (0..3)
            .flat_map(|n| values[(n * 4 + c) * 30..][..30].iter().map(|&v| v as f64))
            .collect();
        let mean = channel.iter().sum::<f64>() / 90.0;
        let variance = channel.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 90.0;
        assert!(
            (stats.mean[c] as f64 - mean).abs() < 1e-6,
            "mean of channel {c}"
        );
        assert!(
            (stats.variance[c] as f64 - variance).abs() < 1e-5 * variance,
            "variance of channel {c}"
        );
    }
    Ok(())
}

#[test]
fn relu_matches_candle_where_the_input_is_not_zero() -> Result<()> {
    let x = Var::from_tensor(&normal("relu", &[3, 4, 9, 9], 1.0, 0.0)?)?;
    let r = normal("relu-r", &[3, 4, 9, 9], 1.0, 0.0)?;
    let run = |relu: &dyn Fn(&Tensor) -> Result<Tensor>| -> Result<[Vec<f32>; 2]> {
        let y = relu(x.as_tensor())?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        Ok([to_vec(&y), to_vec(grads.get(&x).expect("a gradient"))])
    };
    // Exact: both are a comparison and a copy.
    assert_eq!(run(&cv_kernels::relu)?, run(&|x| x.relu())?);
    // At 0, the gradient stops (PyTorch's convention), where candle's passes it.
    let zero = Var::from_tensor(&Tensor::new(&[0f32, 1.], &Device::Cpu)?)?;
    let grads = cv_kernels::relu(zero.as_tensor())?.sum_all()?.backward()?;
    assert_eq!(to_vec(grads.get(&zero).expect("a gradient")), [0., 1.]);
    Ok(())
}

#[test]
fn fused_batch_norm_relu_is_relu_of_batch_norm_bit_for_bit() -> Result<()> {
    let (mut clipped, mut total) = (0, 0);
    for &dims in SHAPES {
        let fused = run_batch_norm(dims, |x, w, b| {
            Ok(cv_kernels::batch_norm_relu_train(x, w, b, EPS)?.0)
        })?;
        let unfused = run_batch_norm(dims, |x, w, b| cv_kernels::relu(&ours(x, w, b)?))?;
        clipped += fused[0].iter().filter(|&&v| v == 0.0).count();
        total += fused[0].len();
        for (what, (a, b)) in ["y", "dx", "dweight", "dbias"]
            .iter()
            .zip(fused.iter().zip(&unfused))
        {
            let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{dims:?}: {what} differs from the unfused kernels");
        }
    }
    // Many outputs clipped, many not: the mask is exercised in every gradient.
    assert!(
        clipped > total / 5 && clipped < total * 4 / 5,
        "{clipped} of {total} clipped"
    );
    Ok(())
}

#[test]
fn add_relu_is_relu_of_the_sum_bit_for_bit() -> Result<()> {
    let dims = [3, 4, 9, 9];
    let a = Var::from_tensor(&normal("add-a", &dims, 1.0, 0.0)?)?;
    let b = Var::from_tensor(&normal("add-b", &dims, 1.0, 0.0)?)?;
    let r = normal("add-r", &dims, 1.0, 0.0)?;
    let run = |f: &dyn Fn(&Tensor, &Tensor) -> Result<Tensor>| -> Result<[Vec<f32>; 3]> {
        let y = f(a.as_tensor(), b.as_tensor())?;
        let grads = (&y * &r)?.sum_all()?.backward()?;
        let grad = |v: &Var| to_vec(grads.get(v).expect("a gradient"));
        Ok([to_vec(&y), grad(&a), grad(&b)])
    };
    let fused = run(&cv_kernels::add_relu)?;
    assert_eq!(fused, run(&|a, b| cv_kernels::relu(&(a + b)?))?);
    assert!(fused[1].contains(&0.0) && fused[1].iter().any(|&g| g != 0.0));
    let other = normal("add-c", &[3, 4, 9, 8], 1.0, 0.0)?;
    let error = cv_kernels::add_relu(a.as_tensor(), &other).unwrap_err();
    assert!(
        error.to_string().contains("expected [3, 4, 9, 9]"),
        "{error}"
    );
    Ok(())
}

/// Eval-mode BatchNorm made of candle ops, as `candle_nn::BatchNorm::forward_t(x, false)`.
fn candle_batch_norm_eval(x: &Tensor, stats: &[Tensor; 4]) -> Result<Tensor> {
    let [weight, bias, mean, var] = stats;
    let per_channel = |t: &Tensor| t.reshape((1, x.dim(1)?, 1, 1));
    x.broadcast_sub(&per_channel(mean)?)?
        .broadcast_div(&per_channel(&(var + EPS)?.sqrt()?)?)?
        .broadcast_mul(&per_channel(weight)?)?
        .broadcast_add(&per_channel(bias)?)
}

/// An eval-mode BatchNorm of `(x, weight, bias, [running mean, running variance])`.
type EvalBatchNorm<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor, &[Tensor; 2]) -> Result<Tensor>;

#[test]
fn eval_batch_norm_matches_candle_ops() -> Result<()> {
    for &dims in SHAPES {
        let c = dims[1];
        let stats = |bn: EvalBatchNorm| {
            let tag = format!("eval{dims:?}");
            let running = [
                normal(&format!("m{tag}"), &[c], 1.0, 0.5)?,
                normal(&format!("v{tag}"), &[c], 0.3, 1.0)?.abs()?,
            ];
            run_batch_norm(dims, |x, w, b| bn(x, w, b, &running))
        };
        let ours =
            stats(&|x, w, b, [m, v]| cv_kernels::batch_norm_eval(x, w, b, m, v, EPS, false))?;
        let candle = stats(&|x, w, b, [m, v]| {
            candle_batch_norm_eval(x, &[w.clone(), b.clone(), m.clone(), v.clone()])
        })?;
        assert_eq!(ours[0], candle[0], "{dims:?}: values");
        for (what, (a, b)) in ["dx", "dweight", "dbias"]
            .iter()
            .zip(ours[1..].iter().zip(&candle[1..]))
        {
            let error = relative_error(a, b);
            assert!(error < 1e-5, "{dims:?}: {what} off by {error}");
        }
        let fused =
            stats(&|x, w, b, [m, v]| cv_kernels::batch_norm_eval(x, w, b, m, v, EPS, true))?;
        let unfused = stats(&|x, w, b, [m, v]| {
            cv_kernels::relu(&cv_kernels::batch_norm_eval(x, w, b, m, v, EPS, false)?)
        })?;
        assert_eq!(fused, unfused, "{dims:?}: fused ReLU");
    }
    Ok(())
}

#[test]
fn same_bits_with_any_thread_count() -> Result<()> {
    let dims = [16, 24, 10, 10];
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_batch_norm(dims, |x, w, b| ours(&cv_kernels::relu(x)?, w, b)))
    };
    let one = in_pool(1)?;
    for threads in [2, 3, 5] {
        let many = in_pool(threads)?;
        for (a, b) in one.iter().zip(&many) {
            let same = a.iter().zip(b).all(|(p, q)| p.to_bits() == q.to_bits());
            assert!(same, "{threads} threads changed the bits");
        }
    }
    Ok(())
}

#[test]
fn batch_norm_refuses_mismatched_parameters() -> Result<()> {
    let x = normal("bad", &[2, 3, 2, 2], 1.0, 0.0)?;
    let four = Tensor::ones(4, DType::F32, &Device::Cpu)?;
    let error = cv_kernels::batch_norm_train(&x, &four, &four, EPS).unwrap_err();
    assert!(error.to_string().contains("expected [3]"), "{error}");
    let flat = normal("flat", &[2, 3, 4], 1.0, 0.0)?;
    let three = Tensor::ones(3, DType::F32, &Device::Cpu)?;
    let error = cv_kernels::batch_norm_train(&flat, &three, &three, EPS).unwrap_err();
    assert!(error.to_string().contains("[N, C, H, W]"), "{error}");
    Ok(())
}
