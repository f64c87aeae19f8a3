//! torchvision-style image transforms, on the tensor path of `torchvision.transforms.v2`.
//!
//! A [`Pipeline`] is a validated list of [`Transform`] steps, configured in TOML exactly as one
//! would write the torchvision call (`{ type = "random-resized-crop", size = 224 }`), applied to
//! an [`Image`] (`C × H × W`, `f32` samples in `[0, 1]` before `Normalize`) with one
//! [`ChaCha8Rng`] stream per image, so the same stream always gives the same output bytes.
//!
//! ```
//! use cv_data::{Image, Pipeline};
//! use cv_seed::SeedTree;
//!
//! let pipeline: Pipeline = toml::from_str::<Config>(
//!     r#"train = [
//!         { type = "random-resized-crop", size = 4 },
//!         { type = "random-horizontal-flip" },
//!         { type = "normalize", mean = [0.5, 0.5, 0.5], std = [0.25, 0.25, 0.25] },
//!     ]"#,
//! )?
//! .train;
//! # #[derive(serde::Deserialize)] struct Config { train: Pipeline }
//! let image = Image::zeros(3, 10, 12);
//! let mut rng = SeedTree::new(7).path("augment/epoch 0/sample 3").rng();
//! let out = pipeline.apply(image, &mut rng)?;
//! assert_eq!((out.channels, out.height, out.width), (3, 4, 4));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Fidelity to torchvision
//! The deterministic operations follow torchvision's float-tensor kernels step by step, down to
//! the `f32`/`f64` mix of torch's C++ (see each function), and are checked against torchvision's
//! own outputs by `tests/golden/transforms.py`. Resizing is bilinear with `antialias=True`
//! (torch's `_upsample_bilinear2d_aa`: a PIL-style separable triangle filter whose support grows
//! with the downscale factor, horizontal pass first). torch's vectorised kernels may fuse a
//! multiply and an add (FMA) where this crate rounds twice, so a sample can differ in its last
//! bit or two (measured: at most 1.2e-7 on resizing, 6e-8 on the colour operations).
//!
//! The random transforms draw their parameters with torchvision's algorithms but from the given
//! [`ChaCha8Rng`] through [`cv_seed::Draw`] (never torch's generator), so they reproduce
//! torchvision's distributions, not its numbers.

use std::borrow::Cow;
use std::fmt;

use cv_seed::{ChaCha8Rng, Draw};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{DataError, Image};

/// An output size as torchvision takes it: one integer or `[height, width]`.
///
/// What one integer means depends on the transform, as in torchvision: [`Transform::Resize`]
/// and [`resize`] give the *shorter* side that length (the longer side keeps the aspect ratio,
/// truncated); [`Transform::CenterCrop`] and [`Transform::RandomResizedCrop`] make a square.
///
/// In TOML: `size = 224` or `size = [224, 320]` (a one-element list means the same as the
/// integer, as in torchvision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Size {
    /// One integer.
    Int(usize),
    /// `[height, width]`.
    HeightWidth(usize, usize),
}

impl Size {
    /// The `(height, width)` that [`resize`] gives an image of `height × width`: torchvision's
    /// `_compute_resized_output_size` (for an integer: `new_long = int(size * long / short)`).
    ///
    /// ```
    /// use cv_data::transform::Size;
    /// assert_eq!(Size::Int(8).resized(13, 17), (8, 10));
    /// assert_eq!(Size::Int(8).resized(17, 13), (10, 8));
    /// assert_eq!(Size::HeightWidth(5, 7).resized(13, 17), (5, 7));
    /// ```
    pub fn resized(self, height: usize, width: usize) -> (usize, usize) {
        match self {
            Size::Int(size) => {
                let (short, long) = if width <= height {
                    (width, height)
                } else {
                    (height, width)
                };
                if short == 0 {
                    // torchvision would divide by zero; an empty image stays empty.
                    return (height, width);
                }
                // Python's `int(size * long / short)`: a float division, then truncation.
                let new_long = (size as f64 * long as f64 / short as f64) as usize;
                if width <= height {
                    (new_long, size)
                } else {
                    (size, new_long)
                }
            }
            Size::HeightWidth(h, w) => (h, w),
        }
    }

    /// `(height, width)` of a crop of this size: one integer makes a square.
    pub fn square(self) -> (usize, usize) {
        match self {
            Size::Int(s) => (s, s),
            Size::HeightWidth(h, w) => (h, w),
        }
    }

    fn is_positive(self) -> bool {
        let (h, w) = self.square();
        h > 0 && w > 0
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Size::Int(s) => write!(f, "{s}"),
            Size::HeightWidth(h, w) => write!(f, "[{h}, {w}]"),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match *self {
            Size::Int(s) => serializer.serialize_u64(s as u64),
            Size::HeightWidth(h, w) => [h as u64, w as u64].serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // A hand-written visitor rather than `#[serde(untagged)]`, whose only error message is
        // "data did not match any variant".
        struct SizeVisitor;

        impl<'de> serde::de::Visitor<'de> for SizeVisitor {
            type Value = Size;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size: a non-negative integer or [height, width]")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Size, E> {
                usize::try_from(v)
                    .map(Size::Int)
                    .map_err(|_| E::custom(format!("size {v} is too large")))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Size, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("size {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Size, A::Error> {
                let mut sides = Vec::with_capacity(2);
                while let Some(side) = seq.next_element::<u64>()? {
                    let side = usize::try_from(side).map_err(|_| {
                        serde::de::Error::custom(format!("size {side} is too large"))
                    })?;
                    sides.push(side);
                }
                match sides[..] {
                    [s] => Ok(Size::Int(s)),
                    [h, w] => Ok(Size::HeightWidth(h, w)),
                    _ => Err(serde::de::Error::invalid_length(sides.len(), &self)),
                }
            }
        }

        deserializer.deserialize_any(SizeVisitor)
    }
}

/// A crop box in pixels. `top`/`left` may be negative and the box may reach past the image:
/// what lies outside reads as zero, as in torchvision's `crop`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CropBox {
    pub top: isize,
    pub left: isize,
    pub height: usize,
    pub width: usize,
}

impl CropBox {
    /// Whether the box lies within an image of `height × width`.
    pub fn is_inside(&self, height: usize, width: usize) -> bool {
        self.top >= 0
            && self.left >= 0
            && self.top as usize + self.height <= height
            && self.left as usize + self.width <= width
    }
}

fn default_scale() -> [f64; 2] {
    [0.08, 1.0]
}

fn default_ratio() -> [f64; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}

fn default_p() -> f64 {
    0.5
}

fn default_gray_channels() -> usize {
    1
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

/// One transform step, with torchvision's parameters and defaults. Tagged by `type` in TOML;
/// unknown keys are errors.
///
/// ```toml
/// train = [
///   { type = "random-resized-crop", size = 224 },          # scale = [0.08, 1.0], ratio = [3/4, 4/3]
///   { type = "random-horizontal-flip" },                   # p = 0.5
///   { type = "color-jitter", brightness = 0.4, contrast = 0.4, saturation = 0.4 },
///   { type = "normalize", mean = [0.485, 0.456, 0.406], std = [0.229, 0.224, 0.225] },
/// ]
/// valid = [{ type = "resize", size = 256 }, { type = "center-crop", size = 224 }]
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case", deny_unknown_fields)]
pub enum Transform {
    /// Bilinear resize with antialiasing ([`resize`]).
    Resize { size: Size },
    /// Crop the centre, padding with zeros where the image is smaller ([`center_crop`]).
    CenterCrop { size: Size },
    /// A random box of relative area `U(scale)` and aspect ratio `exp(U(ln ratio))`
    /// ([`random_resized_crop_params`]) resized to `size` ([`resized_crop`]).
    RandomResizedCrop {
        size: Size,
        #[serde(default = "default_scale")]
        scale: [f64; 2],
        #[serde(default = "default_ratio")]
        ratio: [f64; 2],
    },
    /// Mirror left–right with probability `p` ([`horizontal_flip`]).
    RandomHorizontalFlip {
        #[serde(default = "default_p")]
        p: f64,
    },
    /// Mirror top–bottom with probability `p` ([`vertical_flip`]).
    RandomVerticalFlip {
        #[serde(default = "default_p")]
        p: f64,
    },
    /// Rotate by `U(-degrees, degrees)` degrees, counter-clockwise, about the centre, nearest
    /// sampling, same size, `fill` outside ([`rotate`]).
    RandomRotation {
        degrees: f64,
        #[serde(default, skip_serializing_if = "is_zero")]
        fill: f64,
    },
    /// Brightness, contrast and saturation, each by a factor `U[max(0, 1 - b), 1 + b]` (off when
    /// absent or 0), in a random order ([`adjust_brightness`], [`adjust_contrast`],
    /// [`adjust_saturation`]). Needs 1 or 3 channels; on one channel, contrast uses the channel
    /// itself as the grey image and saturation does nothing (torchvision's behaviour).
    ColorJitter {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        brightness: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        contrast: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        saturation: Option<f64>,
    },
    /// ITU-R 601 luma ([`rgb_to_grayscale`]), as 1 or 3 channels.
    Grayscale {
        #[serde(default = "default_gray_channels")]
        num_output_channels: usize,
    },
    /// `(x - mean[c]) / std[c]` per channel ([`normalize`]).
    Normalize { mean: Vec<f64>, std: Vec<f64> },
}

fn invalid(transform: &'static str, reason: impl Into<String>) -> DataError {
    DataError::InvalidTransform {
        transform,
        reason: reason.into(),
    }
}

fn check_probability(name: &'static str, p: f64) -> Result<(), DataError> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(name, format!("p = {p} is not in [0, 1]")))
    }
}

fn check_range(name: &'static str, what: &str, range: [f64; 2]) -> Result<(), DataError> {
    let [lo, hi] = range;
    if lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("{what} = [{lo}, {hi}] must be finite, positive and ordered (min, max)"),
        ))
    }
}

fn check_size(name: &'static str, size: Size) -> Result<(), DataError> {
    if size.is_positive() {
        Ok(())
    } else {
        Err(invalid(name, format!("size {size} must be positive")))
    }
}

/// The `[low, high]` range of a colour-jitter factor `b`, or `None` when it is off (torchvision
/// turns `[1, 1]` off too).
fn jitter_range(b: Option<f64>) -> Option<(f64, f64)> {
    match b {
        Some(b) if b > 0.0 => Some(((1.0 - b).max(0.0), 1.0 + b)),
        _ => None,
    }
}

impl Transform {
    /// The name of this step's `type` in TOML (also used in error messages).
    pub fn name(&self) -> &'static str {
        match self {
            Transform::Resize { .. } => "resize",
            Transform::CenterCrop { .. } => "center-crop",
            Transform::RandomResizedCrop { .. } => "random-resized-crop",
            Transform::RandomHorizontalFlip { .. } => "random-horizontal-flip",
            Transform::RandomVerticalFlip { .. } => "random-vertical-flip",
            Transform::RandomRotation { .. } => "random-rotation",
            Transform::ColorJitter { .. } => "color-jitter",
            Transform::Grayscale { .. } => "grayscale",
            Transform::Normalize { .. } => "normalize",
        }
    }

    /// Checks every parameter (what torchvision's constructors check, and a little more:
    /// sizes > 0, probabilities in `[0, 1]`, ranges positive and ordered, `std > 0`, ...).
    pub fn validate(&self) -> Result<(), DataError> {
        let name = self.name();
        match self {
            Transform::Resize { size } | Transform::CenterCrop { size } => check_size(name, *size),
            Transform::RandomResizedCrop { size, scale, ratio } => {
                check_size(name, *size)?;
                check_range(name, "scale", *scale)?;
                check_range(name, "ratio", *ratio)
            }
            Transform::RandomHorizontalFlip { p } | Transform::RandomVerticalFlip { p } => {
                check_probability(name, *p)
            }
            Transform::RandomRotation { degrees, fill } => {
                if !(degrees.is_finite() && *degrees >= 0.0) {
                    return Err(invalid(
                        name,
                        format!("degrees = {degrees} must be finite and non-negative"),
                    ));
                }
                if !fill.is_finite() {
                    return Err(invalid(name, format!("fill = {fill} must be finite")));
                }
                Ok(())
            }
            Transform::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => {
                for (what, b) in [
                    ("brightness", brightness),
                    ("contrast", contrast),
                    ("saturation", saturation),
                ] {
                    if let Some(b) = b {
                        if !(b.is_finite() && *b >= 0.0) {
                            return Err(invalid(
                                name,
                                format!("{what} = {b} must be finite and non-negative"),
                            ));
                        }
                    }
                }
                Ok(())
            }
            Transform::Grayscale {
                num_output_channels,
            } => {
                if matches!(num_output_channels, 1 | 3) {
                    Ok(())
                } else {
                    Err(invalid(
                        name,
                        format!("num_output_channels = {num_output_channels} must be 1 or 3"),
                    ))
                }
            }
            Transform::Normalize { mean, std } => {
                if mean.is_empty() || mean.len() != std.len() {
                    return Err(invalid(
                        name,
                        format!(
                            "mean ({} values) and std ({} values) need one value per channel",
                            mean.len(),
                            std.len()
                        ),
                    ));
                }
                if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
                    return Err(invalid(name, format!("mean {m} is not finite")));
                }
                if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                    return Err(invalid(name, format!("std {s} must be finite and > 0")));
                }
                Ok(())
            }
        }
    }

    /// Whether applying this step draws from the stream. A step that draws nothing is a pure
    /// function of the image. (A flip with `p = 0` still draws, so it counts as random.)
    pub fn is_random(&self) -> bool {
        match self {
            Transform::RandomResizedCrop { .. }
            | Transform::RandomHorizontalFlip { .. }
            | Transform::RandomVerticalFlip { .. }
            | Transform::RandomRotation { .. } => true,
            Transform::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => [brightness, contrast, saturation]
                .into_iter()
                .any(|b| jitter_range(*b).is_some()),
            Transform::Resize { .. }
            | Transform::CenterCrop { .. }
            | Transform::Grayscale { .. }
            | Transform::Normalize { .. } => false,
        }
    }

    /// Applies this step. The step should have passed [`Transform::validate`] (a [`Pipeline`]
    /// checks that); errors here are about the image (channel counts, empty images).
    ///
    /// # Draws
    /// Flips: one `bernoulli(p)`. Rotation: one `uniform_in(-d, d)`. Random resized crop: see
    /// [`random_resized_crop_params`]. Colour jitter: a `shuffle` of the enabled adjustments
    /// (brightness, contrast, saturation, in that order before shuffling), then one
    /// `uniform_in` per enabled factor in the order brightness, contrast, saturation.
    pub fn apply(&self, image: Image, rng: &mut ChaCha8Rng) -> Result<Image, DataError> {
        let name = self.name();
        match self {
            Transform::Resize { size } => {
                non_empty(name, &image)?;
                let (h, w) = size.resized(image.height, image.width);
                if (h, w) == (image.height, image.width) {
                    // torchvision returns the input itself; skip the copy.
                    return Ok(image);
                }
                let whole = full_box(&image);
                Ok(resize_box(Cow::Owned(image), whole, h, w))
            }
            Transform::CenterCrop { size } => {
                let (h, w) = size.square();
                Ok(center_crop_hw(&image, h, w))
            }
            Transform::RandomResizedCrop { size, scale, ratio } => {
                non_empty(name, &image)?;
                let crop =
                    random_resized_crop_params(image.height, image.width, *scale, *ratio, rng);
                let (h, w) = size.square();
                Ok(resize_box(Cow::Owned(image), crop, h, w))
            }
            Transform::RandomHorizontalFlip { p } => Ok(if rng.bernoulli(*p) {
                horizontal_flip(image)
            } else {
                image
            }),
            Transform::RandomVerticalFlip { p } => Ok(if rng.bernoulli(*p) {
                vertical_flip(image)
            } else {
                image
            }),
            Transform::RandomRotation { degrees, fill } => {
                let angle = rng.uniform_in(-degrees, *degrees);
                Ok(rotate(&image, angle, *fill as f32))
            }
            Transform::ColorJitter {
                brightness,
                contrast,
                saturation,
            } => {
                let ranges = [
                    jitter_range(*brightness),
                    jitter_range(*contrast),
                    jitter_range(*saturation),
                ];
                // torchvision draws a permutation first, then the factors.
                let mut order = [0usize; 3];
                let mut n = 0;
                for (i, r) in ranges.iter().enumerate() {
                    if r.is_some() {
                        order[n] = i;
                        n += 1;
                    }
                }
                if n == 0 {
                    return Ok(image);
                }
                let order = &mut order[..n];
                rng.shuffle(order);
                let factors = ranges.map(|r| r.map(|(lo, hi)| rng.uniform_in(lo, hi)));
                let mut out = image;
                for &i in order.iter() {
                    // Each enabled adjustment has its factor; `order` holds only enabled ones.
                    let Some(f) = factors[i] else { continue };
                    out = match i {
                        0 => adjust_brightness(out, f)?,
                        1 => adjust_contrast(out, f)?,
                        _ => adjust_saturation(out, f)?,
                    };
                }
                Ok(out)
            }
            Transform::Grayscale {
                num_output_channels,
            } => {
                if image.channels == 1 && *num_output_channels == 1 {
                    return Ok(image);
                }
                rgb_to_grayscale(&image, *num_output_channels)
            }
            Transform::Normalize { mean, std } => normalize(image, mean, std),
        }
    }
}

/// A run's two pipelines: `train`, which may augment at random, and `eval` (validation, test,
/// prediction), which must not, so that a model is always judged on the same pixels.
///
/// ```
/// let t: cv_data::transform::Transforms = toml::from_str(r#"
///     train = [{ type = "random-horizontal-flip" }]
///     eval = [{ type = "center-crop", size = 8 }]
/// "#).unwrap();
/// t.validate().unwrap();
/// let bad: cv_data::transform::Transforms = toml::from_str(r#"eval = [{ type = "random-vertical-flip" }]"#).unwrap();
/// assert!(bad.validate().unwrap_err().to_string().contains("random-vertical-flip"));
/// ```
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Transforms {
    #[serde(default)]
    pub train: Pipeline,
    #[serde(default)]
    pub eval: Pipeline,
}

impl Transforms {
    /// Refuses an `eval` pipeline with a random step, naming it.
    pub fn validate(&self) -> Result<(), DataError> {
        match self.eval.steps().iter().position(Transform::is_random) {
            None => Ok(()),
            Some(i) => Err(invalid(
                self.eval.steps()[i].name(),
                format!(
                    "step {} of the eval pipeline draws random numbers; evaluation must be \
                     deterministic, so random steps belong in the train pipeline only",
                    i + 1
                ),
            )),
        }
    }
}

/// A validated sequence of transforms. In TOML, a plain list of [`Transform`] tables; it is
/// validated as it is read.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<Transform>", into = "Vec<Transform>")]
pub struct Pipeline {
    steps: Vec<Transform>,
}

impl TryFrom<Vec<Transform>> for Pipeline {
    type Error = DataError;

    fn try_from(steps: Vec<Transform>) -> Result<Self, DataError> {
        Pipeline::new(steps)
    }
}

impl From<Pipeline> for Vec<Transform> {
    fn from(pipeline: Pipeline) -> Self {
        pipeline.steps
    }
}

impl Pipeline {
    /// Validates every step ([`Transform::validate`]).
    pub fn new(steps: Vec<Transform>) -> Result<Self, DataError> {
        for step in &steps {
            step.validate()?;
        }
        Ok(Self { steps })
    }

    pub fn steps(&self) -> &[Transform] {
        &self.steps
    }

    /// Applies the steps in order, each drawing what it needs from `rng` (see
    /// [`Transform::apply`]).
    pub fn apply(&self, image: Image, rng: &mut ChaCha8Rng) -> Result<Image, DataError> {
        self.steps
            .iter()
            .try_fold(image, |image, step| step.apply(image, rng))
    }

    /// Whether no step draws from the stream (the output is a function of the input alone).
    pub fn is_deterministic(&self) -> bool {
        self.steps.iter().all(|s| !s.is_random())
    }

    /// The longest leading run of steps that draw nothing, and the rest. Applying the first
    /// then the second with the same stream gives what [`Pipeline::apply`] gives, and the first
    /// draws nothing, so a loader can cache images after the first.
    ///
    /// ```
    /// use cv_data::transform::{Pipeline, Size, Transform};
    /// let p = Pipeline::new(vec![
    ///     Transform::Resize { size: Size::Int(256) },
    ///     Transform::CenterCrop { size: Size::Int(224) },
    ///     Transform::RandomHorizontalFlip { p: 0.5 },
    ///     Transform::Normalize { mean: vec![0.5], std: vec![0.5] },
    /// ])?;
    /// let (fixed, random) = p.split_deterministic_prefix();
    /// assert_eq!((fixed.steps().len(), random.steps().len()), (2, 2));
    /// # Ok::<(), cv_data::DataError>(())
    /// ```
    pub fn split_deterministic_prefix(&self) -> (Pipeline, Pipeline) {
        let n = self
            .steps
            .iter()
            .position(Transform::is_random)
            .unwrap_or(self.steps.len());
        (
            Pipeline {
                steps: self.steps[..n].to_vec(),
            },
            Pipeline {
                steps: self.steps[n..].to_vec(),
            },
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Functional API (torchvision.transforms.v2.functional on float tensors).

fn non_empty(name: &'static str, image: &Image) -> Result<(), DataError> {
    if image.channels == 0 || image.height == 0 || image.width == 0 {
        Err(invalid(
            name,
            format!(
                "cannot transform an empty image ({}×{}×{})",
                image.channels, image.height, image.width
            ),
        ))
    } else {
        Ok(())
    }
}

fn full_box(image: &Image) -> CropBox {
    CropBox {
        top: 0,
        left: 0,
        height: image.height,
        width: image.width,
    }
}

/// Python's `round` (half to even) of a float known to be a small non-negative count.
fn py_round(x: f64) -> f64 {
    x.round_ties_even()
}

/// torchvision's `RandomResizedCrop.make_params`: up to ten tries of a box of area
/// `H·W·U(scale)` and aspect ratio `exp(U(ln ratio))` (`w = round(sqrt(area·ratio))`,
/// `h = round(sqrt(area/ratio))`, Python rounding), accepted when `0 < w ≤ W` and `0 < h ≤ H`,
/// placed at `top = below(H - h + 1)`, `left = below(W - w + 1)`; else the central box of the
/// whole image with its aspect ratio clamped to `ratio`.
///
/// Draws per try: `uniform_in(scale)`, `uniform_in(ln ratio)`; then `below` for the top and the
/// left of an accepted box. The box is always inside the image (a fallback side that would
/// round to 0 is made 1; an empty image gives the whole, empty, box and draws nothing).
pub fn random_resized_crop_params(
    height: usize,
    width: usize,
    scale: [f64; 2],
    ratio: [f64; 2],
    rng: &mut ChaCha8Rng,
) -> CropBox {
    if height == 0 || width == 0 {
        // Nothing to crop (and nothing drawn).
        return CropBox {
            top: 0,
            left: 0,
            height,
            width,
        };
    }
    let area = height as f64 * width as f64;
    let log_ratio = [ratio[0].ln(), ratio[1].ln()];
    for _ in 0..10 {
        let target_area = area * rng.uniform_in(scale[0], scale[1]);
        let aspect = rng.uniform_in(log_ratio[0], log_ratio[1]).exp();
        let w = py_round((target_area * aspect).sqrt());
        let h = py_round((target_area / aspect).sqrt());
        // Compared as floats, so an absurd value cannot wrap in a cast.
        if w > 0.0 && w <= width as f64 && h > 0.0 && h <= height as f64 {
            let (w, h) = (w as usize, h as usize);
            let top = rng.below((height - h + 1) as u64) as isize;
            let left = rng.below((width - w + 1) as u64) as isize;
            return CropBox {
                top,
                left,
                height: h,
                width: w,
            };
        }
    }
    // Fallback to a central crop.
    let in_ratio = width as f64 / height as f64;
    let (min_ratio, max_ratio) = (ratio[0].min(ratio[1]), ratio[0].max(ratio[1]));
    let (h, w) = if in_ratio < min_ratio {
        let h = py_round(width as f64 / min_ratio) as usize;
        (h.clamp(1, height), width)
    } else if in_ratio > max_ratio {
        let w = py_round(height as f64 * max_ratio) as usize;
        (height, w.clamp(1, width))
    } else {
        (height, width)
    };
    CropBox {
        top: ((height - h) / 2) as isize,
        left: ((width - w) / 2) as isize,
        height: h,
        width: w,
    }
}

/// The separable antialiased bilinear filter along one axis: torch's
/// `HelperInterpBase::_compute_indices_min_size_weights_aa` with the triangle filter, computed
/// with the same `f32`/`f64` steps as its C++ (float32 tensors use `scalar_t = float`).
struct AxisFilter {
    /// First source index of each output sample.
    start: Vec<usize>,
    /// Number of taps of each output sample.
    len: Vec<usize>,
    /// `taps` weights per output sample, zero beyond `len`.
    weights: Vec<f32>,
    taps: usize,
}

impl AxisFilter {
    fn new(input_size: usize, output_size: usize) -> Self {
        // area_pixel_compute_scale<float>: float(input) / output.
        let scale: f32 = input_size as f32 / output_size as f32;
        // support = (interp_size * 0.5) * scale (double, stored to float) or interp_size * 0.5.
        let support: f32 = if scale >= 1.0 { scale } else { 1.0 };
        let taps = support.ceil() as usize * 2 + 1;
        // `1.0 / scale` is a double division, stored to float.
        let invscale: f32 = if scale >= 1.0 {
            (1.0 / f64::from(scale)) as f32
        } else {
            1.0
        };
        let mut start = Vec::with_capacity(output_size);
        let mut len = Vec::with_capacity(output_size);
        let mut weights = vec![0.0f32; output_size * taps];
        for i in 0..output_size {
            // center = scale * (i + 0.5): a double product stored to float.
            let center = (f64::from(scale) * (i as f64 + 0.5)) as f32;
            // `center - support` is a float subtraction; `+ 0.5` promotes to double; the cast
            // to int64 truncates towards zero.
            let xmin = ((f64::from(center - support) + 0.5) as i64).max(0);
            let xmax = ((f64::from(center + support) + 0.5) as i64).min(input_size as i64);
            let xsize = (xmax - xmin).clamp(0, taps as i64) as usize;
            let xmin = xmin as usize;
            let w = &mut weights[i * taps..(i + 1) * taps];
            let mut total = 0.0f32;
            for (j, wj) in w.iter_mut().enumerate().take(xsize) {
                // (j + xmin - center + 0.5) * invscale: int - float is float, then double.
                let x =
                    ((f64::from((j + xmin) as f32 - center) + 0.5) * f64::from(invscale)) as f32;
                let x = x.abs();
                *wj = if x < 1.0 { 1.0 - x } else { 0.0 };
                total += *wj;
            }
            if total != 0.0 {
                for wj in w.iter_mut().take(xsize) {
                    *wj /= total;
                }
            }
            start.push(xmin);
            len.push(xsize);
        }
        Self {
            start,
            len,
            weights,
            taps,
        }
    }

    /// Output sample `i` of the row `src` (torch's order: `t0·w0`, then `+= tj·wj`).
    #[cfg(test)]
    fn apply(&self, i: usize, src: &[f32]) -> f32 {
        let n = self.len[i];
        let s = &src[self.start[i]..self.start[i] + n];
        let w = &self.weights[i * self.taps..i * self.taps + n];
        let mut acc = match (s.first(), w.first()) {
            (Some(&s0), Some(&w0)) => s0 * w0,
            _ => 0.0,
        };
        for (&sj, &wj) in s.iter().zip(w).skip(1) {
            acc += sj * wj;
        }
        acc
    }
}

/// An [`AxisFilter`] with the same number of taps for every output sample, for the horizontal
/// pass: windows shorter than the longest are moved left (where the row would end) and padded
/// with zero weights. That gives the same sums bit for bit: a leading `t·0` is `±0`, and
/// `±0 + t0·w0` is `t0·w0`; trailing zeros add `+0` (samples are finite).
struct DenseFilter {
    start: Vec<usize>,
    weights: Vec<f32>,
    taps: usize,
}

impl DenseFilter {
    fn new(filter: &AxisFilter, input_size: usize) -> Self {
        let taps = filter
            .len
            .iter()
            .copied()
            .max()
            .unwrap_or(0)
            .clamp(1, input_size.max(1));
        let n = filter.start.len();
        let mut start = Vec::with_capacity(n);
        let mut weights = vec![0.0f32; n * taps];
        for i in 0..n {
            let (s, len) = (filter.start[i], filter.len[i]);
            // s + len <= input_size and len <= taps, so this keeps the window in the row.
            let moved = s.min(input_size.saturating_sub(taps));
            let offset = s - moved;
            weights[i * taps + offset..i * taps + offset + len]
                .copy_from_slice(&filter.weights[i * filter.taps..i * filter.taps + len]);
            start.push(moved);
        }
        Self {
            start,
            weights,
            taps,
        }
    }

    /// The row kernel for this filter's tap count (unrolled for the common counts).
    fn kernel(&self) -> fn(&DenseFilter, &[f32], &mut [f32]) {
        match self.taps {
            1 => dense_row::<1>,
            2 => dense_row::<2>,
            3 => dense_row::<3>,
            4 => dense_row::<4>,
            5 => dense_row::<5>,
            6 => dense_row::<6>,
            7 => dense_row::<7>,
            8 => dense_row::<8>,
            _ => dense_row_any,
        }
    }
}

fn dense_row<const T: usize>(f: &DenseFilter, src: &[f32], dst: &mut [f32]) {
    for ((d, &s0), w) in dst.iter_mut().zip(&f.start).zip(f.weights.chunks_exact(T)) {
        let s = &src[s0..s0 + T];
        let mut acc = s[0] * w[0];
        for j in 1..T {
            acc += s[j] * w[j];
        }
        *d = acc;
    }
}

fn dense_row_any(f: &DenseFilter, src: &[f32], dst: &mut [f32]) {
    let t = f.taps;
    for ((d, &s0), w) in dst.iter_mut().zip(&f.start).zip(f.weights.chunks_exact(t)) {
        let s = &src[s0..s0 + t];
        let mut acc = s[0] * w[0];
        for (&sj, &wj) in s.iter().zip(w).skip(1) {
            acc += sj * wj;
        }
        *d = acc;
    }
}

/// Resizes the box `crop` (inside the image) of `image` to `out_h × out_w` without copying the
/// box first. torch's order: the horizontal pass first, then the vertical; an axis whose size
/// does not change is not resampled at all. An owned input lends its buffer to the output when
/// the vertical pass reads only the horizontal pass's result (one large allocation fewer).
fn resize_inside(image: Cow<'_, Image>, crop: CropBox, out_h: usize, out_w: usize) -> Image {
    let (c, w_img) = (image.channels, image.width);
    let plane = image.height * w_img;
    // The box is inside the image, so these are non-negative.
    let (top, left) = (crop.top as usize, crop.left as usize);
    let (ch, cw) = (crop.height, crop.width);

    if out_w == cw {
        if out_h == ch {
            // Neither axis changes: the box itself.
            return self::crop(&image, crop);
        }
        // Vertical pass only, straight from the image.
        let mut out = vec![0.0f32; c * out_h * out_w];
        let rows = Rows {
            data: &image.data,
            plane,
            stride: w_img,
            top,
            left,
            width: out_w,
        };
        vertical_pass(&rows, ch, out_h, &mut out);
        return Image::new(c, out_h, out_w, out);
    }

    // Horizontal pass over the box's rows: `C × ch × out_w`.
    let filter = DenseFilter::new(&AxisFilter::new(cw, out_w), cw);
    let kernel = filter.kernel();
    let mut tmp = vec![0.0f32; c * ch * out_w];
    for (k, dst) in tmp.chunks_exact_mut(out_w).enumerate() {
        let (ci, r) = (k / ch, k % ch);
        let row_start = ci * plane + (top + r) * w_img + left;
        kernel(&filter, &image.data[row_start..row_start + cw], dst);
    }
    if out_h == ch {
        return Image::new(c, out_h, out_w, tmp);
    }
    let mut out = match image {
        Cow::Owned(image) => image.data,
        Cow::Borrowed(_) => Vec::new(),
    };
    out.clear();
    out.resize(c * out_h * out_w, 0.0);
    let rows = Rows {
        data: &tmp,
        plane: ch * out_w,
        stride: out_w,
        top: 0,
        left: 0,
        width: out_w,
    };
    vertical_pass(&rows, ch, out_h, &mut out);
    Image::new(c, out_h, out_w, out)
}

/// Rows of a box within channel planes: row `r` of channel `c` starts at
/// `c · plane + (top + r) · stride + left` and is `width` long.
struct Rows<'a> {
    data: &'a [f32],
    plane: usize,
    stride: usize,
    top: usize,
    left: usize,
    width: usize,
}

impl Rows<'_> {
    #[inline]
    fn row(&self, c: usize, r: usize) -> &[f32] {
        let start = c * self.plane + (self.top + r) * self.stride + self.left;
        &self.data[start..start + self.width]
    }
}

/// The vertical pass from `in_h` rows per channel to `out.len() / (out_h · width)` channels of
/// `out_h` rows: whole rows at a time (contiguous, vectorisable), in torch's per-sample order
/// (`t0·w0`, then `+= tj·wj`).
fn vertical_pass(rows: &Rows<'_>, in_h: usize, out_h: usize, out: &mut [f32]) {
    let filter = AxisFilter::new(in_h, out_h);
    for (k, dst) in out.chunks_exact_mut(rows.width).enumerate() {
        let (ci, y) = (k / out_h, k % out_h);
        let (y0, n) = (filter.start[y], filter.len[y]);
        let weights = &filter.weights[y * filter.taps..y * filter.taps + n];
        for (j, &wj) in weights.iter().enumerate() {
            let s = rows.row(ci, y0 + j);
            if j == 0 {
                for (d, &v) in dst.iter_mut().zip(s) {
                    *d = v * wj;
                }
            } else {
                for (d, &v) in dst.iter_mut().zip(s) {
                    *d += v * wj;
                }
            }
        }
    }
}

/// Resize of a box that may reach outside the image: the box is cut out (zero-padded) first,
/// as torchvision does, unless it lies inside.
fn resize_box(image: Cow<'_, Image>, crop: CropBox, out_h: usize, out_w: usize) -> Image {
    if out_h == 0 || out_w == 0 || crop.height == 0 || crop.width == 0 {
        // Only an unvalidated step gets here; an empty result beats a division by zero.
        return Image::zeros(image.channels, out_h, out_w);
    }
    if crop.is_inside(image.height, image.width) {
        resize_inside(image, crop, out_h, out_w)
    } else {
        let cut = self::crop(&image, crop);
        let whole = full_box(&cut);
        resize_inside(Cow::Owned(cut), whole, out_h, out_w)
    }
}

/// torchvision's `resize` (bilinear, `antialias=True`): the output size is
/// [`Size::resized`]; torch's `_upsample_bilinear2d_aa` (for upscaling it is plain bilinear
/// with `align_corners=False`). An unchanged size returns a copy of the input.
pub fn resize(image: &Image, size: Size) -> Result<Image, DataError> {
    const NAME: &str = "resize";
    check_size(NAME, size)?;
    non_empty(NAME, image)?;
    let (h, w) = size.resized(image.height, image.width);
    Ok(resize_box(Cow::Borrowed(image), full_box(image), h, w))
}

/// torchvision's `resized_crop`: [`crop`] then [`resize`] (so an integer `size` sets the
/// shorter side of the *crop*). A box inside the image is resized in place, without a copy.
pub fn resized_crop(image: &Image, crop: CropBox, size: Size) -> Result<Image, DataError> {
    const NAME: &str = "resized-crop";
    check_size(NAME, size)?;
    non_empty(NAME, image)?;
    if crop.height == 0 || crop.width == 0 {
        return Err(invalid(NAME, format!("the crop {crop:?} is empty")));
    }
    let (h, w) = size.resized(crop.height, crop.width);
    Ok(resize_box(Cow::Borrowed(image), crop, h, w))
}

/// torchvision's `crop`: the box, with zeros where it reaches outside the image.
pub fn crop(image: &Image, crop: CropBox) -> Image {
    let (c, h, w) = (image.channels, image.height, image.width);
    let mut out = Image::zeros(c, crop.height, crop.width);
    // The columns of the box that fall inside the image, in box coordinates.
    let x0 = (-crop.left).clamp(0, crop.width as isize) as usize;
    let x1 = (w as isize - crop.left).clamp(0, crop.width as isize) as usize;
    if x0 >= x1 {
        return out;
    }
    for ci in 0..c {
        for r in 0..crop.height {
            let y = crop.top + r as isize;
            if y < 0 || y >= h as isize {
                continue;
            }
            let src_start = (ci * h + y as usize) * w + (crop.left + x0 as isize) as usize;
            let dst_start = (ci * crop.height + r) * crop.width;
            out.data[dst_start + x0..dst_start + x1]
                .copy_from_slice(&image.data[src_start..src_start + (x1 - x0)]);
        }
    }
    out
}

/// torchvision's `center_crop`: the box at `top = round((H - h) / 2)`,
/// `left = round((W - w) / 2)` (Python rounding), zero-padded where the crop is larger than the
/// image (padding `(h - H) // 2` above, the rest below; the same across). An integer `size`
/// makes a square.
pub fn center_crop(image: &Image, size: Size) -> Result<Image, DataError> {
    check_size("center-crop", size)?;
    let (h, w) = size.square();
    Ok(center_crop_hw(image, h, w))
}

fn center_crop_offset(image_side: usize, crop_side: usize) -> isize {
    if crop_side > image_side {
        // torchvision pads `(crop - image) // 2` before, then takes the whole padded side.
        -(((crop_side - image_side) / 2) as isize)
    } else {
        py_round((image_side - crop_side) as f64 / 2.0) as isize
    }
}

fn center_crop_hw(image: &Image, h: usize, w: usize) -> Image {
    let crop_box = CropBox {
        top: center_crop_offset(image.height, h),
        left: center_crop_offset(image.width, w),
        height: h,
        width: w,
    };
    crop(image, crop_box)
}

/// Mirrors left–right, in place.
pub fn horizontal_flip(mut image: Image) -> Image {
    let w = image.width;
    if w > 1 {
        for row in image.data.chunks_exact_mut(w) {
            row.reverse();
        }
    }
    image
}

/// Mirrors top–bottom, in place.
pub fn vertical_flip(mut image: Image) -> Image {
    let (h, w) = (image.height, image.width);
    if h > 1 && w > 0 {
        for plane in image.data.chunks_exact_mut(h * w) {
            let (mut lo, mut hi) = (0, h - 1);
            while lo < hi {
                let (a, b) = plane.split_at_mut(hi * w);
                a[lo * w..(lo + 1) * w].swap_with_slice(&mut b[..w]);
                lo += 1;
                hi -= 1;
            }
        }
    }
    image
}

/// torchvision's `rotate` with nearest sampling, `expand=False`, about the image centre:
/// counter-clockwise by `angle` degrees; samples whose source falls outside get `fill`.
///
/// As torchvision: the angle is taken modulo 360; 0 copies, 180 flips both axes, and 90/270 on
/// a square image transpose exactly (`rot90`); every other case samples torch's affine grid in
/// `f32` (`_affine_grid`, then `grid_sample(mode="nearest", align_corners=False)`, rounding
/// half to even).
pub fn rotate(image: &Image, angle: f64, fill: f32) -> Image {
    // Python's `angle % 360` (the result takes the divisor's sign).
    let angle = angle.rem_euclid(360.0);
    let (c, h, w) = (image.channels, image.height, image.width);
    if angle == 0.0 {
        return image.clone();
    }
    if angle == 180.0 {
        return vertical_flip(horizontal_flip(image.clone()));
    }
    if h == w && (angle == 90.0 || angle == 270.0) {
        let n = h;
        let mut out = Image::zeros(c, n, n);
        for ci in 0..c {
            let src = image.plane(ci);
            let dst = out.plane_mut(ci);
            for y in 0..n {
                for x in 0..n {
                    // rot90(k=1): out[y][x] = in[x][n-1-y]; k=3: out[y][x] = in[n-1-x][y].
                    dst[y * n + x] = if angle == 90.0 {
                        src[x * n + (n - 1 - y)]
                    } else {
                        src[(n - 1 - x) * n + y]
                    };
                }
            }
        }
        return out;
    }

    // torchvision: _get_inverse_affine_matrix(center=[0, 0], -angle, no translation, scale 1,
    // no shear), in double: [cos r, sin r, 0, -sin r, cos r, 0] with r = radians(-angle).
    let r = (-angle).to_radians();
    let (sin, cos) = (r.sin(), r.cos());
    let theta = [cos as f32, sin as f32, (-sin) as f32, cos as f32];
    // _affine_grid: theta^T / [0.5 w, 0.5 h] in float, then [x, y, 1] · that.
    let half_w = (0.5 * w as f64) as f32;
    let half_h = (0.5 * h as f64) as f32;
    let (r00, r10) = (theta[0] / half_w, theta[1] / half_w);
    let (r01, r11) = (theta[2] / half_h, theta[3] / half_h);
    // grid_sample's unnormalisation (align_corners=False): (g + 1) * (size / 2) - 0.5.
    let scale_x = w as f32 / 2.0;
    let scale_y = h as f32 / 2.0;
    // The base grid (torch.linspace of half-integers, exact in f32).
    let x_first = (1.0 - w as f32) * 0.5;
    let y_first = (1.0 - h as f32) * 0.5;
    // The products x·r00 and x·r01 depend on the column only, y·r10 and y·r11 on the row only;
    // computing them once gives the same values as per pixel.
    let col: Vec<(f32, f32)> = (0..w)
        .map(|j| {
            let x = x_first + j as f32;
            (x * r00, x * r01)
        })
        .collect();

    let n = h * w;
    let mut out = vec![0.0f32; c * n];
    for i in 0..h {
        let y = y_first + i as f32;
        let (y_r10, y_r11) = (y * r10, y * r11);
        for (j, &(x_r00, x_r01)) in col.iter().enumerate() {
            // The third grid coordinate is 1 and theta's translation +0, which adds nothing.
            let gx = x_r00 + y_r10;
            let gy = x_r01 + y_r11;
            let ix = round_half_even((gx + 1.0) * scale_x - 0.5);
            let iy = round_half_even((gy + 1.0) * scale_y - 0.5);
            let p = i * w + j;
            if ix >= 0.0 && ix < w as f32 && iy >= 0.0 && iy < h as f32 {
                let k = iy as usize * w + ix as usize;
                for ci in 0..c {
                    out[ci * n + p] = image.data[ci * n + k];
                }
            } else {
                for ci in 0..c {
                    out[ci * n + p] = fill;
                }
            }
        }
    }
    Image::new(c, h, w, out)
}

/// Round half to even (`nearbyint`, as torch's grid sampler rounds). For `|v| ≤ 2^22` adding
/// and removing `1.5 · 2^23` rounds in the FPU's default mode, much faster than the library
/// call that `round_ties_even` becomes without SSE4.1.
#[inline]
fn round_half_even(v: f32) -> f32 {
    const MAGIC: f32 = 12_582_912.0;
    if v.abs() <= 4_194_304.0 {
        (v + MAGIC) - MAGIC
    } else {
        v.round_ties_even()
    }
}

fn check_factor(name: &'static str, factor: f64) -> Result<(), DataError> {
    if factor >= 0.0 {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("factor {factor} is not non-negative"),
        ))
    }
}

fn check_colour_channels(name: &'static str, image: &Image) -> Result<(), DataError> {
    if matches!(image.channels, 1 | 3) {
        Ok(())
    } else {
        Err(invalid(
            name,
            format!("needs 1 or 3 channels, the image has {}", image.channels),
        ))
    }
}

/// torchvision's `adjust_brightness`: `clamp(x · factor, 0, 1)`. Works on any channel count.
pub fn adjust_brightness(mut image: Image, factor: f64) -> Result<Image, DataError> {
    check_factor("adjust-brightness", factor)?;
    let f = factor as f32;
    for v in &mut image.data {
        *v = (*v * f).clamp(0.0, 1.0);
    }
    Ok(image)
}

/// Luma with torchvision's weights (`0.2989 r + 0.587 g + 0.114 b`, in that order, in `f32`).
#[inline]
fn luma(r: f32, g: f32, b: f32) -> f32 {
    r * 0.2989 + g * 0.587 + b * 0.114
}

/// torchvision's `_blend`: `clamp(a · ratio + b · (1 - ratio), 0, 1)`, with `1 - ratio` taken
/// in double before the cast to float.
#[inline]
fn blend_weights(ratio: f64) -> (f32, f32) {
    (ratio as f32, (1.0 - ratio) as f32)
}

/// torchvision's `adjust_contrast`: blends with the mean of the grey image (on one channel the
/// channel itself is the grey image). Needs 1 or 3 channels.
pub fn adjust_contrast(mut image: Image, factor: f64) -> Result<Image, DataError> {
    const NAME: &str = "adjust-contrast";
    check_factor(NAME, factor)?;
    check_colour_channels(NAME, &image)?;
    let n = image.height * image.width;
    if n == 0 {
        return Ok(image);
    }
    // torch sums in float with pairwise blocks; a double sum is at least as close to the truth.
    let sum: f64 = if image.channels == 3 {
        let (r, rest) = image.data.split_at(n);
        let (g, b) = rest.split_at(n);
        r.iter()
            .zip(g)
            .zip(b)
            .map(|((&r, &g), &b)| f64::from(luma(r, g, b)))
            .sum()
    } else {
        image.data.iter().map(|&v| f64::from(v)).sum()
    };
    let mean = (sum / n as f64) as f32;
    let (a, b) = blend_weights(factor);
    let offset = mean * b;
    for v in &mut image.data {
        *v = (*v * a + offset).clamp(0.0, 1.0);
    }
    Ok(image)
}

/// torchvision's `adjust_saturation`: blends each pixel with its grey value. Needs 1 or 3
/// channels; on one channel it returns the image unchanged (as torchvision, matching PIL).
pub fn adjust_saturation(mut image: Image, factor: f64) -> Result<Image, DataError> {
    const NAME: &str = "adjust-saturation";
    check_factor(NAME, factor)?;
    check_colour_channels(NAME, &image)?;
    if image.channels == 1 {
        return Ok(image);
    }
    let n = image.height * image.width;
    let (a, b) = blend_weights(factor);
    let (r, rest) = image.data.split_at_mut(n);
    let (g, bl) = rest.split_at_mut(n);
    for ((r, g), bl) in r.iter_mut().zip(g.iter_mut()).zip(bl.iter_mut()) {
        let gray = luma(*r, *g, *bl) * b;
        *r = (*r * a + gray).clamp(0.0, 1.0);
        *g = (*g * a + gray).clamp(0.0, 1.0);
        *bl = (*bl * a + gray).clamp(0.0, 1.0);
    }
    Ok(image)
}

/// torchvision's `rgb_to_grayscale`: luma as 1 or 3 (identical) channels. A one-channel image
/// is copied (or repeated to 3 channels). Needs 1 or 3 input channels.
pub fn rgb_to_grayscale(image: &Image, num_output_channels: usize) -> Result<Image, DataError> {
    const NAME: &str = "grayscale";
    if !matches!(num_output_channels, 1 | 3) {
        return Err(invalid(
            NAME,
            format!("num_output_channels = {num_output_channels} must be 1 or 3"),
        ));
    }
    check_colour_channels(NAME, image)?;
    let n = image.height * image.width;
    let mut data = Vec::with_capacity(num_output_channels * n);
    if image.channels == 1 {
        data.extend_from_slice(&image.data);
    } else {
        let (r, rest) = image.data.split_at(n);
        let (g, b) = rest.split_at(n);
        data.extend(r.iter().zip(g).zip(b).map(|((&r, &g), &b)| luma(r, g, b)));
    }
    for _ in 1..num_output_channels {
        data.extend_from_within(..n);
    }
    Ok(Image::new(
        num_output_channels,
        image.height,
        image.width,
        data,
    ))
}

/// torchvision's `normalize`: `(x - mean[c]) / std[c]`, with `mean` and `std` as `f32`. Errors
/// unless there is one value per channel and every `std` is non-zero.
pub fn normalize(mut image: Image, mean: &[f64], std: &[f64]) -> Result<Image, DataError> {
    const NAME: &str = "normalize";
    if mean.len() != image.channels || std.len() != image.channels {
        return Err(invalid(
            NAME,
            format!(
                "mean has {} values and std {}, but the image has {} channels",
                mean.len(),
                std.len(),
                image.channels
            ),
        ));
    }
    if std.contains(&0.0) {
        return Err(invalid(NAME, "std evaluated to zero"));
    }
    let n = image.height * image.width;
    if n == 0 {
        return Ok(image);
    }
    for ((plane, &m), &s) in image.data.chunks_exact_mut(n).zip(mean).zip(std) {
        let (m, s) = (m as f32, s as f32);
        for v in plane {
            // A true division, as torch's `div_`, not a multiplication by 1/std.
            *v = (*v - m) / s;
        }
    }
    Ok(image)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_filter_weights_sum_to_one_and_stay_in_bounds() {
        for (input, output) in [
            (256, 224),
            (13, 8),
            (2, 4),
            (50, 13),
            (7, 40),
            (1, 3),
            (31, 11),
        ] {
            let f = AxisFilter::new(input, output);
            for i in 0..output {
                assert!(
                    f.len[i] >= 1 && f.start[i] + f.len[i] <= input,
                    "{input}->{output} at {i}"
                );
                let sum: f32 = f.weights[i * f.taps..i * f.taps + f.len[i]].iter().sum();
                assert!((sum - 1.0).abs() < 1e-6, "{input}->{output} at {i}: {sum}");
            }
        }
    }

    #[test]
    fn upscaling_by_two_is_plain_bilinear() {
        // 2 -> 4, align_corners=False: source positions -0.25, 0.25, 0.75, 1.25, clamped.
        let f = AxisFilter::new(2, 4);
        let row = [0.0f32, 1.0];
        let out: Vec<f32> = (0..4).map(|i| f.apply(i, &row)).collect();
        assert_eq!(out, vec![0.0, 0.25, 0.75, 1.0]);
    }

    #[test]
    fn dense_rows_equal_per_sample_sums_bit_for_bit() {
        for (input, output) in [
            (256, 224),
            (13, 8),
            (2, 4),
            (50, 13),
            (7, 40),
            (1, 3),
            (100, 9),
        ] {
            let f = AxisFilter::new(input, output);
            let d = DenseFilter::new(&f, input);
            let src: Vec<f32> = (0..input)
                .map(|i| ((i * 37) % 101) as f32 / 100.0)
                .collect();
            let mut dense = vec![0.0; output];
            d.kernel()(&d, &src, &mut dense);
            let direct: Vec<u32> = (0..output).map(|i| f.apply(i, &src).to_bits()).collect();
            let dense: Vec<u32> = dense.iter().map(|v| v.to_bits()).collect();
            assert_eq!(dense, direct, "{input}->{output}");
        }
    }

    #[test]
    fn magic_rounding_is_half_to_even() {
        for v in [
            -2.5f32,
            -1.5,
            -0.5,
            -0.49,
            0.0,
            0.5,
            1.5,
            2.5,
            3.5,
            7.499_999,
            1e6 + 0.5,
            5e6,
            -3.7,
        ] {
            assert_eq!(round_half_even(v), v.round_ties_even(), "{v}");
        }
    }

    #[test]
    fn size_serde_accepts_int_pair_and_singleton() {
        let s: Size = serde_json::from_str("224").unwrap();
        assert_eq!(s, Size::Int(224));
        let s: Size = serde_json::from_str("[3, 4]").unwrap();
        assert_eq!(s, Size::HeightWidth(3, 4));
        let s: Size = serde_json::from_str("[5]").unwrap();
        assert_eq!(s, Size::Int(5));
        assert!(serde_json::from_str::<Size>("[1, 2, 3]").is_err());
        let err = serde_json::from_str::<Size>("-3").unwrap_err().to_string();
        assert!(err.contains("negative"), "{err}");
        assert_eq!(
            serde_json::to_string(&Size::HeightWidth(3, 4)).unwrap(),
            "[3,4]"
        );
        assert_eq!(serde_json::to_string(&Size::Int(7)).unwrap(), "7");
    }

    #[test]
    fn center_crop_offsets_round_half_to_even() {
        // (13 - 6) / 2 = 3.5 -> 4; (17 - 8) / 2 = 4.5 -> 4; padding 3 -> 1 before.
        assert_eq!(center_crop_offset(13, 6), 4);
        assert_eq!(center_crop_offset(17, 8), 4);
        assert_eq!(center_crop_offset(4, 7), -1);
        assert_eq!(center_crop_offset(4, 4), 0);
    }

    #[test]
    fn jitter_ranges_follow_torchvision() {
        assert_eq!(jitter_range(None), None);
        assert_eq!(jitter_range(Some(0.0)), None);
        assert_eq!(jitter_range(Some(0.4)), Some((0.6, 1.4)));
        assert_eq!(jitter_range(Some(1.5)), Some((0.0, 2.5)));
    }
}
