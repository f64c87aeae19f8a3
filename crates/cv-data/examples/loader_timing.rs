//! Times the training input pipeline: decode + RandomResizedCrop(224) + horizontal flip +
//! normalise into `[32, 3, 224, 224]` batches, as `benches/torchvision_loader.py` does with
//! torchvision's DataLoader. Prints one JSON line. Run by `cargo xtask bench data`.
//!
//! `cargo run --release -p cv-data --example loader_timing -- MANIFEST THREADS IMAGES`

use std::sync::Arc;
use std::time::Instant;

use cv_data::{Dataset, Loader, LoaderConfig, ManifestColumns, Pipeline, Sampling};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let manifest = args
        .next()
        .ok_or("usage: loader_timing MANIFEST THREADS IMAGES")?;
    let threads: usize = args.next().unwrap_or_else(|| "2".into()).parse()?;
    let images: usize = args.next().unwrap_or_else(|| "2048".into()).parse()?;

    let data = Dataset::from_manifest(manifest.as_ref(), &ManifestColumns::default(), None)?;
    let pipeline: Pipeline = toml::from_str::<Train>(
        r#"train = [
            { type = "random-resized-crop", size = 224 },
            { type = "random-horizontal-flip" },
            { type = "normalize", mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] },
        ]"#,
    )?
    .train;
    let n = data.len();
    let config = LoaderConfig {
        batch_size: 32,
        drop_last: true,
        sampling: Sampling::Shuffle,
        channels: 3,
        prefetch: true,
        threads: Some(threads),
        cache_bytes: 0,
    };
    let loader = Loader::new(
        Arc::new(data),
        (0..n).collect(),
        &pipeline,
        cv_seed::SeedTree::new(0),
        0,
        config,
        candle_core::Device::Cpu,
    )?;
    let mut served = 0;
    let mut epoch = 0;
    let mut start = None;
    // Warm up with one batch (thread start-up, first page faults), then time.
    while served < images {
        for batch in loader.epoch(epoch) {
            let batch = batch?;
            if start.is_none() {
                start = Some(Instant::now());
                continue;
            }
            served += batch.labels.dims()[0];
            if served >= images {
                break;
            }
        }
        epoch += 1;
    }
    let seconds = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    println!(
        "{{\"images_per_s\": {}, \"images\": {served}, \"seconds\": {seconds}, \"threads\": {threads}}}",
        served as f64 / seconds
    );
    Ok(())
}

#[derive(serde::Deserialize)]
struct Train {
    train: Pipeline,
}
