//! The image type every transform works on.

/// A decoded image as torchvision's tensor transforms see it: `f32` samples in `[0, 1]` (before
/// `Normalize`), channel-major (`C × H × W`, row-major within a channel).
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    /// `channels * height * width` samples; sample `(c, y, x)` is at `(c * height + y) * width + x`.
    pub data: Vec<f32>,
}

impl Image {
    /// # Panics
    /// If `data.len() != channels * height * width`.
    pub fn new(channels: usize, height: usize, width: usize, data: Vec<f32>) -> Self {
        assert_eq!(
            data.len(),
            channels * height * width,
            "an image of {channels}×{height}×{width} needs that many samples"
        );
        Self {
            channels,
            height,
            width,
            data,
        }
    }

    pub fn zeros(channels: usize, height: usize, width: usize) -> Self {
        Self::new(
            channels,
            height,
            width,
            vec![0.0; channels * height * width],
        )
    }

    /// The sample at channel `c`, row `y`, column `x`.
    #[inline]
    pub fn at(&self, c: usize, y: usize, x: usize) -> f32 {
        self.data[(c * self.height + y) * self.width + x]
    }

    /// One channel, `height × width`, row-major.
    pub fn plane(&self, c: usize) -> &[f32] {
        let size = self.height * self.width;
        &self.data[c * size..(c + 1) * size]
    }

    /// One channel, mutable.
    pub fn plane_mut(&mut self, c: usize) -> &mut [f32] {
        let size = self.height * self.width;
        &mut self.data[c * size..(c + 1) * size]
    }

    /// Bytes of sample storage (for cache budgets).
    pub fn byte_size(&self) -> usize {
        self.data.len() * std::mem::size_of::<f32>()
    }
}
