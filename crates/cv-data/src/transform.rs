//! torchvision-style transforms (placeholder: being written).

use cv_seed::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::Image;

/// One transform step as configured in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Transform {
    RandomHorizontalFlip { p: f64 },
}

/// A sequence of transforms.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Pipeline {
    pub steps: Vec<Transform>,
}

impl Pipeline {
    pub fn apply(&self, image: Image, _rng: &mut ChaCha8Rng) -> Image {
        image
    }
}
