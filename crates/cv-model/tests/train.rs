//! The fold trainer on a tiny CIFAR ResNet and tiny synthetic images: it learns, it repeats
//! itself bit for bit (also across thread counts), a resumed fold ends where an uninterrupted
//! one does, and a diverging loss stops with the epoch and step named.

use std::collections::BTreeMap;
use std::path::Path;

use candle_core::{Device, Tensor};
use cv_model::checkpoint::{save_model, weights_hash, ModelSidecar};
use cv_model::train::{BatchResult, Batches};
use cv_model::{
    build, train_fold, Architecture, ModelConfig, OptimizerConfig, ScheduleConfig, SgdConfig,
    TrainConfig, TrainError,
};
use cv_seed::{Draw, SeedTree};

const CLASSES: usize = 3;

/// `n` 1×8×8 images: class k lights up row block k, plus seeded noise.
fn data(n: usize, seed: u64) -> Vec<(Vec<f32>, u32)> {
    let mut rng = SeedTree::new(seed).child("data").rng();
    (0..n)
        .map(|i| {
            let class = (i % CLASSES) as u32;
            let pixels = (0..64)
                .map(|p| {
                    let row = p / 8;
                    let signal = if row / 3 == class as usize { 1.0 } else { 0.0 };
                    signal + 0.3 * rng.normal() as f32
                })
                .collect();
            (pixels, class)
        })
        .collect()
}

/// Batches of 8 in an order drawn from `seed/epoch`.
fn batches(samples: &[(Vec<f32>, u32)], seed: u64, epoch: usize, shuffle: bool) -> Batches<'_> {
    let mut order: Vec<usize> = (0..samples.len()).collect();
    if shuffle {
        SeedTree::new(seed)
            .path("order")
            .indexed("epoch", epoch as u64)
            .rng()
            .shuffle(&mut order);
    }
    let chunks: Vec<Vec<usize>> = order.chunks(8).map(<[usize]>::to_vec).collect();
    Box::new(chunks.into_iter().map(move |chunk| -> BatchResult {
        let pixels: Vec<f32> = chunk.iter().flat_map(|&i| samples[i].0.clone()).collect();
        let labels: Vec<u32> = chunk.iter().map(|&i| samples[i].1).collect();
        let n = chunk.len();
        Ok((
            Tensor::from_vec(pixels, (n, 1, 8, 8), &Device::Cpu)?,
            Tensor::from_vec(labels, n, &Device::Cpu)?,
        ))
    }))
}

fn model_config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::CifarResnet { depth: 8, width: 1 },
        in_channels: 1,
        num_classes: CLASSES,
        dropout: 0.2,
    }
}

fn train_config(epochs: usize, lr: f64) -> TrainConfig {
    TrainConfig {
        epochs,
        lr,
        optimizer: OptimizerConfig::Sgd(SgdConfig {
            momentum: 0.9,
            weight_decay: 5e-4,
            ..SgdConfig::default()
        }),
        schedule: ScheduleConfig::default(),
        loss: Default::default(),
        clip_grad_norm: Some(5.0),
        ema: None,
        select_by: Default::default(),
        early_stopping_patience: None,
    }
}

/// Trains a fresh model; returns its final weights and the outcome's best weights.
fn run(
    config: &TrainConfig,
    seed: u64,
    checkpoint: Option<&Path>,
) -> Result<(BTreeMap<String, Vec<f32>>, cv_model::FoldOutcome), TrainError> {
    let train = data(48, 1);
    let valid = data(24, 2);
    let tree = SeedTree::new(seed);
    let model = build(&model_config(), &tree.child("init"), &Device::Cpu)?;
    let outcome = train_fold(
        &model,
        config,
        |epoch| batches(&train, seed, epoch, true),
        |epoch| batches(&valid, seed, epoch, false),
        &tree.child("dropout"),
        checkpoint,
        |_| {},
    )?;
    let weights = model
        .params()
        .iter()
        .map(|(n, p)| {
            (
                n.to_owned(),
                p.var.as_tensor().flatten_all().unwrap().to_vec1().unwrap(),
            )
        })
        .collect();
    Ok((weights, outcome))
}

#[test]
fn learns_and_repeats_bit_for_bit() {
    let config = train_config(4, 0.05);
    let (weights, outcome) = run(&config, 7, None).unwrap();
    assert_eq!(outcome.history.len(), 4);
    let last = &outcome.history[3];
    assert!(
        last.valid.accuracy > 0.8,
        "validation accuracy {}",
        last.valid.accuracy
    );
    assert!(outcome.history[0].train.loss > last.train.loss);
    let (again, outcome_again) = run(&config, 7, None).unwrap();
    assert_eq!(weights, again, "same seed, different weights");
    assert_eq!(outcome.history, outcome_again.history);
    // The best weights written as model files are byte-identical too.
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<Vec<u8>> = [&outcome, &outcome_again]
        .iter()
        .enumerate()
        .map(|(i, o)| {
            let path = dir.path().join(format!("model-{i}.safetensors"));
            let hash = weights_hash(&o.best_weights).unwrap();
            let sidecar = ModelSidecar {
                architecture: serde_json::to_value(model_config()).unwrap(),
                classes: vec!["a".into(), "b".into(), "c".into()],
                epoch: Some(o.best_epoch),
                metrics: BTreeMap::new(),
                init_hash: String::new(),
                weights_hash: hash,
            };
            save_model(&path, &o.best_weights, &sidecar).unwrap();
            std::fs::read(&path).unwrap()
        })
        .collect();
    assert_eq!(files[0], files[1]);
    // One thread or two: the same bits.
    let one = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let (single, _) = one.install(|| run(&config, 7, None)).unwrap();
    assert_eq!(weights, single, "thread count changed the weights");
    let (other_seed, _) = run(&config, 8, None).unwrap();
    assert_ne!(weights, other_seed);
}

#[test]
fn a_resumed_fold_ends_where_an_uninterrupted_one_does() {
    let dir = tempfile::tempdir().unwrap();
    let full = train_config(4, 0.05);
    let (uninterrupted, outcome) = run(&full, 3, None).unwrap();
    // "Interrupt" after 2 epochs: train with epochs = 2 into the checkpoint folder, then
    // resume with the full config from that folder in a fresh model.
    run(&train_config(2, 0.05), 3, Some(dir.path())).unwrap();
    let files: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.contains(&"checkpoint.json".to_owned()), "{files:?}");
    assert_eq!(
        files.len(),
        2,
        "old epoch files or temporaries left: {files:?}"
    );
    let (resumed, resumed_outcome) = run(&full, 3, Some(dir.path())).unwrap();
    assert_eq!(uninterrupted, resumed, "resumed weights differ");
    assert_eq!(outcome.history, resumed_outcome.history);
    assert_eq!(outcome.best_epoch, resumed_outcome.best_epoch);
}

#[test]
fn a_diverging_loss_names_epoch_and_step_and_keeps_the_last_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    // One good epoch, then a learning rate that blows up.
    run(&train_config(1, 0.05), 5, Some(dir.path())).unwrap();
    let mut config = train_config(3, 0.05);
    config.lr = 1e12;
    config.clip_grad_norm = None;
    let err = run(&config, 5, Some(dir.path())).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, TrainError::NonFiniteLoss { epoch: 1, .. }),
        "{text}"
    );
    assert!(text.contains("epoch 1, step"), "{text}");
    let state = std::fs::read_to_string(dir.path().join("checkpoint.json")).unwrap();
    assert!(state.contains("\"next_epoch\": 1"), "{state}");
}

#[test]
fn early_stopping_stops_and_keeps_the_best_epoch() {
    let mut config = train_config(30, 0.0);
    config.early_stopping_patience = Some(2);
    let (_, outcome) = run(&config, 1, None).unwrap();
    // With lr 0 nothing improves after the first epoch.
    assert!(outcome.stopped_early);
    assert_eq!(outcome.history.len(), 3);
    assert_eq!(outcome.best_epoch, 0);
}
