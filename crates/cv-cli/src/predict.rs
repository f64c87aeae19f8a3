//! `cv predict`: class probabilities for images, from one model file or a run's fold models
//! (softmax ensemble), with the run's evaluation transforms.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use cv_data::{ClassMap, Dataset, Loader, Origin, Sample, Sampling};
use cv_ensemble::{ensemble_probabilities, Combine, ModelFile};
use cv_seed::SeedTree;

use crate::config::{DeviceArg, RunConfig};
use crate::train::{batches, FoldsFile};

#[derive(Args)]
pub struct PredictArgs {
    /// The run folder whose configuration (transforms, channels, device unless `--device`) and
    /// models to use.
    #[arg(long)]
    run: PathBuf,
    /// One model file instead of the run's fold models (e.g. the averaged model).
    #[arg(long)]
    model: Option<PathBuf>,
    /// A CSV manifest with a `path` column (paths relative to it); other columns are ignored.
    #[arg(long, conflicts_with = "images")]
    manifest: Option<PathBuf>,
    /// Image files.
    images: Vec<PathBuf>,
    /// Write the CSV here (atomically) instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
    #[command(flatten)]
    device: DeviceArg,
}

pub fn run(args: PredictArgs) -> Result<()> {
    let (config, _) = RunConfig::load(&args.run.join("config.toml"), &[])?;
    let device = args.device.or_config(&config).open()?;
    let models: Vec<ModelFile> = match &args.model {
        Some(path) => vec![ModelFile::read(path)?],
        None => {
            let folds: FoldsFile = serde_json::from_str(
                &std::fs::read_to_string(args.run.join("folds.json"))
                    .with_context(|| format!("{} is not a run folder", args.run.display()))?,
            )?;
            folds
                .folds
                .iter()
                .map(|f| {
                    ModelFile::read(&args.run.join(format!("fold-{}/model.safetensors", f.fold)))
                })
                .collect::<Result<_, _>>()?
        }
    };
    let classes = ClassMap::new(models[0].sidecar.classes.clone());
    let paths = match (&args.manifest, args.images.is_empty()) {
        (Some(manifest), _) => manifest_paths(manifest, &config.data.columns.path)?,
        (None, false) => args.images.clone(),
        (None, true) => bail!("give image files or --manifest"),
    };
    for path in &paths {
        if !path.is_file() {
            bail!("{}: file not found", path.display());
        }
    }
    // Labels are unknown here; every sample gets class 0, which nothing below reads.
    let dataset = Arc::new(Dataset {
        samples: paths
            .iter()
            .map(|path| Sample {
                path: path.clone(),
                label: 0,
                group: None,
                origin: Origin::Folder,
            })
            .collect(),
        classes: classes.clone(),
        listing_problems: vec![],
    });
    let loader = Loader::new(
        Arc::clone(&dataset),
        (0..dataset.len()).collect(),
        &config.data.transforms.eval,
        SeedTree::new(config.seed),
        0,
        config.loader_config(Sampling::Sequential),
        device.clone(),
    )?;
    let predictions = ensemble_probabilities(
        &models,
        || batches(&loader, 0),
        Combine::Mean,
        false,
        &device,
    )?;
    let mut csv = String::from("path,predicted");
    for name in classes.names() {
        write!(csv, ",prob_{name}")?;
    }
    csv.push('\n');
    for (i, (path, predicted)) in paths.iter().zip(predictions.predicted()).enumerate() {
        write!(
            csv,
            "{},{}",
            path.display(),
            classes.name(predicted as usize).unwrap_or("?")
        )?;
        for p in predictions.row(i) {
            write!(csv, ",{p}")?;
        }
        csv.push('\n');
    }
    match &args.output {
        Some(path) => cv_model::checkpoint::write_atomic(path, |tmp| std::fs::write(tmp, &csv))
            .with_context(|| format!("cannot write {}", path.display())),
        None => Ok(std::io::stdout().lock().write_all(csv.as_bytes())?),
    }
}

/// The `path` column of a manifest, joined to its folder.
fn manifest_paths(manifest: &std::path::Path, column: &str) -> Result<Vec<PathBuf>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(manifest)
        .with_context(|| format!("cannot read {}", manifest.display()))?;
    let at = reader
        .headers()?
        .iter()
        .position(|h| h == column)
        .with_context(|| format!("{}: no column named {column:?}", manifest.display()))?;
    let base = manifest.parent().unwrap_or(std::path::Path::new(""));
    let mut paths = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record =
            record.with_context(|| format!("{}:{}: malformed row", manifest.display(), i + 2))?;
        match record.get(at) {
            Some(p) if !p.is_empty() => paths.push(base.join(p)),
            _ => bail!("{}:{}: empty path", manifest.display(), i + 2),
        }
    }
    Ok(paths)
}
