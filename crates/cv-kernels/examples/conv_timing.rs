//! CPU time of `cv_kernels::conv2d` per layer shape of the benchmark ResNets (batch 32): the
//! forward, the backward with both gradients, and the backward with the weight gradient only
//! (a network's first layer). CPU time, summed over the process's threads (Linux
//! `/proc/self/task/*/schedstat`), so the rate is per core whatever the thread count; best of
//! `REPS` (default 5). Inputs are seeded standard normals.
//!
//! `RAYON_NUM_THREADS=2 cargo run --release -p cv-kernels --example conv_timing -- [REPS]`

use std::error::Error;

use candle_core::{Device, Tensor, Var};
use cv_seed::{Draw, SeedTree};

/// `(batch, in_channels, size, out_channels, kernel, stride, padding)`.
const SHAPES: [(usize, usize, usize, usize, usize, usize, usize); 7] = [
    (32, 16, 32, 16, 3, 1, 1),
    (32, 32, 16, 32, 3, 1, 1),
    (32, 64, 8, 64, 3, 1, 1),
    (32, 3, 64, 64, 7, 2, 3),
    (32, 64, 16, 64, 3, 1, 1),
    (32, 256, 4, 256, 3, 1, 1),
    (32, 512, 2, 512, 3, 1, 1),
];

/// Nanoseconds of CPU time this process has used, all threads.
fn cpu_ns() -> Result<u64, Box<dyn Error>> {
    let mut total = 0;
    for task in std::fs::read_dir("/proc/self/task")? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        let first = stat.split_whitespace().next().ok_or("empty schedstat")?;
        total += first.parse::<u64>()?;
    }
    Ok(total)
}

fn normal(seed: &str, dims: &[usize]) -> candle_core::Result<Tensor> {
    let mut rng = SeedTree::new(0).path("bench/conv-timing").path(seed).rng();
    let n: usize = dims.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.normal() as f32).collect();
    Tensor::from_vec(values, dims, &Device::Cpu)
}

fn main() -> Result<(), Box<dyn Error>> {
    let reps: usize = match std::env::args().nth(1) {
        Some(text) => text
            .parse()
            .map_err(|_| format!("REPS must be a count, got {text:?}"))?,
        None => 5,
    };
    for (n, c, size, o, k, s, p) in SHAPES {
        let tag = format!("{n}x{c}x{size}x{size} -> {o}, {k}x{k} stride {s}");
        let x = Var::from_tensor(&normal(&format!("x {tag}"), &[n, c, size, size])?)?;
        let w = Var::from_tensor(&normal(&format!("w {tag}"), &[o, c, k, k])?)?;
        let [mut forward, mut both, mut weight_only] = [u64::MAX; 3];
        for _ in 0..reps.max(1) {
            let t0 = cpu_ns()?;
            let y = cv_kernels::conv2d(x.as_tensor(), w.as_tensor(), p, s)?;
            let t1 = cpu_ns()?;
            drop(y.sum_all()?.backward()?);
            let t2 = cpu_ns()?;
            let y = cv_kernels::conv2d(&x.as_tensor().detach(), w.as_tensor(), p, s)?;
            let t3 = cpu_ns()?;
            drop(y.sum_all()?.backward()?);
            let t4 = cpu_ns()?;
            forward = forward.min(t1 - t0);
            both = both.min(t2 - t1);
            weight_only = weight_only.min(t4 - t3);
        }
        let out = (size + 2 * p - k) / s + 1;
        let flop = 2.0 * (n * o * out * out * c * k * k) as f64;
        let ms = |ns: u64| ns as f64 / 1e6;
        println!(
            "{tag}: forward {:.2} ms ({:.0} GFLOP/s per core), backward dx+dw {:.2} ms ({:.0}), dw only {:.2} ms",
            ms(forward),
            flop / forward as f64,
            ms(both),
            2.0 * flop / both as f64,
            ms(weight_only),
        );
    }
    Ok(())
}
