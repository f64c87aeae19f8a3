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
    /// Rounds; each round runs Rust then Python, each timing every case 3 times.
    #[arg(long, default_value_t = 5)]
    rounds: usize,
}

#[derive(Clone, Copy, ValueEnum)]
enum Target {
    /// StratifiedKFold / KFold on 1,000,000 labels, all folds materialised.
    Split,
}

pub fn run(args: BenchArgs) -> Result<()> {
    match args.target {
        Target::Split => bench_split(&args),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace root")
        .to_path_buf()
}

/// Runs a timing program that prints `{"case", "seconds", "checksum"}` lines; returns, per case,
/// every timing and the checksum.
fn timings(mut command: Command) -> Result<BTreeMap<String, (Vec<f64>, String)>> {
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
    let mut cases = BTreeMap::new();
    for line in String::from_utf8(out.stdout)?.lines() {
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

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn bench_split(args: &BenchArgs) -> Result<()> {
    let root = workspace_root();
    eprintln!("building the timing example (release)…");
    let status = Command::new(env!("CARGO"))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "-p",
            "cv-split",
            "--example",
            "split_timing",
        ])
        .status()?;
    ensure!(status.success(), "cargo build failed");
    let rust_bin = root.join("target/release/examples/split_timing");
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
