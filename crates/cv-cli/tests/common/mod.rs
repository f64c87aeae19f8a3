//! Shared by the end-to-end tests: running the `cv` binary.

use std::process::{Command, Output};

/// Runs `cv` with `args` and returns what it did.
pub fn cv(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cv"))
        .args(args)
        .output()
        .expect("cv runs")
}
