//! `cargo xtask bench split`: cv-split against scikit-learn on the same 1,000,000 labels, the
//! two interleaved round by round so that both see the same machine load, with a check that
//! both produced the same folds. `bench data` and `bench model` do the same for the input
//! pipeline (against torchvision's DataLoader) and for the ResNets' train step and forward
//! (against PyTorch eager on the CPU). `bench train` times the whole default job
//! (`configs/default.toml`) end to end against the same job written in PyTorch.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, ensure, Context, Result};
use clap::{Args, ValueEnum};

#[derive(Args)]
pub struct BenchArgs {
    /// What to benchmark.
    #[arg(value_enum)]
    target: Target,
    /// Python with scikit-learn (split) or torch and torchvision (data, model) installed, e.g. a
    /// virtualenv's `bin/python`.
    #[arg(long, env = "FOLDWISE_PYTHON", default_value = "python3")]
    python: PathBuf,
    /// Rounds; each round runs Rust then Python.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
    /// Data: decode threads for cv-data and DataLoader workers for torchvision.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Data: images timed per run (after one warm-up batch).
    #[arg(long, default_value_t = 1024)]
    images: usize,
    /// Model: train steps timed per case and run (after 2 warm-up steps).
    #[arg(long, default_value_t = 5)]
    train_iters: usize,
    /// Model: eval-mode forwards timed per case and run (after 2 warm-up forwards).
    #[arg(long, default_value_t = 10)]
    infer_iters: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// StratifiedKFold / KFold on 1,000,000 labels, all folds materialised.
    Split,
    /// The training input pipeline (256² JPEG → RandomResizedCrop 224 + flip + normalise)
    /// against torchvision's DataLoader with as many workers as we use threads.
    Data,
    /// ResNet train step (forward, cross-entropy, backward, SGD momentum) and eval forward on
    /// the CPU, resnet18 on 64² and CIFAR ResNet-20 on 32², batch 32, against PyTorch eager;
    /// both sides on 2 threads.
    Model,
    /// The default job (`cv train --config configs/default.toml`: digits, CIFAR ResNet-20,
    /// stratified 5-fold CV, 15 epochs) end to end against the same job in PyTorch on the CPU
    /// (2 threads); wall time and mean ± std validation accuracy. Minutes per side and round:
    /// at most 2 rounds are run whatever `--rounds` says (`--rounds 1` is the intended use).
    Train,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        Target::Split => bench_split(&args),
        Target::Data => bench_data(&args),
        Target::Model => bench_model(&args),
        Target::Train => bench_train(&args),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs a command to completion; returns how it reads in messages and its standard output.
fn run_for_stdout(mut command: Command) -> Result<(String, String)> {
    let printed = format!("{command:?}");
    let out = command
        .output()
        .with_context(|| format!("cannot run {printed}"))?;
    if !out.status.success() {
        bail!(
            "{printed} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((printed, String::from_utf8(out.stdout)?))
}

/// Runs a timing program that prints `{"case", "seconds", "checksum"}` lines; returns, per case,
/// every timing and the checksum.
fn timings(command: Command) -> Result<BTreeMap<String, (Vec<f64>, String)>> {
    let (printed, stdout) = run_for_stdout(command)?;
    let mut cases = BTreeMap::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("bad line from {printed}: {line}"))?;
        let case = v["case"].as_str().context("no case")?.to_owned();
        let seconds = v["seconds"]
            .as_array()
            .context("no seconds")?
            .iter()
            .filter_map(|s| s.as_f64())
            .collect();
        let checksum = v["checksum"].as_str().context("no checksum")?.to_owned();
        cases.insert(case, (seconds, checksum));
    }
    Ok(cases)
}

/// Builds `package`'s example `name` in release mode; returns the binary.
fn build_example(root: &Path, package: &str, name: &str) -> Result<PathBuf> {
    eprintln!("building {package}'s example {name} (release)…");
    let status = crate::cargo()
        .current_dir(root)
        .args(["build", "--release", "-p", package, "--example", name])
        .status()?;
    ensure!(
        status.success(),
        "cargo build of {package}'s example {name} failed"
    );
    Ok(root.join("target/release/examples").join(name))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench_split(args: &BenchArgs) -> Result<()> {
    let root = workspace_root();
    let rust_bin = build_example(&root, "cv-split", "split_timing")?;
    let script = root.join("crates/cv-split/benches/sklearn_split.py");

    let mut rust: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut python: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        let mut cmd = Command::new(&rust_bin);
        cmd.arg("3");
        let r = timings(cmd)?;
        let mut cmd = Command::new(&args.python);
        cmd.arg(&script).arg("3");
        let p = timings(cmd)?;
        for (case, (seconds, checksum)) in r {
            let (py_seconds, py_checksum) = p
                .get(&case)
                .with_context(|| format!("scikit-learn did not time {case}"))?;
            ensure!(
                &checksum == py_checksum,
                "{case}: folds differ from scikit-learn's (checksum {checksum} vs {py_checksum})"
            );
            rust.entry(case.clone()).or_default().extend(seconds);
            python.entry(case).or_default().extend(py_seconds);
        }
    }
    println!(
        "| case (1,000,000 labels, folds materialised) | scikit-learn | cv-split | speed-up |"
    );
    println!("| --- | --- | --- | --- |");
    for (case, mut r) in rust {
        let mut p = python.remove(&case).unwrap_or_default();
        let (r, p) = (median(&mut r), median(&mut p));
        println!(
            "| {case} | {:.1} ms | {:.1} ms | {:.1}× |",
            p * 1e3,
            r * 1e3,
            p / r
        );
    }
    println!(
        "\nmedians over {} rounds × 3 runs each; folds checked identical",
        args.rounds
    );
    Ok(())
}

/// A JSON line's `images_per_s`.
fn images_per_s(command: Command) -> Result<f64> {
    let (printed, stdout) = run_for_stdout(command)?;
    let line = stdout.lines().last().context("no output")?;
    let v: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("bad line from {printed}: {line}"))?;
    v["images_per_s"].as_f64().context("no images_per_s")
}

fn bench_data(args: &BenchArgs) -> Result<()> {
    let root = workspace_root();
    let data_dir = root.join("target/bench-data/synth-2048-256-jpeg");
    let manifest = data_dir.join("manifest.csv");
    if !manifest.exists() {
        eprintln!(
            "writing 2,048 synthetic 256×256 JPEGs to {}…",
            data_dir.display()
        );
        let spec = cv_data::synth::SynthSpec {
            n_images: 2048,
            n_classes: 5,
            imbalance: 5.0,
            size: 256,
            format: cv_data::synth::SynthFormat::Jpeg { quality: 90 },
            seed: 0,
        };
        cv_data::synth::generate(&spec, &data_dir, true)
            .with_context(|| format!("cannot write {}", data_dir.display()))?;
    }
    let rust_bin = build_example(&root, "cv-data", "loader_timing")?;
    let script = root.join("crates/cv-data/benches/torchvision_loader.py");
    let (workers, images) = (args.workers.to_string(), args.images.to_string());
    let mut rust = Vec::new();
    let mut python = Vec::new();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        let mut cmd = Command::new(&rust_bin);
        cmd.arg(&manifest).arg(&workers).arg(&images);
        rust.push(images_per_s(cmd)?);
        let mut cmd = Command::new(&args.python);
        cmd.arg(&script)
            .args(["--manifest"])
            .arg(&manifest)
            .args(["--workers", &workers, "--images", &images, "--threads", "1"])
            .env("CUDA_VISIBLE_DEVICES", "");
        python.push(images_per_s(cmd)?);
    }
    let (r, p) = (median(&mut rust), median(&mut python));
    println!(
        "| input pipeline, {} workers/threads | images/s |",
        args.workers
    );
    println!("| --- | --- |");
    println!("| torchvision DataLoader (PIL) | {p:.0} |");
    println!("| cv-data Loader | {r:.0} |");
    println!("| ratio (cv-data / torchvision) | {:.2}× |", r / p);
    println!(
        "\nmedians over {} rounds of {} images each (256² JPEG → RandomResizedCrop 224 + flip + normalise, batch 32)",
        args.rounds, args.images
    );
    Ok(())
}

/// Threads on both sides of `bench model`: `RAYON_NUM_THREADS` for candle (which also sizes its
/// element-wise pool), `torch.set_num_threads` for PyTorch.
const MODEL_THREADS: u64 = 2;

/// One case of a model timing run.
struct ModelCase {
    images_per_s: f64,
    parameters: u64,
    /// Train cases of cv-model: whether a fresh build repeated the loss bit for bit, and the
    /// loss bits.
    determinism: Option<(bool, String)>,
}

/// Runs `examples/model_timing.rs` or `benches/torch_models.py`; returns their cases in the
/// order printed, checking that each ran on [`MODEL_THREADS`] threads.
fn model_timings(command: Command) -> Result<Vec<(String, ModelCase)>> {
    let (printed, stdout) = run_for_stdout(command)?;
    let mut cases = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("bad line from {printed}: {line}"))?;
        let case = v["case"].as_str().context("no case")?.to_owned();
        let threads = v["threads"].as_u64().context("no threads")?;
        ensure!(
            threads == MODEL_THREADS,
            "{printed}: {case} ran on {threads} threads, not {MODEL_THREADS}"
        );
        let determinism = match (v["deterministic"].as_bool(), v["loss_bits"].as_str()) {
            (Some(same), Some(bits)) => Some((same, bits.to_owned())),
            _ => None,
        };
        cases.push((
            case,
            ModelCase {
                images_per_s: v["images_per_s"].as_f64().context("no images_per_s")?,
                parameters: v["parameters"].as_u64().context("no parameters")?,
                determinism,
            },
        ));
    }
    ensure!(!cases.is_empty(), "{printed} printed no cases");
    Ok(cases)
}

fn bench_model(args: &BenchArgs) -> Result<()> {
    ensure!(
        args.rounds > 0 && args.train_iters > 0 && args.infer_iters > 0,
        "--rounds, --train-iters and --infer-iters must each be at least 1"
    );
    let root = workspace_root();
    let rust_bin = build_example(&root, "cv-model", "model_timing")?;
    let script = root.join("crates/cv-model/benches/torch_models.py");
    let (train_iters, infer_iters) = (args.train_iters.to_string(), args.infer_iters.to_string());
    let threads = MODEL_THREADS.to_string();

    // Per case, in the order the Rust example prints them: every round's images/s per side.
    let mut order: Vec<String> = Vec::new();
    let mut rust: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    let mut python: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    // Train cases: (every round repeated its loss in a fresh build, the loss bits of each round).
    let mut determinism: BTreeMap<String, (bool, Vec<String>)> = BTreeMap::new();
    for round in 1..=args.rounds {
        eprintln!("round {round}/{}", args.rounds);
        let mut cmd = Command::new(&rust_bin);
        cmd.args([&train_iters, &infer_iters])
            .env("RAYON_NUM_THREADS", &threads);
        let r = model_timings(cmd)?;
        let mut cmd = Command::new(&args.python);
        cmd.arg(&script)
            .args(["--train-iters", &train_iters, "--infer-iters", &infer_iters])
            .args(["--threads", &threads])
            .env("CUDA_VISIBLE_DEVICES", "");
        let p: BTreeMap<String, ModelCase> = model_timings(cmd)?.into_iter().collect();
        for (case, ours) in r {
            let theirs = p
                .get(&case)
                .with_context(|| format!("PyTorch did not time {case}"))?;
            ensure!(
                ours.parameters == theirs.parameters,
                "{case}: cv-model has {} trainable parameters, PyTorch {}: the architectures differ",
                ours.parameters,
                theirs.parameters
            );
            if !order.contains(&case) {
                order.push(case.clone());
            }
            if let Some((same, bits)) = ours.determinism {
                let entry = determinism
                    .entry(case.clone())
                    .or_insert((true, Vec::new()));
                entry.0 &= same;
                entry.1.push(bits);
            }
            rust.entry(case.clone())
                .or_default()
                .push(ours.images_per_s);
            python.entry(case).or_default().push(theirs.images_per_s);
        }
    }
    println!(
        "| case (batch 32, CPU, {MODEL_THREADS} threads) | PyTorch images/s | cv-model images/s | ratio (cv-model / PyTorch) |"
    );
    println!("| --- | --- | --- | --- |");
    for case in &order {
        let (Some(r), Some(p)) = (rust.get_mut(case), python.get_mut(case)) else {
            continue;
        };
        let (r, p) = (median(r), median(p));
        println!("| {case} | {p:.1} | {r:.1} | {:.2}× |", r / p);
    }
    println!(
        "\nmedians over {} rounds (each a fresh process per side: 2 warm-up iterations, then {} \
         train steps or {} forwards timed)",
        args.rounds, args.train_iters, args.infer_iters
    );
    for (case, (same, bits)) in &determinism {
        let across_rounds = bits.windows(2).all(|w| w[0] == w[1]);
        let verdict = |ok: bool| if ok { "yes" } else { "NO" };
        println!(
            "{case}: a fresh build repeats the first timed step's loss bit for bit: {} (all {} \
             rounds); the same loss bits in every round (separate processes): {} ({})",
            verdict(*same),
            bits.len(),
            verdict(across_rounds),
            bits.join(", ")
        );
    }
    Ok(())
}

/// Rounds of `bench train` at most: each side takes minutes per round.
const TRAIN_MAX_ROUNDS: usize = 2;

/// Threads for PyTorch in `bench train` (the machine's two cores; cv uses all cores).
const TRAIN_THREADS: u64 = 2;

/// Mean and sample standard deviation of `values`.
fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = if values.len() > 1 {
        values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

fn bench_train(args: &BenchArgs) -> Result<()> {
    ensure!(args.rounds > 0, "--rounds must be at least 1");
    let rounds = args.rounds.min(TRAIN_MAX_ROUNDS);
    let root = workspace_root();
    eprintln!("building cv (release)…");
    let status = crate::cargo()
        .current_dir(&root)
        .args(["build", "--release", "-p", "cv-cli"])
        .status()?;
    ensure!(status.success(), "cargo build of cv-cli failed");
    let cv_bin = root.join("target/release/cv");
    let script = root.join("crates/cv-cli/benches/pytorch_default_job.py");
    let threads = TRAIN_THREADS.to_string();

    // Per round: (wall seconds, mean accuracy, std accuracy).
    let mut rust: Vec<(f64, f64, f64)> = Vec::new();
    let mut python: Vec<(f64, f64, f64)> = Vec::new();
    for round in 1..=rounds {
        eprintln!("round {round}/{rounds}: cv train…");
        let run_dir = root.join(format!("target/bench-train/run-{round}"));
        let mut cmd = Command::new(&cv_bin);
        cmd.current_dir(&root)
            .args(["train", "--config", "configs/default.toml", "--run-dir"])
            .arg(&run_dir)
            .args(["--force", "--quiet"]);
        let start = std::time::Instant::now();
        run_for_stdout(cmd)?;
        let seconds = start.elapsed().as_secs_f64();
        let path = run_dir.join("summary.json");
        let summary: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        )
        .with_context(|| format!("bad {}", path.display()))?;
        let mean = summary["mean"]["accuracy"]
            .as_f64()
            .context("summary.json: no mean.accuracy")?;
        let std = summary["std"]["accuracy"]
            .as_f64()
            .context("summary.json: no std.accuracy")?;
        eprintln!("  cv: {seconds:.1} s, accuracy {mean:.4} ± {std:.4}");
        rust.push((seconds, mean, std));

        eprintln!("round {round}/{rounds}: PyTorch…");
        let mut cmd = Command::new(&args.python);
        cmd.current_dir(&root)
            .arg(&script)
            .args(["--threads", &threads, "--quiet"])
            .env("CUDA_VISIBLE_DEVICES", "");
        let start = std::time::Instant::now();
        let (printed, stdout) = run_for_stdout(cmd)?;
        let seconds = start.elapsed().as_secs_f64();
        let line = stdout.lines().last().context("no output")?;
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("bad line from {printed}: {line}"))?;
        let mean = v["mean_accuracy"].as_f64().context("no mean_accuracy")?;
        let std = v["std_accuracy"].as_f64().context("no std_accuracy")?;
        let inner = v["seconds"].as_f64().context("no seconds")?;
        eprintln!(
            "  PyTorch: {seconds:.1} s ({inner:.1} s after imports), accuracy {mean:.4} ± {std:.4}"
        );
        python.push((seconds, mean, std));
    }

    let summarise = |runs: &[(f64, f64, f64)]| {
        let mut seconds: Vec<f64> = runs.iter().map(|r| r.0).collect();
        let means: Vec<f64> = runs.iter().map(|r| r.1).collect();
        let stds: Vec<f64> = runs.iter().map(|r| r.2).collect();
        (median(&mut seconds), mean_std(&means).0, mean_std(&stds).0)
    };
    let (r_s, r_m, r_sd) = summarise(&rust);
    let (p_s, p_m, p_sd) = summarise(&python);
    println!("| default job (digits, ResNet-20, 5 folds × 15 epochs, CPU) | wall time | validation accuracy (mean ± std over folds) |");
    println!("| --- | --- | --- |");
    println!("| PyTorch ({TRAIN_THREADS} threads) | {p_s:.1} s | {p_m:.4} ± {p_sd:.4} |");
    println!("| cv train | {r_s:.1} s | {r_m:.4} ± {r_sd:.4} |");
    println!("| ratio (cv / PyTorch) | {:.2}× | |", r_s / p_s);
    println!(
        "\nwall clock of each whole process, timed by the xtask (median over {rounds} round(s)); \
         accuracy: the best epoch's validation accuracy per fold, averaged over rounds"
    );
    Ok(())
}
