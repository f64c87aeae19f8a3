//! Batches of decoded, transformed images as candle tensors, in an order and with augmentations
//! that depend only on the seed tree: never on thread count, batch size or which worker
//! finished first.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use candle_core::{Device, Tensor};
use cv_seed::{Draw, SeedTree};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::cache::ImageCache;
use crate::decode::decode_file;
use crate::{DataError, Dataset, Image, Pipeline};

/// How an epoch orders its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Sampling {
    /// Every sample once, in a fresh random order each epoch (training).
    #[default]
    Shuffle,
    /// Every sample once, in the order given (evaluation).
    Sequential,
    /// As many draws as samples, with replacement, each class equally likely overall
    /// (weights inverse to class frequency, like PyTorch's `WeightedRandomSampler`).
    ClassBalanced,
}

/// Loader settings.
#[derive(Debug, Clone, PartialEq)]
pub struct LoaderConfig {
    pub batch_size: usize,
    /// Drop a last batch smaller than `batch_size`.
    pub drop_last: bool,
    pub sampling: Sampling,
    /// Channels the model wants (1 or 3).
    pub channels: usize,
    /// Prepare the next batch on a background thread while the current one is used.
    pub prefetch: bool,
    /// Decode threads; `None` uses rayon's global pool.
    pub threads: Option<usize>,
    /// Bytes of decoded images to keep in memory across epochs (0: no cache).
    pub cache_bytes: usize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        Self {
            batch_size: 32,
            drop_last: false,
            sampling: Sampling::Shuffle,
            channels: 3,
            prefetch: true,
            threads: None,
            cache_bytes: 0,
        }
    }
}

/// One batch: images `[N, C, H, W]` f32, labels `[N]` u32, and the data set index of each row.
#[derive(Debug)]
pub struct Batch {
    pub images: Tensor,
    pub labels: Tensor,
    pub indices: Vec<usize>,
}

/// A batch still on the host, as the producer thread hands it over.
struct HostBatch {
    shape: (usize, usize, usize, usize),
    data: Vec<f32>,
    labels: Vec<u32>,
    indices: Vec<usize>,
}

impl HostBatch {
    fn into_batch(self, device: &Device) -> Result<Batch, DataError> {
        let n = self.labels.len();
        Ok(Batch {
            images: Tensor::from_vec(self.data, self.shape, device)?,
            labels: Tensor::from_vec(self.labels, n, device)?,
            indices: self.indices,
        })
    }
}

/// Everything a worker needs to make batches, shared with the producer thread.
struct Shared {
    dataset: Arc<Dataset>,
    /// The pipeline's deterministic leading steps, whose output is cached.
    prefix: Pipeline,
    /// The rest, applied to every sample every epoch.
    random: Pipeline,
    cache: Option<ImageCache>,
    seeds: SeedTree,
    fold: u64,
    channels: usize,
    pool: Option<rayon::ThreadPool>,
}

impl Shared {
    fn sample(&self, epoch: u64, index: usize) -> Result<Image, DataError> {
        let sample = &self.dataset.samples[index];
        // Keyed by (fold, epoch, sample): the same draws whichever batch or thread handles it.
        let mut rng = self
            .seeds
            .child("augment")
            .indexed("fold", self.fold)
            .indexed("epoch", epoch)
            .indexed("sample", index as u64)
            .rng();
        let load = || -> Result<Image, DataError> {
            let image = decode_file(&sample.path, self.channels)?;
            self.prefix.apply(image, &mut rng.clone())
        };
        let image = match &self.cache {
            Some(cache) => (*cache.get_or_load(index, load)?).clone(),
            None => load()?,
        };
        self.random.apply(image, &mut rng)
    }

    fn batch(&self, epoch: u64, indices: &[usize]) -> Result<HostBatch, DataError> {
        let make = || {
            indices
                .par_iter()
                .map(|&i| self.sample(epoch, i))
                .collect::<Result<Vec<Image>, DataError>>()
        };
        let images = match &self.pool {
            Some(pool) => pool.install(make)?,
            None => make()?,
        };
        let first = &images[0];
        let (c, h, w) = (first.channels, first.height, first.width);
        let mut data = Vec::with_capacity(images.len() * c * h * w);
        for (image, &i) in images.iter().zip(indices) {
            if (image.channels, image.height, image.width) != (c, h, w) {
                return Err(DataError::Invalid(format!(
                    "images in one batch differ in size: {} is {c}×{h}×{w} but {} is {}×{}×{}; \
                     add a Resize or CenterCrop to the pipeline",
                    self.dataset.samples[indices[0]].path.display(),
                    self.dataset.samples[i].path.display(),
                    image.channels,
                    image.height,
                    image.width
                )));
            }
            data.extend_from_slice(&image.data);
        }
        let labels = indices
            .iter()
            .map(|&i| self.dataset.samples[i].label as u32)
            .collect();
        Ok(HostBatch {
            shape: (images.len(), c, h, w),
            data,
            labels,
            indices: indices.to_vec(),
        })
    }
}

/// Batches of one subset of a data set (a fold's training or validation samples).
///
/// ```
/// use std::sync::Arc;
/// use cv_data::{Dataset, LoaderConfig, Loader, ManifestColumns, Pipeline};
/// // The embedded digits (doc tests run in the crate's folder).
/// let data = Dataset::from_manifest("../../data/digits/manifest.csv".as_ref(), &ManifestColumns::default(), None)?;
/// let indices: Vec<usize> = (0..data.len()).collect();
/// let config = LoaderConfig { channels: 1, ..LoaderConfig::default() };
/// let loader = Loader::new(Arc::new(data), indices, &Pipeline::default(), cv_seed::SeedTree::new(0), 0, config, candle_core::Device::Cpu)?;
/// for batch in loader.epoch(0) {
///     let batch = batch?;
///     assert_eq!(batch.images.dims()[1..], [1, 8, 8]);
/// }
/// # Ok::<(), cv_data::DataError>(())
/// ```
pub struct Loader {
    shared: Arc<Shared>,
    indices: Vec<usize>,
    config: LoaderConfig,
    device: Device,
}

impl Loader {
    /// `indices` are positions in `dataset.samples`; `fold` keys the order and augmentation
    /// streams (`data-order/fold F/epoch E`, `augment/fold F/epoch E/sample I`).
    pub fn new(
        dataset: Arc<Dataset>,
        indices: Vec<usize>,
        pipeline: &Pipeline,
        seeds: SeedTree,
        fold: usize,
        config: LoaderConfig,
        device: Device,
    ) -> Result<Self, DataError> {
        if config.batch_size == 0 {
            return Err(DataError::Invalid("batch_size must be at least 1".into()));
        }
        if let Some(&bad) = indices.iter().find(|&&i| i >= dataset.len()) {
            return Err(DataError::Invalid(format!(
                "sample index {bad} is out of range for {} samples",
                dataset.len()
            )));
        }
        let pool = match config.threads {
            Some(threads) => Some(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .map_err(|e| {
                        DataError::Invalid(format!("cannot start {threads} threads: {e}"))
                    })?,
            ),
            None => None,
        };
        let (prefix, random) = pipeline.split_deterministic_prefix();
        let cache =
            (config.cache_bytes > 0).then(|| ImageCache::new(dataset.len(), config.cache_bytes));
        Ok(Self {
            shared: Arc::new(Shared {
                dataset,
                prefix,
                random,
                cache,
                seeds,
                fold: fold as u64,
                channels: config.channels,
                pool,
            }),
            indices,
            config,
            device,
        })
    }

    /// Number of samples this loader draws per epoch.
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        let (n, b) = (self.indices.len(), self.config.batch_size);
        if self.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// The data set indices of epoch `epoch`, in the order they are served.
    pub fn order(&self, epoch: usize) -> Vec<usize> {
        let mut rng = self
            .shared
            .seeds
            .child("data-order")
            .indexed("fold", self.shared.fold)
            .indexed("epoch", epoch as u64)
            .rng();
        match self.config.sampling {
            Sampling::Sequential => self.indices.clone(),
            Sampling::Shuffle => {
                let mut order = self.indices.clone();
                rng.shuffle(&mut order);
                order
            }
            Sampling::ClassBalanced => {
                let samples = &self.shared.dataset.samples;
                let mut counts = vec![0usize; self.shared.dataset.classes.len()];
                for &i in &self.indices {
                    counts[samples[i].label] += 1;
                }
                let mut cumulative = Vec::with_capacity(self.indices.len());
                let mut total = 0.0;
                for &i in &self.indices {
                    total += 1.0 / counts[samples[i].label] as f64;
                    cumulative.push(total);
                }
                (0..self.indices.len())
                    .map(|_| {
                        let u = rng.uniform() * total;
                        let at = cumulative.partition_point(|&c| c <= u);
                        self.indices[at.min(self.indices.len() - 1)]
                    })
                    .collect()
            }
        }
    }

    /// The batches of epoch `epoch`. With `prefetch`, the next batch is prepared on a background
    /// thread while the current one is in use.
    pub fn epoch(&self, epoch: usize) -> Batches {
        let order = self.order(epoch);
        let size = self.config.batch_size;
        let mut chunks: Vec<Vec<usize>> = order.chunks(size).map(<[usize]>::to_vec).collect();
        if self.config.drop_last && chunks.last().is_some_and(|c| c.len() < size) {
            chunks.pop();
        }
        let shared = Arc::clone(&self.shared);
        let epoch = epoch as u64;
        let source = if self.config.prefetch {
            // One batch waits in the channel while the next is made: a bounded look-ahead.
            let (sender, receiver) = sync_channel(1);
            let producer = std::thread::spawn(move || {
                for chunk in chunks {
                    let batch = shared.batch(epoch, &chunk);
                    let failed = batch.is_err();
                    if sender.send(batch).is_err() || failed {
                        break;
                    }
                }
            });
            Source::Prefetch {
                receiver,
                producer: Some(producer),
            }
        } else {
            Source::Inline {
                shared,
                epoch,
                chunks: chunks.into_iter(),
            }
        };
        Batches {
            source,
            device: self.device.clone(),
        }
    }
}

enum Source {
    Inline {
        shared: Arc<Shared>,
        epoch: u64,
        chunks: std::vec::IntoIter<Vec<usize>>,
    },
    Prefetch {
        receiver: Receiver<Result<HostBatch, DataError>>,
        producer: Option<JoinHandle<()>>,
    },
}

/// The batches of one epoch, in order.
pub struct Batches {
    source: Source,
    device: Device,
}

impl Iterator for Batches {
    type Item = Result<Batch, DataError>;

    fn next(&mut self) -> Option<Self::Item> {
        let host = match &mut self.source {
            Source::Inline {
                shared,
                epoch,
                chunks,
            } => shared.batch(*epoch, &chunks.next()?),
            Source::Prefetch { receiver, .. } => receiver.recv().ok()?,
        };
        Some(host.and_then(|h| h.into_batch(&self.device)))
    }
}

impl Drop for Batches {
    fn drop(&mut self) {
        if let Source::Prefetch { receiver, producer } = &mut self.source {
            // Unblock a producer waiting to send, then wait for it to stop.
            while receiver.try_recv().is_ok() {}
            let (_, dead) = sync_channel(0);
            let _ = std::mem::replace(receiver, dead);
            if let Some(handle) = producer.take() {
                let _ = handle.join();
            }
        }
    }
}
