//! `cv_kernels::max_pool2d` against the definition (values and gradients, several window
//! shapes), PyTorch's tie rule, its errors, and the same bits with any number of threads.

use candle_core::{Device, Result, Tensor, Var};
use cv_seed::{Draw, SeedTree};

/// Per output, the index in its plane of the first (row-major) maximum of its window, by the
/// definition; `None` marks padding, which never wins.
fn winners(x: &[f32], (h, w): (usize, usize), (k, s, p): (usize, usize, usize)) -> Vec<usize> {
    let (ho, wo) = ((h + 2 * p - k) / s + 1, (w + 2 * p - k) / s + 1);
    let mut out = Vec::new();
    for plane in x.chunks(h * w) {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best: Option<usize> = None;
                for dy in 0..k {
                    for dx in 0..k {
                        let (y, x_) = (
                            (oy * s + dy) as isize - p as isize,
                            (ox * s + dx) as isize - p as isize,
                        );
                        if !(0..h as isize).contains(&y) || !(0..w as isize).contains(&x_) {
                            continue;
                        }
                        let i = y as usize * w + x_ as usize;
                        if best.is_none_or(|b| plane[i] > plane[b]) {
                            best = Some(i);
                        }
                    }
                }
                out.push(best.expect("every window holds an input"));
            }
        }
    }
    out
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().and_then(|t| t.to_vec1()).unwrap()
}

/// `y`, `dL/dx` and the random `r` of `sum(max_pool(x) · r)`.
fn run(x: &Var, seed: &str, (k, s, p): (usize, usize, usize)) -> Result<[Vec<f32>; 3]> {
    let y = cv_kernels::max_pool2d(x.as_tensor(), k, s, p)?;
    let mut rng = SeedTree::new(3).path(seed).path("r").rng();
    let r: Vec<f32> = (0..y.elem_count()).map(|_| rng.normal() as f32).collect();
    let r = Tensor::from_vec(r, y.shape(), &Device::Cpu)?;
    let grads = (&y * &r)?.sum_all()?.backward()?;
    Ok([
        to_vec(&y),
        to_vec(grads.get(x).expect("a gradient")),
        to_vec(&r),
    ])
}

#[test]
fn matches_the_definition_values_and_gradients() -> Result<()> {
    let cases = [
        // (n, c, h, w, kernel, stride, padding)
        (2, 3, 8, 8, 3, 2, 1),
        (1, 2, 7, 9, 3, 2, 1),
        (1, 1, 1, 1, 3, 2, 1),
        (2, 2, 6, 5, 2, 2, 0),
        (1, 3, 9, 9, 3, 1, 1),
        (1, 1, 5, 7, 5, 3, 2),
    ];
    for (n, c, h, w, k, s, p) in cases {
        let tag = format!("{:?}", (n, c, h, w, k, s, p));
        let mut rng = SeedTree::new(3).path(&tag).rng();
        // Negative values: zero padding would win at the borders; it must not.
        let data: Vec<f32> = (0..n * c * h * w)
            .map(|_| rng.normal() as f32 - 4.0)
            .collect();
        let x = Var::from_vec(data.clone(), (n, c, h, w), &Device::Cpu)?;
        let [y, dx, r] = run(&x, &tag, (k, s, p))?;
        let win = winners(&data, (h, w), (k, s, p));
        let per_plane = win.len() / (n * c);
        let expected_y: Vec<f32> = win
            .iter()
            .enumerate()
            .map(|(o, &i)| data[(o / per_plane) * h * w + i])
            .collect();
        assert_eq!(y, expected_y, "{tag}: values");
        let mut expected_dx = vec![0f32; data.len()];
        for (o, &i) in win.iter().enumerate() {
            expected_dx[(o / per_plane) * h * w + i] += r[o];
        }
        assert_eq!(dx, expected_dx, "{tag}: gradients");
    }
    Ok(())
}

#[test]
fn a_tie_sends_the_gradient_to_the_first_maximum_as_pytorch() -> Result<()> {
    // One 2x2 window of equal values, one with the maximum twice in its second row.
    let x = Var::from_vec(
        vec![1f32, 1., 0., 5., 1., 1., 0., 5.],
        (1, 1, 2, 4),
        &Device::Cpu,
    )?;
    let grads = cv_kernels::max_pool2d(x.as_tensor(), 2, 2, 0)?
        .sum_all()?
        .backward()?;
    assert_eq!(
        to_vec(grads.get(&x).expect("a gradient")),
        [1., 0., 0., 1., 0., 0., 0., 0.]
    );
    Ok(())
}

#[test]
fn refuses_what_pytorch_refuses() -> Result<()> {
    let x = Tensor::zeros((1, 1, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
    for (k, s, p) in [(3, 2, 2), (0, 1, 0), (3, 0, 1), (6, 1, 0)] {
        assert!(
            cv_kernels::max_pool2d(&x, k, s, p).is_err(),
            "{:?}",
            (k, s, p)
        );
    }
    let flat = Tensor::zeros((1, 4, 4), candle_core::DType::F32, &Device::Cpu)?;
    let error = cv_kernels::max_pool2d(&flat, 3, 2, 1).unwrap_err();
    assert!(error.to_string().contains("[N, C, H, W]"), "{error}");
    Ok(())
}

#[test]
fn same_bits_with_any_thread_count() -> Result<()> {
    let mut rng = SeedTree::new(3).path("threads").rng();
    let data: Vec<f32> = (0..4 * 8 * 12 * 12).map(|_| rng.normal() as f32).collect();
    let in_pool = |threads: usize| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| {
                let x = Var::from_vec(data.clone(), (4, 8, 12, 12), &Device::Cpu)?;
                run(&x, "threads", (3, 2, 1))
            })
    };
    let one = in_pool(1)?;
    for threads in [2, 3] {
        assert_eq!(in_pool(threads)?, one, "{threads} threads");
    }
    Ok(())
}
