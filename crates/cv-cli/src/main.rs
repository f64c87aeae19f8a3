//! `cv`: reproducible cross-validation of image classifiers.
//!
//! A thin layer over the library crates: it parses arguments, reads files, reports errors with
//! the file and line at fault, and writes results. Everything it does can be done from Rust.

mod check_data;
mod config;
mod ensemble;
mod input;
mod output;
mod predict;
mod refit;
mod report;
mod slurm;
mod split;
mod sweep;
mod train;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "cv",
    version,
    about = "Reproducible cross-validation of neural-network image classifiers",
    long_about = "Reproducible cross-validation of neural-network image classifiers.\n\n\
        Same config + same seed + same data => identical folds, weights and metrics. \
        Folds are identical, index for index, to scikit-learn's for the same random_state."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Split samples into cross-validation folds, exactly as scikit-learn would.
    Split(split::SplitArgs),
    /// Cross-validate a model: split, train every fold from the same initial weights, keep
    /// each fold's best model, and summarise (into a run folder).
    Train(train::TrainArgs),
    /// Read every image of a data set once and report every problem together.
    CheckData(check_data::CheckDataArgs),
    /// Build a run's summary from folds trained separately (`cv train --fold K`).
    Aggregate(train::AggregateArgs),
    /// Run the folds as a Slurm job array: write the plan and sbatch scripts into the run
    /// folder (one fold per array task, then `cv aggregate`), and submit them with `--submit`.
    Slurm(slurm::SlurmArgs),
    /// Cross-validate every combination of a grid of config values and rank them.
    Sweep(sweep::SweepArgs),
    /// Train the final model on every sample with a run's configuration (into `<run>/full/`).
    Refit(refit::RefitArgs),
    /// Class probabilities for images, from a run's fold models (softmax ensemble) or one model.
    Predict(predict::PredictArgs),
    /// Combine a run's fold models (weight averaging with BatchNorm recalibration, and softmax
    /// ensembling) and compare them with each fold model on the held-out samples.
    Ensemble(ensemble::EnsembleArgs),
}

fn main() -> std::process::ExitCode {
    // First, while this is the only thread.
    cv_model::device::configure_cpu_process();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Split(args) => split::run(args),
        Command::Train(args) => train::run(args),
        Command::Ensemble(args) => ensemble::run(args),
        Command::CheckData(args) => check_data::run(args),
        Command::Predict(args) => predict::run(args),
        Command::Refit(args) => refit::run(args),
        Command::Sweep(args) => sweep::run(args),
        Command::Aggregate(args) => train::aggregate(args),
        Command::Slurm(args) => slurm::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
