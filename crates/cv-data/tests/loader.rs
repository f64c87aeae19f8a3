//! The loader: tensors of the right shape, and an order and augmentations that depend only on
//! the seed tree, never on thread count, batch size or prefetching.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use candle_core::Device;
use cv_data::{Dataset, Loader, LoaderConfig, ManifestColumns, Pipeline, Sampling};
use cv_seed::SeedTree;
use image::{DynamicImage, ImageBuffer, Rgb};

/// `n` small RGB images of varied content, classes imbalanced 3:1.
fn dataset(dir: &Path, n: usize, size: u32) -> Arc<Dataset> {
    let mut manifest = String::from("path,label\n");
    for i in 0..n {
        let img =
            DynamicImage::ImageRgb8(ImageBuffer::from_fn(size, size + (i % 3) as u32, |x, y| {
                Rgb([
                    (x * 17 + i as u32 * 5) as u8,
                    (y * 29) as u8,
                    ((x ^ y) * 7 + i as u32) as u8,
                ])
            }));
        let name = format!("{i:03}.png");
        img.save(dir.join(&name)).unwrap();
        let label = if i % 4 == 3 { "rare" } else { "common" };
        manifest.push_str(&format!("{name},{label}\n"));
    }
    let path = dir.join("manifest.csv");
    std::fs::write(&path, manifest).unwrap();
    Arc::new(Dataset::from_manifest(&path, &ManifestColumns::default(), None).unwrap())
}

fn train_pipeline() -> Pipeline {
    #[derive(serde::Deserialize)]
    struct Config {
        train: Pipeline,
    }
    toml::from_str::<Config>(
        r#"train = [
            { type = "random-resized-crop", size = 8, scale = [0.3, 1.0] },
            { type = "random-horizontal-flip" },
            { type = "color-jitter", brightness = 0.3, saturation = 0.3 },
            { type = "normalize", mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25] },
        ]"#,
    )
    .unwrap()
    .train
}

fn config(batch_size: usize, threads: usize, prefetch: bool) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        threads: Some(threads),
        prefetch,
        ..LoaderConfig::default()
    }
}

/// The order an epoch served, and each sample's augmented values and label by data set index.
type Served = (Vec<usize>, HashMap<usize, (Vec<f32>, u32)>);

fn epoch_bytes(loader: &Loader, epoch: usize) -> Served {
    let mut order = Vec::new();
    let mut samples = HashMap::new();
    for batch in loader.epoch(epoch) {
        let batch = batch.unwrap();
        let (n, c, h, w) = batch.images.dims4().unwrap();
        assert_eq!((c, h, w), (3, 8, 8));
        let images = batch
            .images
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let labels = batch.labels.to_vec1::<u32>().unwrap();
        assert_eq!(labels.len(), n);
        for (row, &index) in batch.indices.iter().enumerate() {
            let size = c * h * w;
            samples.insert(
                index,
                (images[row * size..(row + 1) * size].to_vec(), labels[row]),
            );
            order.push(index);
        }
    }
    (order, samples)
}

fn loader(data: &Arc<Dataset>, fold: usize, seed: u64, config: LoaderConfig) -> Loader {
    let indices = (0..data.len()).collect();
    Loader::new(
        Arc::clone(data),
        indices,
        &train_pipeline(),
        SeedTree::new(seed),
        fold,
        config,
        Device::Cpu,
    )
    .unwrap()
}

#[test]
fn augmentation_depends_on_the_seed_alone() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 23, 12);
    let reference = epoch_bytes(&loader(&data, 0, 7, config(4, 2, true)), 1);
    // Same seed: same order and bytes, whatever the threads, batch size or prefetching.
    for other in [
        config(4, 2, true),
        config(4, 1, false),
        config(5, 2, false),
        config(23, 1, true),
    ] {
        let (order, samples) = epoch_bytes(&loader(&data, 0, 7, other.clone()), 1);
        assert_eq!(order, reference.0, "{other:?}");
        assert_eq!(samples, reference.1, "{other:?}");
    }
    // Labels follow the data set.
    for (index, (_, label)) in &reference.1 {
        assert_eq!(*label as usize, data.samples[*index].label);
    }
    // Another seed, fold or epoch changes both order and augmentations.
    let other_seed = epoch_bytes(&loader(&data, 0, 8, config(4, 2, true)), 1);
    let other_fold = epoch_bytes(&loader(&data, 1, 7, config(4, 2, true)), 1);
    let other_epoch = epoch_bytes(&loader(&data, 0, 7, config(4, 2, true)), 2);
    for other in [&other_seed, &other_fold, &other_epoch] {
        assert_ne!(other.0, reference.0);
        assert_ne!(other.1[&0].0, reference.1[&0].0);
    }
}

#[test]
fn cache_serves_the_same_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 10, 12);
    let plain = epoch_bytes(&loader(&data, 0, 3, config(3, 2, true)), 0);
    let cached = loader(
        &data,
        0,
        3,
        LoaderConfig {
            cache_bytes: 1 << 20,
            ..config(3, 2, true)
        },
    );
    assert_eq!(epoch_bytes(&cached, 0), plain);
    assert_eq!(
        epoch_bytes(&cached, 0),
        plain,
        "a second epoch from the cache"
    );
}

#[test]
fn batches_orders_and_sampling() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 10, 12);
    let sequential = LoaderConfig {
        sampling: Sampling::Sequential,
        ..config(4, 1, false)
    };
    let l = loader(&data, 0, 0, sequential.clone());
    assert_eq!(l.order(0), (0..10).collect::<Vec<_>>());
    let sizes: Vec<usize> = l.epoch(0).map(|b| b.unwrap().indices.len()).collect();
    assert_eq!(sizes, [4, 4, 2]);
    let l = loader(
        &data,
        0,
        0,
        LoaderConfig {
            drop_last: true,
            ..sequential
        },
    );
    assert_eq!(l.batches_per_epoch(), 2);
    assert_eq!(l.epoch(0).count(), 2);

    let shuffled = loader(&data, 0, 0, config(4, 1, false));
    let mut order = shuffled.order(0);
    assert_ne!(order, (0..10).collect::<Vec<_>>());
    order.sort();
    assert_eq!(order, (0..10).collect::<Vec<_>>());
    assert_ne!(shuffled.order(0), shuffled.order(1));
}

#[test]
fn class_balanced_sampling_evens_out_classes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 40, 8); // 30 common, 10 rare
    let rare = data.classes.index_of("rare").unwrap();
    let balanced = LoaderConfig {
        sampling: Sampling::ClassBalanced,
        ..config(8, 1, false)
    };
    let l = loader(&data, 0, 0, balanced);
    let mut rare_draws = 0;
    let mut draws = 0;
    for epoch in 0..50 {
        let order = l.order(epoch);
        assert_eq!(order.len(), 40);
        rare_draws += order
            .iter()
            .filter(|&&i| data.samples[i].label == rare)
            .count();
        draws += order.len();
    }
    let share = rare_draws as f64 / draws as f64;
    assert!(
        (0.45..0.55).contains(&share),
        "rare share {share} (25% without balancing)"
    );
}

#[test]
fn mixed_sizes_without_a_resize_are_a_named_error() {
    let dir = tempfile::tempdir().unwrap();
    let data = dataset(dir.path(), 3, 12); // heights 12, 13, 14
    let l = Loader::new(
        Arc::clone(&data),
        vec![0, 1, 2],
        &Pipeline::default(),
        SeedTree::new(0),
        0,
        LoaderConfig {
            sampling: Sampling::Sequential,
            ..config(3, 1, true)
        },
        Device::Cpu,
    )
    .unwrap();
    let err = l.epoch(0).next().unwrap().unwrap_err().to_string();
    assert!(
        err.contains("differ in size") && err.contains("001.png"),
        "{err}"
    );
}
