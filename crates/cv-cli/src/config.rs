//! The run configuration: every hyperparameter in one TOML file, with `--set key=value`
//! overrides, resolved and saved with each run so that it can be repeated exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use cv_data::{LoaderConfig, ManifestColumns, Sampling, Transforms};
use cv_model::{
    Architecture, DeviceSpec, EmaConfig, LossConfig, ModelConfig, OptimizerConfig, ScheduleConfig,
    SelectBy, TrainConfig,
};
use cv_split::Method;
use serde::{Deserialize, Serialize};

/// `--device`: where a command computes, in place of the config's `training.device`.
#[derive(Debug, Clone, Copy, Default, clap::Args)]
pub struct DeviceArg {
    /// Where to compute: `cpu`, `cuda` (the first GPU) or `cuda:N`, in place of the config's
    /// `training.device`. A GPU needs a `cv` built with CUDA (`cargo xtask build-cuda`).
    #[arg(long, value_name = "DEVICE")]
    pub device: Option<DeviceSpec>,
}

impl DeviceArg {
    /// `sets` with `training.device=…` last when `--device` was given: a run records the device
    /// it trained on in its resolved config, as with `--set training.device=…`.
    pub fn with_sets(self, sets: &[String]) -> Vec<String> {
        let mut sets = sets.to_vec();
        sets.extend(self.device.map(|d| format!("training.device={d}")));
        sets
    }

    /// The device to compute on: `--device`, else the run's `training.device`.
    pub fn or_config(self, config: &RunConfig) -> DeviceSpec {
        self.device.unwrap_or(config.training.device)
    }
}

/// A whole run. Paths are relative to the folder the command is run from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The master seed: scikit-learn's `random_state` for the splits, and the root of every
    /// other stream (init, data order, augmentation, dropout).
    pub seed: u64,
    pub data: DataSection,
    pub model: ModelSection,
    pub cv: CvSection,
    pub training: TrainingSection,
    #[serde(default)]
    pub output: OutputSection,
    /// A grid for `cv sweep`: config key → values, e.g. `"training.lr" = [0.1, 0.01]`.
    /// `cv train` ignores it.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub sweep: BTreeMap<String, Vec<toml::Value>>,
    /// Job settings for `cv slurm`. `cv train` ignores them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slurm: Option<SlurmSection>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataSection {
    /// CSV manifest with a header (`path,label[,group]`); paths relative to its folder.
    pub manifest: PathBuf,
    #[serde(default)]
    pub columns: ManifestColumns,
    /// Channels the model sees (1 or 3).
    #[serde(default = "three")]
    pub channels: usize,
    #[serde(default)]
    pub transforms: Transforms,
    /// Megabytes of decoded images kept in memory across epochs.
    #[serde(default = "default_cache_mb")]
    pub cache_mb: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    pub architecture: Architecture,
    #[serde(default)]
    pub dropout: f64,
    /// A local safetensors file with torchvision names to start from.
    #[serde(default)]
    pub pretrained: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvSection {
    #[serde(default = "default_method")]
    pub method: Method,
    #[serde(default)]
    pub n_splits: Option<usize>,
    #[serde(default)]
    pub n_repeats: Option<usize>,
    /// Shuffle with the master seed (scikit-learn's `shuffle=True, random_state=seed`).
    #[serde(default = "yes")]
    pub shuffle: bool,
    /// Fraction held out (seeded stratified split) before cross-validation, to judge the
    /// ensemble on data no fold model has seen.
    #[serde(default)]
    pub holdout: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSection {
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub loss: LossConfig,
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    #[serde(default)]
    pub ema: Option<EmaConfig>,
    #[serde(default)]
    pub select_by: SelectBy,
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub device: DeviceSpec,
    /// Decode threads (default: all cores).
    #[serde(default)]
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSection {
    /// Where run folders are made.
    #[serde(default = "default_runs_dir")]
    pub runs_dir: PathBuf,
}

/// How `cv slurm` asks for resources, in sbatch's own formats; each is also a flag, which wins.
/// Scheduling only: no setting here changes what a fold computes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct SlurmSection {
    /// Partition (queue) of the jobs.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
    /// Time limit of each job, e.g. `2:00:00`.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<String>,
    /// CPUs per fold task.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// Memory per fold task, e.g. `8G`.
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// GPUs per fold task (`--gres=gpu:N`); train on them with `--device cuda` (or `training.device`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus: Option<u32>,
    /// At most this many fold tasks at once (`--array=0-(k-1)%N`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel: Option<u32>,
    /// The `cv` the jobs run (default: this one); the compute nodes must see it at this path.
    #[arg(long = "cv-bin", value_name = "PATH")]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cv: Option<PathBuf>,
    /// Also run `cv ensemble` after `cv aggregate` (needs `cv.holdout`).
    #[arg(long)]
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ensemble: bool,
    /// Another `#SBATCH` option for both jobs, e.g. `--account=lab` (repeatable).
    #[arg(
        long = "sbatch-option",
        value_name = "OPTION",
        allow_hyphen_values = true
    )]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_options: Vec<String>,
}

impl Default for OutputSection {
    fn default() -> Self {
        Self {
            runs_dir: default_runs_dir(),
        }
    }
}

fn three() -> usize {
    3
}
fn yes() -> bool {
    true
}
fn default_cache_mb() -> usize {
    512
}
fn default_method() -> Method {
    Method::StratifiedKfold
}
fn default_runs_dir() -> PathBuf {
    PathBuf::from("runs")
}

impl TrainingSection {
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            epochs: self.epochs,
            lr: self.lr,
            optimizer: self.optimizer.clone(),
            schedule: self.schedule.clone(),
            loss: self.loss.clone(),
            clip_grad_norm: self.clip_grad_norm,
            ema: self.ema.clone(),
            select_by: self.select_by,
            early_stopping_patience: self.early_stopping_patience,
        }
    }
}

impl RunConfig {
    /// Loader settings for this run (the order is the caller's: shuffled for training,
    /// sequential for evaluation).
    pub fn loader_config(&self, sampling: Sampling) -> LoaderConfig {
        LoaderConfig {
            batch_size: self.training.batch_size,
            drop_last: false,
            sampling,
            channels: self.data.channels,
            prefetch: true,
            threads: self.training.threads,
            cache_bytes: self.data.cache_mb << 20,
        }
    }

    /// The model for a data set of `num_classes` classes.
    pub fn model_config(&self, num_classes: usize) -> ModelConfig {
        ModelConfig {
            architecture: self.model.architecture,
            in_channels: self.data.channels,
            num_classes,
            dropout: self.model.dropout,
        }
    }

    /// Reads `path`, applies `overrides` (`key.path=value`, the value read as a TOML value, or
    /// as a string if it is not one), and checks every key and value. Returns the config and
    /// its resolved TOML text (what a run saves).
    pub fn load(path: &Path, overrides: &[String]) -> Result<(Self, String)> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the config {}", path.display()))?;
        let mut table: toml::Table = toml::from_str(&text)
            .with_context(|| format!("{} is not valid TOML", path.display()))?;
        for set in overrides {
            apply_override(&mut table, set).with_context(|| format!("bad --set {set:?}"))?;
        }
        let config: RunConfig = table
            .clone()
            .try_into()
            .with_context(|| format!("invalid config {}", path.display()))?;
        config
            .validate()
            .with_context(|| format!("invalid config {}", path.display()))?;
        let resolved = toml::to_string(&config).context("cannot write the resolved config")?;
        Ok((config, resolved))
    }

    fn validate(&self) -> Result<()> {
        let t = &self.training;
        if t.epochs == 0 {
            bail!("training.epochs must be at least 1");
        }
        if t.batch_size == 0 {
            bail!("training.batch_size must be at least 1");
        }
        if !(t.lr.is_finite() && t.lr >= 0.0) {
            bail!("training.lr must be a finite number >= 0, got {}", t.lr);
        }
        if !(self.data.channels == 1 || self.data.channels == 3) {
            bail!("data.channels must be 1 or 3, got {}", self.data.channels);
        }
        if let Some(h) = self.cv.holdout {
            if !(h > 0.0 && h < 1.0) {
                bail!("cv.holdout must be a fraction in (0, 1), got {h}");
            }
        }
        self.data.transforms.validate()?;
        self.model_config(2).validate()?;
        self.training.train_config().optimizer.validate()?;
        Ok(())
    }
}

/// Sets `a.b.c = value` in a TOML table, creating tables on the way.
fn apply_override(table: &mut toml::Table, set: &str) -> Result<()> {
    let (key, raw) = set
        .split_once('=')
        .context("expected key=value, e.g. training.lr=0.01")?;
    let key = key.trim();
    let value: toml::Value = match toml::from_str::<toml::Table>(&format!("v = {}", raw.trim())) {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        Err(_) => toml::Value::String(raw.trim().to_owned()),
    };
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().filter(|k| !k.is_empty()).context("empty key")?;
    let mut node = table;
    for part in parts {
        let entry = node
            .entry(part.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        node = entry
            .as_table_mut()
            .with_context(|| format!("{part} in {key} is not a table"))?;
    }
    node.insert(last.to_owned(), value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_set_nested_values_with_toml_types() {
        let mut t: toml::Table = toml::from_str("[training]\nlr = 0.1\n").unwrap();
        apply_override(&mut t, "training.lr=0.01").unwrap();
        apply_override(&mut t, "cv.n_splits=10").unwrap();
        apply_override(&mut t, "training.device=cpu").unwrap();
        assert_eq!(t["training"]["lr"].as_float(), Some(0.01));
        assert_eq!(t["cv"]["n_splits"].as_integer(), Some(10));
        assert_eq!(t["training"]["device"].as_str(), Some("cpu"));
        assert!(apply_override(&mut t, "novalue").is_err());
        assert!(apply_override(&mut t, "training.lr.x=1").is_err());
    }
}

#[cfg(test)]
mod shipped_configs {
    use super::*;

    /// Both shipped configs parse and validate (the repository root is two levels up).
    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        for name in ["default.toml", "cassava.toml"] {
            let (config, resolved) = RunConfig::load(&root.join("configs").join(name), &[])
                .unwrap_or_else(|e| panic!("{name}: {e:#}"));
            // The resolved text reads back to the same config.
            let again: RunConfig = toml::from_str(&resolved).unwrap();
            assert_eq!(again, config, "{name}");
        }
    }
}
