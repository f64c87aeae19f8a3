//! Choosing where a model runs: `cpu`, `cuda` or `cuda:N`.

use std::fmt;
use std::str::FromStr;

use candle_core::Device;
use serde::{Deserialize, Serialize};

/// A device as written in configs and on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceSpec {
    #[default]
    Cpu,
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "cpu" => Ok(DeviceSpec::Cpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceSpec::Cuda)
                .ok_or_else(|| format!("unknown device {other:?}: use cpu, cuda or cuda:N")),
        }
    }
}

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> Self {
        d.to_string()
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Sets up the process for CPU training: one thread count and one thread pool. Results do not
/// depend on either. Call it at the start of `main`, before any other thread exists (it sets
/// environment variables).
///
/// - Unless `RAYON_NUM_THREADS` is set, candle 0.11 works out its thread count on every CPU
///   operation by reading `/proc/cpuinfo` and the CPU affinity mask: over 100,000 file opens and
///   200,000 reads in a short training run. This sets it once, to the count candle would choose.
/// - Unless `CANDLE_NUM_THREADS` is set, it sets it to 1. candle runs its large element-wise ops
///   on a second pool of its own whose threads spin for a while after each op; the heavy ops of
///   a training step (cv-kernels) run on rayon's pool, and the two pools fought over the cores
///   (a tenth of the CPU time of a ResNet-20 train step on 2 cores went to that spinning). What
///   is left on candle's pool (gradient sums in its backward, small tensors) runs on the
///   calling thread instead.
pub fn configure_cpu_process() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// Why a device cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error(
        "{0} was asked for, but this binary was built without CUDA: build one with `cargo xtask build-cuda` (`--features cuda`; see the README), or use --device cpu"
    )]
    NotBuilt(DeviceSpec),
    #[error(
        "cannot open {spec}: {message} (does `nvidia-smi` list the GPU, and does CUDA_VISIBLE_DEVICES allow it? --device cpu trains without one)"
    )]
    Open { spec: DeviceSpec, message: String },
}

impl DeviceSpec {
    /// Opens the device: CPU always; CUDA when built with the `cuda` feature and a GPU answers.
    pub fn open(self) -> Result<Device, DeviceError> {
        match self {
            DeviceSpec::Cpu => Ok(Device::Cpu),
            DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => Err(DeviceError::NotBuilt(self)),
            DeviceSpec::Cuda(n) => Device::new_cuda(n).map_err(|e| DeviceError::Open {
                spec: self,
                message: without_backtrace(e).to_string(),
            }),
        }
    }
}

/// candle's error without the backtrace it captures when `RUST_BACKTRACE` is set, which would
/// otherwise land in the middle of the one-line message.
fn without_backtrace(e: candle_core::Error) -> candle_core::Error {
    match e {
        candle_core::Error::WithBacktrace { inner, .. } => without_backtrace(*inner),
        e => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("cuda:2".parse(), Ok(DeviceSpec::Cuda(2)));
        assert!("gpu"
            .parse::<DeviceSpec>()
            .unwrap_err()
            .contains("cpu, cuda or cuda:N"));
        assert_eq!(DeviceSpec::Cuda(1).to_string(), "cuda:1");
        assert!(matches!(DeviceSpec::Cpu.open(), Ok(Device::Cpu)));
    }

    #[test]
    fn open_errors_carry_no_backtrace() {
        let e = candle_core::Error::WithBacktrace {
            inner: Box::new(candle_core::Error::Msg("no GPU".into())),
            backtrace: Box::new(std::backtrace::Backtrace::force_capture()),
        };
        assert_eq!(without_backtrace(e).to_string(), "no GPU");
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_is_a_clear_error() {
        let err = DeviceSpec::Cuda(0).open().unwrap_err();
        assert!(matches!(err, DeviceError::NotBuilt(DeviceSpec::Cuda(0))));
        let text = err.to_string();
        assert!(
            text.contains("--features cuda") && text.contains("--device cpu"),
            "{text}"
        );
    }
}
