//! Softmax ensembling, evaluation, out-of-fold assembly and the comparison table, on tiny
//! CIFAR ResNets (depth 8, 1×8×8 inputs) and hand-made numbers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use cv_ensemble::{
    ensemble_probabilities, ensemble_probabilities_from_files, evaluate, log_loss,
    predict_probabilities, Combine, Comparison, EnsembleError, FoldPredictions, ModelFile,
    OutOfFold, Predictions, Scores,
};
use cv_model::checkpoint::{save_model, weights_hash, ModelSidecar};
use cv_model::train::Batches;
use cv_model::{build, Architecture, ModelConfig};

const CLASSES: [&str; 3] = ["cat", "dog", "eel"];
const N: usize = 7;

fn config() -> ModelConfig {
    ModelConfig {
        architecture: Architecture::CifarResnet { depth: 8, width: 1 },
        in_channels: 1,
        num_classes: 3,
        dropout: 0.0,
    }
}

fn classes() -> Vec<String> {
    CLASSES.iter().map(|c| c.to_string()).collect()
}

/// Writes a model built from `seed` to `dir/model-<seed>.safetensors`, with a large fc so that
/// the softmax is far from uniform.
fn write_model(dir: &Path, seed: u64) -> PathBuf {
    let model = build(
        &config(),
        &cv_seed::SeedTree::new(seed).child("init"),
        &Device::Cpu,
    )
    .unwrap();
    let mut tensors: BTreeMap<String, Tensor> = model.params().tensors();
    let fc = tensors["fc.weight"].affine(20.0, 0.0).unwrap();
    tensors.insert("fc.weight".into(), fc);
    let hash = weights_hash(&tensors).unwrap();
    let sidecar = ModelSidecar {
        architecture: serde_json::to_value(config()).unwrap(),
        classes: classes(),
        epoch: Some(0),
        metrics: BTreeMap::new(),
        init_hash: hash.clone(),
        weights_hash: hash,
    };
    let path = dir.join(format!("model-{seed}.safetensors"));
    save_model(&path, &tensors, &sidecar).unwrap();
    path
}

/// Seven 1×8×8 images (distinct smooth patterns) in batches of 3, 3 and 1, labels 0,1,2,0,….
fn batches() -> Batches<'static> {
    let images: Vec<f32> = (0..N * 64)
        .map(|i| {
            let (s, p) = ((i / 64) as f32, (i % 64) as f32);
            ((s + 1.0) * 0.37 * p).sin() + 0.1 * s
        })
        .collect();
    let labels: Vec<u32> = (0..N as u32).map(|i| i % 3).collect();
    let all = Tensor::from_vec(images, (N, 1, 8, 8), &Device::Cpu).unwrap();
    let labels = Tensor::from_vec(labels, N, &Device::Cpu).unwrap();
    let chunks: Vec<(usize, usize)> = vec![(0, 3), (3, 3), (6, 1)];
    Box::new(
        chunks.into_iter().map(move |(start, len)| {
            Ok((all.narrow(0, start, len)?, labels.narrow(0, start, len)?))
        }),
    )
}

fn bits(p: &Predictions) -> Vec<u32> {
    p.probabilities.iter().map(|x| x.to_bits()).collect()
}

struct Fixture {
    _dir: tempfile::TempDir,
    paths: Vec<PathBuf>,
    files: Vec<ModelFile>,
}

fn fixture(seeds: &[u64]) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<PathBuf> = seeds.iter().map(|&s| write_model(dir.path(), s)).collect();
    let files = paths.iter().map(|p| ModelFile::read(p).unwrap()).collect();
    Fixture {
        _dir: dir,
        paths,
        files,
    }
}

fn single(file: &ModelFile) -> Predictions {
    predict_probabilities(&file.load(&Device::Cpu).unwrap(), batches()).unwrap()
}

#[test]
fn a_single_model_predicts_its_softmax() {
    let f = fixture(&[1]);
    let p = single(&f.files[0]);
    assert_eq!(p.len(), N);
    assert_eq!(p.labels, vec![0, 1, 2, 0, 1, 2, 0]);
    // Against candle's own softmax of the logits, to f32 precision.
    let model = f.files[0].load(&Device::Cpu).unwrap();
    let mut logits = Vec::new();
    for batch in batches() {
        let (x, _) = batch.unwrap();
        let l = model.forward_t(&x, false).unwrap();
        logits.extend(l.to_vec2::<f32>().unwrap());
    }
    for (i, row) in logits.iter().enumerate() {
        let max = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let e: Vec<f32> = row.iter().map(|x| (x - max).exp()).collect();
        let s: f32 = e.iter().sum();
        for (c, (&got, e)) in p.row(i).iter().zip(&e).enumerate() {
            assert!((got - e / s).abs() < 1e-6, "{i} {c}");
        }
    }
    // Far from uniform, so that the tests below compare something.
    assert!(p.probabilities.iter().any(|&x| x > 0.6));
}

#[test]
fn an_ensemble_of_one_model_is_that_model_bit_for_bit() {
    let f = fixture(&[1]);
    let expected = single(&f.files[0]);
    for low_memory in [false, true] {
        let p = ensemble_probabilities(&f.files, batches, Combine::Mean, low_memory, &Device::Cpu)
            .unwrap();
        assert_eq!(bits(&p), bits(&expected));
        assert_eq!(p.labels, expected.labels);
    }
}

#[test]
fn mean_of_two_models_is_the_mean_of_their_softmaxes() {
    let f = fixture(&[1, 2]);
    let a = single(&f.files[0]);
    let b = single(&f.files[1]);
    assert_ne!(bits(&a), bits(&b));
    let expected: Vec<f32> = a
        .probabilities
        .iter()
        .zip(&b.probabilities)
        .map(|(&x, &y)| ((f64::from(x) + f64::from(y)) / 2.0) as f32)
        .collect();
    let p = ensemble_probabilities(&f.files, batches, Combine::Mean, false, &Device::Cpu).unwrap();
    assert_eq!(p.probabilities, expected);
    // The class is the arg-max of the averaged row.
    for (i, &c) in p.predicted().iter().enumerate() {
        let row = p.row(i);
        assert!(row.iter().all(|&x| x <= row[c as usize]));
    }
}

#[test]
fn low_memory_and_in_memory_give_the_same_bits() {
    let f = fixture(&[1, 2, 3]);
    for combine in [Combine::Mean, Combine::GeometricMean] {
        let in_memory =
            ensemble_probabilities(&f.files, batches, combine, false, &Device::Cpu).unwrap();
        let low = ensemble_probabilities(&f.files, batches, combine, true, &Device::Cpu).unwrap();
        assert_eq!(bits(&in_memory), bits(&low), "{combine:?}");
        for low_memory in [false, true] {
            let from_files = ensemble_probabilities_from_files(
                &f.paths,
                batches,
                combine,
                low_memory,
                &Device::Cpu,
            )
            .unwrap();
            assert_eq!(bits(&from_files), bits(&in_memory), "{combine:?}");
        }
    }
}

#[test]
fn geometric_mean_rows_sum_to_one_and_follow_the_models() {
    let f = fixture(&[1, 2]);
    let g = ensemble_probabilities(
        &f.files,
        batches,
        Combine::GeometricMean,
        false,
        &Device::Cpu,
    )
    .unwrap();
    let a = single(&f.files[0]);
    let b = single(&f.files[1]);
    for i in 0..N {
        let sum: f64 = g.row(i).iter().map(|&x| f64::from(x)).sum();
        assert!((sum - 1.0).abs() < 1e-6, "row {i} sums to {sum}");
        // sqrt(a·b) renormalised, from the f32 probabilities by hand.
        let raw: Vec<f64> = (0..3)
            .map(|c| (f64::from(a.row(i)[c]) * f64::from(b.row(i)[c])).sqrt())
            .collect();
        let total: f64 = raw.iter().sum();
        for (&got, r) in g.row(i).iter().zip(&raw) {
            assert!((f64::from(got) - r / total).abs() < 1e-6);
        }
    }
    // The geometric mean of one model is its softmax (to rounding).
    let one = ensemble_probabilities(
        &f.files[..1],
        batches,
        Combine::GeometricMean,
        true,
        &Device::Cpu,
    )
    .unwrap();
    for (x, y) in one.probabilities.iter().zip(&a.probabilities) {
        assert!((x - y).abs() < 1e-6);
    }
}

#[test]
fn ensemble_errors_name_the_problem() {
    let f = fixture(&[1, 2]);
    let none = ensemble_probabilities(&[], batches, Combine::Mean, false, &Device::Cpu);
    assert!(matches!(none, Err(EnsembleError::NoModels)));

    let mut other = f.files[1].clone();
    other.sidecar.classes.swap(0, 1);
    let err = ensemble_probabilities(
        &[f.files[0].clone(), other],
        batches,
        Combine::Mean,
        false,
        &Device::Cpu,
    )
    .unwrap_err();
    assert!(matches!(err, EnsembleError::Mismatch { .. }), "{err}");

    // Batches that change between the low-memory passes.
    let mut calls = 0;
    let unstable = || {
        calls += 1;
        let take = if calls == 1 { 2 } else { 3 };
        Box::new(batches().take(take)) as Batches<'static>
    };
    let err =
        ensemble_probabilities(&f.files, unstable, Combine::Mean, true, &Device::Cpu).unwrap_err();
    assert!(
        matches!(err, EnsembleError::UnstableBatches { .. }),
        "{err}"
    );

    let empty = || Box::new(std::iter::empty()) as Batches<'static>;
    let err =
        ensemble_probabilities(&f.files, empty, Combine::Mean, false, &Device::Cpu).unwrap_err();
    assert!(matches!(err, EnsembleError::NoSamples), "{err}");

    let bad_label = || {
        let x = Tensor::zeros((1, 1, 8, 8), candle_core::DType::F32, &Device::Cpu).unwrap();
        let y = Tensor::from_vec(vec![3u32], 1, &Device::Cpu).unwrap();
        Box::new(std::iter::once(Ok((x, y)))) as Batches<'static>
    };
    let err = ensemble_probabilities(&f.files, bad_label, Combine::Mean, false, &Device::Cpu)
        .unwrap_err();
    assert!(
        matches!(
            err,
            EnsembleError::BadLabel {
                sample: 0,
                label: 3,
                n_classes: 3
            }
        ),
        "{err}"
    );
}

/// y_true = [0,0,0,1,1,2], arg-max predictions [0,0,1,1,2,2] (the confusion matrix of
/// cv-model's metrics test).
fn hand_made() -> Predictions {
    #[rustfmt::skip]
    let probabilities = vec![
        0.7, 0.2, 0.1,
        0.5, 0.25, 0.25,
        0.25, 0.5, 0.25,
        0.0, 1.0, 0.0,
        0.125, 0.375, 0.5,
        0.2, 0.2, 0.6,
    ];
    Predictions::new(3, probabilities, vec![0, 0, 0, 1, 1, 2]).unwrap()
}

#[test]
fn metrics_match_hand_computed_values() {
    let p = hand_made();
    assert_eq!(p.predicted(), vec![0, 0, 1, 1, 2, 2]);
    let e = evaluate(&p, &classes()).unwrap();
    assert_eq!(
        e.confusion_matrix,
        vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]
    );
    assert_eq!(e.samples, 6);
    assert_eq!(e.accuracy, 4.0 / 6.0);
    assert!((e.balanced_accuracy - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
    assert!((e.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
    let precision: Vec<Option<f64>> = e.per_class.iter().map(|c| c.precision).collect();
    let recall: Vec<Option<f64>> = e.per_class.iter().map(|c| c.recall).collect();
    let support: Vec<u64> = e.per_class.iter().map(|c| c.support).collect();
    assert_eq!(precision, vec![Some(1.0), Some(0.5), Some(0.5)]);
    assert_eq!(recall[1], Some(0.5));
    assert_eq!(recall[2], Some(1.0));
    assert!((recall[0].unwrap() - 2.0 / 3.0).abs() < 1e-15);
    assert_eq!(support, vec![3, 1 + 1, 1]);
    assert_eq!(e.per_class[2].class, "eel");

    // p[true] = 0.7, 0.5, 0.25, 1.0 → 1 − eps, 0.375, 0.6.
    let eps = f64::from(f32::EPSILON);
    let expected = -(0.7f32 as f64).ln()
        - 0.5f64.ln()
        - 0.25f64.ln()
        - (1.0 - eps).ln()
        - 0.375f64.ln()
        - (0.6f32 as f64).ln();
    let expected = expected / 6.0;
    assert!((e.log_loss - expected).abs() < 1e-15);
    assert_eq!(log_loss(&p).unwrap(), e.log_loss);
    // scikit-learn 1.9.1: log_loss([0, 0, 0, 1, 1, 2], the rows above as float32) =
    // 0.654628574848175, computed in float32.
    assert!((e.log_loss - 0.654_628_574_848_175).abs() < 1e-7);

    // The serialised form names everything.
    let json = serde_json::to_value(&e).unwrap();
    assert_eq!(json["per_class"][1]["class"], "dog");
    assert_eq!(json["confusion_matrix"][0][1], 1);
}

#[test]
fn log_loss_clips_and_does_not_renormalise() {
    // A zero probability on the true class costs -ln(eps), not infinity.
    let p = Predictions::new(2, vec![0.0, 1.0], vec![0]).unwrap();
    assert_eq!(log_loss(&p).unwrap(), -f64::from(f32::EPSILON).ln());
    // Rows are not renormalised (scikit-learn only warns): [0.25, 0.25] gives -ln 0.25.
    let p = Predictions::new(2, vec![0.25, 0.25], vec![1]).unwrap();
    assert_eq!(log_loss(&p).unwrap(), -0.25f64.ln());
    // Out of [0, 1] (or NaN) is an error, as in scikit-learn.
    for bad in [1.5, -0.1, f32::NAN] {
        let p = Predictions::new(2, vec![0.5, bad], vec![1]).unwrap();
        assert!(log_loss(&p).is_err(), "{bad}");
    }
    let p = Predictions::new(2, vec![], vec![]).unwrap();
    assert!(matches!(log_loss(&p), Err(EnsembleError::NoSamples)));
    assert!(evaluate(&hand_made(), &classes()[..2]).is_err());
}

#[test]
fn a_class_never_predicted_has_no_precision() {
    let p = Predictions::new(3, vec![0.6, 0.4, 0.0, 0.1, 0.9, 0.0], vec![0, 2]).unwrap();
    let e = evaluate(&p, &classes()).unwrap();
    assert_eq!(e.per_class[2].precision, None);
    assert_eq!(e.per_class[2].recall, Some(0.0));
    assert_eq!(e.per_class[1].recall, None);
    assert_eq!(e.per_class[1].precision, Some(0.0));
    let json = serde_json::to_value(&e).unwrap();
    assert!(json["per_class"][2]["precision"].is_null());
}

fn fold(
    fold: usize,
    indices: Vec<usize>,
    probabilities: Vec<f32>,
    labels: Vec<u32>,
) -> FoldPredictions {
    FoldPredictions {
        fold,
        indices,
        predictions: Predictions::new(3, probabilities, labels).unwrap(),
    }
}

/// Five samples; fold 0 tested on 1 and 3, fold 1 on 4, 0 and 2 (in that order).
fn two_folds() -> Vec<FoldPredictions> {
    vec![
        fold(
            0,
            vec![1, 3],
            vec![0.1, 0.7, 0.2, 0.3, 0.3, 0.4],
            vec![1, 2],
        ),
        fold(
            1,
            vec![4, 0, 2],
            vec![
                0.5, 0.25, 0.25, //
                0.6, 0.3, 0.1, //
                0.33333334, 0.33333334, 0.33333334,
            ],
            vec![0, 0, 2],
        ),
    ]
}

const PATHS: [&str; 5] = ["a/0.png", "a/1.png", "b/2,x.png", "c/3.png", "a/4.png"];
const LABELS: [u32; 5] = [0, 1, 2, 2, 0];

#[test]
fn out_of_fold_csv_has_one_row_per_sample_in_order() {
    let oof = OutOfFold::assemble(&PATHS, &LABELS, &classes(), &two_folds()).unwrap();
    let expected = "\
path,label,fold,prob_cat,prob_dog,prob_eel
a/0.png,cat,1,0.6,0.3,0.1
a/1.png,dog,0,0.1,0.7,0.2
\"b/2,x.png\",eel,1,0.33333334,0.33333334,0.33333334
c/3.png,eel,0,0.3,0.3,0.4
a/4.png,cat,1,0.5,0.25,0.25
";
    assert_eq!(oof.to_csv().unwrap(), expected);
    assert_eq!(oof.folds, vec![1, 0, 1, 0, 1]);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("oof.csv");
    oof.write_csv(&out).unwrap();
    assert_eq!(std::fs::read_to_string(&out).unwrap(), expected);
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("oof.csv")],
        "temporary file left"
    );

    // Predicted 0, 1, 0 (tie → first), 2, 0 against 0, 1, 2, 2, 0.
    let e = oof.evaluate().unwrap();
    assert_eq!(e.accuracy, 0.8);
    assert_eq!(
        e.confusion_matrix,
        vec![vec![2, 0, 0], vec![0, 1, 0], vec![1, 0, 1]]
    );
    let expected_loss = -[0.6f32, 0.7, 0.33333334, 0.4, 0.5]
        .iter()
        .map(|&p| f64::from(p).ln())
        .sum::<f64>()
        / 5.0;
    assert!((e.log_loss - expected_loss).abs() < 1e-15);
    // scikit-learn 1.9.1, float32: 0.715110182762146.
    assert!((e.log_loss - 0.715_110_182_762_146).abs() < 1e-7);
}

#[test]
fn out_of_fold_probabilities_round_trip() {
    let awkward = [0.1f32 + 0.2, 1.0 / 3.0, 1e-30, 0.999_999_9];
    let p = Predictions::new(
        3,
        awkward.iter().flat_map(|&x| [x, 0.0, 1.0 - x]).collect(),
        vec![0; 4],
    )
    .unwrap();
    let folds = [FoldPredictions {
        fold: 0,
        indices: vec![0, 1, 2, 3],
        predictions: p.clone(),
    }];
    let csv = OutOfFold::assemble(&["p"; 4], &[0; 4], &classes(), &folds)
        .unwrap()
        .to_csv()
        .unwrap();
    let read: Vec<f32> = csv
        .lines()
        .skip(1)
        .flat_map(|l| {
            l.split(',')
                .skip(3)
                .map(|x| x.parse::<f32>().unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(read, p.probabilities);
}

#[test]
fn out_of_fold_errors_name_the_sample() {
    let mut folds = two_folds();
    folds[1].indices = vec![4, 0, 3];
    folds[1].predictions.labels = vec![0, 0, 2];
    let err = OutOfFold::assemble(&PATHS, &LABELS, &classes(), &folds).unwrap_err();
    assert!(
        matches!(
            &err,
            EnsembleError::OofDuplicate {
                sample: 3,
                first: 0,
                second: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(
        err.to_string(),
        "sample 3 (c/3.png) is predicted twice: by fold 0 and by fold 1"
    );

    let mut folds = two_folds();
    folds[0] = fold(0, vec![1], vec![0.1, 0.7, 0.2], vec![1]);
    let err = OutOfFold::assemble(&PATHS, &LABELS, &classes(), &folds).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sample 3 (c/3.png) has no out-of-fold prediction: no fold's test indices hold it"
    );

    // Indices out of step with the predictions: the labels disagree.
    let mut folds = two_folds();
    folds[0].indices = vec![3, 1];
    let err = OutOfFold::assemble(&PATHS, &LABELS, &classes(), &folds).unwrap_err();
    assert!(err.to_string().contains("out of step"), "{err}");

    let mut folds = two_folds();
    folds[0].indices = vec![1, 5];
    let err = OutOfFold::assemble(&PATHS, &LABELS, &classes(), &folds).unwrap_err();
    assert!(err.to_string().contains("test index 5"), "{err}");

    let mut folds = two_folds();
    folds[0].indices = vec![1];
    assert!(OutOfFold::assemble(&PATHS, &LABELS, &classes(), &folds).is_err());
    assert!(OutOfFold::assemble(&PATHS, &LABELS[..4], &classes(), &two_folds()).is_err());
}

fn scores(accuracy: f64, balanced_accuracy: f64, macro_f1: f64, log_loss: f64) -> Scores {
    Scores {
        accuracy,
        balanced_accuracy,
        macro_f1,
        log_loss,
    }
}

#[test]
fn comparison_table_renders_exactly() {
    let c = Comparison {
        folds: vec![
            scores(0.80, 0.75, 0.70, 0.50),
            scores(0.90, 0.85, 0.80, 0.30),
            scores(0.85, 0.80, 0.60, 0.40),
        ],
        averaged: Some(scores(0.5, 0.4, 0.3, 2.0)),
        recalibrated: Some(scores(0.88, 0.84, 0.81, 0.35)),
        soup: None,
        ensemble: Some(scores(0.92, 0.9, 0.875, 0.25)),
    };
    // Means 0.85, 0.80, 0.70, 0.40; sample std (n − 1) 0.05, 0.05, 0.10, 0.10.
    let expected = "\
| model | accuracy | balanced accuracy | macro-F1 | log-loss |
|---|---:|---:|---:|---:|
| fold 0 | 0.8000 | 0.7500 | 0.7000 | 0.5000 |
| fold 1 | 0.9000 | 0.8500 | 0.8000 | 0.3000 |
| fold 2 | 0.8500 | 0.8000 | 0.6000 | 0.4000 |
| fold mean ± std | 0.8500 ± 0.0500 | 0.8000 ± 0.0500 | 0.7000 ± 0.1000 | 0.4000 ± 0.1000 |
| averaged weights | 0.5000 | 0.4000 | 0.3000 | 2.0000 |
| averaged weights + BN recalibration | 0.8800 | 0.8400 | 0.8100 | 0.3500 |
| softmax ensemble | 0.9200 | 0.9000 | 0.8750 | 0.2500 |
";
    assert_eq!(c.to_markdown(), expected);

    let json: serde_json::Value = serde_json::from_str(&c.to_json().unwrap()).unwrap();
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 7);
    assert_eq!(rows[3]["model"], "fold mean ± std");
    assert!((rows[3]["accuracy"].as_f64().unwrap() - 0.85).abs() < 1e-12);
    assert!((rows[3]["std"]["macro_f1"].as_f64().unwrap() - 0.1).abs() < 1e-12);
    assert!(rows[0].get("std").is_none());
    assert_eq!(rows[6]["model"], "softmax ensemble");
    assert_eq!(rows[6]["log_loss"], 0.25);

    // Nothing measured: just the header.
    assert_eq!(
        Comparison::default().to_markdown(),
        "| model | accuracy | balanced accuracy | macro-F1 | log-loss |\n|---|---:|---:|---:|---:|\n"
    );
}
