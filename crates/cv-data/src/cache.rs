//! An in-memory cache of decoded (and deterministically pre-processed) images, so a small data
//! set is decoded once per run rather than once per epoch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use crate::Image;

/// One slot per sample; an image is kept only while the total stays within the byte budget, so
/// memory is bounded and a full cache simply stops caching. What is cached is a pure function of
/// the file, so a hit and a miss give the same bytes.
#[derive(Debug)]
pub struct ImageCache {
    budget: usize,
    used: AtomicUsize,
    slots: Vec<OnceLock<Arc<Image>>>,
}

impl ImageCache {
    /// A cache for `n_samples` samples holding at most `budget_bytes` of samples.
    pub fn new(n_samples: usize, budget_bytes: usize) -> Self {
        Self {
            budget: budget_bytes,
            used: AtomicUsize::new(0),
            slots: (0..n_samples).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The cached image of sample `index`, or `load()`'s, kept if the budget allows.
    pub fn get_or_load<E>(
        &self,
        index: usize,
        load: impl FnOnce() -> Result<Image, E>,
    ) -> Result<Arc<Image>, E> {
        let Some(slot) = self.slots.get(index) else {
            return load().map(Arc::new);
        };
        if let Some(image) = slot.get() {
            return Ok(Arc::clone(image));
        }
        let image = Arc::new(load()?);
        let size = image.byte_size();
        // Reserve the bytes first, so concurrent loads cannot overshoot the budget together.
        let reserved = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                (used + size <= self.budget).then_some(used + size)
            })
            .is_ok();
        if reserved && slot.set(Arc::clone(&image)).is_err() {
            // Another thread cached it first; give the bytes back.
            self.used.fetch_sub(size, Ordering::Relaxed);
        }
        Ok(image)
    }

    /// Bytes held.
    pub fn used_bytes(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_within_budget_only() {
        let image = || Ok::<_, ()>(Image::zeros(1, 2, 2)); // 16 bytes
        let cache = ImageCache::new(3, 40);
        let mut loads = 0;
        for i in [0, 1, 2, 0, 1, 2] {
            cache
                .get_or_load(i, || {
                    loads += 1;
                    image()
                })
                .unwrap();
        }
        // Samples 0 and 1 fit (32 bytes); sample 2 would pass 40 and is loaded both times.
        assert_eq!(loads, 4);
        assert_eq!(cache.used_bytes(), 32);
    }
}
