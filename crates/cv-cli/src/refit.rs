//! `cv refit`: the final model, trained on every sample with a run's configuration.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::Args;
use cv_data::{check, Dataset, Loader, Sampling};
use cv_model::checkpoint::{save_model, weights_hash, ModelSidecar};
use cv_model::{build, train_fold, Progress};
use cv_seed::SeedTree;

use crate::config::{DeviceArg, RunConfig};
use crate::train::{batches, metric_map, write_history};

/// The stream key of the refit's data order and augmentation (fold numbers count from 0, so this
/// never collides with a fold's).
const REFIT_STREAM: usize = usize::MAX;

#[derive(Args)]
pub struct RefitArgs {
    /// The run folder whose configuration to use (the result goes to `<run>/full/`).
    #[arg(long)]
    run: PathBuf,
    /// Override a config value for the refit, e.g. `--set training.epochs=12` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(flatten)]
    device: DeviceArg,
    /// Print only the result.
    #[arg(long, short)]
    quiet: bool,
}

impl RefitArgs {
    /// A refit of `run` with its configuration as it is.
    pub fn new(run: PathBuf, quiet: bool) -> Self {
        Self {
            run,
            sets: vec![],
            device: DeviceArg::default(),
            quiet,
        }
    }
}

pub fn run(args: RefitArgs) -> Result<()> {
    let (config, resolved) = RunConfig::load(
        &args.run.join("config.toml"),
        &args.device.with_sets(&args.sets),
    )?;
    let device = config.training.device.open()?;
    let dataset = Dataset::from_manifest(&config.data.manifest, &config.data.columns, None)
        .with_context(|| format!("cannot read {}", config.data.manifest.display()))?;
    let report = check(&dataset, 1);
    if !report.is_ok() {
        anyhow::bail!("the data set has problems; nothing was trained or written:\n{report}");
    }
    let tree = SeedTree::new(config.seed);
    let model_config = config.model_config(dataset.classes.len());
    let model = build(&model_config, &tree.child("init"), &device)?;
    if let Some(pretrained) = &config.model.pretrained {
        cv_model::load_pretrained(&model, pretrained)?;
    }
    let init_hash = weights_hash(&model.params().tensors())?;
    let dataset = Arc::new(dataset);
    let all: Vec<usize> = (0..dataset.len()).collect();
    let train = Loader::new(
        Arc::clone(&dataset),
        all.clone(),
        &config.data.transforms.train,
        tree,
        REFIT_STREAM,
        config.loader_config(config.training.sampling),
        device.clone(),
    )?;
    // No data is left to validate on: the training samples, in eval mode, are only a monitor.
    let monitor = Loader::new(
        Arc::clone(&dataset),
        all,
        &config.data.transforms.eval,
        tree,
        REFIT_STREAM,
        config.loader_config(Sampling::Sequential),
        device.clone(),
    )?;
    let out = args.run.join("full");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut train_config = config.training.train_config();
    train_config.early_stopping_patience = None;
    let epochs = train_config.epochs;
    let quiet = args.quiet;
    let outcome = train_fold(
        &model,
        &train_config,
        |epoch| batches(&train, epoch),
        |_| batches(&monitor, 0),
        &tree.child("dropout").indexed("fold", REFIT_STREAM as u64),
        Some(&out.join("checkpoint")),
        |p| {
            if let (false, Progress::Epoch { epoch, train, .. }) = (quiet, p) {
                println!(
                    "refit epoch {}/{epochs}: train loss {:.4} acc {:.4}",
                    epoch + 1,
                    train.loss,
                    train.accuracy
                );
            }
        },
    )?;
    // The final model is the last epoch's (there is no held-out score to pick another by).
    let weights = model.params().tensors();
    let last = outcome.history.last().context("no epoch was trained")?;
    let sidecar = ModelSidecar {
        architecture: serde_json::to_value(model_config)?,
        classes: dataset.classes.names().to_vec(),
        epoch: Some(last.epoch),
        metrics: metric_map(&last.train),
        init_hash,
        weights_hash: weights_hash(&weights)?,
    };
    write_history(&out.join("history.csv"), &outcome.history)?;
    cv_model::checkpoint::write_atomic(&out.join("config.toml"), |tmp| {
        std::fs::write(tmp, &resolved)
    })?;
    save_model(&out.join("model.safetensors"), &weights, &sidecar)?;
    println!(
        "refit on all {} samples for {epochs} epochs: {}",
        dataset.len(),
        out.join("model.safetensors").display()
    );
    Ok(())
}
