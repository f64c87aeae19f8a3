//! `cv train` end to end on a tiny data set and network (seconds): byte-identical reruns, one
//! fold then `--resume` equals a full run, the resolved config repeats the run, and bad input
//! stops before anything is written.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::{config, cv, dataset, ok, same_artefacts, train};

#[test]
fn reruns_resumes_and_resolved_configs_give_identical_runs() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let a = dir.path().join("a");
    ok(train(&config, &a, &[]));
    // `cv split --config` plans exactly the folds the run used.
    let out = ok(cv(&["split", "--config", config.to_str().unwrap()]));
    let planned: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let used: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(a.join("folds.json")).unwrap()).unwrap();
    assert_eq!(planned, used);
    // Rerun: byte-identical folds, models, metrics.
    let b = dir.path().join("b");
    ok(train(&config, &b, &[]));
    same_artefacts(&a, &b);
    // One fold alone, then the rest with --resume: the same as a full run.
    let c = dir.path().join("c");
    ok(train(&config, &c, &["--fold", "1"]));
    assert!(c.join("fold-1/model.safetensors").exists());
    assert!(!c.join("fold-0/model.safetensors").exists());
    ok(train(&config, &c, &["--resume"]));
    same_artefacts(&a, &c);
    // The saved, resolved config repeats the run.
    let d = dir.path().join("d");
    ok(train(&a.join("config.toml"), &d, &[]));
    same_artefacts(&a, &d);
    assert_eq!(
        std::fs::read_to_string(a.join("config.toml")).unwrap(),
        std::fs::read_to_string(d.join("config.toml")).unwrap()
    );
    // An existing run folder is not overwritten without --force.
    let out = train(&config, &a, &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    // --set changes the run and is recorded.
    let e = dir.path().join("e");
    ok(train(&config, &e, &["--set", "training.lr=0.01"]));
    assert!(std::fs::read_to_string(e.join("config.toml"))
        .unwrap()
        .contains("lr = 0.01"));
    assert_ne!(
        std::fs::read(a.join("fold-0/model.safetensors")).unwrap(),
        std::fs::read(e.join("fold-0/model.safetensors")).unwrap()
    );
}

#[test]
fn bad_configs_and_bad_data_stop_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let bad_key = config(dir.path(), &manifest, "lrr = 0.1");
    let run = dir.path().join("run");
    let out = train(&bad_key, &run, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("lrr") && stderr.contains("tiny.toml"),
        "{stderr}"
    );
    assert!(!run.exists());

    let broken = dir.path().join("broken.csv");
    std::fs::write(
        &broken,
        std::fs::read_to_string(&manifest).unwrap() + "missing.png,c0\n",
    )
    .unwrap();
    let config = config(dir.path(), &broken, "");
    let out = train(&config, &run, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.csv:38") && stderr.contains("file not found"),
        "{stderr}"
    );
    assert!(!run.exists(), "a run folder was written for bad data");
}

#[test]
fn ensemble_compares_fold_models_on_held_out_samples() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let run = dir.path().join("run");
    ok(train(&config, &run, &["--set", "cv.holdout=0.25"]));
    let out = ok(cv(&["ensemble", "--run", run.to_str().unwrap()]));
    let text = String::from_utf8_lossy(&out.stdout);
    let table = std::fs::read_to_string(run.join("ensemble/comparison.md")).unwrap();
    for row in [
        "fold 0",
        "fold mean ± std",
        "averaged weights",
        "BN recalibration",
        "softmax ensemble",
    ] {
        assert!(table.contains(row), "no {row:?} row in\n{table}");
    }
    assert!(text.contains("Judged on 9 held-out samples"), "{text}");
    assert!(run.join("ensemble/averaged.safetensors").exists());
    assert!(run.join("ensemble/averaged.json").exists());
    // The report: folds table, learning-curve charts, confusion matrix, ensemble comparison.
    let report = std::fs::read_to_string(run.join("report.html")).unwrap();
    assert_eq!(report.matches("<svg").count(), 2, "two charts expected");
    for part in [
        "Learning curves",
        "Out-of-fold confusion matrix",
        "Ensemble on the held-out samples",
        "softmax ensemble",
    ] {
        assert!(report.contains(part), "report lacks {part:?}");
    }
    // Without held-out samples there is nothing unseen to judge on, unless a test manifest is
    // given (its labels must be the run's classes).
    let plain = dir.path().join("plain");
    ok(train(&config, &plain, &[]));
    let out = cv(&["ensemble", "--run", plain.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cv.holdout"));
    let out = ok(cv(&[
        "ensemble",
        "--run",
        plain.to_str().unwrap(),
        "--test-manifest",
        manifest.to_str().unwrap(),
    ]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("Judged on 36 samples of"));
    let bad = dir.path().join("bad-test.csv");
    std::fs::write(&bad, "path,label\nimg00.png,horse\n").unwrap();
    let out = cv(&[
        "ensemble",
        "--run",
        plain.to_str().unwrap(),
        "--test-manifest",
        bad.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown label \"horse\""));
}

#[test]
fn fold_jobs_then_aggregate_equal_a_full_run() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let full = dir.path().join("full");
    ok(train(&config, &full, &[]));
    // Each fold as its own job (as a scheduler's array tasks would run them), in any order.
    let jobs = dir.path().join("jobs");
    ok(train(&config, &jobs, &["--fold", "2"]));
    ok(train(&config, &jobs, &["--fold", "0", "--resume"]));
    ok(train(&config, &jobs, &["--fold", "1", "--resume"]));
    ok(cv(&["aggregate", "--run", jobs.to_str().unwrap()]));
    same_artefacts(&full, &jobs);
}

#[test]
fn check_data_reports_problems_and_passes_clean_data() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let out = ok(cv(&[
        "check-data",
        "--manifest",
        manifest.to_str().unwrap(),
        "--min-per-class",
        "5",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("3 classes (c0: 12, c1: 12, c2: 12)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("36 images checked, no problems"),
        "{stdout}"
    );
    std::fs::write(dir.path().join("img05.png"), b"").unwrap();
    let out = cv(&[
        "check-data",
        "--manifest",
        manifest.to_str().unwrap(),
        "--min-per-class",
        "12",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("manifest.csv:7") && stderr.contains("empty file"),
        "{stderr}"
    );
    assert!(
        stderr.contains("class \"c2\": only 11 usable images"),
        "{stderr}"
    );
}

#[test]
fn predict_writes_probabilities_for_images() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let run = dir.path().join("run");
    ok(train(&config, &run, &[]));
    let images: Vec<String> = ["img00.png", "img04.png"]
        .iter()
        .map(|n| dir.path().join(n).display().to_string())
        .collect();
    let out = ok(cv(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        &images[0],
        &images[1],
    ]));
    let text = String::from_utf8(out.stdout).unwrap();
    // `--device cpu` is where this run computes anyway: the same output.
    let on_cpu = ok(cv(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--device",
        "cpu",
        &images[0],
        &images[1],
    ]));
    assert_eq!(String::from_utf8(on_cpu.stdout).unwrap(), text);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "path,predicted,prob_c0,prob_c1,prob_c2");
    assert_eq!(lines.len(), 3);
    for (line, image) in lines[1..].iter().zip(&images) {
        let cells: Vec<&str> = line.split(',').collect();
        assert_eq!(cells[0], image);
        let probs: Vec<f32> = cells[2..].iter().map(|c| c.parse().unwrap()).collect();
        assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{line}");
    }
    // One model instead of the ensemble, from a manifest, into a file.
    let output = dir.path().join("p.csv");
    let model = run.join("fold-0/model.safetensors");
    ok(cv(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--manifest",
        manifest.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]));
    assert_eq!(
        std::fs::read_to_string(&output).unwrap().lines().count(),
        37
    );
    // The refit model: every sample, the last epoch, deterministic, usable by predict.
    ok(cv(&["refit", "--run", run.to_str().unwrap(), "--quiet"]));
    let full = run.join("full/model.safetensors");
    let first = std::fs::read(&full).unwrap();
    let again = dir.path().join("again");
    ok(train(&config, &again, &[]));
    ok(cv(&["refit", "--run", again.to_str().unwrap(), "--quiet"]));
    assert_eq!(
        first,
        std::fs::read(again.join("full/model.safetensors")).unwrap()
    );
    ok(cv(&[
        "predict",
        "--run",
        run.to_str().unwrap(),
        "--model",
        full.to_str().unwrap(),
        &images[0],
    ]));
    let out = cv(&["predict", "--run", run.to_str().unwrap(), "nope.png"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope.png: file not found"));
}

#[test]
fn sweep_ranks_a_grid_and_refits_the_best() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let sweep = dir.path().join("sweep");
    let out = ok(cv(&[
        "sweep",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
        "--sweep-dir",
        sweep.to_str().unwrap(),
        "--grid",
        "training.lr=0.05,0.0",
        "--grid",
        "training.epochs=1",
        "--refit-best",
    ]));
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(sweep.join("sweep.json")).unwrap()).unwrap();
    let ranked = json.as_array().unwrap();
    assert_eq!(ranked.len(), 2, "{json}");
    let means: Vec<f64> = ranked.iter().map(|r| r["mean"].as_f64().unwrap()).collect();
    assert!(means[0] >= means[1], "not ranked: {means:?}");
    for r in ranked {
        let run = PathBuf::from(r["run"].as_str().unwrap());
        assert!(run.join("summary.json").exists());
    }
    let best = PathBuf::from(ranked[0]["run"].as_str().unwrap());
    assert!(
        best.join("full/model.safetensors").exists(),
        "best not refitted"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("| 1 | training.lr="));
}

/// `--device` on every command that computes. `cpu` gives the run a config's default gives, and
/// is recorded; a GPU asked of a build without CUDA, or a device that does not exist, is a clear
/// error before anything is written.
#[test]
fn device_flag_chooses_where_each_command_computes() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let run = dir.path().join("run");
    let on_cpu = dir.path().join("on-cpu");
    ok(train(&config, &run, &[]));
    ok(train(&config, &on_cpu, &["--device", "cpu"]));
    same_artefacts(&run, &on_cpu);
    assert!(std::fs::read_to_string(on_cpu.join("config.toml"))
        .unwrap()
        .contains("device = \"cpu\""));

    let out = train(&config, &dir.path().join("gpu"), &["--device", "gpu"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("use cpu, cuda or cuda:N"));
    assert!(!dir.path().join("gpu").exists());

    if cfg!(feature = "cuda") {
        return;
    }
    let (run, config) = (run.to_str().unwrap(), config.to_str().unwrap());
    let image = dir.path().join("img00.png");
    let new_run = dir.path().join("cuda-run");
    let sweep = dir.path().join("cuda-sweep");
    let predictions = dir.path().join("p.csv");
    #[rustfmt::skip]
    let commands: [&[&str]; 5] = [
        &["train", "--config", config, "--run-dir", new_run.to_str().unwrap()],
        &["sweep", "--config", config, "--grid", "training.lr=0.1,0.2", "--sweep-dir", sweep.to_str().unwrap()],
        &["refit", "--run", run],
        &["predict", "--run", run, "--output", predictions.to_str().unwrap(), image.to_str().unwrap()],
        &["ensemble", "--run", run],
    ];
    for args in commands {
        let out = cv(&[args, &["--device", "cuda:1"]].concat());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} ran");
        assert!(
            stderr.contains("cuda:1 was asked for, but this binary was built without CUDA")
                && stderr.contains("cargo xtask build-cuda"),
            "{args:?}: {stderr}"
        );
    }
    let (full, ensemble) = (dir.path().join("run/full"), dir.path().join("run/ensemble"));
    for written in [new_run, sweep, predictions, full, ensemble] {
        assert!(!written.exists(), "{} was written", written.display());
    }
}

#[test]
fn a_killed_run_resumes_to_the_same_result() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");
    let full = dir.path().join("full");
    ok(train(&config, &full, &["--set", "training.epochs=12"]));
    // The same run killed (SIGKILL, no chance to clean up) part-way, then resumed.
    let killed = dir.path().join("killed");
    let mut child = Command::new(env!("CARGO_BIN_EXE_cv"))
        .args([
            "train",
            "--quiet",
            "--config",
            config.to_str().unwrap(),
            "--run-dir",
            killed.to_str().unwrap(),
            "--set",
            "training.epochs=12",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(900));
    let _ = child.kill();
    let _ = child.wait();
    let resumed = if killed.join("config.toml").exists() {
        train(
            &config,
            &killed,
            &["--set", "training.epochs=12", "--resume"],
        )
    } else {
        train(&config, &killed, &["--set", "training.epochs=12"])
    };
    ok(resumed);
    same_artefacts(&full, &killed);
}
