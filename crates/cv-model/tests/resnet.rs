//! Seeded init, the building blocks and the model API.

use candle_core::{Device, Tensor, Var};
use cv_model::init::Init;
use cv_model::layers::{global_avg_pool, max_pool_3x3_s2, Dropout};
use cv_model::{build, Architecture, ModelConfig, ModelError, ParamKind, ResNet};
use cv_seed::SeedTree;

fn config(architecture: Architecture, num_classes: usize) -> ModelConfig {
    ModelConfig {
        architecture,
        in_channels: 3,
        num_classes,
        dropout: 0.0,
    }
}

const CIFAR8: Architecture = Architecture::CifarResnet { depth: 8, width: 1 };

fn model(architecture: Architecture, seed: u64) -> ResNet {
    let node = SeedTree::new(seed).child("init");
    build(&config(architecture, 10), &node, &Device::Cpu).unwrap()
}

fn bytes(model: &ResNet) -> Vec<(String, Vec<f32>)> {
    model
        .params()
        .iter()
        .map(|(n, p)| {
            let v = p
                .var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            (n.to_owned(), v)
        })
        .collect()
}

fn values(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn same_seed_same_init_other_seed_other_init() {
    let a = bytes(&model(Architecture::Resnet18, 7));
    let b = bytes(&model(Architecture::Resnet18, 7));
    let c = bytes(&model(Architecture::Resnet18, 8));
    // Bit-identical: compare the bit patterns, not approximate values.
    let bits = |v: &[(String, Vec<f32>)]| -> Vec<(String, Vec<u32>)> {
        v.iter()
            .map(|(n, x)| (n.clone(), x.iter().map(|f| f.to_bits()).collect()))
            .collect()
    };
    assert_eq!(bits(&a), bits(&b));
    for ((name, x), (_, y)) in a.iter().zip(&c) {
        // Constant-initialised BatchNorm variables are the same under every seed.
        let random = !name.contains("bn") && !name.contains("downsample.1");
        assert_eq!(x != y, random, "{name}");
    }
}

#[test]
fn init_does_not_depend_on_construction_order() {
    // resnet34 creates three blocks in layer1 before layer2.0, resnet18 two: shared names must
    // still get the same values, and each equals a variable drawn alone from its name.
    let node = SeedTree::new(3).child("init");
    let small = model(Architecture::Resnet18, 3);
    let large = model(Architecture::Resnet34, 3);
    for (name, param) in small.params().iter() {
        let other = large.params().get(name).unwrap();
        assert_eq!(
            values(param.var.as_tensor()),
            values(other.var.as_tensor()),
            "{name}"
        );
        let (rule, shape) = small.init_plan().get(name).unwrap();
        assert_eq!(
            values(param.var.as_tensor()),
            rule.values(&node.child(name), shape),
            "{name}"
        );
    }
    assert_eq!(small.params().len(), 102);
    assert_eq!(large.params().len(), 182);
}

fn mean_std(v: &[f32]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let var = v
        .iter()
        .map(|&x| (f64::from(x) - mean).powi(2))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

#[test]
fn init_statistics_follow_torchvision() {
    let m = model(Architecture::Resnet50, 11);
    let mut checked = 0;
    for (name, param) in m.params().iter() {
        let dims = param.var.dims().to_vec();
        let v = values(param.var.as_tensor());
        if dims.len() == 4 {
            assert_eq!(param.kind, ParamKind::Weight);
            if v.len() < 100_000 {
                continue; // too few draws for a tight estimate
            }
            let fan_out = dims[0] * dims[2] * dims[3];
            let expected = (2.0 / fan_out as f64).sqrt();
            let (mean, std) = mean_std(&v);
            assert!(
                (std / expected - 1.0).abs() < 0.03,
                "{name}: std {std}, want {expected}"
            );
            assert!(mean.abs() < 0.05 * expected, "{name}: mean {mean}");
            checked += 1;
        } else if name.starts_with("fc.") {
            let bound = 1.0 / 2048f64.sqrt();
            let (_, std) = mean_std(&v);
            assert!(v.iter().all(|&x| f64::from(x).abs() <= bound), "{name}");
            if name == "fc.weight" {
                let expected = bound / 3f64.sqrt();
                assert!((std / expected - 1.0).abs() < 0.03, "{name}: std {std}");
            }
        } else {
            let expected = if name.ends_with("weight") || name.ends_with("running_var") {
                1.0
            } else {
                0.0
            };
            assert!(v.iter().all(|&x| x == expected), "{name}");
            let kind = if name.contains("running") {
                ParamKind::Buffer
            } else {
                ParamKind::Norm
            };
            assert_eq!(param.kind, kind, "{name}");
        }
    }
    assert!(checked >= 10, "only {checked} convolutions checked");
}

/// Max-pool by definition: 3×3 windows, stride 2, padding 1 that never wins.
fn naive_max_pool(x: &[f32], n: usize, h: usize, w: usize) -> Vec<f32> {
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let mut out = Vec::new();
    for plane in 0..n {
        for oy in 0..ho {
            for ox in 0..wo {
                let mut best = f32::NEG_INFINITY;
                for dy in 0..3 {
                    for dx in 0..3 {
                        let (y, x_) = ((2 * oy + dy) as isize - 1, (2 * ox + dx) as isize - 1);
                        if (0..h as isize).contains(&y) && (0..w as isize).contains(&x_) {
                            best = best.max(x[plane * h * w + y as usize * w + x_ as usize]);
                        }
                    }
                }
                out.push(best);
            }
        }
    }
    out
}

#[test]
fn max_pool_matches_the_definition_with_negative_inputs() {
    for (h, w) in [(8, 8), (7, 9), (1, 1), (2, 3), (5, 4)] {
        let count = 2 * 3 * h * w;
        // Negative values everywhere: zero padding would win at the borders, -inf must not.
        let data: Vec<f32> = (0..count)
            .map(|i| -1.0 - ((i * 37) % 101) as f32 / 10.0)
            .collect();
        let x = Tensor::from_vec(data.clone(), (2, 3, h, w), &Device::Cpu).unwrap();
        let y = max_pool_3x3_s2(&x).unwrap();
        assert_eq!(y.dims(), &[2, 3, (h - 1) / 2 + 1, (w - 1) / 2 + 1]);
        assert_eq!(values(&y), naive_max_pool(&data, 6, h, w), "{h}x{w}");
    }
}

#[test]
fn max_pool_gradient_goes_to_each_window_maximum() {
    let (h, w) = (6, 5);
    // Distinct values, so every window has one maximum.
    let data: Vec<f32> = (0..h * w).map(|i| ((i * 17) % 31) as f32).collect();
    let x = Var::from_vec(data.clone(), (1, 1, h, w), &Device::Cpu).unwrap();
    let y = max_pool_3x3_s2(x.as_tensor()).unwrap();
    let grads = y.sum_all().unwrap().backward().unwrap();
    let got = values(grads.get(x.as_tensor()).unwrap());
    // Expected: how many windows each element is the maximum of.
    let mut expected = vec![0f32; h * w];
    for oy in 0..(h - 1) / 2 + 1 {
        for ox in 0..(w - 1) / 2 + 1 {
            let mut best = (f32::NEG_INFINITY, 0);
            for dy in 0..3 {
                for dx in 0..3 {
                    let (y_, x_) = ((2 * oy + dy) as isize - 1, (2 * ox + dx) as isize - 1);
                    if (0..h as isize).contains(&y_) && (0..w as isize).contains(&x_) {
                        let i = y_ as usize * w + x_ as usize;
                        if data[i] > best.0 {
                            best = (data[i], i);
                        }
                    }
                }
            }
            expected[best.1] += 1.0;
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn backward_through_the_stem_reaches_conv1() {
    let m = model(Architecture::Resnet18, 5);
    let x = Tensor::from_vec(
        (0..2 * 3 * 32 * 32)
            .map(|i| ((i * 7) % 23) as f32 / 23.0 - 0.5)
            .collect(),
        (2, 3, 32, 32),
        &Device::Cpu,
    )
    .unwrap();
    let logits = m.forward_t(&x, true).unwrap();
    assert_eq!(logits.dims(), &[2, 10]);
    let loss = logits.sqr().unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    for name in [
        "conv1.weight",
        "bn1.weight",
        "layer1.0.conv1.weight",
        "fc.bias",
    ] {
        let g = grads
            .get(m.params().get(name).unwrap().var.as_tensor())
            .unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(norm.is_finite() && norm > 0.0, "{name}: {norm}");
    }
    // Running statistics are buffers: updated by the forward, never given a gradient.
    let mean = m.params().get("bn1.running_mean").unwrap();
    assert!(grads.get(mean.var.as_tensor()).is_none());
    assert!(values(mean.var.as_tensor()).iter().any(|&v| v != 0.0));
}

#[test]
fn eval_mode_leaves_running_statistics_alone() {
    let m = model(CIFAR8, 1);
    let x = Tensor::ones((2, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let before = bytes(&m);
    m.forward_t(&x, false).unwrap();
    assert_eq!(before, bytes(&m));
}

#[test]
fn resnet50_forward_on_a_small_input() {
    let m = model(Architecture::Resnet50, 2);
    let x = Tensor::zeros((1, 3, 32, 32), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.forward_t(&x, false).unwrap().dims(), &[1, 10]);
    // Train mode at batch 1 would normalise a single value per channel in the last stage.
    let err = m.forward_t(&x, true).unwrap_err();
    assert!(
        matches!(err, ModelError::BatchNormSingleValue { .. }),
        "{err}"
    );
}

#[test]
fn grayscale_input_and_class_count() {
    let mut cfg = config(CIFAR8, 5);
    cfg.in_channels = 1;
    let m = build(&cfg, &SeedTree::new(0).child("init"), &Device::Cpu).unwrap();
    assert_eq!(
        m.params().get("conv1.weight").unwrap().var.dims(),
        &[16, 1, 3, 3]
    );
    assert_eq!(m.params().get("fc.weight").unwrap().var.dims(), &[5, 64]);
    let x = Tensor::zeros((3, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    assert_eq!(m.forward_t(&x, true).unwrap().dims(), &[3, 5]);
    let rgb = Tensor::zeros((3, 3, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
    let err = m.forward_t(&rgb, false).unwrap_err().to_string();
    assert!(err.contains("[batch, 1, height, width]"), "{err}");
}

#[test]
fn cifar_names_and_counts() {
    let m = model(
        Architecture::CifarResnet {
            depth: 20,
            width: 2,
        },
        0,
    );
    let p = m.params();
    assert_eq!(p.get("conv1.weight").unwrap().var.dims(), &[32, 3, 3, 3]);
    assert!(p.get("layer1.0.downsample.0.weight").is_none());
    assert_eq!(
        p.get("layer2.0.downsample.0.weight").unwrap().var.dims(),
        &[64, 32, 1, 1]
    );
    assert_eq!(
        p.get("layer3.2.conv2.weight").unwrap().var.dims(),
        &[128, 128, 3, 3]
    );
    assert!(p.get("layer3.3.conv1.weight").is_none());
    assert!(p.get("layer4.0.conv1.weight").is_none());
    assert_eq!(p.get("fc.weight").unwrap().var.dims(), &[10, 128]);
    // 19 convolutions + 2 shortcut convolutions, each with a BatchNorm of 4 variables, + fc.
    assert_eq!(p.len(), 21 * 5 + 2);
}

#[test]
fn bad_configs_are_clear_errors() {
    let node = SeedTree::new(0).child("init");
    let bad = |cfg: ModelConfig| build(&cfg, &node, &Device::Cpu).unwrap_err().to_string();
    let err = bad(config(
        Architecture::CifarResnet {
            depth: 21,
            width: 1,
        },
        10,
    ));
    assert!(
        err.contains("cifar-resnet depth must be 6n+2") && err.ends_with("got 21"),
        "{err}"
    );
    assert!(bad(config(Architecture::CifarResnet { depth: 2, width: 1 }, 10)).contains("got 2"));
    assert!(bad(config(Architecture::CifarResnet { depth: 8, width: 0 }, 10)).contains("width"));
    assert!(bad(config(CIFAR8, 0)).contains("num_classes"));
    let mut cfg = config(CIFAR8, 2);
    cfg.in_channels = 0;
    assert!(bad(cfg).contains("in_channels"));
    cfg.in_channels = 3;
    cfg.dropout = 1.0;
    assert!(bad(cfg).contains("dropout must be in [0, 1), got 1"));
}

#[test]
fn config_serde() {
    let text = r#"{"architecture":{"cifar-resnet":{"depth":56}},"num_classes":10}"#;
    let cfg: ModelConfig = serde_json::from_str(text).unwrap();
    assert_eq!(
        cfg,
        ModelConfig {
            architecture: Architecture::CifarResnet {
                depth: 56,
                width: 1
            },
            in_channels: 3,
            num_classes: 10,
            dropout: 0.0,
        }
    );
    let cfg = config(Architecture::Resnet50, 5);
    let json = serde_json::to_string(&cfg).unwrap();
    assert_eq!(
        json,
        r#"{"architecture":"resnet50","in_channels":3,"num_classes":5,"dropout":0.0}"#
    );
    assert_eq!(serde_json::from_str::<ModelConfig>(&json).unwrap(), cfg);
    assert!(
        serde_json::from_str::<ModelConfig>(r#"{"architecture":"resnet19","num_classes":2}"#)
            .is_err()
    );
}

#[test]
fn dropout_masks_come_from_the_seed_node() {
    let tree = SeedTree::new(9);
    let mut cfg = config(CIFAR8, 4);
    cfg.dropout = 0.5;
    let m = build(&cfg, &tree.child("init"), &Device::Cpu).unwrap();
    let x = Tensor::from_vec(
        (0..4 * 3 * 8 * 8).map(|i| (i % 13) as f32 / 13.0).collect(),
        (4, 3, 8, 8),
        &Device::Cpu,
    )
    .unwrap();
    let err = m.forward_t(&x, true).unwrap_err();
    assert!(matches!(err, ModelError::DropoutNeedsSeed(_)), "{err}");
    let step = |s: u64| tree.path("dropout/fold 0/epoch 0").indexed("step", s);
    let a = values(&m.forward_train(&x, &step(0)).unwrap());
    let b = values(&m.forward_train(&x, &step(0)).unwrap());
    let c = values(&m.forward_train(&x, &step(1)).unwrap());
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Eval mode has no dropout.
    m.forward_t(&x, false).unwrap();

    let dropout = Dropout::new(0.25).unwrap();
    let mask = values(&dropout.mask(&step(2), &[1000, 10], &Device::Cpu).unwrap());
    let kept = mask.iter().filter(|&&v| v != 0.0).count();
    assert!((7300..7700).contains(&kept), "{kept}");
    assert!(mask
        .iter()
        .all(|&v| v == 0.0 || (v - 4.0 / 3.0).abs() < 1e-6));
}

#[test]
fn reinitialize_restores_the_seeded_value() {
    let m = model(CIFAR8, 4);
    let var = &m.params().get("fc.weight").unwrap().var;
    let start = values(var.as_tensor());
    var.set(&var.as_tensor().zeros_like().unwrap()).unwrap();
    m.reinitialize("fc.weight").unwrap();
    assert_eq!(values(var.as_tensor()), start);
    assert!(matches!(
        m.reinitialize("fc.nothing"),
        Err(ModelError::UnknownParam(_))
    ));
}

#[test]
fn global_pool_and_init_rules() {
    let x = Tensor::arange(0f32, 8.0, &Device::Cpu)
        .unwrap()
        .reshape((1, 2, 2, 2))
        .unwrap();
    assert_eq!(values(&global_avg_pool(&x).unwrap()), vec![1.5, 5.5]);
    let node = SeedTree::new(1).child("x");
    assert_eq!(Init::Constant(1.0).values(&node, &[3]), vec![1.0; 3]);
    let u = Init::UniformFanIn { fan_in: 4 }.values(&node, &[100]);
    assert!(u.iter().all(|v| v.abs() <= 0.5));
}
