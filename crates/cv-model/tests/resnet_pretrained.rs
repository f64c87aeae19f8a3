//! Starting from a safetensors file with torchvision's names.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use cv_model::{build, load_pretrained, Architecture, ModelConfig, ModelError, ResNet, SkipReason};
use cv_seed::SeedTree;

fn model(architecture: Architecture, num_classes: usize, seed: u64) -> ResNet {
    let config = ModelConfig {
        architecture,
        in_channels: 3,
        num_classes,
        dropout: 0.0,
    };
    build(&config, &SeedTree::new(seed).child("init"), &Device::Cpu).unwrap()
}

fn cifar(depth: usize, width: usize) -> Architecture {
    Architecture::CifarResnet { depth, width }
}

/// A model's variables as a torchvision-style file: `num_batches_tracked` included, and
/// optionally in another dtype, as files converted from PyTorch are.
fn save(model: &ResNet, path: &Path, dtype: DType, drop: &[&str]) {
    let mut map: HashMap<String, Tensor> = HashMap::new();
    for (name, param) in model.params().iter() {
        if drop.contains(&name) {
            continue;
        }
        map.insert(
            name.to_owned(),
            param.var.as_tensor().to_dtype(dtype).unwrap(),
        );
        if let Some(prefix) = name.strip_suffix(".running_mean") {
            let steps = Tensor::new(&[17i64], &Device::Cpu)
                .unwrap()
                .squeeze(0)
                .unwrap();
            map.insert(format!("{prefix}.num_batches_tracked"), steps);
        }
    }
    candle_core::safetensors::save(&map, path).unwrap();
}

fn values(model: &ResNet, name: &str) -> Vec<f32> {
    let t = model.params().get(name).unwrap().var.as_tensor();
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

#[test]
fn a_matching_file_loads_everything() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let source = model(Architecture::Resnet18, 10, 1);
    // Running statistics that are not the defaults, to see that buffers load too.
    let x = Tensor::ones((2, 3, 32, 32), DType::F32, &Device::Cpu).unwrap();
    source.forward_t(&x, true).unwrap();
    save(&source, &path, DType::F32, &[]);

    let target = model(Architecture::Resnet18, 10, 2);
    let report = load_pretrained(&target, &path).unwrap();
    assert_eq!(report.loaded.len(), target.params().len());
    assert!(report.missing.is_empty());
    assert_eq!(report.skipped.len(), 20); // one num_batches_tracked per BatchNorm
    assert!(report
        .skipped
        .iter()
        .all(|(n, r)| n.ends_with("num_batches_tracked") && *r == SkipReason::NumBatchesTracked));
    for (name, _) in target.params().iter() {
        assert_eq!(values(&target, name), values(&source, name), "{name}");
    }
}

#[test]
fn a_classifier_of_another_shape_keeps_the_seeded_init() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("weights.safetensors");
    let source = model(cifar(8, 1), 1000, 1);
    // Stored as f64: converted on load.
    save(&source, &path, DType::F64, &[]);

    let target = model(cifar(8, 1), 5, 2);
    // Whatever happened to the classifier before, the load puts back its seeded start.
    let fc = &target.params().get("fc.bias").unwrap().var;
    fc.set(&fc.as_tensor().ones_like().unwrap()).unwrap();
    let report = load_pretrained(&target, &path).unwrap();
    assert_eq!(report.loaded.len(), target.params().len() - 2);
    let classifier: Vec<_> = report
        .skipped
        .iter()
        .filter(|(_, r)| *r != SkipReason::NumBatchesTracked)
        .collect();
    assert_eq!(
        classifier,
        vec![
            &(
                "fc.bias".to_owned(),
                SkipReason::ClassifierShape {
                    file: vec![1000],
                    model: vec![5]
                }
            ),
            &(
                "fc.weight".to_owned(),
                SkipReason::ClassifierShape {
                    file: vec![1000, 64],
                    model: vec![5, 64]
                }
            ),
        ]
    );
    assert!(classifier[1].1.to_string().contains("re-initialised"));
    let fresh = model(cifar(8, 1), 5, 2);
    for name in ["fc.weight", "fc.bias"] {
        assert_eq!(values(&target, name), values(&fresh, name), "{name}");
    }
    assert_eq!(
        values(&target, "layer3.0.conv1.weight"),
        values(&source, "layer3.0.conv1.weight")
    );
}

#[test]
fn a_headless_file_reports_the_missing_classifier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("backbone.safetensors");
    save(
        &model(cifar(8, 1), 10, 1),
        &path,
        DType::F32,
        &["fc.weight", "fc.bias"],
    );
    let target = model(cifar(8, 1), 10, 2);
    let report = load_pretrained(&target, &path).unwrap();
    assert_eq!(report.missing, vec!["fc.bias", "fc.weight"]);
    assert_eq!(report.loaded.len(), target.params().len() - 2);
}

#[test]
fn a_file_for_another_architecture_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        // Deeper: names the model does not have.
        (
            cifar(20, 1),
            cifar(8, 1),
            "layer1.1.bn1.bias is not in the model",
        ),
        // Shallower: names the file lacks.
        (
            cifar(8, 1),
            cifar(20, 1),
            "layer1.1.bn1.bias is missing from the file",
        ),
        // Wider: shapes.
        (
            cifar(8, 2),
            cifar(8, 1),
            "bn1.bias has shape [32] in the file, [16] in the model",
        ),
        (Architecture::Resnet18, Architecture::Resnet50, "has shape"),
    ];
    for (i, (file_arch, model_arch, needle)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("{i}.safetensors"));
        save(&model(file_arch, 10, 1), &path, DType::F32, &[]);
        let target = model(model_arch, 10, 2);
        let before = values(&target, "conv1.weight");
        let err = load_pretrained(&target, &path).unwrap_err();
        let text = err.to_string();
        eprintln!("{text}");
        assert!(
            matches!(err, ModelError::PretrainedMismatch { count, .. } if count > 1),
            "{text}"
        );
        assert!(text.contains(needle), "{text}");
        assert!(text.contains(&model_arch.name()), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        // Nothing was copied.
        assert_eq!(values(&target, "conv1.weight"), before);
    }
}

#[test]
fn an_unreadable_file_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("not-there.safetensors");
    let err = load_pretrained(&model(cifar(8, 1), 10, 1), &path).unwrap_err();
    assert!(matches!(err, ModelError::ReadPretrained { .. }));
    assert!(err.to_string().contains("not-there.safetensors"), "{err}");
}
