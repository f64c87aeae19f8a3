//! Times our ResNets, as `benches/torch_models.py` times PyTorch's. Cases (10 classes):
//!
//! | case | network | images | batch |
//! | --- | --- | --- | --- |
//! | `resnet18` (default) | torchvision's resnet18 | 3×64×64 | 32 |
//! | `cifar-resnet-20` (default) | the CIFAR ResNet-20 (width 1) | 3×32×32 | 32 |
//! | `resnet50-224` | torchvision's resnet50 | 3×224×224 | 64 |
//! | `resnet18-224` | torchvision's resnet18 | 3×224×224 | 128 |
//!
//! For each:
//! - a full train step: train-mode forward, cross-entropy, backward, SGD (momentum 0.9, lr 0.01);
//! - inference: an eval-mode forward only.
//!
//! The input is one fixed batch of standard-normal pixels and labels `i % 10`, drawn on the host
//! from a seeded stream (never candle's RNG) and uploaded. Each case warms up with 2 iterations,
//! then times K, each ending once the device has finished. Prints one JSON line per case:
//! `{"case": …, "images_per_s": …, "seconds_per_iter": [..], "parameters": …, "threads": …,
//! "device": …}`, where `images_per_s` is `batch · K / Σ seconds` and `parameters` counts
//! trainable elements (the xtask checks it against PyTorch's, a cheap check that the two
//! architectures agree).
//!
//! Train cases add `"deterministic"`: a second model, built afresh from the same seed, repeats
//! the warm-up and the first timed step untimed, and its loss must equal the first run's bit for
//! bit (`"loss_bits"` gives the first run's, as hex).
//!
//! `cargo xtask bench model` interleaves the default cases with the PyTorch script on the CPU and
//! reports the ratio; `tools/cuda/gpu-check.sh` times the 224² cases on a GPU (built by
//! `cargo xtask build-cuda --bench`). CPU threads follow `RAYON_NUM_THREADS` (candle's default:
//! every physical core).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p cv-model --example model_timing -- [K_TRAIN [K_INFER [CASES [DEVICE]]]]`
//! (defaults 5, 10, `resnet18,cifar-resnet-20` and `cpu`; CASES is a comma-separated list, e.g.
//! `cifar-resnet-20` alone for profiling; DEVICE is `cpu`, `cuda` or `cuda:N`).

use std::error::Error;
use std::process::ExitCode;
use std::time::Instant;

use candle_core::{Device, Tensor};
use cv_model::{
    build, Architecture, CrossEntropyLoss, DeviceSpec, ModelConfig, Optimizer, OptimizerConfig,
    ResNet, SgdConfig,
};
use cv_seed::{Draw, SeedTree};

const USAGE: &str = "usage: model_timing [K_TRAIN [K_INFER [CASES [DEVICE]]]] (timed iterations, \
     defaults 5 and 10; CASES: comma-separated, default resnet18,cifar-resnet-20; DEVICE: cpu, \
     cuda or cuda:N)";
const CLASSES: usize = 10;

/// One network on one input size and batch.
struct Case {
    name: &'static str,
    architecture: Architecture,
    size: usize,
    batch: usize,
}

const CASES: [Case; 4] = [
    Case {
        name: "resnet18",
        architecture: Architecture::Resnet18,
        size: 64,
        batch: 32,
    },
    Case {
        name: "cifar-resnet-20",
        architecture: Architecture::CifarResnet {
            depth: 20,
            width: 1,
        },
        size: 32,
        batch: 32,
    },
    Case {
        name: "resnet50-224",
        architecture: Architecture::Resnet50,
        size: 224,
        batch: 64,
    },
    Case {
        name: "resnet18-224",
        architecture: Architecture::Resnet18,
        size: 224,
        batch: 128,
    },
];
const DEFAULT_CASES: &str = "resnet18,cifar-resnet-20";
const WARM_UP: usize = 2;
const LR: f64 = 0.01;

type AnyResult<T> = Result<T, Box<dyn Error>>;

/// The positional argument `name`, or `default` when absent; a positive count.
fn iterations(arg: Option<String>, name: &str, default: usize) -> AnyResult<usize> {
    let Some(text) = arg else {
        return Ok(default);
    };
    match text.parse::<usize>() {
        Ok(k) if k > 0 => Ok(k),
        _ => Err(format!(
            "{name} must be a whole number of iterations >= 1, got {text:?}\n{USAGE}"
        )
        .into()),
    }
}

/// Seeded host-drawn images `[batch, 3, size, size]` and labels `i % CLASSES`, on `device`.
fn batch(case: &Case, device: &Device) -> AnyResult<(Tensor, Tensor)> {
    let (n, size) = (case.batch, case.size);
    let mut rng = SeedTree::new(0).path("bench/model-timing/input").rng();
    let pixels: Vec<f32> = (0..n * 3 * size * size)
        .map(|_| rng.normal() as f32)
        .collect();
    let labels: Vec<u32> = (0..n).map(|i| (i % CLASSES) as u32).collect();
    Ok((
        Tensor::from_vec(pixels, (n, 3, size, size), device)?,
        Tensor::from_vec(labels, n, device)?,
    ))
}

fn model(architecture: Architecture, device: &Device) -> AnyResult<ResNet> {
    let config = ModelConfig {
        architecture,
        in_channels: 3,
        num_classes: CLASSES,
        dropout: 0.0,
    };
    Ok(build(&config, &SeedTree::new(0).child("init"), device)?)
}

/// A fresh model and SGD optimizer (momentum 0.9, no weight decay).
fn trainer(architecture: Architecture, device: &Device) -> AnyResult<(ResNet, Optimizer)> {
    let sgd = OptimizerConfig::Sgd(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    });
    Ok((model(architecture, device)?, Optimizer::new(&sgd)?))
}

/// One train step; returns the loss.
fn train_step(
    model: &ResNet,
    optimizer: &mut Optimizer,
    loss_fn: &CrossEntropyLoss,
    (images, labels): &(Tensor, Tensor),
) -> AnyResult<f32> {
    let logits = model.forward_t(images, true)?;
    let loss = loss_fn.forward(&logits, labels)?;
    let grads = loss.backward()?;
    optimizer.step(model.params(), &grads, LR)?;
    Ok(loss.to_scalar::<f32>()?)
}

/// Times `iterations` calls of `run` after `WARM_UP` untimed ones; returns the seconds of each
/// timed call and what the first timed call returned.
fn time<T>(iterations: usize, mut run: impl FnMut() -> AnyResult<T>) -> AnyResult<(Vec<f64>, T)> {
    for _ in 0..WARM_UP {
        run()?;
    }
    let mut seconds = Vec::with_capacity(iterations);
    let mut first = None;
    for _ in 0..iterations {
        let start = Instant::now();
        let out = run()?;
        seconds.push(start.elapsed().as_secs_f64());
        first.get_or_insert(out);
    }
    let first = first.ok_or("no timed iteration")?;
    Ok((seconds, first))
}

/// Trainable elements (PyTorch's `sum(p.numel() for p in model.parameters())`).
fn parameters(model: &ResNet) -> usize {
    model
        .params()
        .trainable()
        .map(|(_, p)| p.var.as_tensor().elem_count())
        .sum()
}

fn images_per_s(batch: usize, seconds: &[f64]) -> f64 {
    (batch * seconds.len()) as f64 / seconds.iter().sum::<f64>()
}

/// The cases named in `list` (comma-separated), in that order.
fn chosen_cases(list: &str) -> AnyResult<Vec<&'static Case>> {
    list.split(',')
        .map(|name| {
            CASES.iter().find(|c| c.name == name.trim()).ok_or_else(|| {
                let known: Vec<&str> = CASES.iter().map(|c| c.name).collect();
                format!("unknown case {name:?}: use {}\n{USAGE}", known.join(", ")).into()
            })
        })
        .collect()
}

fn main() -> ExitCode {
    // As `cv` does: one thread count, one pool (the benchmark times what users run).
    cv_model::device::configure_cpu_process();
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("model_timing: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> AnyResult<()> {
    let mut args = std::env::args().skip(1);
    let k_train = iterations(args.next(), "K_TRAIN", 5)?;
    let k_infer = iterations(args.next(), "K_INFER", 10)?;
    let cases = chosen_cases(&args.next().unwrap_or_else(|| DEFAULT_CASES.to_owned()))?;
    let spec: DeviceSpec = match args.next() {
        Some(text) => text.parse().map_err(|e| format!("{e}\n{USAGE}"))?,
        None => DeviceSpec::Cpu,
    };
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument {extra:?}\n{USAGE}").into());
    }
    let device = spec.open()?;
    let threads = candle_core::utils::get_num_threads();
    let loss_fn = CrossEntropyLoss::new(0.0, None, &device)?;
    for case in cases {
        let (name, architecture) = (case.name, case.architecture);
        let input = batch(case, &device)?;
        let shape = format!("{}x3x{size}x{size}", case.batch, size = case.size);

        eprintln!("{name} {shape} on {spec}: train, {WARM_UP} + {k_train} steps, then the repeat…");
        let (net, mut optimizer) = trainer(architecture, &device)?;
        let count = parameters(&net);
        // Reading the loss back waits for the step's work on the device.
        let (seconds, loss) = time(k_train, || {
            train_step(&net, &mut optimizer, &loss_fn, &input)
        })?;
        drop((net, optimizer));
        // The same init and the same steps again, untimed, in a fresh model.
        let (net, mut optimizer) = trainer(architecture, &device)?;
        let mut repeat = f32::NAN;
        for _ in 0..=WARM_UP {
            repeat = train_step(&net, &mut optimizer, &loss_fn, &input)?;
        }
        drop((net, optimizer));
        println!(
            "{}",
            serde_json::json!({
                "case": format!("{name} {shape} train"),
                "images_per_s": images_per_s(case.batch, &seconds),
                "seconds_per_iter": seconds,
                "parameters": count,
                "threads": threads,
                "device": spec.to_string(),
                "deterministic": loss.to_bits() == repeat.to_bits(),
                "loss_bits": format!("{:08x}", loss.to_bits()),
            })
        );

        eprintln!("{name} {shape} on {spec}: inference, {WARM_UP} + {k_infer} forwards…");
        let net = model(architecture, &device)?;
        let (seconds, ()) = time(k_infer, || {
            net.forward_t(&input.0, false)?;
            Ok(device.synchronize()?)
        })?;
        println!(
            "{}",
            serde_json::json!({
                "case": format!("{name} {shape} inference"),
                "images_per_s": images_per_s(case.batch, &seconds),
                "seconds_per_iter": seconds,
                "parameters": count,
                "threads": threads,
                "device": spec.to_string(),
            })
        );
    }
    Ok(())
}
