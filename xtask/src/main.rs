//! `cargo xtask …`: the project's own tasks: the default job, benchmarks and synthetic data sets.

mod bench;
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
    /// Side-by-side benchmarks against the Python reference, measured in the same run.
    Bench(bench::BenchArgs),
    /// Write a synthetic labelled image set (learnable shapes, imbalanced classes) for scale
    /// tests and loader benchmarks.
    Synth(synth::SynthArgs),
}

fn main() -> Result<()> {
    match Xtask::parse().task {
        Task::Train { args } => train(&args),
        Task::Bench(args) => bench::run(args),
        Task::Synth(args) => synth::run(args),
    }
}

fn train(extra: &[String]) -> Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("xtask lives in the workspace root")?;
    // A fresh folder per invocation; seconds since the epoch keep them ordered.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let run_dir = format!("runs/default-{stamp}");
    let status = Command::new(env!("CARGO"))
        .current_dir(root)
        .args(["run", "--release", "-p", "cv-cli", "--", "train"])
        .args(["--config", "configs/default.toml", "--run-dir", &run_dir])
        .args(extra)
        .status()
        .context("cannot run cargo")?;
    ensure!(status.success(), "cv train failed");
    Ok(())
}
