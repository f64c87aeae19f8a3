//! `cv split`: folds from a labels file or a dataset manifest.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use cv_split::{Method, Size, Split, SplitError, SplitSpec};

use crate::input::{read_column_file, read_manifest};
use crate::output::write_atomic;

#[derive(Args)]
#[command(after_help = "\
Without --seed the k-fold types do not shuffle (scikit-learn's shuffle=False); with --seed S \
they shuffle with random_state=S. The shuffle-split and repeated types always shuffle and need \
--seed.

Values that all parse as integers are ordered numerically, otherwise as text, as numpy orders \
an integer or a string array; this decides the folds wherever scikit-learn sorts classes or \
groups.

Examples:
  cv split --labels y.txt --method stratified-kfold --n-splits 5 --seed 42
  cv split --manifest data/digits/manifest.csv --format csv --output folds.csv
  cv split --labels y.txt --groups patients.txt --method stratified-group-kfold")]
pub struct SplitArgs {
    /// File with one class label per line.
    #[arg(
        long,
        conflicts_with_all = ["manifest", "config"],
        required_unless_present_any = ["manifest", "config"]
    )]
    labels: Option<PathBuf>,
    /// A run configuration: its data, holdout and splitter, exactly as `cv train` plans them
    /// (JSON output: `{"holdout": [...], "folds": [...]}` in data set indices).
    #[arg(long, conflicts_with_all = ["manifest", "groups"])]
    config: Option<PathBuf>,
    /// With --config: override a config value (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", requires = "config")]
    sets: Vec<String>,
    /// Dataset manifest: CSV with a header, e.g. `path,label,group`.
    #[arg(long)]
    manifest: Option<PathBuf>,
    /// Manifest column holding the class label.
    #[arg(long, default_value = "label", requires = "manifest")]
    label_column: String,
    /// Manifest column holding the group (read by the group methods).
    #[arg(long, default_value = "group", requires = "manifest")]
    group_column: String,
    /// File with one group per line, same length as the labels (group methods only).
    #[arg(long, conflicts_with = "manifest")]
    groups: Option<PathBuf>,
    /// Splitter.
    #[arg(long, default_value = "stratified-kfold", value_parser = parse_method)]
    method: Method,
    /// Number of folds (shuffle-split types: number of splits). Default: scikit-learn's.
    #[arg(long)]
    n_splits: Option<usize>,
    /// scikit-learn's random_state (0 to 2^32-1).
    #[arg(long, value_parser = parse_seed, allow_negative_numbers = true)]
    seed: Option<u64>,
    /// Repetitions (repeated types). Default 10.
    #[arg(long)]
    n_repeats: Option<usize>,
    /// Test size: a fraction such as 0.2 or a count such as 20 (shuffle-split types).
    #[arg(long)]
    test_size: Option<Size>,
    /// Train size: a fraction or a count (shuffle-split types).
    #[arg(long)]
    train_size: Option<Size>,
    /// Output format: `json` (every fold's train and test indices) or `csv` (`sample,fold`
    /// rows, k-fold types only).
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Write to this file (atomically) instead of standard output.
    #[arg(long, short)]
    output: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Json,
    Csv,
}

fn parse_method(s: &str) -> Result<Method, String> {
    s.parse()
}

fn parse_seed(s: &str) -> Result<u64, String> {
    let value: i128 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not an integer"))?;
    match u32::try_from(value) {
        Ok(seed) => Ok(u64::from(seed)),
        Err(_) => Err(SplitError::SeedOutOfRange(value).to_string()),
    }
}

pub fn run(args: SplitArgs) -> Result<()> {
    if let Some(path) = &args.config {
        return run_from_config(path, &args);
    }
    let method = args.method;
    let (labels, groups, source) = match (&args.labels, &args.manifest) {
        (Some(path), _) => {
            let labels = read_column_file(path, "labels")?;
            let groups = match &args.groups {
                Some(groups_path) => {
                    let groups = read_column_file(groups_path, "groups")?;
                    if groups.len() != labels.len() {
                        bail!(
                            "{} has {} values but {} has {}: give one group per label",
                            groups_path.display(),
                            groups.len(),
                            path.display(),
                            labels.len()
                        );
                    }
                    Some(groups)
                }
                None => None,
            };
            (labels, groups, path.display().to_string())
        }
        (None, Some(path)) => {
            let group_column = method.uses_groups().then_some(args.group_column.as_str());
            let (labels, groups) = read_manifest(path, &args.label_column, group_column)?;
            (labels, groups, path.display().to_string())
        }
        (None, None) => bail!("give --labels FILE or --manifest FILE"),
    };
    if method.uses_groups() && groups.is_none() {
        bail!("{method} needs groups: give --groups FILE (one group per label)");
    }
    if !method.uses_groups() && groups.is_some() {
        bail!("{method} does not use groups; drop --groups or choose a group method");
    }
    let spec = SplitSpec {
        method,
        n_splits: args.n_splits,
        seed: args.seed,
        n_repeats: args.n_repeats,
        test_size: args.test_size,
        train_size: args.train_size,
    };
    let split = spec
        .split(labels.len(), Some(&labels), groups.as_deref())
        .with_context(|| format!("cannot split the {} samples of {source}", labels.len()))?;
    for warning in &split.warnings {
        eprintln!("warning: {warning}");
    }
    let text = match args.format {
        Format::Json => {
            let mut text = serde_json::to_string(&split.folds)?;
            text.push('\n');
            text
        }
        Format::Csv => csv_assignment(&split, method)?,
    };
    emit(&args.output, &text)
}

/// The folds a run of `path` would use, as `cv train` records them in `folds.json`.
fn run_from_config(path: &std::path::Path, args: &SplitArgs) -> Result<()> {
    let (config, _) = crate::config::RunConfig::load(path, &args.sets)?;
    let dataset =
        cv_data::Dataset::from_manifest(&config.data.manifest, &config.data.columns, None)
            .with_context(|| format!("cannot read {}", config.data.manifest.display()))?;
    let (_, plan) = crate::train::plan_folds(&config, &dataset)?;
    let text = match args.format {
        Format::Json => serde_json::to_string(&plan)? + "\n",
        Format::Csv => {
            // Held-out samples are marked `holdout`; every other sample's (last) test fold.
            let mut fold_of: Vec<String> = vec![String::new(); dataset.len()];
            for &i in &plan.holdout {
                fold_of[i] = "holdout".into();
            }
            for fold in &plan.folds {
                for &i in &fold.test {
                    fold_of[i as usize] = fold.fold.to_string();
                }
            }
            let mut text = String::from("sample,fold\n");
            for (sample, fold) in fold_of.iter().enumerate() {
                writeln!(text, "{sample},{fold}")?;
            }
            text
        }
    };
    emit(&args.output, &text)
}

fn emit(output: &Option<PathBuf>, text: &str) -> Result<()> {
    match output {
        Some(path) => write_atomic(path, text.as_bytes()),
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(text.as_bytes())?;
            stdout.flush().context("cannot write to standard output")
        }
    }
}

/// `sample,fold` rows: each repeat in turn, samples in order.
fn csv_assignment(split: &Split, method: Method) -> Result<String> {
    let Some(assignments) = split.assignments() else {
        bail!(
            "--format csv gives each sample's test fold, but {method} tests samples any number of \
             times; use --format json"
        );
    };
    let mut text = String::from("sample,fold\n");
    for assignment in &assignments {
        for (sample, fold) in assignment.fold_of_sample.iter().enumerate() {
            writeln!(text, "{sample},{fold}")?;
        }
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeds_outside_numpys_range_use_numpys_words() {
        assert_eq!(parse_seed("42"), Ok(42));
        assert_eq!(parse_seed("4294967295"), Ok(u64::from(u32::MAX)));
        assert_eq!(
            parse_seed("-1").unwrap_err(),
            "Seed must be between 0 and 2**32 - 1, got -1."
        );
        assert!(parse_seed("x").is_err());
    }
}
