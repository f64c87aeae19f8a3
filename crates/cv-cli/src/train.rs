//! `cv train`: cross-validation of the configured model on the configured data, into a run
//! folder with everything needed to repeat, resume and judge it.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use cv_data::{check, Dataset, Loader, Sampling};
use cv_ensemble::{FoldPredictions, OutOfFold};
use cv_model::checkpoint::{save_model, weights_hash, write_atomic, ModelSidecar};
use cv_model::train::Batches;
use cv_model::{build, train_fold, EpochMetrics, Progress};
use cv_seed::SeedTree;
use cv_split::{Size, SplitSpec, StratifiedShuffleSplit};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::{DeviceArg, RunConfig};

#[derive(Args)]
pub struct TrainArgs {
    /// The run configuration (TOML).
    #[arg(long, required_unless_present = "run")]
    pub(crate) config: Option<PathBuf>,
    /// Train `--fold K` of a run already planned (by `cv slurm`): its `config.toml` and
    /// `folds.json` are read and only `fold-K/` is written, so that concurrent fold jobs cannot
    /// corrupt each other. Rerun, it continues from the fold's last epoch checkpoint; a finished
    /// fold is skipped.
    #[arg(
        long,
        value_name = "RUN_DIR",
        requires = "fold",
        conflicts_with_all = ["config", "sets", "device", "run_dir", "resume", "force"]
    )]
    pub(crate) run: Option<PathBuf>,
    /// Override a config value, e.g. `--set training.lr=0.01` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub(crate) sets: Vec<String>,
    #[command(flatten)]
    pub(crate) device: DeviceArg,
    /// The run folder (default: `<output.runs_dir>/<config name>-seed<seed>`).
    #[arg(long)]
    pub(crate) run_dir: Option<PathBuf>,
    /// Train only this fold (0-based), e.g. as one job of many.
    #[arg(long)]
    pub(crate) fold: Option<usize>,
    /// Continue an interrupted run: finished folds are skipped, an unfinished fold continues
    /// from its last epoch checkpoint.
    #[arg(long)]
    pub(crate) resume: bool,
    /// Replace an existing run folder.
    #[arg(long, conflicts_with = "resume")]
    pub(crate) force: bool,
    /// Print only the summary.
    #[arg(long, short)]
    pub(crate) quiet: bool,
}

/// The folds as recorded in `folds.json`: data set indices.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct FoldsFile {
    pub holdout: Vec<usize>,
    pub folds: Vec<cv_split::Fold>,
}

#[derive(Debug, Clone, Serialize)]
struct FoldSummary {
    fold: usize,
    best_epoch: usize,
    valid: EpochMetrics,
}

#[derive(Debug, Clone, Serialize)]
struct Summary {
    select_by: cv_model::SelectBy,
    folds: Vec<FoldSummary>,
    mean: BTreeMap<String, f64>,
    std: BTreeMap<String, f64>,
    out_of_fold: Option<cv_ensemble::Evaluation>,
}

pub fn run(args: TrainArgs) -> Result<()> {
    if let Some(run_dir) = &args.run {
        let k = args.fold.context("--run needs --fold")?;
        return train_planned_fold(run_dir, k, args.quiet);
    }
    let config_path = args.config.as_deref().context("--config is needed")?;
    let started = Instant::now();
    let (config, resolved) = RunConfig::load(config_path, &args.device.with_sets(&args.sets))?;
    let device = config.training.device.open()?;
    let Plan {
        run_dir,
        dataset,
        pool,
        folds: FoldsFile { holdout, folds },
    } = plan_run(
        &config,
        &resolved,
        &args
            .run_dir
            .clone()
            .unwrap_or_else(|| default_run_dir(&config, config_path)),
        args.resume,
        args.force,
    )?;
    let to_train: Vec<usize> = match args.fold {
        Some(k) => vec![fold_position(&folds, k)?],
        None => (0..folds.len()).collect(),
    };
    let trainer = FoldTrainer {
        config: &config,
        dataset: Arc::new(dataset),
        device,
        run_dir: &run_dir,
        n_folds: folds.len(),
        quiet: args.quiet,
    };
    for &k in &to_train {
        trainer.train(&folds[k])?;
    }
    summarise(&run_dir, &config, &trainer.dataset, &pool, &folds)?;
    write_run_json(&run_dir, &config, config_path, &folds, &holdout, started)?;
    Ok(())
}

/// A run folder whose plan is written: the resolved `config.toml` and `folds.json`.
pub(crate) struct Plan {
    pub run_dir: PathBuf,
    pub dataset: Dataset,
    /// The cross-validated samples (data set indices, sorted): all but the held-out ones.
    pub pool: Vec<usize>,
    pub folds: FoldsFile,
}

/// `<output.runs_dir>/<config name>-seed<seed>`: where a run goes without `--run-dir`.
pub(crate) fn default_run_dir(config: &RunConfig, config_path: &Path) -> PathBuf {
    let name = config_path
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    config
        .output
        .runs_dir
        .join(format!("{name}-seed{}", config.seed))
}

/// Reads and checks the data set (stopping before anything is written if it has problems),
/// plans the folds, and writes the plan into `run_dir`, made or checked as `--resume` /
/// `--force` say. `cv train` and `cv slurm` share it, so a cluster run's plan is a local run's.
pub(crate) fn plan_run(
    config: &RunConfig,
    resolved: &str,
    run_dir: &Path,
    resume: bool,
    force: bool,
) -> Result<Plan> {
    let dataset = open_dataset(config)?;
    let n_splits = config
        .cv
        .n_splits
        .unwrap_or(config.cv.method.default_n_splits());
    // Check everything before anything is written.
    let report = check(&dataset, n_splits);
    if !report.is_ok() {
        bail!("the data set has problems; nothing was trained or written:\n{report}");
    }
    let (pool, folds) = plan_folds(config, &dataset)?;
    prepare_run_dir(run_dir, resolved, resume, force)?;
    write_json(&run_dir.join("folds.json"), &folds)?;
    Ok(Plan {
        run_dir: run_dir.to_path_buf(),
        dataset,
        pool,
        folds,
    })
}

/// One fold of a planned run (`cv train --run DIR --fold K`), e.g. as a scheduler's array task.
/// Writes nothing outside `fold-K/`: the plan is only read, and checked against the data set so
/// that a manifest changed since planning is refused rather than trained on other folds.
fn train_planned_fold(run_dir: &Path, k: usize, quiet: bool) -> Result<()> {
    let config_path = run_dir.join("config.toml");
    let (config, _) = RunConfig::load(&config_path, &[]).with_context(|| {
        format!(
            "{} is not a planned run folder (plan one with `cv slurm` or `cv train`)",
            run_dir.display()
        )
    })?;
    let device = config.training.device.open()?;
    let dataset = open_dataset(&config)?;
    let saved = read_folds(run_dir)?;
    let (_, planned) = plan_folds(&config, &dataset)?;
    if planned != saved {
        bail!(
            "{} no longer matches the folds planned from {} (the data set changed since the run was planned); plan a new run",
            run_dir.join("folds.json").display(),
            config.data.manifest.display()
        );
    }
    let position = fold_position(&saved.folds, k)?;
    FoldTrainer {
        config: &config,
        dataset: Arc::new(dataset),
        device,
        run_dir,
        n_folds: saved.folds.len(),
        quiet,
    }
    .train(&saved.folds[position])
}

/// Where fold `k` is in `folds`, or an error naming the folds there are.
fn fold_position(folds: &[cv_split::Fold], k: usize) -> Result<usize> {
    folds.iter().position(|f| f.fold == k).with_context(|| {
        format!(
            "--fold {k}: the split has only {} folds (0..{})",
            folds.len(),
            folds.len()
        )
    })
}

fn open_dataset(config: &RunConfig) -> Result<Dataset> {
    Dataset::from_manifest(&config.data.manifest, &config.data.columns, None).with_context(|| {
        format!(
            "cannot read the data set {}",
            config.data.manifest.display()
        )
    })
}

/// A run folder's `folds.json`.
pub(crate) fn read_folds(run_dir: &Path) -> Result<FoldsFile> {
    let path = run_dir.join("folds.json");
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("cannot read {}: is it a run folder?", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not a folds file", path.display()))
}

/// The model file of fold `k`, and whether it is finished: the sidecar is written last, so a
/// fold stopped while saving its model counts as unfinished (and is resumed).
fn fold_model(run_dir: &Path, k: usize) -> (PathBuf, bool) {
    let path = run_dir.join(format!("fold-{k}/model.safetensors"));
    let finished = path.exists() && cv_model::checkpoint::sidecar_path(&path).exists();
    (path, finished)
}

/// Trains folds of one run into `<run_dir>/fold-<k>/`.
struct FoldTrainer<'a> {
    config: &'a RunConfig,
    dataset: Arc<Dataset>,
    device: candle_core::Device,
    run_dir: &'a Path,
    n_folds: usize,
    quiet: bool,
}

impl FoldTrainer<'_> {
    /// Trains `fold` unless it is finished, continuing from its epoch checkpoint if it has one.
    /// Writes only inside its fold folder, each file atomically, the model file last.
    fn train(&self, fold: &cv_split::Fold) -> Result<()> {
        let Self {
            config,
            dataset,
            device,
            run_dir,
            n_folds,
            quiet,
        } = self;
        let (k, n_folds, quiet) = (fold.fold, *n_folds, *quiet);
        let fold_dir = run_dir.join(format!("fold-{k}"));
        let (model_path, finished) = fold_model(run_dir, k);
        if finished {
            if !quiet {
                println!("fold {k}: already trained, skipped");
            }
            return Ok(());
        }
        std::fs::create_dir_all(&fold_dir)
            .with_context(|| format!("cannot create {}", fold_dir.display()))?;
        let checkpoint_dir = fold_dir.join("checkpoint");
        if !quiet && checkpoint_dir.join("checkpoint.json").exists() {
            println!("fold {k}: continuing from its epoch checkpoint");
        }
        let tree = SeedTree::new(config.seed);
        let model_config = config.model_config(dataset.classes.len());
        let train_config = config.training.train_config();
        // Every fold starts from the same initial weights (or the same pretrained file).
        let model = build(&model_config, &tree.child("init"), device)?;
        if let Some(pretrained) = &config.model.pretrained {
            let report = cv_model::load_pretrained(&model, pretrained)?;
            if !quiet {
                println!(
                    "fold {k}: {} tensors loaded from {}, {} skipped, {} missing",
                    report.loaded.len(),
                    pretrained.display(),
                    report.skipped.len(),
                    report.missing.len()
                );
            }
        }
        let init_hash = weights_hash(&model.params().tensors())?;
        let train_idx: Vec<usize> = fold.train.iter().map(|&i| i as usize).collect();
        let valid_idx: Vec<usize> = fold.test.iter().map(|&i| i as usize).collect();
        let train_loader = Loader::new(
            Arc::clone(dataset),
            train_idx,
            &config.data.transforms.train,
            tree,
            k,
            config.loader_config(config.training.sampling),
            device.clone(),
        )?;
        let valid_loader = Loader::new(
            Arc::clone(dataset),
            valid_idx.clone(),
            &config.data.transforms.eval,
            tree,
            k,
            config.loader_config(Sampling::Sequential),
            device.clone(),
        )?;
        let fold_started = Instant::now();
        // A live bar on a terminal; plain lines (one per epoch) in logs and pipes.
        let bar = progress_bar(
            quiet,
            (train_config.epochs * train_loader.batches_per_epoch()) as u64,
            format!("fold {k} ({}/{n_folds})", k + 1),
        );
        let outcome = train_fold(
            &model,
            &train_config,
            |epoch| batches(&train_loader, epoch),
            |_| batches(&valid_loader, 0),
            &tree.child("dropout").indexed("fold", k as u64),
            Some(&checkpoint_dir),
            |p| match p {
                Progress::Step { loss, .. } => {
                    if let Some(bar) = &bar {
                        bar.inc(1);
                        bar.set_message(format!("loss {loss:.4}"));
                    }
                }
                Progress::Epoch {
                    epoch,
                    train,
                    valid,
                    best,
                } => {
                    let line = format!(
                        "fold {k} ({}/{n_folds}) epoch {}/{}: train loss {:.4} acc {:.4} | valid loss {:.4} acc {:.4} bal {:.4}{}",
                        k + 1,
                        epoch + 1,
                        train_config.epochs,
                        train.loss,
                        train.accuracy,
                        valid.loss,
                        valid.accuracy,
                        valid.balanced_accuracy,
                        if best { " *" } else { "" }
                    );
                    match &bar {
                        Some(bar) => bar.println(line),
                        None if !quiet => println!("{line}"),
                        None => {}
                    }
                }
            },
        )
        .with_context(|| format!("fold {k} failed"))?;
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
        // The fold model is the best epoch's weights.
        for (name, param) in model.params().iter() {
            if let Some(t) = outcome.best_weights.get(name) {
                param.var.set(t)?;
            }
        }
        let best = &outcome.history[outcome
            .history
            .iter()
            .position(|r| r.epoch == outcome.best_epoch)
            .unwrap_or(0)];
        let sidecar = ModelSidecar {
            architecture: serde_json::to_value(model_config)?,
            classes: dataset.classes.names().to_vec(),
            epoch: Some(outcome.best_epoch),
            metrics: metric_map(&best.valid),
            init_hash,
            weights_hash: weights_hash(&outcome.best_weights)?,
        };
        // Out-of-fold predictions of the fold model on its validation samples.
        let predictions = cv_ensemble::predict_probabilities(&model, batches(&valid_loader, 0))?;
        write_json(
            &fold_dir.join("oof.json"),
            &serde_json::json!({"indices": valid_idx, "probabilities": predictions.probabilities, "n_classes": predictions.n_classes}),
        )?;
        write_history(&fold_dir.join("history.csv"), &outcome.history)?;
        // The model file last: its sidecar, written after the weights, marks the fold finished.
        save_model(&model_path, &outcome.best_weights, &sidecar)?;
        if !quiet {
            println!(
                "fold {k}: best epoch {} (valid accuracy {:.4}), {:.0} s",
                outcome.best_epoch + 1,
                best.valid.accuracy,
                fold_started.elapsed().as_secs_f64()
            );
        }
        Ok(())
    }
}

#[derive(Args)]
pub struct AggregateArgs {
    /// The run folder whose folds were trained separately (e.g. `cv train --fold K` jobs).
    #[arg(long)]
    run: PathBuf,
}

/// `cv aggregate`: the summary (`summary.json`, `summary.md`, `oof.csv`) from fold results
/// produced separately; the same files a full `cv train` writes.
pub fn aggregate(args: AggregateArgs) -> Result<()> {
    let run_dir = &args.run;
    let (config, _) = RunConfig::load(&run_dir.join("config.toml"), &[])?;
    let folds = read_folds(run_dir)?;
    let dataset = open_dataset(&config)?;
    let held_out: std::collections::BTreeSet<usize> = folds.holdout.iter().copied().collect();
    let pool: Vec<usize> = (0..dataset.len())
        .filter(|i| !held_out.contains(i))
        .collect();
    let missing: Vec<usize> = folds
        .folds
        .iter()
        .map(|f| f.fold)
        .filter(|&k| !fold_model(run_dir, k).1)
        .collect();
    if !missing.is_empty() {
        eprintln!("warning: folds {missing:?} are not finished; summarising the others");
    }
    summarise(run_dir, &config, &dataset, &pool, &folds.folds)
}

/// A progress bar over `steps` training steps when standard output is a terminal (and not
/// quiet); `None` means plain log lines.
pub(crate) fn progress_bar(
    quiet: bool,
    steps: u64,
    prefix: String,
) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal;
    if quiet || !std::io::stdout().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(steps).with_prefix(prefix);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{prefix} [{bar:30}] {pos}/{len} steps, {msg}, {elapsed} elapsed, ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    Some(bar)
}

/// The run's plan: a seeded stratified holdout (if configured), then the configured splitter on
/// the rest. Returns the cross-validated pool (sorted data set indices) and the folds in data
/// set indices. Warnings (e.g. a class smaller than the number of folds) go to stderr.
pub(crate) fn plan_folds(config: &RunConfig, dataset: &Dataset) -> Result<(Vec<usize>, FoldsFile)> {
    let split_seed = SeedTree::new(config.seed).split_seed()?;
    let labels: Vec<usize> = dataset.labels();
    let (pool, holdout): (Vec<usize>, Vec<usize>) = match config.cv.holdout {
        Some(fraction) => {
            let split = StratifiedShuffleSplit::new(1, u64::from(split_seed))?
                .test_size(Size::Fraction(fraction))
                .split(&labels)?;
            let sorted = |v: &[u32]| {
                let mut v: Vec<usize> = v.iter().map(|&i| i as usize).collect();
                v.sort_unstable();
                v
            };
            (sorted(&split.folds[0].train), sorted(&split.folds[0].test))
        }
        None => ((0..dataset.len()).collect(), vec![]),
    };
    let pool_labels: Vec<usize> = pool.iter().map(|&i| labels[i]).collect();
    let groups: Option<Vec<String>> = config.cv.method.uses_groups().then(|| {
        pool.iter()
            .map(|&i| dataset.samples[i].group.clone().unwrap_or_default())
            .collect()
    });
    let spec = SplitSpec {
        method: config.cv.method,
        n_splits: config.cv.n_splits,
        seed: config.cv.shuffle.then_some(u64::from(split_seed)),
        n_repeats: config.cv.n_repeats,
        test_size: None,
        train_size: None,
    };
    let split = spec
        .split(pool.len(), Some(&pool_labels), groups.as_deref())
        .context("cannot split the data set")?;
    for warning in &split.warnings {
        eprintln!("warning: {warning}");
    }
    let to_dataset = |v: &[u32]| v.iter().map(|&i| pool[i as usize] as u32).collect();
    let folds = split
        .folds
        .iter()
        .map(|f| cv_split::Fold {
            fold: f.fold,
            train: to_dataset(&f.train),
            test: to_dataset(&f.test),
        })
        .collect();
    Ok((pool, FoldsFile { holdout, folds }))
}

pub(crate) fn batches(loader: &Loader, epoch: usize) -> Batches<'_> {
    Box::new(loader.epoch(epoch).map(|b| {
        b.map(|b| (b.images, b.labels))
            .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
    }))
}

pub(crate) fn metric_map(m: &EpochMetrics) -> BTreeMap<String, f64> {
    BTreeMap::from([
        ("loss".to_owned(), m.loss),
        ("accuracy".to_owned(), m.accuracy),
        ("balanced_accuracy".to_owned(), m.balanced_accuracy),
        ("macro_f1".to_owned(), m.macro_f1),
    ])
}

/// Creates the run folder, or checks that an existing one may be used.
fn prepare_run_dir(dir: &Path, resolved: &str, resume: bool, force: bool) -> Result<()> {
    let config_path = dir.join("config.toml");
    if dir.exists() && std::fs::read_dir(dir)?.next().is_some() {
        if force {
            std::fs::remove_dir_all(dir)
                .with_context(|| format!("cannot remove {}", dir.display()))?;
        } else if resume {
            let saved = std::fs::read_to_string(&config_path)
                .with_context(|| format!("{} has no config.toml to resume", dir.display()))?;
            if saved != resolved {
                bail!(
                    "{} was made with another configuration; resume with the same config and --set values (see its config.toml)",
                    dir.display()
                );
            }
            return Ok(());
        } else {
            bail!(
                "{} already exists; use --resume to continue it or --force to replace it",
                dir.display()
            );
        }
    }
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    write_text(&config_path, resolved)
}

fn write_text(path: &Path, text: &str) -> Result<()> {
    write_atomic(path, |tmp| std::fs::write(tmp, text))
        .with_context(|| format!("cannot write {}", path.display()))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    write_text(path, &text)
}

pub(crate) fn write_history(path: &Path, history: &[cv_model::train::EpochRecord]) -> Result<()> {
    let mut text = String::from(
        "epoch,lr,train_loss,train_accuracy,train_balanced_accuracy,train_macro_f1,valid_loss,valid_accuracy,valid_balanced_accuracy,valid_macro_f1\n",
    );
    for r in history {
        let (t, v) = (&r.train, &r.valid);
        writeln!(
            text,
            "{},{},{},{},{},{},{},{},{},{}",
            r.epoch,
            r.lr,
            t.loss,
            t.accuracy,
            t.balanced_accuracy,
            t.macro_f1,
            v.loss,
            v.accuracy,
            v.balanced_accuracy,
            v.macro_f1
        )?;
    }
    write_text(path, &text)
}

/// `summary.json`, `summary.md` and `oof.csv` from the finished folds.
fn summarise(
    run_dir: &Path,
    config: &RunConfig,
    dataset: &Dataset,
    pool: &[usize],
    folds: &[cv_split::Fold],
) -> Result<()> {
    let mut fold_summaries = Vec::new();
    let mut oof_parts = Vec::new();
    // Data set index → position in the cross-validated pool (OOF rows are the pool's).
    let position: BTreeMap<usize, usize> = pool.iter().enumerate().map(|(p, &i)| (i, p)).collect();
    for fold in folds {
        let fold_dir = run_dir.join(format!("fold-{}", fold.fold));
        let (model_path, finished) = fold_model(run_dir, fold.fold);
        if !finished {
            continue;
        }
        let sidecar = cv_model::checkpoint::load_sidecar(&model_path)?;
        let metric = |name: &str| sidecar.metrics.get(name).copied().unwrap_or(f64::NAN);
        fold_summaries.push(FoldSummary {
            fold: fold.fold,
            best_epoch: sidecar.epoch.unwrap_or(0),
            valid: EpochMetrics {
                loss: metric("loss"),
                accuracy: metric("accuracy"),
                balanced_accuracy: metric("balanced_accuracy"),
                macro_f1: metric("macro_f1"),
            },
        });
        let oof: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(fold_dir.join("oof.json"))?)?;
        let indices: Vec<usize> = serde_json::from_value(oof["indices"].clone())?;
        let probabilities: Vec<f32> = serde_json::from_value(oof["probabilities"].clone())?;
        let n_classes: usize = serde_json::from_value(oof["n_classes"].clone())?;
        let labels: Vec<u32> = indices
            .iter()
            .map(|&i| dataset.samples[i].label as u32)
            .collect();
        oof_parts.push(FoldPredictions {
            fold: fold.fold,
            indices: indices.iter().map(|i| position[i]).collect(),
            predictions: cv_ensemble::Predictions::new(n_classes, probabilities, labels)?,
        });
    }
    let n = fold_summaries.len() as f64;
    let mut mean = BTreeMap::new();
    let mut std = BTreeMap::new();
    for (name, get) in [
        (
            "loss",
            (|m: &EpochMetrics| m.loss) as fn(&EpochMetrics) -> f64,
        ),
        ("accuracy", |m| m.accuracy),
        ("balanced_accuracy", |m| m.balanced_accuracy),
        ("macro_f1", |m| m.macro_f1),
    ] {
        let values: Vec<f64> = fold_summaries.iter().map(|f| get(&f.valid)).collect();
        let m = values.iter().sum::<f64>() / n;
        let s = if values.len() > 1 {
            (values.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        } else {
            0.0
        };
        mean.insert(name.to_owned(), m);
        std.insert(name.to_owned(), s);
    }
    // Out-of-fold predictions exist for a whole k-fold split once every fold is done.
    let complete = fold_summaries.len() == folds.len()
        && matches!(
            config.cv.method,
            cv_split::Method::Kfold
                | cv_split::Method::StratifiedKfold
                | cv_split::Method::GroupKfold
                | cv_split::Method::StratifiedGroupKfold
                | cv_split::Method::Loo
        );
    let out_of_fold = if complete {
        let paths: Vec<&Path> = pool
            .iter()
            .map(|&i| dataset.samples[i].path.as_path())
            .collect();
        let labels: Vec<u32> = pool
            .iter()
            .map(|&i| dataset.samples[i].label as u32)
            .collect();
        let oof = OutOfFold::assemble(&paths, &labels, dataset.classes.names(), &oof_parts)?;
        oof.write_csv(&run_dir.join("oof.csv"))?;
        Some(oof.evaluate()?)
    } else {
        None
    };
    let summary = Summary {
        select_by: config.training.select_by,
        folds: fold_summaries,
        mean,
        std,
        out_of_fold,
    };
    write_json(&run_dir.join("summary.json"), &summary)?;
    let mut md = String::from("| fold | best epoch | valid loss | accuracy | balanced accuracy | macro-F1 |\n| --- | --- | --- | --- | --- | --- |\n");
    for f in &summary.folds {
        writeln!(
            md,
            "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} |",
            f.fold,
            f.best_epoch + 1,
            f.valid.loss,
            f.valid.accuracy,
            f.valid.balanced_accuracy,
            f.valid.macro_f1
        )?;
    }
    let pm = |k: &str| format!("{:.4} ± {:.4}", summary.mean[k], summary.std[k]);
    writeln!(
        md,
        "| mean ± std | | {} | {} | {} | {} |",
        pm("loss"),
        pm("accuracy"),
        pm("balanced_accuracy"),
        pm("macro_f1")
    )?;
    if let Some(oof) = &summary.out_of_fold {
        writeln!(
            md,
            "\nOut-of-fold over {} samples: accuracy {:.4}, balanced accuracy {:.4}, macro-F1 {:.4}, log-loss {:.4}",
            oof.samples, oof.accuracy, oof.balanced_accuracy, oof.macro_f1, oof.log_loss
        )?;
    }
    write_text(&run_dir.join("summary.md"), &md)?;
    crate::report::write_report(run_dir)?;
    println!("\n{md}\nrun folder: {}", run_dir.display());
    Ok(())
}

/// Provenance: seeds, folds, data, code and machine. (Times make this file differ from run to
/// run; `folds.json`, the model files and `summary.json` do not.)
fn write_run_json(
    run_dir: &Path,
    config: &RunConfig,
    config_path: &Path,
    folds: &[cv_split::Fold],
    holdout: &[usize],
    started: Instant,
) -> Result<()> {
    let tree = SeedTree::new(config.seed);
    let hash = |bytes: &[u8]| format!("{:x}", Sha256::digest(bytes));
    let fold_hashes: Vec<String> = folds
        .iter()
        .map(|f| hash(&serde_json::to_vec(f).unwrap_or_default()))
        .collect();
    let manifest_hash = std::fs::read(&config.data.manifest).map(|b| hash(&b)).ok();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = git(&["status", "--porcelain"]).map(|s| !s.is_empty());
    let run = serde_json::json!({
        "config": config_path,
        "master_seed": config.seed,
        "split_random_state": tree.split_seed().ok(),
        "derived_seeds": {
            "init": tree.child("init").seed(),
            "data-order": tree.child("data-order").seed(),
            "augment": tree.child("augment").seed(),
            "dropout": tree.child("dropout").seed(),
        },
        "folds": fold_hashes,
        "holdout_samples": holdout.len(),
        "manifest": config.data.manifest,
        "manifest_sha256": manifest_hash,
        "git_commit": commit,
        "git_dirty": dirty,
        "foldwise_version": env!("CARGO_PKG_VERSION"),
        "device": config.training.device.to_string(),
        "threads": config.training.threads.unwrap_or_else(rayon_threads),
        "seconds": started.elapsed().as_secs_f64(),
        "finished_unix": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    });
    write_json(&run_dir.join("run.json"), &run)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
