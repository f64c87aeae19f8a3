//! `cv slurm` on a real Slurm: a single-node cluster started for the test on this machine by
//! `tools/slurm/cluster.sh` (munged, slurmctld and slurmd, every file in a temporary folder,
//! localhost ports) and stopped afterwards, also on failure. A 3-fold run submitted with
//! `cv slurm --submit` equals, byte for byte, the same run done locally with `cv train`, also
//! when a fold task is killed mid-fold and submitted again.
//!
//! Skipped, saying why, where Slurm is not installed or cannot run (not root);
//! `tools/slurm/install.sh` installs it, and `.ci/run` runs that first.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use common::{config, dataset, ok, train};

/// A running single-node cluster; dropping it cancels its jobs and stops its daemons.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    /// Starts a cluster, or prints why there cannot be one here and returns `None`.
    fn start() -> Option<Cluster> {
        // Two free ports, held together so that they differ.
        let listeners: Vec<_> = (0..2)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        let ports: Vec<String> = listeners
            .iter()
            .map(|l| l.local_addr().unwrap().port().to_string())
            .collect();
        drop(listeners);
        // Made before it runs, so that whatever the script started is stopped on any exit.
        let cluster = Cluster {
            dir: tempfile::tempdir().unwrap(),
        };
        let out = Command::new("bash")
            .arg(script())
            .arg("start")
            .arg(cluster.dir.path())
            .args(&ports)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => Some(cluster),
            Some(3) => {
                eprintln!("skipped: no Slurm here: {}", stderr.trim());
                None
            }
            _ => panic!("the Slurm test cluster did not start:\n{stderr}"),
        }
    }

    /// A Slurm command (or `cv`) talking to this cluster.
    fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", self.dir.path().join("slurm.conf"));
        command
    }

    /// `sbatch --parsable ARGS`: the job id.
    fn sbatch(&self, args: &[&str]) -> u64 {
        let out = ok(self
            .command("sbatch")
            .arg("--parsable")
            .args(args)
            .output()
            .unwrap());
        String::from_utf8_lossy(&out.stdout).trim().parse().unwrap()
    }

    /// Waits until no job is queued or running, showing the run's Slurm logs if that takes
    /// too long.
    fn wait_idle(&self, run: &Path) {
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            let out = ok(self.command("squeue").arg("-h").output().unwrap());
            if out.stdout.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                panic!(
                    "jobs still queued after 300 s:\n{}\n{}",
                    String::from_utf8_lossy(&out.stdout),
                    logs(run)
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A finished job's state, e.g. `COMPLETED` (Slurm remembers it for a few minutes).
    fn state(&self, job: u64) -> String {
        let out = ok(self
            .command("scontrol")
            .args(["show", "job", "-o", &job.to_string()])
            .output()
            .unwrap());
        let text = String::from_utf8_lossy(&out.stdout);
        text.split_whitespace()
            .find_map(|f| f.strip_prefix("JobState="))
            .unwrap_or_else(|| panic!("no JobState for job {job} in {text}"))
            .to_owned()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let stopped = Command::new("bash")
            .arg(script())
            .arg("stop")
            .arg(self.dir.path())
            .status();
        if !matches!(stopped, Ok(s) if s.success()) {
            eprintln!(
                "warning: the Slurm test cluster in {} may still run",
                self.dir.path().display()
            );
        }
    }
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/slurm/cluster.sh")
}

/// `cv slurm --submit` for `config` into `run`, on `cluster`: the array and aggregate job ids.
fn submit(cluster: &Cluster, config: &Path, run: &Path, extra: &[&str]) -> (u64, u64) {
    let out = ok(cluster
        .command(env!("CARGO_BIN_EXE_cv"))
        .args(["slurm", "--submit", "--config"])
        .arg(config)
        .arg("--run-dir")
        .arg(run)
        .args(extra)
        .output()
        .unwrap());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let id = |prefix: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(prefix)?.split(':').next()?.parse().ok())
            .unwrap_or_else(|| panic!("no {prefix:?} line in {stdout}"))
    };
    (id("array job "), id("aggregate job "))
}

/// Every file of a run that must not depend on where its folds were trained.
fn same_results(local: &Path, slurm: &Path) {
    let mut files: Vec<String> = ["config.toml", "folds.json", "summary.json", "oof.csv"]
        .map(String::from)
        .to_vec();
    for k in 0..3 {
        for name in ["model.safetensors", "model.json", "history.csv", "oof.json"] {
            files.push(format!("fold-{k}/{name}"));
        }
    }
    for file in files {
        let read = |run: &Path| {
            std::fs::read(run.join(&file))
                .unwrap_or_else(|e| panic!("{}: {e}\n{}", run.join(&file).display(), logs(slurm)))
        };
        assert!(
            read(local) == read(slurm),
            "{file} differs between the local run and the Slurm run"
        );
    }
}

/// The Slurm logs of a run, for failure messages.
fn logs(run: &Path) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(run.join("slurm")).into_iter().flatten() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log") {
            let log = std::fs::read_to_string(&path).unwrap_or_default();
            text += &format!("--- {}\n{log}", path.display());
        }
    }
    text
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

#[test]
fn slurm_array_runs_equal_local_runs_even_after_a_killed_task() {
    let Some(cluster) = Cluster::start() else {
        return;
    };
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dataset(dir.path());
    let config = config(dir.path(), &manifest, "");

    // The fold tasks, then the aggregation after them, as `cv slurm --submit` hands them over.
    let local = dir.path().join("local");
    ok(train(&config, &local, &[]));
    let run = dir.path().join("slurm");
    let resources = [
        "--partition=debug",
        "--time=10",
        "--cpus-per-task=1",
        "--mem=200M",
    ];
    let (array, aggregate) = submit(
        &cluster,
        &config,
        &run,
        &[&resources[..], &["--max-parallel=2"]].concat(),
    );
    let script = std::fs::read_to_string(run.join("slurm/train.sbatch")).unwrap();
    assert!(script.contains("#SBATCH --array=0-2%2\n"), "{script}");
    assert!(script.contains(&format!("exec '{}' train", env!("CARGO_BIN_EXE_cv"))));
    cluster.wait_idle(&run);
    assert_eq!(cluster.state(array), "COMPLETED", "{}", logs(&run));
    assert_eq!(cluster.state(aggregate), "COMPLETED", "{}", logs(&run));
    same_results(&local, &run);

    // One task killed mid-fold (as by a node failure), then it and a finished one submitted
    // again: the finished fold is skipped, the killed one resumes from its epoch checkpoint.
    let epochs = ["--set", "training.epochs=60"];
    let local = dir.path().join("local-60");
    ok(train(&config, &local, &epochs));
    let run = dir.path().join("slurm-60");
    let (array, aggregate) = submit(&cluster, &config, &run, &[&resources[..], &epochs].concat());
    // Killed once a few epochs are checkpointed, so that resuming reads a real history back.
    let log = |k: usize| {
        std::fs::read_to_string(run.join(format!("slurm/fold-{k}.log"))).unwrap_or_default()
    };
    let deadline = Instant::now() + Duration::from_secs(120);
    while !log(1).contains("fold 1 (2/3) epoch 6/60") {
        assert!(
            Instant::now() < deadline,
            "fold 1 made no progress:\n{}",
            logs(&run)
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    ok(cluster
        .command("scancel")
        .arg(format!("{array}_1"))
        .output()
        .unwrap());
    cluster.wait_idle(&run);
    assert!(
        !run.join("fold-1/model.json").exists(),
        "fold 1 finished before its task was killed; give it more epochs"
    );
    assert!(!run.join("summary.json").exists());
    // The aggregation depended on every task succeeding: cancelled, not left waiting.
    assert_eq!(cluster.state(aggregate), "CANCELLED");
    let fold_0 = run.join("fold-0/model.safetensors");
    let fold_0_written = modified(&fold_0);
    let train_script = run.join("slurm/train.sbatch");
    let again = cluster.sbatch(&["--array=0,1", train_script.to_str().unwrap()]);
    let aggregate = cluster.sbatch(&[
        &format!("--dependency=afterok:{again}"),
        run.join("slurm/aggregate.sbatch").to_str().unwrap(),
    ]);
    cluster.wait_idle(&run);
    assert_eq!(cluster.state(aggregate), "COMPLETED", "{}", logs(&run));
    assert!(
        log(0).contains("fold 0: already trained, skipped"),
        "{}",
        log(0)
    );
    assert_eq!(
        modified(&fold_0),
        fold_0_written,
        "fold 0 was trained again"
    );
    assert!(
        log(1).contains("fold 1: continuing from its epoch checkpoint"),
        "{}",
        log(1)
    );
    // Continued, not started over: its first epoch was trained once, by the killed task.
    assert_eq!(log(1).matches("fold 1 (2/3) epoch 1/60:").count(), 1);
    same_results(&local, &run);
    eprintln!(
        "Slurm test: {:.0} s with the cluster up",
        started.elapsed().as_secs_f64()
    );
}
