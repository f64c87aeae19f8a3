//! `cv slurm`: a cross-validation as a Slurm job array, one fold per array task.
//!
//! The plan (the resolved `config.toml` and `folds.json`) is written here, once, exactly as
//! `cv train` writes it. Each array task runs `cv train --run DIR --fold $SLURM_ARRAY_TASK_ID`,
//! which only reads the plan and writes inside its own `fold-K/`, so tasks on a shared
//! filesystem cannot corrupt each other, and a task run again resumes its fold or skips it when
//! finished. A second job, started once every task has succeeded, runs `cv aggregate` (and
//! `cv ensemble`).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use clap::Args;

use crate::config::{DeviceArg, RunConfig, SlurmSection};
use crate::train::{default_run_dir, plan_run};

#[derive(Args)]
pub struct SlurmArgs {
    /// The run configuration (TOML); its `[slurm]` section gives defaults for the flags below.
    #[arg(long)]
    config: PathBuf,
    /// Override a config value, e.g. `--set training.lr=0.01` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    sets: Vec<String>,
    // Where the fold tasks train: recorded in the plan, as `--set training.device=…` is.
    #[command(flatten)]
    device: DeviceArg,
    /// The run folder, on a filesystem the compute nodes share (default:
    /// `<output.runs_dir>/<config name>-seed<seed>`).
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Use an existing run folder made with the same config, e.g. to submit again after a
    /// failure: finished folds are skipped, an interrupted fold continues from its checkpoint.
    #[arg(long)]
    resume: bool,
    /// Replace an existing run folder.
    #[arg(long, conflicts_with = "resume")]
    force: bool,
    /// Submit both jobs with `sbatch` and print their ids (otherwise only write the scripts).
    #[arg(long)]
    submit: bool,
    #[command(flatten)]
    slurm: SlurmSection,
}

/// `cv slurm`: writes the plan and `<run>/slurm/{train,aggregate}.sbatch`, and submits them
/// with `--submit`.
pub fn run(args: SlurmArgs) -> Result<()> {
    let (config, resolved) = RunConfig::load(&args.config, &args.device.with_sets(&args.sets))?;
    let settings = merge(args.slurm, config.slurm.clone().unwrap_or_default());
    validate(&settings)?;
    let cv = match &settings.cv {
        Some(path) => path.clone(),
        None => std::env::current_exe().context("cannot find this cv's path; give --cv-bin")?,
    };
    // A job may start in any folder: the scripts name absolute paths and change to this folder,
    // from which the config's relative paths are read.
    let cwd = std::env::current_dir().context("cannot read the current folder")?;
    let run_dir = cwd.join(
        args.run_dir
            .unwrap_or_else(|| default_run_dir(&config, &args.config)),
    );
    let cv = cwd.join(cv);
    for path in [&cwd, &run_dir, &cv] {
        sbatch_safe(path)?;
    }
    match (settings.gpus.unwrap_or(0) > 0, config.training.device) {
        (true, cv_model::DeviceSpec::Cpu) => {
            eprintln!("warning: slurm.gpus asks for GPUs but training.device is cpu (--device cuda trains on them)");
        }
        (false, device @ cv_model::DeviceSpec::Cuda(_)) => {
            eprintln!(
                "warning: training.device is {device} but the tasks ask for no GPU (--gpus 1)"
            );
        }
        _ => {}
    }

    let plan = plan_run(&config, &resolved, &run_dir, args.resume, args.force)?;
    let folds: Vec<usize> = plan.folds.folds.iter().map(|f| f.fold).collect();
    if folds.is_empty() || folds.iter().enumerate().any(|(i, &k)| i != k) {
        bail!("cv slurm needs folds numbered 0..k, got {folds:?}");
    }
    let slurm_dir = run_dir.join("slurm");
    std::fs::create_dir_all(&slurm_dir)
        .with_context(|| format!("cannot create {}", slurm_dir.display()))?;
    let train_script = slurm_dir.join("train.sbatch");
    let aggregate_script = slurm_dir.join("aggregate.sbatch");
    let (train, aggregate) = scripts(&run_dir, &cwd, &cv, folds.len(), &settings)?;
    crate::output::write_atomic(&train_script, train.as_bytes())?;
    crate::output::write_atomic(&aggregate_script, aggregate.as_bytes())?;

    if !args.submit {
        println!(
            "wrote {} and {}; submit them with\n  job=$(sbatch --parsable {}) && sbatch --dependency=afterok:$job {}",
            train_script.display(),
            aggregate_script.display(),
            shell_quote(&train_script),
            shell_quote(&aggregate_script)
        );
        return Ok(());
    }
    let array = sbatch(&[], &train_script)?;
    println!(
        "array job {array}: {} fold tasks, logs in {}",
        folds.len(),
        slurm_dir.display()
    );
    let dependency = format!("--dependency=afterok:{array}");
    let after = sbatch(&[&dependency], &aggregate_script).with_context(|| {
        format!(
            "the fold tasks were submitted (job {array}) but not the aggregation; submit it with: sbatch {dependency} {}",
            shell_quote(&aggregate_script)
        )
    })?;
    println!("aggregate job {after}: runs once every fold task has succeeded");
    Ok(())
}

/// Flags over the config's `[slurm]` section; `#SBATCH` options from both.
fn merge(flags: SlurmSection, file: SlurmSection) -> SlurmSection {
    SlurmSection {
        partition: flags.partition.or(file.partition),
        time: flags.time.or(file.time),
        cpus_per_task: flags.cpus_per_task.or(file.cpus_per_task),
        mem: flags.mem.or(file.mem),
        gpus: flags.gpus.or(file.gpus),
        max_parallel: flags.max_parallel.or(file.max_parallel),
        cv: flags.cv.or(file.cv),
        ensemble: flags.ensemble || file.ensemble,
        sbatch_options: [file.sbatch_options, flags.sbatch_options].concat(),
    }
}

/// Every value becomes one `#SBATCH` line, so none may break out of it.
fn validate(s: &SlurmSection) -> Result<()> {
    for (key, value) in [
        ("partition", &s.partition),
        ("time", &s.time),
        ("mem", &s.mem),
    ] {
        if let Some(value) = value {
            if value.is_empty() || value.contains(|c: char| c.is_whitespace() || c == '"') {
                bail!("slurm.{key} (--{key}) must be one word, got {value:?}");
            }
        }
    }
    for (key, value) in [
        ("cpus_per_task", s.cpus_per_task),
        ("max_parallel", s.max_parallel),
    ] {
        if value == Some(0) {
            bail!("slurm.{key} must be at least 1");
        }
    }
    for option in &s.sbatch_options {
        if !option.starts_with("--") || option.contains(['\n', '\r']) {
            bail!("slurm.sbatch_options: {option:?} is not one sbatch option like --account=lab");
        }
    }
    Ok(())
}

/// Paths go into `#SBATCH` lines (double-quoted; `%` starts a filename pattern there) and into
/// the shell (single-quoted), so a few characters cannot be written safely.
fn sbatch_safe(path: &Path) -> Result<&str> {
    match path.to_str() {
        Some(text) if !text.contains(['"', '%', '\\', '\n', '\r']) => Ok(text),
        _ => bail!(
            "{}: a path for Slurm must be UTF-8 without '\"', '%', '\\' or line breaks; use another run folder",
            path.display()
        ),
    }
}

/// The array script (one fold per task) and the aggregation script.
fn scripts(
    run_dir: &Path,
    cwd: &Path,
    cv: &Path,
    n_folds: usize,
    s: &SlurmSection,
) -> Result<(String, String)> {
    let run = sbatch_safe(run_dir)?;
    let name = run_dir
        .file_name()
        .map_or("run".into(), |n| n.to_string_lossy());
    let mut directives = format!("#SBATCH --chdir=\"{}\"\n", sbatch_safe(cwd)?);
    if let Some(p) = &s.partition {
        writeln!(directives, "#SBATCH --partition={p}")?;
    }
    if let Some(t) = &s.time {
        writeln!(directives, "#SBATCH --time={t}")?;
    }
    if let Some(n) = s.cpus_per_task {
        writeln!(directives, "#SBATCH --cpus-per-task={n}")?;
    }
    if let Some(m) = &s.mem {
        writeln!(directives, "#SBATCH --mem={m}")?;
    }
    for option in &s.sbatch_options {
        writeln!(directives, "#SBATCH {option}")?;
    }
    let gpus = match s.gpus {
        Some(n) if n > 0 => format!("#SBATCH --gres=gpu:{n}\n"),
        _ => String::new(),
    };
    let cv = shell_quote(cv);
    let run_q = shell_quote(run_dir);
    let throttle = s.max_parallel.map(|n| format!("%{n}")).unwrap_or_default();
    // `--requeue`: after a node failure Slurm runs the task again, and it resumes its fold.
    // `--open-mode=append`: a task run again keeps the log of its earlier attempts.
    let train = format!(
        "#!/bin/bash\n\
         # Written by `cv slurm`: fold $SLURM_ARRAY_TASK_ID of the run {run} per array task.\n\
         # Again after a failure, e.g. fold 1 only: sbatch --array=1 {script}\n\
         #SBATCH --job-name=\"foldwise-{name}\"\n\
         #SBATCH --array=0-{last}{throttle}\n\
         #SBATCH --output=\"{run}/slurm/fold-%a.log\"\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --requeue\n\
         {directives}{gpus}\
         exec {cv} train --run {run_q} --fold \"$SLURM_ARRAY_TASK_ID\"\n",
        last = n_folds - 1,
        script = shell_quote(&run_dir.join("slurm/train.sbatch")),
    );
    // `--kill-on-invalid-dep`: if a fold task fails, this job ends instead of waiting forever.
    let mut aggregate = format!(
        "#!/bin/bash\n\
         # Written by `cv slurm`: the summary of the run {run} once every fold task succeeded.\n\
         # Submit after the array job: sbatch --dependency=afterok:ARRAY_JOB_ID {script}\n\
         #SBATCH --job-name=\"foldwise-{name}-aggregate\"\n\
         #SBATCH --output=\"{run}/slurm/aggregate.log\"\n\
         #SBATCH --open-mode=append\n\
         #SBATCH --kill-on-invalid-dep=yes\n\
         {directives}{gpus}\
         set -e\n\
         {cv} aggregate --run {run_q}\n",
        script = shell_quote(&run_dir.join("slurm/aggregate.sbatch")),
        // `cv ensemble` runs models on the configured device; `cv aggregate` needs no GPU.
        gpus = if s.ensemble { gpus.as_str() } else { "" },
    );
    if s.ensemble {
        writeln!(aggregate, "{cv} ensemble --run {run_q}")?;
    }
    Ok((train, aggregate))
}

/// Submits `script` with `sbatch --parsable` and returns the job id.
fn sbatch(options: &[&str], script: &Path) -> Result<u64> {
    let out = Command::new("sbatch")
        .arg("--parsable")
        .args(options)
        .arg(script)
        .output()
        .context("cannot run sbatch: is Slurm's client on the PATH?")?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "sbatch {} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    // `--parsable` prints `id` or `id;cluster`.
    stdout
        .trim()
        .split(';')
        .next()
        .and_then(|id| id.parse().ok())
        .with_context(|| format!("sbatch {} printed no job id: {stdout:?}", script.display()))
}

/// `path` in single quotes for the shell.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.to_string_lossy().replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scripts_carry_the_settings_and_absolute_paths() {
        let s = SlurmSection {
            partition: Some("gpu".into()),
            time: Some("1:00:00".into()),
            cpus_per_task: Some(4),
            mem: Some("8G".into()),
            gpus: Some(1),
            max_parallel: Some(2),
            sbatch_options: vec!["--account=lab".into()],
            ..SlurmSection::default()
        };
        let (train, aggregate) = scripts(
            Path::new("/shared/runs/it's"),
            Path::new("/shared"),
            Path::new("/opt/cv"),
            5,
            &s,
        )
        .unwrap();
        for line in [
            "#SBATCH --array=0-4%2",
            "#SBATCH --partition=gpu",
            "#SBATCH --time=1:00:00",
            "#SBATCH --cpus-per-task=4",
            "#SBATCH --mem=8G",
            "#SBATCH --gres=gpu:1",
            "#SBATCH --account=lab",
            "#SBATCH --chdir=\"/shared\"",
            "exec '/opt/cv' train --run '/shared/runs/it'\\''s' --fold \"$SLURM_ARRAY_TASK_ID\"",
        ] {
            assert!(train.lines().any(|l| l == line), "no {line:?} in\n{train}");
        }
        assert!(aggregate.contains("'/opt/cv' aggregate --run '/shared/runs/it'\\''s'\n"));
        assert!(!aggregate.contains("--gres") && !aggregate.contains("ensemble"));
        // sbatch reads directives only above the first command.
        for script in [&train, &aggregate] {
            let first_command = script.lines().position(|l| !l.starts_with('#')).unwrap();
            assert!(!script
                .lines()
                .skip(first_command)
                .any(|l| l.starts_with("#SBATCH")));
        }
    }

    #[test]
    fn flags_win_and_bad_values_are_refused() {
        let file = SlurmSection {
            time: Some("1:00:00".into()),
            mem: Some("4G".into()),
            sbatch_options: vec!["--account=a".into()],
            ..SlurmSection::default()
        };
        let flags = SlurmSection {
            mem: Some("8G".into()),
            sbatch_options: vec!["--qos=b".into()],
            ..SlurmSection::default()
        };
        let merged = merge(flags, file);
        assert_eq!(merged.time.as_deref(), Some("1:00:00"));
        assert_eq!(merged.mem.as_deref(), Some("8G"));
        assert_eq!(merged.sbatch_options, ["--account=a", "--qos=b"]);
        let bad = |s: SlurmSection| validate(&s).unwrap_err().to_string();
        assert!(bad(SlurmSection {
            partition: Some("a b".into()),
            ..SlurmSection::default()
        })
        .contains("slurm.partition"));
        assert!(bad(SlurmSection {
            max_parallel: Some(0),
            ..SlurmSection::default()
        })
        .contains("slurm.max_parallel"));
        assert!(bad(SlurmSection {
            sbatch_options: vec!["--x\n#SBATCH --y".into()],
            ..SlurmSection::default()
        })
        .contains("sbatch_options"));
        assert!(sbatch_safe(Path::new("/runs/100%")).is_err());
    }
}
