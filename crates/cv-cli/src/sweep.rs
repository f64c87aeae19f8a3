//! `cv sweep`: cross-validate every combination of a grid of config values, rank them by the
//! mean (then the spread) of the chosen metric over the folds, and optionally refit the best.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use serde::Serialize;

use crate::config::{DeviceArg, RunConfig};

#[derive(Args)]
pub struct SweepArgs {
    /// The base configuration; its `[sweep]` table (key = [values]) is the grid.
    #[arg(long)]
    config: PathBuf,
    /// More grid axes: `--grid training.lr=0.1,0.01` (repeatable).
    #[arg(long = "grid", value_name = "KEY=A,B,…")]
    grids: Vec<String>,
    /// Fixed overrides for every combination (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    #[command(flatten)]
    device: DeviceArg,
    /// Where the combinations' run folders go (default `<output.runs_dir>/<config>-sweep`).
    #[arg(long)]
    sweep_dir: Option<PathBuf>,
    /// Train the best combination on every sample afterwards (`cv refit`).
    #[arg(long)]
    refit_best: bool,
    /// Print only the ranking.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Serialize)]
struct Ranked {
    rank: usize,
    settings: Vec<String>,
    run: PathBuf,
    mean: f64,
    std: f64,
}

pub fn run(args: SweepArgs) -> Result<()> {
    let sets = args.device.with_sets(&args.sets);
    let (config, _) = RunConfig::load(&args.config, &sets)?;
    // Before any combination trains, so that a device that cannot be used stops the sweep here.
    config.training.device.open()?;
    // Axes: the config's [sweep] table, then --grid, as `key=value` strings for --set.
    let mut axes: Vec<Vec<String>> = config
        .sweep
        .iter()
        .map(|(key, values)| values.iter().map(|v| format!("{key}={v}")).collect())
        .collect();
    for grid in &args.grids {
        let (key, values) = grid
            .split_once('=')
            .with_context(|| format!("--grid {grid:?}: expected KEY=A,B,…"))?;
        axes.push(
            values
                .split(',')
                .map(|v| format!("{}={}", key.trim(), v.trim()))
                .collect(),
        );
    }
    if axes.is_empty() || axes.iter().any(Vec::is_empty) {
        bail!("nothing to sweep: give --grid KEY=A,B or a [sweep] table with values");
    }
    let mut combinations: Vec<Vec<String>> = vec![vec![]];
    for axis in &axes {
        combinations = combinations
            .into_iter()
            .flat_map(|c| {
                axis.iter()
                    .map(move |v| [c.clone(), vec![v.clone()]].concat())
            })
            .collect();
    }
    let name = args
        .config
        .file_stem()
        .map_or("run".into(), |s| s.to_string_lossy().into_owned());
    let sweep_dir = args
        .sweep_dir
        .clone()
        .unwrap_or_else(|| config.output.runs_dir.join(format!("{name}-sweep")));
    let metric = config.training.select_by;
    let lower_is_better = matches!(metric, cv_model::SelectBy::Loss);
    let key = match metric {
        cv_model::SelectBy::Accuracy => "accuracy",
        cv_model::SelectBy::BalancedAccuracy => "balanced_accuracy",
        cv_model::SelectBy::MacroF1 => "macro_f1",
        cv_model::SelectBy::Loss => "loss",
    };
    let mut results = Vec::new();
    for (i, settings) in combinations.iter().enumerate() {
        let run = sweep_dir.join(format!("{i:02}"));
        if !args.quiet {
            println!(
                "combination {}/{}: {}",
                i + 1,
                combinations.len(),
                settings.join(" ")
            );
        }
        let resume = run.join("config.toml").exists();
        crate::train::run(crate::train::TrainArgs {
            config: Some(args.config.clone()),
            run: None,
            sets: [sets.clone(), settings.clone()].concat(),
            device: DeviceArg::default(),
            run_dir: Some(run.clone()),
            fold: None,
            resume,
            force: false,
            quiet: true,
        })
        .with_context(|| format!("combination {}", settings.join(" ")))?;
        let summary: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(run.join("summary.json"))?)?;
        let mean = summary["mean"][key].as_f64().unwrap_or(f64::NAN);
        let std = summary["std"][key].as_f64().unwrap_or(f64::NAN);
        results.push((settings.clone(), run, mean, std));
    }
    // Best mean first; a smaller spread breaks ties; then grid order.
    results.sort_by(|a, b| {
        let by_mean = if lower_is_better {
            a.2.total_cmp(&b.2)
        } else {
            b.2.total_cmp(&a.2)
        };
        by_mean.then(a.3.total_cmp(&b.3))
    });
    let ranked: Vec<Ranked> = results
        .into_iter()
        .enumerate()
        .map(|(i, (settings, run, mean, std))| Ranked {
            rank: i + 1,
            settings,
            run,
            mean,
            std,
        })
        .collect();
    let mut md = format!(
        "| rank | settings | {key} (mean ± std over folds) | run |\n| --- | --- | --- | --- |\n"
    );
    for r in &ranked {
        writeln!(
            md,
            "| {} | {} | {:.4} ± {:.4} | {} |",
            r.rank,
            r.settings.join(" "),
            r.mean,
            r.std,
            r.run.display()
        )?;
    }
    let write = |file: &str, text: &str| {
        let path = sweep_dir.join(file);
        cv_model::checkpoint::write_atomic(&path, |tmp| std::fs::write(tmp, text))
            .with_context(|| format!("cannot write {}", path.display()))
    };
    write("sweep.md", &md)?;
    write(
        "sweep.json",
        &(serde_json::to_string_pretty(&ranked)? + "\n"),
    )?;
    println!("\n{md}");
    if args.refit_best {
        let best = &ranked[0];
        crate::refit::run(crate::refit::RefitArgs::new(best.run.clone(), args.quiet))?;
    }
    Ok(())
}
