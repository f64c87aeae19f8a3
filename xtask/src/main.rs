//! `cargo xtask …`: the project's own tasks: the default job, benchmarks, synthetic data sets and
//! the CUDA build.

mod bench;
mod cuda;
mod synth;

use std::path::Path;
use std::process::Command;

use anyhow::{ensure, Context, Result};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "foldwise's project tasks")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// The main job: `cv train --config configs/default.toml` (5-fold cross-validation of a
    /// ResNet-20 on the embedded digits) into a fresh run folder under `runs/`, then its summary.
    /// Extra arguments go to `cv train` (e.g. `--set training.epochs=3`).
    Train {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// `cv ensemble` on the latest run under `runs/`: weight averaging and softmax ensembling
    /// of its fold models, compared on the held-out samples.
    Ensemble {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Side-by-side benchmarks against the Python reference, measured in the same run.
    Bench(bench::BenchArgs),
    /// Write a synthetic labelled image set (learnable shapes, imbalanced classes) for scale
    /// tests and loader benchmarks.
    Synth(synth::SynthArgs),
    /// Build a release `cv` that can train on NVIDIA GPUs (`--features cuda`) into
    /// `target/cuda/release/cv`, with a pinned CUDA 13.0 toolkit from PyPI laid out under
    /// `target/cuda-toolkit/` (or your own toolkit when `CUDA_HOME` is set).
    #[command(alias = "cuda-build")]
    BuildCuda(cuda::BuildCudaArgs),
}

fn main() -> Result<()> {
    match Xtask::parse().task {
        Task::Train { args } => train(&args),
        Task::Ensemble { args } => ensemble(&args),
        Task::Bench(args) => bench::run(args),
        Task::Synth(args) => synth::run(args),
        Task::BuildCuda(args) => cuda::run(args),
    }
}

fn workspace_root() -> Result<&'static Path> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace root")
}

/// The `cargo` that built this xtask, with `RUSTC` set to [`rustc`].
///
/// Through `cargo xtask`, rustup's proxy has chosen the toolchain and exported its choice. Run
/// directly (`target/debug/xtask`), a nested build would call rustup's `rustc` proxy, which
/// obeys the `rust-toolchain.toml` of the dependency being compiled (macro_rules_attribute,
/// in the CUDA build, pins 1.78.0) and fails where that toolchain is not installed.
fn cargo() -> Command {
    let mut command = Command::new(env!("CARGO"));
    command.env("RUSTC", rustc());
    command
}

/// `RUSTC` if set, else the `rustc` beside the `cargo` that built this xtask (else the one on
/// the `PATH`).
fn rustc() -> std::ffi::OsString {
    std::env::var_os("RUSTC").unwrap_or_else(|| {
        let beside = Path::new(env!("CARGO")).with_file_name("rustc");
        if beside.is_file() {
            beside.into_os_string()
        } else {
            "rustc".into()
        }
    })
}

/// `cargo run --release -p cv-cli -- ARGS` in the workspace root.
fn cv(args: &[String]) -> Result<()> {
    let status = cargo()
        .current_dir(workspace_root()?)
        .args(["run", "--release", "-p", "cv-cli", "--"])
        .args(args)
        .status()
        .context("cannot run cargo")?;
    ensure!(
        status.success(),
        "cv {} failed",
        args.first().map_or("", String::as_str)
    );
    Ok(())
}

fn ensemble(extra: &[String]) -> Result<()> {
    let runs = workspace_root()?.join("runs");
    // The most recently modified run folder that has its folds.
    let latest = std::fs::read_dir(&runs)
        .with_context(|| format!("no {}: run `cargo xtask train` first", runs.display()))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("folds.json").exists())
        .max_by_key(|e| e.metadata().and_then(|m| m.modified()).ok())
        .with_context(|| {
            format!(
                "no run in {}: run `cargo xtask train` first",
                runs.display()
            )
        })?;
    let mut args = vec![
        "ensemble".to_owned(),
        "--run".to_owned(),
        latest.path().display().to_string(),
    ];
    args.extend_from_slice(extra);
    cv(&args)
}

fn train(extra: &[String]) -> Result<()> {
    // A fresh folder per invocation; seconds since the epoch keep them ordered.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let mut args: Vec<String> = ["train", "--config", "configs/default.toml", "--run-dir"]
        .map(String::from)
        .to_vec();
    args.push(format!("runs/default-{stamp}"));
    args.extend_from_slice(extra);
    cv(&args)
}
