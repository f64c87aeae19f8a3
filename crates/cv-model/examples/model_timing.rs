//! Times our ResNets on the CPU, as `benches/torch_models.py` times PyTorch's: for torchvision's
//! resnet18 on 3×64×64 images and the CIFAR ResNet-20 (width 1) on 3×32×32, batch 32, 10 classes:
//!
//! - a full train step: train-mode forward, cross-entropy, backward, SGD (momentum 0.9, lr 0.01);
//! - inference: an eval-mode forward only.
//!
//! The input is one fixed batch of standard-normal pixels and labels `i % 10`, drawn on the host
//! from a seeded stream (never candle's RNG). Each case warms up with 2 iterations, then times K.
//! Prints one JSON line per case:
//! `{"case": …, "images_per_s": …, "seconds_per_iter": [..], "parameters": …, "threads": …}`,
//! where `images_per_s` is `32 · K / Σ seconds` and `parameters` counts trainable elements (the
//! xtask checks it against PyTorch's, a cheap check that the two architectures agree).
//!
//! Train cases add `"deterministic"`: a second model, built afresh from the same seed, repeats
//! the warm-up and the first timed step untimed, and its loss must equal the first run's bit for
//! bit (`"loss_bits"` gives the first run's, as hex).
//!
//! Run by `cargo xtask bench model`, which interleaves it with the PyTorch script and reports
//! the ratio. Threads follow `RAYON_NUM_THREADS` (candle's default: every physical core).
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p cv-model --example model_timing -- [K_TRAIN [K_INFER [CASE]]]`
//! (defaults 5 and 10; `CASE`, e.g. `cifar-resnet-20`, times that network alone, for profiling).

use std::error::Error;
use std::process::ExitCode;
use std::time::Instant;

use candle_core::{Device, Tensor};
use cv_model::{
    build, Architecture, CrossEntropyLoss, ModelConfig, Optimizer, OptimizerConfig, ResNet,
    SgdConfig,
};
use cv_seed::{Draw, SeedTree};

const USAGE: &str =
    "usage: model_timing [K_TRAIN [K_INFER [CASE]]] (timed iterations, defaults 5 and 10; CASE: one network)";
const BATCH: usize = 32;
const CLASSES: usize = 10;
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

/// Seeded host-drawn images `[BATCH, 3, size, size]` and labels `i % CLASSES`.
fn batch(size: usize) -> AnyResult<(Tensor, Tensor)> {
    let mut rng = SeedTree::new(0).path("bench/model-timing/input").rng();
    let pixels: Vec<f32> = (0..BATCH * 3 * size * size)
        .map(|_| rng.normal() as f32)
        .collect();
    let labels: Vec<u32> = (0..BATCH).map(|i| (i % CLASSES) as u32).collect();
    Ok((
        Tensor::from_vec(pixels, (BATCH, 3, size, size), &Device::Cpu)?,
        Tensor::from_vec(labels, BATCH, &Device::Cpu)?,
    ))
}

fn model(architecture: Architecture) -> AnyResult<ResNet> {
    let config = ModelConfig {
        architecture,
        in_channels: 3,
        num_classes: CLASSES,
        dropout: 0.0,
    };
    Ok(build(
        &config,
        &SeedTree::new(0).child("init"),
        &Device::Cpu,
    )?)
}

/// A fresh model and SGD optimizer (momentum 0.9, no weight decay).
fn trainer(architecture: Architecture) -> AnyResult<(ResNet, Optimizer)> {
    let sgd = OptimizerConfig::Sgd(SgdConfig {
        momentum: 0.9,
        ..SgdConfig::default()
    });
    Ok((model(architecture)?, Optimizer::new(&sgd)?))
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

fn images_per_s(seconds: &[f64]) -> f64 {
    (BATCH * seconds.len()) as f64 / seconds.iter().sum::<f64>()
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
    let only = args.next();
    if let Some(extra) = args.next() {
        return Err(format!("unexpected argument {extra:?}\n{USAGE}").into());
    }
    let threads = candle_core::utils::get_num_threads();
    let loss_fn = CrossEntropyLoss::new(0.0, None, &Device::Cpu)?;
    let cases = [
        ("resnet18", Architecture::Resnet18, 64),
        (
            "cifar-resnet-20",
            Architecture::CifarResnet {
                depth: 20,
                width: 1,
            },
            32,
        ),
    ];
    if let Some(only) = only
        .as_deref()
        .filter(|o| cases.iter().all(|(name, ..)| name != o))
    {
        return Err(format!("unknown case {only:?}: resnet18 or cifar-resnet-20\n{USAGE}").into());
    }
    for (name, architecture, size) in cases {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let input = batch(size)?;
        let shape = format!("{BATCH}x3x{size}x{size}");

        eprintln!("{name} {shape}: train, {WARM_UP} + {k_train} steps, then the repeat…");
        let (net, mut optimizer) = trainer(architecture)?;
        let count = parameters(&net);
        let (seconds, loss) = time(k_train, || {
            train_step(&net, &mut optimizer, &loss_fn, &input)
        })?;
        drop((net, optimizer));
        // The same init and the same steps again, untimed, in a fresh model.
        let (net, mut optimizer) = trainer(architecture)?;
        let mut repeat = f32::NAN;
        for _ in 0..=WARM_UP {
            repeat = train_step(&net, &mut optimizer, &loss_fn, &input)?;
        }
        drop((net, optimizer));
        println!(
            "{}",
            serde_json::json!({
                "case": format!("{name} {shape} train"),
                "images_per_s": images_per_s(&seconds),
                "seconds_per_iter": seconds,
                "parameters": count,
                "threads": threads,
                "deterministic": loss.to_bits() == repeat.to_bits(),
                "loss_bits": format!("{:08x}", loss.to_bits()),
            })
        );

        eprintln!("{name} {shape}: inference, {WARM_UP} + {k_infer} forwards…");
        let net = model(architecture)?;
        let (seconds, ()) = time(k_infer, || {
            net.forward_t(&input.0, false)?;
            Ok(())
        })?;
        println!(
            "{}",
            serde_json::json!({
                "case": format!("{name} {shape} inference"),
                "images_per_s": images_per_s(&seconds),
                "seconds_per_iter": seconds,
                "parameters": count,
                "threads": threads,
            })
        );
    }
    Ok(())
}
