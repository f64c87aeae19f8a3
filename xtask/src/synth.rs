//! `cargo xtask synth`: writes a synthetic labelled image set (see `cv_data::synth`) for scale
//! tests and loader benchmarks.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use cv_data::synth::{generate, SynthFormat, SynthSpec};

#[derive(Args)]
pub struct SynthArgs {
    /// Directory to write (`<class>/<index>.<ext>` and `manifest.csv`).
    #[arg(long)]
    out: PathBuf,
    /// Images in all.
    #[arg(long, default_value_t = 10_000)]
    n: usize,
    /// Classes (`class-00`, `class-01`, …).
    #[arg(long, default_value_t = 5)]
    classes: usize,
    /// Largest class over smallest class; 1 is balanced.
    #[arg(long, default_value_t = 10.0)]
    imbalance: f64,
    /// Side of the square images in pixels.
    #[arg(long, default_value_t = 256)]
    size: u32,
    /// Image encoding.
    #[arg(long, value_enum, default_value_t = Format::Jpeg)]
    format: Format,
    /// JPEG quality, 1 to 100 (ignored for PNG).
    #[arg(long, default_value_t = 90)]
    quality: u8,
    /// Master seed: the same arguments give byte-identical files.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Replace `--out` if it exists and is not empty.
    #[arg(long)]
    force: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    Jpeg,
    Png,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let spec = SynthSpec {
        n_images: args.n,
        n_classes: args.classes,
        imbalance: args.imbalance,
        size: args.size,
        format: match args.format {
            Format::Jpeg => SynthFormat::Jpeg {
                quality: args.quality,
            },
            Format::Png => SynthFormat::Png,
        },
        seed: args.seed,
    };
    let start = Instant::now();
    let summary = generate(&spec, &args.out, args.force)
        .with_context(|| format!("cannot write a synthetic set to {}", args.out.display()))?;
    println!(
        "wrote {} images of {}×{} px in {} classes {:?}, {} bytes ({:.1} MB), in {:.1} s: {}",
        args.n,
        args.size,
        args.size,
        args.classes,
        summary.class_counts,
        summary.bytes,
        summary.bytes as f64 / 1e6,
        start.elapsed().as_secs_f64(),
        summary.manifest.display()
    );
    Ok(())
}
