//! The fused `cv_kernels::conv2d_batch_norm_train` (and `_relu_train`) against `conv2d` then
//! `batch_norm_train` (`batch_norm_relu_train`): the same values, statistics and gradients of
//! the input, the convolution's weight and the BatchNorm's weight and bias, over several
//! shapes; and no input gradient where the input is no variable (a network's first layer).

use candle_core::{Device, Result, Tensor, Var};
use cv_kernels::BatchStats;
use cv_seed::{Draw, SeedTree};

const EPS: f64 = 1e-5;

/// `(batch, in_channels, size, out_channels, kernel, stride, padding)`.
type Case = (usize, usize, usize, usize, usize, usize, usize);

const CASES: &[Case] = &[
    (2, 3, 6, 4, 3, 1, 1),
    (3, 4, 7, 5, 3, 2, 1),
    (2, 8, 4, 8, 1, 1, 0),
    (4, 2, 9, 3, 5, 1, 2),
    (2, 6, 8, 6, 1, 2, 0),
];

fn normal(seed: &str, dims: &[usize], scale: f64, shift: f64) -> Result<Tensor> {
    let mut rng = SeedTree::new(9).path(seed).rng();
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| (rng.normal() * scale + shift) as f32)
        .collect();
    Tensor::from_vec(values, dims, &Device::Cpu)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1()).unwrap()
}

type Layer<'a> = &'a dyn Fn(&Tensor, &Tensor, &Tensor, &Tensor) -> Result<(Tensor, BatchStats)>;

/// The output, the statistics, and the gradients of `x`, the convolution's weight and the
/// BatchNorm's weight and bias of `sum(layer(x) · r)`; `x`'s only when `x_is_var`.
fn run(case: Case, x_is_var: bool, layer: Layer) -> Result<(Vec<Vec<f32>>, BatchStats)> {
    let (n, c, size, o, k, stride, padding) = case;
    let tag = format!("{case:?}");
    let out = (size + 2 * padding - k) / stride + 1;
    let x = Var::from_tensor(&normal(&format!("x{tag}"), &[n, c, size, size], 1.0, 0.0)?)?;
    let conv_weight = Var::from_tensor(&normal(&format!("k{tag}"), &[o, c, k, k], 0.5, 0.0)?)?;
    let weight = Var::from_tensor(&normal(&format!("w{tag}"), &[o], 0.5, 1.0)?)?;
    let bias = Var::from_tensor(&normal(&format!("b{tag}"), &[o], 0.5, 0.0)?)?;
    let r = normal(&format!("r{tag}"), &[n, o, out, out], 1.0, 0.0)?;
    let input = if x_is_var {
        x.as_tensor().clone()
    } else {
        x.as_tensor().detach()
    };
    let (y, stats) = layer(
        &input,
        conv_weight.as_tensor(),
        weight.as_tensor(),
        bias.as_tensor(),
    )?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    let mut values = vec![to_vec(&y)];
    for v in [&x, &conv_weight, &weight, &bias] {
        values.extend(grads.get(v).map(to_vec));
    }
    Ok((values, stats))
}

/// Equal results (the output, then the gradients), value for value (`-0.0 == 0.0`: candle's gradient bookkeeping adds a zero between the
/// separate ops, which the fused op does not).
fn assert_same(fused: &[Vec<f32>], separate: &[Vec<f32>], what: &str) {
    let names = ["output", "dx", "d conv weight", "d weight", "d bias"];
    assert_eq!(fused.len(), separate.len(), "{what}: gradients present");
    for ((a, b), name) in fused.iter().zip(separate).zip(names) {
        assert_eq!(a.len(), b.len(), "{what}: {name} length");
        let differ = a.iter().zip(b).filter(|(p, q)| p != q).count();
        assert_eq!(
            differ,
            0,
            "{what}: {name} differs in {differ} of {} values",
            a.len()
        );
    }
}

#[test]
fn fused_matches_the_separate_kernels() -> Result<()> {
    for &case in CASES {
        let (_, _, _, _, _, stride, padding) = case;
        let fused = |x: &Tensor, k: &Tensor, w: &Tensor, b: &Tensor| {
            cv_kernels::conv2d_batch_norm_train(x, k, padding, stride, w, b, EPS)
        };
        let separate = |x: &Tensor, k: &Tensor, w: &Tensor, b: &Tensor| {
            cv_kernels::batch_norm_train(&cv_kernels::conv2d(x, k, padding, stride)?, w, b, EPS)
        };
        let fused_relu = |x: &Tensor, k: &Tensor, w: &Tensor, b: &Tensor| {
            cv_kernels::conv2d_batch_norm_relu_train(x, k, padding, stride, w, b, EPS)
        };
        let separate_relu = |x: &Tensor, k: &Tensor, w: &Tensor, b: &Tensor| {
            let y = cv_kernels::conv2d(x, k, padding, stride)?;
            cv_kernels::batch_norm_relu_train(&y, w, b, EPS)
        };
        for (what, a, b) in [
            ("conv + bn", &fused as Layer, &separate as Layer),
            ("conv + bn + relu", &fused_relu, &separate_relu),
        ] {
            let (fused_values, fused_stats) = run(case, true, a)?;
            let (separate_values, separate_stats) = run(case, true, b)?;
            assert_same(&fused_values, &separate_values, &format!("{what} {case:?}"));
            assert_eq!(fused_stats, separate_stats, "{what} {case:?}: statistics");
            assert_eq!(
                fused_values.len(),
                5,
                "{what} {case:?}: every gradient present"
            );
        }
    }
    Ok(())
}

#[test]
fn no_input_gradient_for_a_plain_input() -> Result<()> {
    let case = CASES[0];
    let fused = |x: &Tensor, k: &Tensor, w: &Tensor, b: &Tensor| {
        cv_kernels::conv2d_batch_norm_relu_train(x, k, case.6, case.5, w, b, EPS)
    };
    let (values, _) = run(case, false, &fused)?;
    // Output and three parameter gradients; none for the input.
    assert_eq!(values.len(), 4);
    let (with_input, _) = run(case, true, &fused)?;
    assert_same(
        &values[1..],
        &with_input[2..],
        "parameter gradients without dx",
    );
    Ok(())
}

#[test]
fn refuses_parameters_of_the_wrong_size() -> Result<()> {
    let x = normal("bad-x", &[2, 3, 4, 4], 1.0, 0.0)?;
    let k = normal("bad-k", &[4, 3, 3, 3], 1.0, 0.0)?;
    let three = normal("bad-w", &[3], 1.0, 0.0)?;
    let error = cv_kernels::conv2d_batch_norm_train(&x, &k, 1, 1, &three, &three, EPS)
        .expect_err("3 BatchNorm channels for a 4-channel convolution");
    assert!(error.to_string().contains("4 channels"), "{error}");
    Ok(())
}
