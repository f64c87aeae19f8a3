//! `cv check-data`: read every image of a data set once and report every problem together.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use cv_data::{check, Dataset, ManifestColumns};

use crate::config::RunConfig;

#[derive(Args)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "manifest", "folder"])))]
pub struct CheckDataArgs {
    /// Check the data set of this run configuration (and its number of folds).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Check a CSV manifest (`path,label[,group]`).
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Check an image folder (`root/<class>/<image>`).
    #[arg(long)]
    folder: Option<PathBuf>,
    /// Images each class needs (e.g. the number of folds); with --config, the config's.
    #[arg(long)]
    min_per_class: Option<usize>,
}

pub fn run(args: CheckDataArgs) -> Result<()> {
    let (dataset, min) = if let Some(path) = &args.config {
        let (config, _) = RunConfig::load(path, &[])?;
        let folds = config
            .cv
            .n_splits
            .unwrap_or(config.cv.method.default_n_splits());
        let data = Dataset::from_manifest(&config.data.manifest, &config.data.columns, None)
            .with_context(|| format!("cannot read {}", config.data.manifest.display()))?;
        (data, args.min_per_class.unwrap_or(folds))
    } else if let Some(path) = &args.manifest {
        let data = Dataset::from_manifest(path, &ManifestColumns::default(), None)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (data, args.min_per_class.unwrap_or(1))
    } else if let Some(path) = &args.folder {
        let data = Dataset::from_image_folder(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        (data, args.min_per_class.unwrap_or(1))
    } else {
        bail!("give --config, --manifest or --folder");
    };
    let report = check(&dataset, min);
    let counts: Vec<String> = dataset
        .classes
        .names()
        .iter()
        .zip(dataset.class_counts())
        .map(|(name, count)| format!("{name}: {count}"))
        .collect();
    println!("{} classes ({})", dataset.classes.len(), counts.join(", "));
    if report.is_ok() {
        println!("{report}");
        Ok(())
    } else {
        bail!("{report}")
    }
}
