//! `cargo xtask …`: the project's own tasks (benchmarks and synthetic data sets now; `train` and
//! `ensemble` once the training pipeline lands).

mod bench;
mod synth;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "cargo xtask", about = "foldwise's project tasks")]
struct Xtask {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Cross-validate the default config on the embedded data (not built yet).
    Train,
    /// Side-by-side benchmarks against the Python reference, measured in the same run.
    Bench(bench::BenchArgs),
    /// Write a synthetic labelled image set (learnable shapes, imbalanced classes) for scale
    /// tests and loader benchmarks.
    Synth(synth::SynthArgs),
}

fn main() -> Result<()> {
    match Xtask::parse().task {
        Task::Train => anyhow::bail!(
            "`cargo xtask train` is not built yet: the data, model and training crates \
             (cv-data, cv-model, cv-ensemble) come first. Today foldwise can split: \
             `cargo run -p cv-cli -- split --help`"
        ),
        Task::Bench(args) => bench::run(args),
        Task::Synth(args) => synth::run(args),
    }
}
