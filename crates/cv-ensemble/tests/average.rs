//! Weight averaging of fold models: exact means, refusal of models that cannot be averaged, the
//! init-hash warning, BatchNorm recalibration (`update_bn`) against hand-computed statistics and
//! a PyTorch fixture, the greedy soup, and the averaged model file's round trip.
//!
//! The fold models are tiny CIFAR ResNets (depth 8) built with distinct seeds, on 8×8 inputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use cv_ensemble::{
    average, check_compatible, greedy_soup, save_averaged, update_bn, AverageWarning,
    EnsembleError, ModelFile, MIXED_INIT,
};
use cv_model::checkpoint::{save_model, weights_hash, ModelSidecar};
use cv_model::train::{BatchResult, Batches};
use cv_model::{build, Architecture, ModelConfig, ResNet};
use cv_seed::SeedTree;

const CLASSES: [&str; 3] = ["cat", "dog", "fox"];

fn config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::CifarResnet { depth: 8, width: 1 },
        in_channels: 3,
        num_classes: CLASSES.len(),
        dropout: 0.0,
    }
}

fn model(seed: u64) -> ResNet {
    build(&config(), &SeedTree::new(seed).child("init"), &Device::Cpu).unwrap()
}

fn sidecar(
    config: &ModelConfig,
    tensors: &BTreeMap<String, Tensor>,
    init_hash: &str,
) -> ModelSidecar {
    ModelSidecar {
        architecture: serde_json::to_value(config).unwrap(),
        classes: CLASSES.iter().map(|c| c.to_string()).collect(),
        epoch: Some(4),
        metrics: BTreeMap::new(),
        init_hash: init_hash.to_owned(),
        weights_hash: weights_hash(tensors).unwrap(),
    }
}

fn write(path: &Path, tensors: &BTreeMap<String, Tensor>, sidecar: &ModelSidecar) -> ModelFile {
    save_model(path, tensors, sidecar).unwrap();
    ModelFile::read(path).unwrap()
}

/// A fold model with seed `seed`'s weights, saved as `dir/name.safetensors`, recorded as
/// started from `init_hash`.
fn fold(dir: &Path, name: &str, seed: u64, init_hash: &str) -> ModelFile {
    let tensors = model(seed).params().tensors();
    write(
        &dir.join(format!("{name}.safetensors")),
        &tensors,
        &sidecar(&config(), &tensors, init_hash),
    )
}

fn bits(t: &Tensor) -> Vec<u32> {
    t.flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

fn host(t: &Tensor) -> Vec<f64> {
    t.to_dtype(DType::F64)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f64>()
        .unwrap()
}

/// The mean the library promises: summed in f64 in the order given, divided, rounded once.
fn expected_mean(models: &[&BTreeMap<String, Tensor>]) -> BTreeMap<String, Vec<u32>> {
    models[0]
        .iter()
        .map(|(name, first)| {
            let mut sum = host(first);
            for other in &models[1..] {
                for (s, v) in sum.iter_mut().zip(host(&other[name])) {
                    *s += v;
                }
            }
            let k = models.len() as f64;
            let mean = sum.iter().map(|s| ((s / k) as f32).to_bits()).collect();
            (name.clone(), mean)
        })
        .collect()
}

fn assert_bits(got: &BTreeMap<String, Tensor>, expected: &BTreeMap<String, Vec<u32>>) {
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (name, tensor) in got {
        assert_eq!(tensor.dtype(), DType::F32, "{name}");
        assert!(
            bits(tensor) == expected[name],
            "{name} is not the exact mean"
        );
    }
}

fn file_bits(tensors: &BTreeMap<String, Tensor>) -> BTreeMap<String, Vec<u32>> {
    tensors.iter().map(|(n, t)| (n.clone(), bits(t))).collect()
}

#[test]
fn the_average_of_identical_models_is_that_model_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    // Three copies: a mean over 3 would not survive a multiplication by an inexact 1/3.
    let models: Vec<ModelFile> = (0..3)
        .map(|k| fold(dir.path(), &format!("fold-{k}"), 7, "init"))
        .collect();
    let averaged = average(&models).unwrap();
    assert!(averaged.warnings.is_empty(), "{:?}", averaged.warnings);
    assert_bits(&averaged.tensors, &file_bits(&models[0].tensors));
    assert_eq!(
        weights_hash(&averaged.tensors).unwrap(),
        models[0].sidecar.weights_hash
    );
}

#[test]
fn the_average_of_known_models_is_their_exact_mean() {
    let dir = tempfile::tempdir().unwrap();
    let models: Vec<ModelFile> = (0..3)
        .map(|k| fold(dir.path(), &format!("fold-{k}"), 10 + k, "init"))
        .collect();
    let two = average(&models[..2]).unwrap();
    assert_bits(
        &two.tensors,
        &expected_mean(&[&models[0].tensors, &models[1].tensors]),
    );
    // Element by element, too: (a + b) / 2 of the first weight, rounded once.
    let (a, b) = (
        host(&models[0].tensors["conv1.weight"]),
        host(&models[1].tensors["conv1.weight"]),
    );
    assert_eq!(
        bits(&two.tensors["conv1.weight"])[0],
        (((a[0] + b[0]) / 2.0) as f32).to_bits()
    );
    // BatchNorm running statistics are averaged like every other tensor.
    let three = average(&models).unwrap();
    let all: Vec<_> = models.iter().map(|m| &m.tensors).collect();
    assert_bits(&three.tensors, &expected_mean(&all));
}

/// `models` with `bad` third, and the error naming it.
fn refused(dir: &Path, bad: ModelFile) -> (PathBuf, String) {
    let models = vec![
        fold(dir, "fold-0", 1, "init"),
        fold(dir, "fold-1", 2, "init"),
        bad,
    ];
    let bad_path = models[2].path.clone();
    let err = average(&models).unwrap_err();
    let message = err.to_string();
    match err {
        EnsembleError::Mismatch { path, first, .. } => {
            assert_eq!(path, bad_path, "{message}");
            assert_eq!(first, models[0].path, "{message}");
        }
        other => panic!("not a mismatch: {other}"),
    }
    assert!(
        check_compatible(&models).is_err(),
        "check_compatible accepted what average refused"
    );
    (bad_path, message)
}

#[test]
fn models_that_cannot_be_averaged_are_refused_by_file() {
    let dir = tempfile::tempdir().unwrap();
    let base = model(3).params().tensors();
    let path = |name: &str| dir.path().join(format!("{name}.safetensors"));

    // Another architecture, with the very same tensors (dropout changes no weight).
    let other_config = ModelConfig {
        dropout: 0.5,
        ..config()
    };
    let bad = write(
        &path("dropout"),
        &base,
        &sidecar(&other_config, &base, "init"),
    );
    let (bad_path, message) = refused(dir.path(), bad);
    assert!(
        message.contains(&bad_path.display().to_string()) && message.contains("architecture"),
        "{message}"
    );

    // Other classes.
    let mut other_classes = sidecar(&config(), &base, "init");
    other_classes.classes[2] = "owl".to_owned();
    let bad = write(&path("classes"), &base, &other_classes);
    let (_, message) = refused(dir.path(), bad);
    assert!(
        message.contains("classes") && message.contains("owl"),
        "{message}"
    );

    // A renamed tensor.
    let mut renamed = base.clone();
    let bias = renamed.remove("fc.bias").unwrap();
    renamed.insert("fc.b".to_owned(), bias);
    let bad = write(
        &path("renamed"),
        &renamed,
        &sidecar(&config(), &renamed, "init"),
    );
    let (_, message) = refused(dir.path(), bad);
    assert!(message.contains("fc.bias"), "{message}");

    // A tensor of another shape.
    let mut reshaped = base.clone();
    reshaped.insert(
        "conv1.weight".to_owned(),
        Tensor::zeros((16, 3, 1, 1), DType::F32, &Device::Cpu).unwrap(),
    );
    let bad = write(
        &path("reshaped"),
        &reshaped,
        &sidecar(&config(), &reshaped, "init"),
    );
    let (_, message) = refused(dir.path(), bad);
    assert!(
        message.contains("conv1.weight") && message.contains("[16, 3, 1, 1]"),
        "{message}"
    );

    assert!(matches!(average(&[]), Err(EnsembleError::NoModels)));
}

#[test]
fn different_initial_weights_give_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let models = vec![
        fold(dir.path(), "fold-0", 1, "init-a"),
        fold(dir.path(), "fold-1", 2, "init-a"),
        fold(dir.path(), "fold-2", 3, "init-b"),
    ];
    let averaged = average(&models).unwrap();
    assert_eq!(
        averaged.warnings,
        vec![AverageWarning::DifferentInit {
            paths: vec![models[0].path.clone(), models[2].path.clone()]
        }]
    );
    let message = averaged.warnings[0].to_string();
    assert!(
        message.contains("rarely works")
            && message.contains(&models[0].path.display().to_string())
            && message.contains(&models[2].path.display().to_string())
            && !message.contains(&models[1].path.display().to_string()),
        "{message}"
    );
    assert!(average(&models[..2]).unwrap().warnings.is_empty());
}

// ---------------------------------------------------------------------------------------------
// BatchNorm recalibration.

/// Images `0..10` of a closed-form input `[10, 3, 8, 8]`, cut into batches of 2, 3 and 5.
const BATCHES: [(usize, usize); 3] = [(0, 2), (2, 5), (5, 10)];

/// `x[n, c, y, x] = ((n * 131 + c * 31 + y * 7 + x * 13) % 97) / 96 - 0.5` in f32, the input of
/// `crates/cv-model/tests/golden/resnet_parity.py` (and so of `golden/update_bn.py`).
fn input(shape: [usize; 4]) -> Tensor {
    let [n, c, h, w] = shape;
    let mut values = Vec::with_capacity(n * c * h * w);
    for b in 0..n {
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let k = (b * 131 + ch * 31 + y * 7 + x * 13) % 97;
                    values.push(k as f32 / 96.0f32 - 0.5);
                }
            }
        }
    }
    Tensor::from_vec(values, (n, c, h, w), &Device::Cpu).unwrap()
}

fn batches(x: &Tensor) -> Vec<Tensor> {
    BATCHES
        .iter()
        .map(|&(a, b)| x.narrow(0, a, b - a).unwrap())
        .collect()
}

fn as_batches(images: Vec<Tensor>) -> Batches<'static> {
    Box::new(images.into_iter().map(|x| -> BatchResult {
        let labels = Tensor::zeros(x.dim(0)?, DType::U32, x.device())?;
        Ok((x, labels))
    }))
}

fn buffer(model: &ResNet, name: &str) -> Vec<f64> {
    host(model.params().get(name).unwrap().var.as_tensor())
}

/// Per-channel mean and unbiased variance of `[N, C, H, W]`, in f64.
fn channel_stats(x: &Tensor) -> (Vec<f64>, Vec<f64>) {
    let (n, c, h, w) = x.dims4().unwrap();
    let values = host(x);
    let count = (n * h * w) as f64;
    let mut means = vec![0.0; c];
    let mut vars = vec![0.0; c];
    for ch in 0..c {
        let channel: Vec<f64> = (0..n)
            .flat_map(|b| {
                let start = (b * c + ch) * h * w;
                values[start..start + h * w].to_vec()
            })
            .collect();
        let mean = channel.iter().sum::<f64>() / count;
        means[ch] = mean;
        vars[ch] = channel.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0);
    }
    (means, vars)
}

fn max_abs_diff(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

#[test]
fn update_bn_averages_the_stems_batch_statistics_as_pytorch() {
    let model = model(5);
    let x = input([10, 3, 8, 8]);
    let weight = model
        .params()
        .get("conv1.weight")
        .unwrap()
        .var
        .as_tensor()
        .clone();
    // The stem BN sees conv1 of the images (3×3, stride 1, padding 1). PyTorch's momentum=None:
    // after batch k, running += (batch statistic - running) / k, from mean 0 and variance 1.
    let mut mean = vec![0.0; 16];
    let mut var = vec![1.0; 16];
    for (k, batch) in batches(&x).iter().enumerate() {
        let (m, v) = channel_stats(&batch.conv2d(&weight, 1, 1, 1, 1).unwrap());
        for c in 0..16 {
            mean[c] += (m[c] - mean[c]) / (k + 1) as f64;
            var[c] += (v[c] - var[c]) / (k + 1) as f64;
        }
    }

    let report = update_bn(&model, as_batches(batches(&x))).unwrap();
    assert_eq!((report.batches, report.samples), (3, 10));
    let got_mean = buffer(&model, "bn1.running_mean");
    let got_var = buffer(&model, "bn1.running_var");
    let scale = var.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    assert!(
        max_abs_diff(&got_mean, &mean) < 1e-6 * scale.max(1.0),
        "{got_mean:?} vs {mean:?}"
    );
    assert!(
        max_abs_diff(&got_var, &var) < 1e-5 * scale.max(1.0),
        "{got_var:?} vs {var:?}"
    );
    // The batches have different sizes, so this is not the statistic of all ten images pooled.
    let (_, pooled_var) = channel_stats(&x.conv2d(&weight, 1, 1, 1, 1).unwrap());
    assert!(max_abs_diff(&pooled_var, &var) > 1e-3 * scale);

    // The model keeps PyTorch's momentum 0.1 for later train-mode passes.
    let batch = x.narrow(0, 0, 4).unwrap();
    let (m, _) = channel_stats(&batch.conv2d(&weight, 1, 1, 1, 1).unwrap());
    model.features(&batch, true).unwrap();
    let after = buffer(&model, "bn1.running_mean");
    for c in 0..16 {
        let expected = 0.9 * got_mean[c] + 0.1 * m[c];
        assert!((after[c] - expected).abs() < 1e-6, "channel {c}");
    }
}

/// The closed-form parameter values of `crates/cv-model/tests/golden/resnet_parity.py`.
fn base(name: &str, i: usize) -> f64 {
    let mut h = (i as u32).wrapping_add(0x9E37_79B9u32.wrapping_mul(name.len() as u32 + 1));
    h ^= h >> 16;
    h = h.wrapping_mul(0x7FEB_352D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846C_A68B);
    h ^= h >> 16;
    f64::from(h) / 2f64.powi(31) - 1.0
}

fn pattern(name: &str, shape: &[usize]) -> Vec<f32> {
    let count: usize = shape.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    (0..count)
        .map(|i| {
            let b = base(name, i);
            let v = if name.starts_with("fc.") {
                if leaf == "weight" {
                    2.0 * b / (shape[1] as f64).sqrt()
                } else {
                    0.1 * b
                }
            } else if leaf == "weight" && shape.len() == 4 {
                2.0 * b / (shape[1..].iter().product::<usize>() as f64).sqrt()
            } else {
                match leaf {
                    "weight" => 1.0 + 0.25 * b,
                    "bias" | "running_mean" => 0.1 * b,
                    "running_var" => 1.0 + 0.5 * b.abs(),
                    _ => panic!("unexpected variable {name}"),
                }
            };
            v as f32
        })
        .collect()
}

#[test]
fn update_bn_matches_pytorchs_update_bn() {
    let golden: serde_json::Value =
        serde_json::from_str(include_str!("golden/update_bn.json")).unwrap();
    assert_eq!(golden["model"], "cifar-resnet-8");
    let model = model(0);
    for (name, param) in model.params().iter() {
        let shape = param.var.dims().to_vec();
        let value = Tensor::from_vec(pattern(name, &shape), shape, &Device::Cpu).unwrap();
        param.var.set(&value).unwrap();
    }
    let report = update_bn(&model, as_batches(batches(&input([10, 3, 8, 8])))).unwrap();
    assert_eq!((report.batches, report.samples), (3, 10));

    let torch_error = golden["torch_f32_error"].as_f64().unwrap();
    let tolerance = 2e-6f64.max(4.0 * torch_error);
    let running = golden["running"].as_array().unwrap();
    // 9 BatchNorms, stem and downsample shortcuts included.
    assert_eq!(running.len(), 18);
    let mut worst = 0.0f64;
    for entry in running {
        let name = entry[0].as_str().unwrap();
        let expected: Vec<f64> = entry[1]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let error = max_abs_diff(&buffer(&model, name), &expected);
        assert!(
            error <= tolerance,
            "{name}: max abs error {error:.3e} > {tolerance:.1e}"
        );
        worst = worst.max(error);
    }
    eprintln!("update_bn vs PyTorch: max abs error {worst:.3e} (torch float32: {torch_error:.3e})");
}

#[test]
fn update_bn_leaves_the_statistics_alone_when_it_fails() {
    let model = model(6);
    let before: Vec<_> = [
        "bn1.running_mean",
        "bn1.running_var",
        "layer3.0.bn2.running_var",
    ]
    .iter()
    .map(|n| buffer(&model, n))
    .collect();
    let unchanged = |model: &ResNet| {
        let now: Vec<_> = [
            "bn1.running_mean",
            "bn1.running_var",
            "layer3.0.bn2.running_var",
        ]
        .iter()
        .map(|n| buffer(model, n))
        .collect();
        assert_eq!(now, before);
    };

    let err = update_bn(&model, Box::new(std::iter::empty())).unwrap_err();
    assert!(matches!(err, EnsembleError::NoBatches), "{err}");
    unchanged(&model);

    // A batch that cannot be read after one that could: the first batch's statistics are undone.
    let x = input([4, 3, 8, 8]);
    let failing: Batches<'static> = Box::new(
        vec![
            Ok((
                x.clone(),
                Tensor::zeros(4, DType::U32, &Device::Cpu).unwrap(),
            )),
            Err("disk on fire".into()),
        ]
        .into_iter(),
    );
    let err = update_bn(&model, failing).unwrap_err();
    assert!(
        matches!(err, EnsembleError::Data(_)) && err.to_string().contains("disk on fire"),
        "{err}"
    );
    unchanged(&model);
}

// ---------------------------------------------------------------------------------------------
// Greedy soup.

fn with_accuracy(dir: &Path, name: &str, seed: u64, accuracy: Option<f64>) -> ModelFile {
    let tensors = model(seed).params().tensors();
    let mut sidecar = sidecar(&config(), &tensors, "init");
    if let Some(a) = accuracy {
        sidecar.metrics.insert("accuracy".to_owned(), a);
    }
    write(&dir.join(format!("{name}.safetensors")), &tensors, &sidecar)
}

#[test]
fn greedy_soup_adds_a_model_only_if_the_held_out_score_does_not_drop() {
    let dir = tempfile::tempdir().unwrap();
    let models = vec![
        with_accuracy(dir.path(), "m0", 20, Some(0.7)),
        with_accuracy(dir.path(), "m1", 21, Some(0.9)),
        with_accuracy(dir.path(), "m2", 22, Some(0.8)),
        with_accuracy(dir.path(), "m3", 23, Some(0.8)),
    ];
    // Ranked m1, m2, m3 (a tie with m3, first in file order), m0. The fake held-out scores, in
    // that order: m1 alone 0.50; + m2 0.60 (kept); + m3 0.55 (lower: left out); + m0 0.60
    // (equal: kept).
    let scripted = [0.50, 0.60, 0.55, 0.60];
    let mut seen: Vec<BTreeMap<String, Tensor>> = Vec::new();
    let soup = greedy_soup(
        &models,
        |m| m.sidecar.metrics.get("accuracy").copied(),
        |tensors| {
            seen.push(tensors.clone());
            Ok(scripted[seen.len() - 1])
        },
    )
    .unwrap();

    let t = |i: usize| &models[i].tensors;
    assert_eq!(seen.len(), 4);
    assert_bits(&seen[0], &file_bits(t(1)));
    assert_bits(&seen[1], &expected_mean(&[t(1), t(2)]));
    assert_bits(&seen[2], &expected_mean(&[t(1), t(2), t(3)]));
    assert_bits(&seen[3], &expected_mean(&[t(1), t(2), t(0)]));

    let path = |i: usize| models[i].path.clone();
    assert_eq!(soup.members, vec![path(1), path(2), path(0)]);
    assert_bits(&soup.tensors, &expected_mean(&[t(1), t(2), t(0)]));
    assert_eq!(soup.score, 0.60);
    assert_eq!(
        soup.tried,
        vec![
            (path(1), 0.50, true),
            (path(2), 0.60, true),
            (path(3), 0.55, false),
            (path(0), 0.60, true),
        ]
    );
}

#[test]
fn greedy_soup_refuses_a_model_without_a_score_and_passes_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let models = vec![
        with_accuracy(dir.path(), "m0", 20, Some(0.7)),
        with_accuracy(dir.path(), "m1", 21, None),
    ];
    let err = greedy_soup(
        &models,
        |m| m.sidecar.metrics.get("accuracy").copied(),
        |_| Ok(1.0),
    )
    .unwrap_err();
    assert!(
        matches!(&err, EnsembleError::NoScore { path } if *path == models[1].path),
        "{err}"
    );

    let err = greedy_soup(
        &models,
        |_| Some(0.5),
        |_| Err(EnsembleError::Invalid("evaluation failed".to_owned())),
    )
    .unwrap_err();
    assert!(err.to_string().contains("evaluation failed"), "{err}");

    let err = greedy_soup(&models, |_| Some(0.5), |_| Ok(f64::NAN)).unwrap_err();
    assert!(err.to_string().contains("NaN"), "{err}");
}

// ---------------------------------------------------------------------------------------------
// The averaged model file.

#[test]
fn an_averaged_model_file_round_trips_through_read_and_load() {
    let dir = tempfile::tempdir().unwrap();
    let models = vec![
        fold(dir.path(), "fold-0", 30, "init"),
        fold(dir.path(), "fold-1", 31, "init"),
    ];
    let averaged = average(&models).unwrap();
    // Recalibrated, as a user would, before saving.
    let network = models[0]
        .instantiate(&averaged.tensors, &Device::Cpu)
        .unwrap();
    update_bn(&network, as_batches(batches(&input([10, 3, 8, 8])))).unwrap();
    let tensors = network.params().tensors();

    let path = dir.path().join("averaged.safetensors");
    let metrics = BTreeMap::from([("accuracy".to_owned(), 0.75)]);
    let written = save_averaged(&path, &models, &tensors, metrics.clone()).unwrap();
    let file = ModelFile::read(&path).unwrap();
    assert_eq!(file.sidecar, written);
    assert_eq!(file.sidecar.architecture, models[0].sidecar.architecture);
    assert_eq!(file.sidecar.classes, models[0].sidecar.classes);
    assert_eq!(file.sidecar.epoch, None);
    assert_eq!(file.sidecar.metrics, metrics);
    assert_eq!(file.sidecar.init_hash, "init");
    assert_eq!(file.sidecar.weights_hash, weights_hash(&tensors).unwrap());
    assert_bits(&file.tensors, &file_bits(&tensors));

    let loaded = file.load(&Device::Cpu).unwrap();
    assert_bits(&loaded.params().tensors(), &file_bits(&tensors));
    let x = input([2, 3, 8, 8]);
    let logits = loaded.forward_t(&x, false).unwrap();
    assert_eq!(bits(&logits), bits(&network.forward_t(&x, false).unwrap()));

    // Models from different initial weights: the sidecar says so.
    let mixed = vec![
        models[0].clone(),
        fold(dir.path(), "fold-2", 32, "other-init"),
    ];
    let path = dir.path().join("mixed.safetensors");
    let averaged = average(&mixed).unwrap();
    save_averaged(&path, &mixed, &averaged.tensors, BTreeMap::new()).unwrap();
    assert_eq!(
        ModelFile::read(&path).unwrap().sidecar.init_hash,
        MIXED_INIT
    );

    // Tensors that are not the models' are not written.
    let mut wrong = averaged.tensors.clone();
    wrong.remove("fc.bias");
    let path = dir.path().join("wrong.safetensors");
    let err = save_averaged(&path, &mixed, &wrong, BTreeMap::new()).unwrap_err();
    assert!(err.to_string().contains("fc.bias"), "{err}");
    assert!(!path.exists());
}
