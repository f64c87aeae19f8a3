//! Transforms: hand-computed pixels, torchvision's own outputs (tests/golden), the random
//! transforms' reproducibility and ranges, and the TOML form.

use cv_data::transform::{
    adjust_brightness, adjust_contrast, adjust_saturation, center_crop, crop, horizontal_flip,
    normalize, random_resized_crop_params, resize, resized_crop, rgb_to_grayscale, rotate,
    vertical_flip, CropBox, Size,
};
use cv_data::{DataError, Image, Pipeline, Transform};
use cv_seed::SeedTree;
use serde::{Deserialize, Serialize};

fn img(channels: usize, height: usize, width: usize, data: &[f32]) -> Image {
    Image::new(channels, height, width, data.to_vec())
}

/// The closed-form input of the golden cases (see tests/golden/transforms.py).
fn pattern(channels: usize, height: usize, width: usize) -> Image {
    let mut data = Vec::with_capacity(channels * height * width);
    for c in 0..channels {
        for y in 0..height {
            for x in 0..width {
                data.push(((c * 31 + y * 7 + x * 13) % 97) as f32 / 96.0);
            }
        }
    }
    Image::new(channels, height, width, data)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(got: &Image, shape: (usize, usize, usize), want: &[f32], tol: f32) {
    assert_eq!((got.channels, got.height, got.width), shape, "shape");
    let d = max_abs_diff(&got.data, want);
    assert!(
        d <= tol,
        "max |diff| {d} > {tol}\n got {:?}\nwant {want:?}",
        got.data
    );
}

// ---------------------------------------------------------------------------------------------
// Hand-computed pixels.

#[test]
fn flips() {
    let a = img(1, 2, 3, &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(
        horizontal_flip(a.clone()).data,
        vec![3., 2., 1., 6., 5., 4.]
    );
    assert_eq!(vertical_flip(a.clone()).data, vec![4., 5., 6., 1., 2., 3.]);
    let b = img(2, 3, 1, &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(vertical_flip(b.clone()).data, vec![3., 2., 1., 6., 5., 4.]);
    assert_eq!(horizontal_flip(b.clone()), b);
}

#[test]
fn center_crop_inside_and_padded() {
    let a = img(1, 4, 4, &(0..16).map(|v| v as f32).collect::<Vec<_>>());
    let c = center_crop(&a, Size::Int(2)).unwrap();
    assert_eq!(c.data, vec![5., 6., 9., 10.]);
    // top = round(1.5) = 2, left = round(0.5) = 0 (half to even).
    let c = center_crop(&a, Size::HeightWidth(1, 3)).unwrap();
    assert_eq!(c.data, vec![8., 9., 10.]);
    // 2×3 into 4×5: one row of zeros above, one column left, the rest below/right.
    let b = img(1, 2, 3, &[1., 2., 3., 4., 5., 6.]);
    let c = center_crop(&b, Size::HeightWidth(4, 5)).unwrap();
    #[rustfmt::skip]
    let want = [
        0., 0., 0., 0., 0.,
        0., 1., 2., 3., 0.,
        0., 4., 5., 6., 0.,
        0., 0., 0., 0., 0.,
    ];
    assert_eq!((c.height, c.width), (4, 5));
    assert_eq!(c.data, want);
    // Larger in height only: pad rows, crop columns (left = round(0.5) = 0).
    let c = center_crop(&b, Size::HeightWidth(3, 2)).unwrap();
    assert_eq!(c.data, vec![1., 2., 4., 5., 0., 0.]);
    assert!(center_crop(&b, Size::HeightWidth(0, 2)).is_err());
}

#[test]
fn crop_reaching_outside_reads_zeros() {
    let b = img(1, 2, 3, &[1., 2., 3., 4., 5., 6.]);
    let c = crop(
        &b,
        CropBox {
            top: -1,
            left: 2,
            height: 2,
            width: 3,
        },
    );
    assert_eq!(c.data, vec![0., 0., 0., 3., 0., 0.]);
}

#[test]
fn grayscale() {
    // Pixels (1, 0, 0) and (0.5, 0.5, 0.5).
    let a = img(3, 1, 2, &[1.0, 0.5, 0.0, 0.5, 0.0, 0.5]);
    let g = rgb_to_grayscale(&a, 1).unwrap();
    assert_close(
        &g,
        (1, 1, 2),
        &[0.2989, 0.5 * (0.2989 + 0.587 + 0.114)],
        1e-7,
    );
    let g3 = rgb_to_grayscale(&a, 3).unwrap();
    assert_eq!(g3.channels, 3);
    assert_eq!(g3.plane(0), g.plane(0));
    assert_eq!(g3.plane(2), g.plane(0));
    // One channel is copied or repeated.
    let one = img(1, 1, 2, &[0.25, 0.75]);
    assert_eq!(rgb_to_grayscale(&one, 1).unwrap(), one);
    assert_eq!(
        rgb_to_grayscale(&one, 3).unwrap().data,
        vec![0.25, 0.75, 0.25, 0.75, 0.25, 0.75]
    );
    assert!(rgb_to_grayscale(&one, 2).is_err());
    assert!(rgb_to_grayscale(&Image::zeros(2, 1, 1), 1).is_err());
}

#[test]
fn normalize_per_channel_and_length_mismatch() {
    let a = img(2, 1, 2, &[0.5, 1.0, 0.0, 0.2]);
    let n = normalize(a.clone(), &[0.5, 0.1], &[0.25, 0.1]).unwrap();
    assert_close(&n, (2, 1, 2), &[0.0, 2.0, -1.0, 1.0], 1e-6);
    let err = normalize(a.clone(), &[0.5], &[0.25]).unwrap_err();
    assert!(err.to_string().contains("2 channels"), "{err}");
    // Through a pipeline: the mismatch is an error at apply time, not a panic.
    let p = Pipeline::new(vec![Transform::Normalize {
        mean: vec![0.5, 0.5, 0.5],
        std: vec![0.2, 0.2, 0.2],
    }])
    .unwrap();
    let mut rng = SeedTree::new(0).root().rng();
    assert!(matches!(
        p.apply(a, &mut rng),
        Err(DataError::InvalidTransform {
            transform: "normalize",
            ..
        })
    ));
}

#[test]
fn brightness_contrast_saturation_with_fixed_factors() {
    let a = img(1, 1, 4, &[0.5, 0.8, 0.0, 0.2]);
    let b = adjust_brightness(a.clone(), 1.5).unwrap();
    assert_close(&b, (1, 1, 4), &[0.75, 1.0, 0.0, 0.3], 1e-7);
    assert!(adjust_brightness(a, -0.1).is_err());

    // One channel: the mean of the channel itself (0.5); x * 0.5 + 0.5 * 0.5.
    let g = img(1, 2, 2, &[0.0, 1.0, 0.5, 0.5]);
    let c = adjust_contrast(g.clone(), 0.5).unwrap();
    assert_close(&c, (1, 2, 2), &[0.25, 0.75, 0.5, 0.5], 1e-7);
    // Contrast 0 gives the mean everywhere, 2 stretches and clamps.
    let c = adjust_contrast(g.clone(), 2.0).unwrap();
    assert_close(&c, (1, 2, 2), &[0.0, 1.0, 0.5, 0.5], 1e-7);
    // Saturation does nothing on one channel.
    assert_eq!(adjust_saturation(g.clone(), 0.3).unwrap(), g);

    // Three channels: pixels (1, 0, 0) and (0, 0, 1); lumas 0.2989 and 0.114.
    let rgb = img(3, 1, 2, &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0]);
    let mean = (0.2989 + 0.114) / 2.0;
    let c = adjust_contrast(rgb.clone(), 0.0).unwrap();
    assert_close(&c, (3, 1, 2), &[mean; 6], 1e-7);
    let c = adjust_contrast(rgb.clone(), 0.5).unwrap();
    let want: Vec<f32> = rgb.data.iter().map(|v| v * 0.5 + mean * 0.5).collect();
    assert_close(&c, (3, 1, 2), &want, 1e-7);

    let s = adjust_saturation(rgb.clone(), 0.0).unwrap();
    assert_close(
        &s,
        (3, 1, 2),
        &[0.2989, 0.114, 0.2989, 0.114, 0.2989, 0.114],
        1e-7,
    );
    assert_eq!(adjust_saturation(rgb.clone(), 1.0).unwrap(), rgb);
    // Factor 2: 2x - gray, clamped: r = [2 - 0.2989 -> 1, -0.114 -> 0], ...
    let s = adjust_saturation(rgb.clone(), 2.0).unwrap();
    assert_close(&s, (3, 1, 2), &[1.0, 0.0, 0.0, 0.0, 0.0, 1.0], 1e-7);
    let s = adjust_saturation(rgb.clone(), 0.5).unwrap();
    assert_close(
        &s,
        (3, 1, 2),
        &[0.5 + 0.14945, 0.057, 0.14945, 0.057, 0.14945, 0.5 + 0.057],
        1e-7,
    );
    assert!(adjust_contrast(Image::zeros(2, 1, 1), 1.0).is_err());
}

#[test]
fn rotation_by_right_angles_is_exact() {
    #[rustfmt::skip]
    let a = img(1, 3, 3, &[
        1., 2., 3.,
        4., 5., 6.,
        7., 8., 9.,
    ]);
    // Counter-clockwise: the right column becomes the top row.
    assert_eq!(
        rotate(&a, 90.0, 0.0).data,
        vec![3., 6., 9., 2., 5., 8., 1., 4., 7.]
    );
    assert_eq!(
        rotate(&a, -270.0, 0.0).data,
        vec![3., 6., 9., 2., 5., 8., 1., 4., 7.]
    );
    assert_eq!(
        rotate(&a, 180.0, 0.0).data,
        vec![9., 8., 7., 6., 5., 4., 3., 2., 1.]
    );
    assert_eq!(
        rotate(&a, 270.0, 0.0).data,
        vec![7., 4., 1., 8., 5., 2., 9., 6., 3.]
    );
    assert_eq!(rotate(&a, 720.0, 0.0), a);
    // 180 on a non-square image is a flip of both axes, too.
    let b = img(1, 2, 3, &[1., 2., 3., 4., 5., 6.]);
    assert_eq!(rotate(&b, 180.0, 0.0).data, vec![6., 5., 4., 3., 2., 1.]);
    // 90 on a 4×4 through the transpose; 45 on it samples the grid and fills the corners.
    let c = img(1, 4, 4, &(1..=16).map(|v| v as f32).collect::<Vec<_>>());
    let r = rotate(&c, 45.0, -1.0);
    assert_eq!(r.data[0], -1.0);
    assert_eq!(r.data[15], -1.0);
}

#[test]
fn resize_up_is_bilinear_and_down_is_antialiased() {
    // 2×2 -> 4×4, align_corners=False: per axis the weights are [1, 0], [.75, .25], [.25, .75],
    // [0, 1].
    let a = img(1, 2, 2, &[0., 1., 2., 3.]);
    let up = resize(&a, Size::HeightWidth(4, 4)).unwrap();
    #[rustfmt::skip]
    let want = [
        0.0, 0.25, 0.75, 1.0,
        0.5, 0.75, 1.25, 1.5,
        1.5, 1.75, 2.25, 2.5,
        2.0, 2.25, 2.75, 3.0,
    ];
    assert_close(&up, (1, 4, 4), &want, 0.0);

    // 4 -> 2: triangle filter of support 2 (scale 2): weights [3, 3, 1] / 7 at 0..3 and
    // [1, 3, 3] / 7 at 1..4, so [0, 1, 2, 3] -> [5/7, 16/7] (plain bilinear would give 0.5, 2.5).
    let b = img(1, 4, 4, &(0..16).map(|v| v as f32).collect::<Vec<_>>());
    let down = resize(&b, Size::Int(2)).unwrap();
    let (p, q) = (5.0 / 7.0, 16.0 / 7.0);
    assert_close(
        &down,
        (1, 2, 2),
        &[4. * p + p, 4. * p + q, 4. * q + p, 4. * q + q],
        1e-5,
    );

    // An integer size sets the shorter side: 13×17 -> 8×int(8·17/13) = 8×10.
    let c = resize(&pattern(3, 13, 17), Size::Int(8)).unwrap();
    assert_eq!((c.height, c.width), (8, 10));
    assert!(resize(&a, Size::Int(0)).is_err());
    assert!(resize(&Image::zeros(3, 0, 4), Size::Int(2)).is_err());
}

#[test]
fn resized_crop_matches_crop_then_resize() {
    let a = pattern(3, 20, 24);
    let bx = CropBox {
        top: 3,
        left: 5,
        height: 11,
        width: 13,
    };
    let fused = resized_crop(&a, bx, Size::HeightWidth(7, 9)).unwrap();
    let two_step = resize(&crop(&a, bx), Size::HeightWidth(7, 9)).unwrap();
    assert_eq!(fused, two_step);
    // Only one axis changes, or none.
    for size in [
        Size::HeightWidth(11, 6),
        Size::HeightWidth(4, 13),
        Size::HeightWidth(11, 13),
    ] {
        let fused = resized_crop(&a, bx, size).unwrap();
        assert_eq!(fused, resize(&crop(&a, bx), size).unwrap(), "{size}");
    }
    // A box reaching outside reads zeros.
    let out = CropBox {
        top: -2,
        left: 20,
        height: 6,
        width: 6,
    };
    let r = resized_crop(&a, out, Size::Int(3)).unwrap();
    assert_eq!(r, resize(&crop(&a, out), Size::Int(3)).unwrap());
}

// ---------------------------------------------------------------------------------------------
// torchvision's outputs.

#[derive(Deserialize)]
struct Golden {
    torch: String,
    torchvision: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    op: String,
    input: [usize; 3],
    output_shape: [usize; 3],
    output: Vec<f32>,
    size: Option<Size>,
    top: Option<isize>,
    left: Option<isize>,
    height: Option<usize>,
    width: Option<usize>,
    angle: Option<f64>,
    fill: Option<f64>,
    factor: Option<f64>,
    num_output_channels: Option<usize>,
    mean: Option<Vec<f64>>,
    std: Option<Vec<f64>>,
}

impl Case {
    fn run(&self) -> Image {
        let [c, h, w] = self.input;
        let input = pattern(c, h, w);
        let need = |what: &str| -> ! { panic!("case {} lacks {what}", self.op) };
        let size = || self.size.unwrap_or_else(|| need("size"));
        let factor = || self.factor.unwrap_or_else(|| need("factor"));
        match self.op.as_str() {
            "resize" => resize(&input, size()).unwrap(),
            "center_crop" => center_crop(&input, size()).unwrap(),
            "resized_crop" => {
                let bx = CropBox {
                    top: self.top.unwrap_or_else(|| need("top")),
                    left: self.left.unwrap_or_else(|| need("left")),
                    height: self.height.unwrap_or_else(|| need("height")),
                    width: self.width.unwrap_or_else(|| need("width")),
                };
                resized_crop(&input, bx, size()).unwrap()
            }
            "rotate" => rotate(
                &input,
                self.angle.unwrap_or_else(|| need("angle")),
                self.fill.unwrap_or(0.0) as f32,
            ),
            "adjust_brightness" => adjust_brightness(input, factor()).unwrap(),
            "adjust_contrast" => adjust_contrast(input, factor()).unwrap(),
            "adjust_saturation" => adjust_saturation(input, factor()).unwrap(),
            "rgb_to_grayscale" => rgb_to_grayscale(
                &input,
                self.num_output_channels
                    .unwrap_or_else(|| need("num_output_channels")),
            )
            .unwrap(),
            "normalize" => normalize(
                input,
                self.mean.as_deref().unwrap_or_else(|| need("mean")),
                self.std.as_deref().unwrap_or_else(|| need("std")),
            )
            .unwrap(),
            other => panic!("unknown golden op {other}"),
        }
    }
}

/// Tolerance per op. Resizing: torch's float kernels fuse some multiply-adds (FMA) where Rust
/// rounds twice; the difference is a few float ulps, far below 1e-5. Rotation with nearest
/// sampling picks source pixels, so it must match exactly. Colour ops: torch's `add_` with an
/// alpha is an FMA, and its mean is a pairwise float sum, so allow a few ulps.
fn tolerance(op: &str) -> f32 {
    match op {
        "resize" | "resized_crop" | "center_crop" => 1e-5,
        "rotate" => 0.0,
        _ => 1e-6,
    }
}

#[test]
fn golden_torchvision() {
    let text = include_str!("golden/transforms.json");
    let golden: Golden = serde_json::from_str(text).unwrap();
    assert!(golden.cases.len() >= 50);
    let mut worst: Vec<(String, f32)> = Vec::new();
    let mut failures = Vec::new();
    for (k, case) in golden.cases.iter().enumerate() {
        let got = case.run();
        let [c, h, w] = case.output_shape;
        assert_eq!(
            (got.channels, got.height, got.width),
            (c, h, w),
            "case {k} ({}) shape",
            case.op
        );
        let d = max_abs_diff(&got.data, &case.output);
        match worst.iter_mut().find(|(op, _)| *op == case.op) {
            Some((_, m)) => *m = m.max(d),
            None => worst.push((case.op.clone(), d)),
        }
        if d > tolerance(&case.op) {
            failures.push(format!(
                "case {k} ({}, input {:?}, size {:?}, angle {:?}): max |diff| {d}",
                case.op, case.input, case.size, case.angle
            ));
        }
    }
    println!(
        "torch {} / torchvision {}: max |diff| per op",
        golden.torch, golden.torchvision
    );
    for (op, d) in &worst {
        println!("  {op:<18} {d:e}");
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

// ---------------------------------------------------------------------------------------------
// Random transforms.

fn augment() -> Pipeline {
    Pipeline::new(vec![
        Transform::RandomResizedCrop {
            size: Size::Int(12),
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
        },
        Transform::RandomHorizontalFlip { p: 0.5 },
        Transform::RandomVerticalFlip { p: 0.5 },
        Transform::RandomRotation {
            degrees: 30.0,
            fill: 0.0,
        },
        Transform::ColorJitter {
            brightness: Some(0.4),
            contrast: Some(0.4),
            saturation: Some(0.4),
        },
        Transform::Normalize {
            mean: vec![0.485, 0.456, 0.406],
            std: vec![0.229, 0.224, 0.225],
        },
    ])
    .unwrap()
}

fn bits(image: &Image) -> Vec<u32> {
    image.data.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn same_seed_same_bytes_different_seeds_differ() {
    let p = augment();
    let input = pattern(3, 40, 50);
    let run = |seed: u64| {
        let mut rng = SeedTree::new(seed).path("augment/sample 0").rng();
        p.apply(input.clone(), &mut rng).unwrap()
    };
    let a = run(1);
    assert_eq!((a.channels, a.height, a.width), (3, 12, 12));
    assert_eq!(bits(&a), bits(&run(1)));
    let others: Vec<Vec<u32>> = (2..6).map(|s| bits(&run(s))).collect();
    assert!(others.iter().all(|o| *o != bits(&a)));
}

#[test]
fn pipeline_steps_equal_the_functional_ops() {
    let input = pattern(3, 37, 45);
    for seed in 0..50 {
        let tree = SeedTree::new(seed);
        let p = Pipeline::new(vec![Transform::RandomResizedCrop {
            size: Size::HeightWidth(16, 20),
            scale: [0.08, 1.0],
            ratio: [0.75, 4.0 / 3.0],
        }])
        .unwrap();
        let got = p.apply(input.clone(), &mut tree.root().rng()).unwrap();
        let bx = random_resized_crop_params(
            37,
            45,
            [0.08, 1.0],
            [0.75, 4.0 / 3.0],
            &mut tree.root().rng(),
        );
        let want = resized_crop(&input, bx, Size::HeightWidth(16, 20)).unwrap();
        assert_eq!(bits(&got), bits(&want), "seed {seed}: {bx:?}");
    }
    let mut rng = SeedTree::new(0).root().rng();
    for size in [
        Size::Int(20),
        Size::HeightWidth(37, 20),
        Size::HeightWidth(10, 45),
        Size::Int(37),
    ] {
        let p = Pipeline::new(vec![Transform::Resize { size }]).unwrap();
        let got = p.apply(input.clone(), &mut rng).unwrap();
        assert_eq!(bits(&got), bits(&resize(&input, size).unwrap()), "{size}");
    }
}

#[test]
fn random_resized_crop_box_is_inside_and_in_range() {
    let (scale, ratio) = ([0.08, 1.0], [0.75, 4.0 / 3.0]);
    for (h, w) in [(200usize, 300usize), (256, 256), (31, 17)] {
        let area = (h * w) as f64;
        for seed in 0..2000 {
            let mut rng = SeedTree::new(seed).root().rng();
            let b = random_resized_crop_params(h, w, scale, ratio, &mut rng);
            assert!(b.height > 0 && b.width > 0, "{b:?}");
            assert!(b.is_inside(h, w), "{h}×{w}: {b:?}");
            // The sides are rounded, which moves the area and the ratio a little.
            let (bw, bh) = (b.width as f64, b.height as f64);
            let slack_w = 0.5 / bw + 0.5 / bh;
            let r = bw / bh;
            assert!(
                r >= ratio[0] * (1.0 - slack_w) - 1e-9 && r <= ratio[1] * (1.0 + slack_w) + 1e-9,
                "{h}×{w}: ratio {r} of {b:?}"
            );
            let a_hi = (bw + 0.5) * (bh + 0.5) / area;
            let a_lo = (bw - 0.5) * (bh - 0.5) / area;
            assert!(
                a_hi >= scale[0] && a_lo <= scale[1],
                "{h}×{w}: area of {b:?}"
            );
        }
    }
    // A very wide image makes every try fail: the fallback is a centred box of ratio 4/3.
    let mut rng = SeedTree::new(3).root().rng();
    let b = random_resized_crop_params(10, 1000, scale, ratio, &mut rng);
    assert_eq!(
        b,
        CropBox {
            top: 0,
            left: (1000 - 13) / 2,
            height: 10,
            width: 13
        }
    );
    // And a very tall one: width kept, height = round(w / (3/4)).
    let b = random_resized_crop_params(1000, 9, scale, ratio, &mut rng);
    assert_eq!(
        (b.height, b.width, b.top, b.left),
        (12, 9, (1000 - 12) / 2, 0)
    );
}

#[test]
fn flips_with_p_zero_and_one() {
    let input = pattern(3, 5, 7);
    let mut rng = SeedTree::new(9).root().rng();
    for _ in 0..20 {
        let never = Pipeline::new(vec![
            Transform::RandomHorizontalFlip { p: 0.0 },
            Transform::RandomVerticalFlip { p: 0.0 },
        ])
        .unwrap();
        assert_eq!(never.apply(input.clone(), &mut rng).unwrap(), input);
        let always = Pipeline::new(vec![Transform::RandomHorizontalFlip { p: 1.0 }]).unwrap();
        assert_eq!(
            always.apply(input.clone(), &mut rng).unwrap(),
            horizontal_flip(input.clone())
        );
        let always = Pipeline::new(vec![Transform::RandomVerticalFlip { p: 1.0 }]).unwrap();
        assert_eq!(
            always.apply(input.clone(), &mut rng).unwrap(),
            vertical_flip(input.clone())
        );
    }
}

#[test]
fn deterministic_prefix_splits_without_changing_results() {
    let p = Pipeline::new(vec![
        Transform::Resize {
            size: Size::Int(20),
        },
        Transform::CenterCrop {
            size: Size::Int(18),
        },
        Transform::ColorJitter {
            brightness: None,
            contrast: Some(0.0),
            saturation: None,
        },
        Transform::RandomResizedCrop {
            size: Size::Int(8),
            scale: [0.5, 1.0],
            ratio: [0.75, 4.0 / 3.0],
        },
        Transform::Grayscale {
            num_output_channels: 3,
        },
        Transform::RandomHorizontalFlip { p: 0.5 },
    ])
    .unwrap();
    assert!(!p.is_deterministic());
    let (fixed, random) = p.split_deterministic_prefix();
    // A jitter with nothing enabled draws nothing, so it joins the prefix.
    assert_eq!(fixed.steps().len(), 3);
    assert_eq!(random.steps().len(), 3);
    assert!(fixed.is_deterministic());
    let input = pattern(3, 30, 40);
    for seed in 0..20 {
        let tree = SeedTree::new(seed);
        let whole = p.apply(input.clone(), &mut tree.root().rng()).unwrap();
        let mut rng = tree.root().rng();
        let cached = fixed.apply(input.clone(), &mut rng).unwrap();
        let split = random.apply(cached, &mut rng).unwrap();
        assert_eq!(bits(&whole), bits(&split));
    }
    let (all, none) = Pipeline::default().split_deterministic_prefix();
    assert!(all.steps().is_empty() && none.steps().is_empty());
}

#[test]
fn color_jitter_on_one_channel_and_bad_channel_counts() {
    let jitter = Pipeline::new(vec![Transform::ColorJitter {
        brightness: Some(0.5),
        contrast: Some(0.5),
        saturation: Some(0.5),
    }])
    .unwrap();
    let mut rng = SeedTree::new(4).root().rng();
    let gray = pattern(1, 6, 6);
    let out = jitter.apply(gray, &mut rng).unwrap();
    assert_eq!(out.channels, 1);
    assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(jitter.apply(pattern(4, 2, 2), &mut rng).is_err());
}

#[test]
fn pipeline_new_rejects_bad_parameters() {
    let bad = [
        Transform::Resize {
            size: Size::HeightWidth(0, 3),
        },
        Transform::CenterCrop { size: Size::Int(0) },
        Transform::RandomResizedCrop {
            size: Size::Int(8),
            scale: [1.0, 0.5],
            ratio: [0.75, 1.25],
        },
        Transform::RandomResizedCrop {
            size: Size::Int(8),
            scale: [0.0, 1.0],
            ratio: [0.75, 1.25],
        },
        Transform::RandomResizedCrop {
            size: Size::Int(8),
            scale: [0.1, 1.0],
            ratio: [-1.0, 1.25],
        },
        Transform::RandomHorizontalFlip { p: 1.5 },
        Transform::RandomVerticalFlip { p: f64::NAN },
        Transform::RandomRotation {
            degrees: -3.0,
            fill: 0.0,
        },
        Transform::RandomRotation {
            degrees: f64::INFINITY,
            fill: 0.0,
        },
        Transform::ColorJitter {
            brightness: Some(-0.1),
            contrast: None,
            saturation: None,
        },
        Transform::Grayscale {
            num_output_channels: 2,
        },
        Transform::Normalize {
            mean: vec![0.5, 0.5],
            std: vec![0.5],
        },
        Transform::Normalize {
            mean: vec![0.5],
            std: vec![0.0],
        },
        Transform::Normalize {
            mean: vec![],
            std: vec![],
        },
    ];
    let mut rng = SeedTree::new(0).root().rng();
    for t in bad {
        // A step built by hand skips validation; applying it may fail but must not panic.
        let _ = t.apply(pattern(3, 5, 6), &mut rng);
        let name = t.name();
        match Pipeline::new(vec![t.clone()]) {
            Err(DataError::InvalidTransform { transform, .. }) => assert_eq!(transform, name),
            other => panic!("{t:?} gave {other:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML.

#[derive(Debug, PartialEq, Serialize, Deserialize)]
struct Config {
    train: Pipeline,
    valid: Pipeline,
}

const CONFIG: &str = r#"
train = [
    { type = "random-resized-crop", size = 224 },
    { type = "random-resized-crop", size = [32, 48], scale = [0.5, 1.0], ratio = [0.5, 2.0] },
    { type = "random-horizontal-flip" },
    { type = "random-vertical-flip", p = 0.1 },
    { type = "random-rotation", degrees = 15 },
    { type = "color-jitter", brightness = 0.4, saturation = 0.2 },
    { type = "grayscale", num_output_channels = 3 },
    { type = "normalize", mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] },
]
valid = [{ type = "resize", size = 256 }, { type = "center-crop", size = 224 }]
"#;

#[test]
fn pipeline_parses_from_toml_with_torchvision_defaults() {
    let config: Config = toml::from_str(CONFIG).unwrap();
    let train = config.train.steps();
    assert_eq!(train.len(), 8);
    assert_eq!(
        train[0],
        Transform::RandomResizedCrop {
            size: Size::Int(224),
            scale: [0.08, 1.0],
            ratio: [3.0 / 4.0, 4.0 / 3.0],
        }
    );
    assert_eq!(
        train[1],
        Transform::RandomResizedCrop {
            size: Size::HeightWidth(32, 48),
            scale: [0.5, 1.0],
            ratio: [0.5, 2.0],
        }
    );
    assert_eq!(train[2], Transform::RandomHorizontalFlip { p: 0.5 });
    assert_eq!(train[3], Transform::RandomVerticalFlip { p: 0.1 });
    assert_eq!(
        train[4],
        Transform::RandomRotation {
            degrees: 15.0,
            fill: 0.0
        }
    );
    assert_eq!(
        train[5],
        Transform::ColorJitter {
            brightness: Some(0.4),
            contrast: None,
            saturation: Some(0.2),
        }
    );
    assert_eq!(
        config.valid.steps(),
        &[
            Transform::Resize {
                size: Size::Int(256)
            },
            Transform::CenterCrop {
                size: Size::Int(224)
            },
        ]
    );
    // And back.
    let text = toml::to_string(&config).unwrap();
    let again: Config = toml::from_str(&text).unwrap();
    assert_eq!(again, config);
}

fn toml_error(steps: &str) -> String {
    let text = format!("train = [{steps}]\nvalid = []\n");
    toml::from_str::<Config>(&text).unwrap_err().to_string()
}

#[test]
fn toml_unknown_keys_types_and_bad_values_are_errors() {
    let err = toml_error(r#"{ type = "random-horizontal-flip", prob = 0.5 }"#);
    assert!(err.contains("prob"), "{err}");
    let err = toml_error(r#"{ type = "resize", size = 8, antialias = false }"#);
    assert!(err.contains("antialias"), "{err}");
    let err = toml_error(r#"{ type = "random-erasing" }"#);
    assert!(err.contains("random-erasing"), "{err}");
    let err = toml_error(r#"{ size = 8 }"#);
    assert!(err.contains("type"), "{err}");
    // Values are validated as the pipeline is read.
    let err = toml_error(r#"{ type = "random-horizontal-flip", p = 2.0 }"#);
    assert!(err.contains("p = 2"), "{err}");
    let err = toml_error(r#"{ type = "resize", size = -4 }"#);
    assert!(err.contains("negative"), "{err}");
    let err = toml_error(r#"{ type = "center-crop", size = [1, 2, 3] }"#);
    assert!(err.contains("size"), "{err}");
    let err = toml_error(r#"{ type = "resize" }"#);
    assert!(err.contains("size"), "{err}");
}
