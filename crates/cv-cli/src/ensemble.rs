//! `cv ensemble`: the fold models of a run combined two ways, weight averaging (with BatchNorm
//! recalibration) and softmax ensembling, and judged beside each fold model on the held-out
//! samples none of them trained on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use cv_data::{Dataset, Loader, Sampling};
use cv_ensemble::{
    average, ensemble_probabilities, evaluate, predict_probabilities, save_averaged, update_bn,
    Combine, Comparison, ModelFile, Scores,
};
use cv_seed::SeedTree;

use crate::config::{DeviceArg, RunConfig};
use crate::train::batches;

#[derive(Args)]
pub struct EnsembleArgs {
    /// The run folder (made by `cv train`).
    #[arg(long)]
    run: PathBuf,
    /// How to combine softmax outputs.
    #[arg(long, value_enum, default_value = "mean")]
    combine: CombineArg,
    /// Keep one model in memory at a time.
    #[arg(long)]
    low_memory: bool,
    /// Judge on this labelled manifest (its labels must be the run's classes) instead of the
    /// run's held-out samples.
    #[arg(long)]
    test_manifest: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum CombineArg {
    Mean,
    GeometricMean,
}

#[derive(serde::Deserialize)]
struct FoldsFile {
    holdout: Vec<usize>,
    folds: Vec<cv_split::Fold>,
}

pub fn run(args: EnsembleArgs) -> Result<()> {
    let run = &args.run;
    let (config, _) = RunConfig::load(&run.join("config.toml"), &[])?;
    let device = args.device.or_config(&config).open()?;
    let folds: FoldsFile = serde_json::from_str(
        &std::fs::read_to_string(run.join("folds.json"))
            .with_context(|| format!("{} has no folds.json: is it a run folder?", run.display()))?,
    )?;
    let mut models = Vec::new();
    for fold in &folds.folds {
        let path = run.join(format!("fold-{}/model.safetensors", fold.fold));
        if !path.exists() {
            bail!(
                "{} is missing: finish the run first (cv train --resume)",
                path.display()
            );
        }
        models.push(ModelFile::read(&path)?);
    }
    let dataset = Arc::new(
        Dataset::from_manifest(&config.data.manifest, &config.data.columns, None)
            .with_context(|| format!("cannot read {}", config.data.manifest.display()))?,
    );
    let classes = dataset.classes.names().to_vec();
    let tree = SeedTree::new(config.seed);
    let loader = |indices: Vec<usize>, train: bool| {
        let pipeline = if train {
            &config.data.transforms.train
        } else {
            &config.data.transforms.eval
        };
        Loader::new(
            Arc::clone(&dataset),
            indices,
            pipeline,
            tree,
            0,
            config.loader_config(Sampling::Sequential),
            device.clone(),
        )
    };
    // The unseen samples: a separate test manifest, or the run's held-out samples.
    let (test_data, test_indices, test_name) = match &args.test_manifest {
        Some(path) => {
            let known = dataset.classes.clone();
            let test = Dataset::from_manifest(path, &config.data.columns, Some(&known))
                .with_context(|| format!("cannot read the test manifest {}", path.display()))?;
            let report = cv_data::check(&test, 0);
            if !report.is_ok() {
                bail!("the test manifest has problems:\n{report}");
            }
            let n = test.len();
            (
                Arc::new(test),
                (0..n).collect(),
                format!("{} samples of {}", n, path.display()),
            )
        }
        None if folds.holdout.is_empty() => bail!(
            "{} has no held-out samples (cv.holdout was not set) and no --test-manifest was \
             given, so there is no unseen data to judge the ensemble on; rerun cv train with \
             --set cv.holdout=0.1 or pass --test-manifest",
            run.display()
        ),
        None => (
            Arc::clone(&dataset),
            folds.holdout.clone(),
            format!("{} held-out samples", folds.holdout.len()),
        ),
    };
    let test = Loader::new(
        test_data,
        test_indices,
        &config.data.transforms.eval,
        tree,
        0,
        config.loader_config(Sampling::Sequential),
        device.clone(),
    )?;
    let score = |model: &cv_model::ResNet| -> Result<Scores> {
        let predictions = predict_probabilities(model, batches(&test, 0))?;
        Ok(Scores::from(&evaluate(&predictions, &classes)?))
    };

    let mut comparison = Comparison::default();
    for model in &models {
        comparison.folds.push(score(&model.load(&device)?)?);
    }
    let averaged = average(&models)?;
    for warning in &averaged.warnings {
        eprintln!("warning: {warning}");
    }
    let averaged_model = models[0].instantiate(&averaged.tensors, &device)?;
    comparison.averaged = Some(score(&averaged_model)?);
    // Recalibrate BatchNorm on the cross-validated samples (never the held-out ones), with the
    // evaluation transforms, in one pass.
    let mut pool: Vec<usize> = folds
        .folds
        .iter()
        .flat_map(|f| f.test.iter().map(|&i| i as usize))
        .collect();
    pool.sort_unstable();
    pool.dedup();
    let recalibration = update_bn(&averaged_model, batches(&loader(pool.clone(), false)?, 0))?;
    comparison.recalibrated = Some(score(&averaged_model)?);
    let combine = match args.combine {
        CombineArg::Mean => Combine::Mean,
        CombineArg::GeometricMean => Combine::GeometricMean,
    };
    let ensemble = ensemble_probabilities(
        &models,
        || batches(&test, 0),
        combine,
        args.low_memory,
        &device,
    )?;
    comparison.ensemble = Some(Scores::from(&evaluate(&ensemble, &classes)?));

    let out = run.join("ensemble");
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create {}", out.display()))?;
    let recalibrated_tensors = averaged_model.params().tensors();
    save_averaged(
        &out.join("averaged.safetensors"),
        &models,
        &recalibrated_tensors,
        Default::default(),
    )?;
    let markdown = format!(
        "Judged on {test_name} (never trained on by any fold model).\n\
         BatchNorm recalibrated on {} cross-validated samples ({} batches, eval transforms).\n\n{}",
        recalibration.samples,
        recalibration.batches,
        comparison.to_markdown()
    );
    write(&out.join("comparison.md"), &markdown)?;
    write(
        &out.join("comparison.json"),
        &(comparison.to_json()? + "\n"),
    )?;
    crate::report::write_report(run)?;
    println!(
        "{markdown}\nwritten to {} (and {})",
        out.display(),
        run.join("report.html").display()
    );
    Ok(())
}

fn write(path: &Path, text: &str) -> Result<()> {
    cv_model::checkpoint::write_atomic(path, |tmp| std::fs::write(tmp, text))
        .with_context(|| format!("cannot write {}", path.display()))
}
