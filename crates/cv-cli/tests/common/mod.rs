//! Shared by the end-to-end tests: running the `cv` binary on a tiny data set and network.

// Each test binary uses some of these.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{GrayImage, Luma};

/// Runs `cv` with `args` and returns what it did.
pub fn cv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cv"))
        .args(args)
        .output()
        .expect("cv runs")
}

/// The files of two runs that must be byte-identical.
pub const FILES: [&str; 6] = [
    "folds.json",
    "summary.json",
    "oof.csv",
    "fold-0/model.safetensors",
    "fold-1/model.json",
    "fold-2/history.csv",
];

/// 36 8×8 gray images in 3 classes (class k lights rows 3k..3k+2) and a manifest.
pub fn dataset(dir: &Path) -> PathBuf {
    let mut manifest = String::from("path,label\n");
    for i in 0..36u32 {
        let class = i % 3;
        let img = GrayImage::from_fn(8, 8, |x, y| {
            let lit = y / 3 == class;
            Luma([if lit { 200 } else { 30 } + ((x * 7 + y * 3 + i) % 40) as u8])
        });
        let name = format!("img{i:02}.png");
        img.save(dir.join(&name)).unwrap();
        manifest.push_str(&format!("{name},c{class}\n"));
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, manifest).unwrap();
    path
}

/// `tiny.toml` in `dir`: a depth-8 CIFAR ResNet, 3 stratified folds, 2 epochs, plus `extra`
/// lines in `[training]`.
pub fn config(dir: &Path, manifest: &Path, extra: &str) -> PathBuf {
    let text = format!(
        r#"seed = 3
[data]
manifest = "{}"
channels = 1
[model]
architecture = {{ cifar-resnet = {{ depth = 8 }} }}
[cv]
n_splits = 3
[training]
epochs = 2
lr = 0.05
batch_size = 8
threads = 1
{extra}
"#,
        manifest.display()
    );
    let path = dir.join("tiny.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// `cv train --quiet --config C --run-dir R` and `extra` arguments.
pub fn train(config: &Path, run: &Path, extra: &[&str]) -> Output {
    let mut args = vec![
        "train",
        "--quiet",
        "--config",
        config.to_str().unwrap(),
        "--run-dir",
        run.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    cv(&args)
}

/// `out`, after checking that `cv` succeeded (else its stderr is the panic message).
pub fn ok(out: Output) -> Output {
    assert!(
        out.status.success(),
        "cv failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that `FILES` are byte-identical in the run folders `a` and `b`.
pub fn same_artefacts(a: &Path, b: &Path) {
    for file in FILES {
        let (x, y) = (std::fs::read(a.join(file)), std::fs::read(b.join(file)));
        assert!(x.is_ok(), "{} missing", a.join(file).display());
        assert_eq!(
            x.unwrap(),
            y.unwrap(),
            "{file} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}
