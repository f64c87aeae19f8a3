//! `cargo xtask bench split`: cv-split against scikit-learn on the same 1,000,000 labels, the
//! two interleaved round by round so that both see the same machine load, with a check that
//! both produced the same folds.

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
    /// Python with scikit-learn installed (e.g. a virtualenv's `bin/python`).
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
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// StratifiedKFold / KFold on 1,000,000 labels, all folds materialised.
    Split,
    /// The training input pipeline (256² JPEG → RandomResizedCrop 224 + flip + normalise)
    /// against torchvision's DataLoader with as many workers as we use threads.
    Data,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        Target::Split => bench_split(&args),
        Target::Data => bench_data(&args),
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
    let status = Command::new(env!("CARGO"))
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
