//! Synthetic labelled image sets, for scale tests and benchmarks.
//!
//! [`generate`] writes an image-folder data set (`<class>/<index>.<ext>` plus a `path,label`
//! `manifest.csv`) whose images carry a learnable class signal: every class has its own shape
//! (disc, square, triangle, cross, ring, horizontal, vertical and diagonal stripes, checkerboard,
//! hollow square; the shapes repeat with another hue once there are more than ten classes) in its
//! own hue, drawn with a random position, size, rotation, saturation and brightness over a random
//! smooth background with mild pixel noise. A small CNN learns it; no single pixel gives it away.
//!
//! ```no_run
//! use cv_data::synth::{generate, SynthFormat, SynthSpec};
//! let spec = SynthSpec {
//!     n_images: 10_000,
//!     n_classes: 5,
//!     imbalance: 10.0,
//!     size: 256,
//!     format: SynthFormat::Jpeg { quality: 90 },
//!     seed: 0,
//! };
//! let summary = generate(&spec, std::path::Path::new("/tmp/synth"), false)?;
//! println!("{:?}, {} bytes", summary.class_counts, summary.bytes);
//! # Ok::<(), cv_data::DataError>(())
//! ```
//!
//! # Reproducibility
//! Image `i` is drawn only from the seed-tree node `synth/image {i}` of `spec.seed`, with the
//! fixed algorithms of [`cv_seed::Draw`], and rendered and encoded on its own, so the same spec
//! gives byte-identical files in any thread count. (The renderer uses `f32` arithmetic and
//! `sin`/`cos`; a different platform's maths library could in principle move a pixel by one level.)
//!
//! Per image the draws are, in this order: the background (two grey levels each with a
//! three-channel tint, the gradient's angle, the wave's two frequencies, amplitude and phase),
//! the shape (hue jitter, saturation, value, centre x, centre y, radius, rotation, opacity), then
//! one noise value per sample in row-major, channel-minor order. Changing any of this changes
//! every generated set.

use std::f32::consts::{SQRT_2, TAU};
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use ::image::codecs::jpeg::JpegEncoder;
use ::image::codecs::png::PngEncoder;
use ::image::{ExtendedColorType, ImageEncoder};
use cv_seed::{Draw, SeedTree};
use rayon::prelude::*;

use crate::DataError;

/// The largest side [`generate`] accepts, in pixels (one image is `3 × size²` bytes in memory
/// per worker thread).
pub const MAX_SIZE: u32 = 16_384;

/// How the images are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthFormat {
    /// Baseline JPEG (`.jpg`) at `quality` (1 to 100), 4:2:0 as the `image` crate encodes it.
    Jpeg { quality: u8 },
    /// 8-bit RGB PNG (`.png`), default compression.
    Png,
}

impl SynthFormat {
    /// The file extension, without the dot.
    pub fn extension(&self) -> &'static str {
        match self {
            SynthFormat::Jpeg { .. } => "jpg",
            SynthFormat::Png => "png",
        }
    }
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSpec {
    /// Images in all; at least `n_classes`.
    pub n_images: usize,
    /// Classes, at least 1; they are called `class-00`, `class-01`, ….
    pub n_classes: usize,
    /// Size of the largest class over that of the smallest (at least 1; 1 is balanced). Class
    /// sizes fall geometrically from `class-00` (largest) to the last class (smallest).
    pub imbalance: f64,
    /// Side of the square images in pixels, 8 to [`MAX_SIZE`].
    pub size: u32,
    /// Encoding of the image files.
    pub format: SynthFormat,
    /// Master seed: the same spec gives byte-identical files.
    pub seed: u64,
}

impl SynthSpec {
    /// Checks every field, naming the one at fault.
    pub fn validate(&self) -> Result<(), DataError> {
        let invalid = |m: String| Err(DataError::Invalid(format!("synthetic data set: {m}")));
        if self.n_classes == 0 {
            return invalid("needs at least 1 class".into());
        }
        if self.n_images < self.n_classes {
            return invalid(format!(
                "{} images cannot fill {} classes with at least one image each",
                self.n_images, self.n_classes
            ));
        }
        if !self.imbalance.is_finite() || self.imbalance < 1.0 {
            return invalid(format!(
                "imbalance {} must be a finite ratio of at least 1 (largest class / smallest)",
                self.imbalance
            ));
        }
        if !(8..=MAX_SIZE).contains(&self.size) {
            return invalid(format!(
                "image size {} px must be between 8 and {MAX_SIZE}",
                self.size
            ));
        }
        if let SynthFormat::Jpeg { quality } = self.format {
            if !(1..=100).contains(&quality) {
                return invalid(format!("JPEG quality {quality} must be between 1 and 100"));
            }
        }
        Ok(())
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SynthSummary {
    /// `out_dir/manifest.csv`: `path,label` rows in index order, paths relative to `out_dir`.
    pub manifest: PathBuf,
    /// Images per class, `class-00` first.
    pub class_counts: Vec<usize>,
    /// Total size of the image files (not counting the manifest).
    pub bytes: u64,
}

/// The name of class `k` of `n_classes`: `class-` and the index, zero-padded to at least two
/// digits (more when there are more than 100 classes, so that names sort in index order).
pub fn class_name(k: usize, n_classes: usize) -> String {
    let digits = n_classes.saturating_sub(1).max(1).to_string().len().max(2);
    format!("class-{k:0digits$}")
}

/// Class sizes falling geometrically from the first (largest) to the last (smallest) by a total
/// ratio of `imbalance`, rounded by largest remainders (ties to the lower class) so that they sum
/// to `n_images` exactly, then lifted so that every class has at least one image (taken from
/// the largest class). The sizes never increase from one class to the next.
pub fn class_counts(
    n_images: usize,
    n_classes: usize,
    imbalance: f64,
) -> Result<Vec<usize>, DataError> {
    if n_classes == 0 || n_images < n_classes || !imbalance.is_finite() || imbalance < 1.0 {
        return Err(DataError::Invalid(format!(
            "cannot split {n_images} images into {n_classes} classes with imbalance {imbalance}"
        )));
    }
    let weights: Vec<f64> = (0..n_classes)
        .map(|k| {
            if n_classes == 1 {
                1.0
            } else {
                imbalance.powf(-(k as f64) / (n_classes - 1) as f64)
            }
        })
        .collect();
    let total: f64 = weights.iter().sum();
    let ideal: Vec<f64> = weights
        .iter()
        .map(|w| n_images as f64 * w / total)
        .collect();
    let mut counts: Vec<usize> = ideal.iter().map(|x| x.floor() as usize).collect();
    let assigned: usize = counts.iter().sum();
    let mut order: Vec<usize> = (0..n_classes).collect();
    // Stable sort: equal remainders keep the lower class first.
    order.sort_by(|&a, &b| (ideal[b] - ideal[b].floor()).total_cmp(&(ideal[a] - ideal[a].floor())));
    for &k in order.iter().take(n_images.saturating_sub(assigned)) {
        counts[k] += 1;
    }
    // Floating-point slack could leave the sum one off; settle it on the largest class.
    let sum: usize = counts.iter().sum();
    if sum > n_images {
        counts[0] -= sum - n_images;
    } else {
        counts[0] += n_images - sum;
    }
    // Every class gets an image; the zeros are at the end, and the donor is the last of the
    // largest classes, so the sizes stay non-increasing.
    for k in 0..n_classes {
        if counts[k] == 0 {
            let max = counts.iter().copied().max().unwrap_or(0);
            let donor = counts.iter().rposition(|&c| c == max).unwrap_or(0);
            counts[donor] -= 1;
            counts[k] = 1;
        }
    }
    Ok(counts)
}

/// Writes the data set described by `spec` to `out_dir`: `out_dir/<class>/<index, 6 digits>.<ext>`
/// and `out_dir/manifest.csv`, and returns what it wrote.
///
/// Everything is written to a sibling temporary directory (`.<name>.tmp-<pid>`) that is renamed
/// to `out_dir` at the end, so `out_dir` never holds a half-written set; the temporary directory
/// is removed on error. If `out_dir` exists and is not empty, this fails naming it, unless
/// `force`, in which case the old directory is replaced (only once the new set is complete).
/// Missing parent directories are created. Images are rendered and encoded in parallel on
/// rayon's current pool; the result does not depend on its thread count.
pub fn generate(spec: &SynthSpec, out_dir: &Path, force: bool) -> Result<SynthSummary, DataError> {
    spec.validate()?;
    let counts = class_counts(spec.n_images, spec.n_classes, spec.imbalance)?;
    let names: Vec<String> = (0..spec.n_classes)
        .map(|k| class_name(k, spec.n_classes))
        .collect();
    let labels: Vec<usize> = counts
        .iter()
        .enumerate()
        .flat_map(|(k, &c)| std::iter::repeat_n(k, c))
        .collect();

    check_target(out_dir, force)?;
    let name = out_dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            DataError::Invalid(format!(
                "output directory {} must end in a plain UTF-8 name",
                out_dir.display()
            ))
        })?;
    let parent = match out_dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|source| DataError::Write {
        path: parent.clone(),
        source,
    })?;
    let pid = std::process::id();
    let tmp = parent.join(format!(".{name}.tmp-{pid}"));
    if tmp.exists() {
        fs::remove_dir_all(&tmp).map_err(|source| DataError::Write {
            path: tmp.clone(),
            source,
        })?;
    }
    fs::create_dir(&tmp).map_err(|source| DataError::Write {
        path: tmp.clone(),
        source,
    })?;
    let guard = RemoveOnDrop(Some(tmp.clone()));

    for class in &names {
        let dir = tmp.join(class);
        fs::create_dir(&dir).map_err(|source| DataError::Write { path: dir, source })?;
    }
    let ext = spec.format.extension();
    let rel = |i: usize| format!("{}/{i:06}.{ext}", names[labels[i]]);
    let images = SeedTree::new(spec.seed).path("synth");
    let bytes: u64 = (0..spec.n_images)
        .into_par_iter()
        .map(|i| -> Result<u64, DataError> {
            let mut rng = images.indexed("image", i as u64).rng();
            let pixels = render(&mut rng, labels[i], spec.size);
            let path = tmp.join(rel(i));
            let encoded =
                encode(&pixels, spec.size, spec.format).map_err(|e| DataError::Write {
                    path: path.clone(),
                    source: std::io::Error::other(e),
                })?;
            fs::write(&path, &encoded).map_err(|source| DataError::Write { path, source })?;
            Ok(encoded.len() as u64)
        })
        .try_reduce(|| 0, |a, b| Ok(a + b))?;

    let manifest_tmp = tmp.join("manifest.csv");
    write_manifest(
        &manifest_tmp,
        (0..spec.n_images).map(|i| (rel(i), &names[labels[i]])),
    )?;

    install(&tmp, out_dir, &parent, name, pid, force)?;
    guard.disarm();
    Ok(SynthSummary {
        manifest: out_dir.join("manifest.csv"),
        class_counts: counts,
        bytes,
    })
}

/// Fails if `out_dir` is something other than a missing or empty directory, unless it is a
/// directory and `force`.
fn check_target(out_dir: &Path, force: bool) -> Result<(), DataError> {
    let meta = match fs::symlink_metadata(out_dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(DataError::Io {
                path: out_dir.to_path_buf(),
                source,
            })
        }
    };
    if !meta.is_dir() {
        return Err(DataError::Invalid(format!(
            "output {} exists and is not a directory",
            out_dir.display()
        )));
    }
    if !force && !is_empty_dir(out_dir)? {
        return Err(DataError::Invalid(format!(
            "output directory {} exists and is not empty; use force (--force) to replace it",
            out_dir.display()
        )));
    }
    Ok(())
}

fn is_empty_dir(dir: &Path) -> Result<bool, DataError> {
    let mut entries = fs::read_dir(dir).map_err(|source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    Ok(entries.next().is_none())
}

/// Moves the finished `tmp` to `out_dir`, replacing what is there (checked by [`check_target`]).
fn install(
    tmp: &Path,
    out_dir: &Path,
    parent: &Path,
    name: &str,
    pid: u32,
    force: bool,
) -> Result<(), DataError> {
    // Check again: something may have appeared while the images were written.
    check_target(out_dir, force)?;
    let write_err = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DataError::Write { path, source }
    };
    let mut old = None;
    if fs::symlink_metadata(out_dir).is_ok() {
        if is_empty_dir(out_dir)? {
            fs::remove_dir(out_dir).map_err(write_err(out_dir))?;
        } else {
            let aside = parent.join(format!(".{name}.old-{pid}"));
            if aside.exists() {
                fs::remove_dir_all(&aside).map_err(write_err(&aside))?;
            }
            fs::rename(out_dir, &aside).map_err(write_err(out_dir))?;
            old = Some(aside);
        }
    }
    if let Err(source) = fs::rename(tmp, out_dir) {
        if let Some(aside) = &old {
            // Put the old set back; the new one is lost with its temporary directory.
            let _ = fs::rename(aside, out_dir);
        }
        return Err(DataError::Write {
            path: out_dir.to_path_buf(),
            source,
        });
    }
    if let Some(aside) = old {
        fs::remove_dir_all(&aside).map_err(write_err(&aside))?;
    }
    Ok(())
}

fn write_manifest<'a>(
    path: &Path,
    rows: impl Iterator<Item = (String, &'a String)>,
) -> Result<(), DataError> {
    let err = |e: csv::Error| DataError::Write {
        path: path.to_path_buf(),
        source: std::io::Error::other(e),
    };
    let io_err = |source| DataError::Write {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::create(path).map_err(io_err)?;
    let mut writer = csv::Writer::from_writer(std::io::BufWriter::new(file));
    writer.write_record(["path", "label"]).map_err(err)?;
    for (rel, label) in rows {
        writer
            .write_record([rel.as_str(), label.as_str()])
            .map_err(err)?;
    }
    let mut inner = writer
        .into_inner()
        .map_err(|e| io_err(std::io::Error::other(e.to_string())))?;
    inner.flush().map_err(io_err)?;
    Ok(())
}

/// Removes a directory when dropped, unless disarmed.
struct RemoveOnDrop(Option<PathBuf>);

impl RemoveOnDrop {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

fn encode(pixels: &[u8], size: u32, format: SynthFormat) -> Result<Vec<u8>, ::image::ImageError> {
    let mut out = Vec::new();
    match format {
        SynthFormat::Jpeg { quality } => JpegEncoder::new_with_quality(&mut out, quality)
            .write_image(pixels, size, size, ExtendedColorType::Rgb8)?,
        SynthFormat::Png => {
            PngEncoder::new(&mut out).write_image(pixels, size, size, ExtendedColorType::Rgb8)?
        }
    }
    Ok(out)
}

/// The distinct shapes; class `k` draws shape `k % SHAPES`.
const SHAPES: usize = 10;

/// The hue of class `k` in `[0, 1)`. The first ten classes (one per shape) are 36° apart, in an
/// order that puts neighbouring classes far apart on the colour wheel; each later round of ten
/// shifts them by a golden-ratio fraction of that step, so classes sharing a shape differ in hue.
fn class_hue(k: usize) -> f32 {
    let base = ((3 * (k % SHAPES)) % SHAPES) as f64 / SHAPES as f64;
    let round = (k / SHAPES) as f64;
    let shift = (round * 0.618_033_988_749_895).fract() / SHAPES as f64;
    ((base + shift).fract()) as f32
}

/// Renders image of class `class`: `size × size` RGB, row-major, 8 bits a sample.
fn render(rng: &mut impl Draw, class: usize, size: u32) -> Vec<u8> {
    let s = size as usize;
    let sf = size as f32;
    let mut u = |lo: f64, hi: f64| rng.uniform_in(lo, hi) as f32;

    // Background: a gradient between two tinted greys along a random direction, plus a gentle
    // plane wave.
    let mut grey = || {
        let g = u(0.3, 0.7);
        [g + u(-0.08, 0.08), g + u(-0.08, 0.08), g + u(-0.08, 0.08)]
    };
    let c0 = grey();
    let c1 = grey();
    let angle = u(0.0, TAU as f64);
    let (fx, fy) = (u(-2.0, 2.0), u(-2.0, 2.0));
    let amplitude = u(0.02, 0.08);
    let phase = u(0.0, TAU as f64);

    // Shape: the class's shape and hue, jittered.
    let hue = (class_hue(class) + u(-0.02, 0.02)).rem_euclid(1.0);
    let colour = hsv_to_rgb(hue, u(0.65, 1.0), u(0.6, 1.0));
    let (cx, cy) = (u(0.3, 0.7) * sf, u(0.3, 0.7) * sf);
    let radius = u(0.2, 0.32) * sf;
    let theta = u(-0.26, 0.26); // about ±15°, so stripes keep their direction
    let opacity = u(0.85, 1.0);
    let shape = class % SHAPES;

    // sin(a + b) = sin a cos b + cos a sin b with a along x and b along y.
    let (mut sin_x, mut cos_x) = (Vec::with_capacity(s), Vec::with_capacity(s));
    for x in 0..s {
        let a = TAU * fx * (x as f32 + 0.5) / sf + phase;
        sin_x.push(a.sin());
        cos_x.push(a.cos());
    }
    let (dx, dy) = (angle.cos() / (sf * SQRT_2), angle.sin() / (sf * SQRT_2));
    let (st, ct) = theta.sin_cos();

    let mut out = vec![0u8; s * s * 3];
    for y in 0..s {
        let py = y as f32 + 0.5;
        let b = TAU * fy * py / sf;
        let (sin_y, cos_y) = b.sin_cos();
        for x in 0..s {
            let px = x as f32 + 0.5;
            let t = (0.5 + (px - sf / 2.0) * dx + (py - sf / 2.0) * dy).clamp(0.0, 1.0);
            let wave = amplitude * (sin_x[x] * cos_y + cos_x[x] * sin_y);
            let (ox, oy) = (px - cx, py - cy);
            let lu = (ox * ct + oy * st) / radius;
            let lv = (-ox * st + oy * ct) / radius;
            // Coverage from the signed distance in pixels: a one-pixel anti-aliased edge.
            let alpha = (0.5 - shape_sdf(shape, lu, lv) * radius).clamp(0.0, 1.0) * opacity;
            let at = (y * s + x) * 3;
            for c in 0..3 {
                let background = c0[c] + (c1[c] - c0[c]) * t + wave;
                let noise = rng.uniform_in(-0.04, 0.04) as f32;
                let v = background + (colour[c] - background) * alpha + noise;
                out[at + c] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
            }
        }
    }
    out
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = h * 6.0;
    let sector = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match sector {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// Signed distance (negative inside) of shape `shape` at `(u, v)`, in units of the radius.
fn shape_sdf(shape: usize, u: f32, v: f32) -> f32 {
    const HALF: f32 = 0.85; // half side of the patterned squares
    match shape {
        0 => (u * u + v * v).sqrt() - 0.95,
        1 => sdf_box(u, v, 0.8, 0.8),
        2 => sdf_triangle(u, v, 1.0),
        3 => sdf_box(u, v, 0.95, 0.3).min(sdf_box(u, v, 0.3, 0.95)),
        4 => ((u * u + v * v).sqrt() - 0.72).abs() - 0.23,
        5 => sdf_box(u, v, HALF, HALF).max(sdf_stripes(v, 2.0 * HALF / 3.0)),
        6 => sdf_box(u, v, HALF, HALF).max(sdf_stripes(u, 2.0 * HALF / 3.0)),
        7 => sdf_box(u, v, HALF, HALF).max(sdf_stripes((u + v) / SQRT_2, 2.0 * HALF / 3.0)),
        8 => sdf_box(u, v, HALF, HALF).max(sdf_checker(u + HALF, v + HALF, HALF / 2.0)),
        _ => sdf_box(u, v, 0.72, 0.72).abs() - 0.16,
    }
}

fn sdf_box(u: f32, v: f32, half_u: f32, half_v: f32) -> f32 {
    let (qu, qv) = (u.abs() - half_u, v.abs() - half_v);
    let outside = (qu.max(0.0).powi(2) + qv.max(0.0).powi(2)).sqrt();
    outside + qu.max(qv).min(0.0)
}

/// Equilateral triangle with half side `r`, centred on its centroid (Inigo Quilez's formula).
fn sdf_triangle(u: f32, v: f32, r: f32) -> f32 {
    let k = 3f32.sqrt();
    let (mut px, mut py) = (u.abs() - r, -v + r / k);
    if px + k * py > 0.0 {
        (px, py) = ((px - k * py) / 2.0, (-k * px - py) / 2.0);
    }
    px -= px.clamp(-2.0 * r, 0.0);
    -(px * px + py * py).sqrt() * py.signum()
}

/// Stripes of half duty across `w`, period `period`.
fn sdf_stripes(w: f32, period: f32) -> f32 {
    let q = (w / period).rem_euclid(1.0) - 0.5;
    (q.abs() - 0.25) * period
}

/// Checkerboard of `cell`-sized squares, the cell at the origin filled.
fn sdf_checker(u: f32, v: f32, cell: f32) -> f32 {
    let (gu, gv) = (u / cell, v / cell);
    let inside = (gu.floor() as i64 + gv.floor() as i64).rem_euclid(2) == 0;
    let du = (0.5 - (gu.rem_euclid(1.0) - 0.5).abs()) * cell;
    let dv = (0.5 - (gv.rem_euclid(1.0) - 0.5).abs()) * cell;
    let d = du.min(dv);
    if inside {
        -d
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn spec(seed: u64) -> SynthSpec {
        SynthSpec {
            n_images: 40,
            n_classes: 4,
            imbalance: 4.0,
            size: 16,
            format: SynthFormat::Jpeg { quality: 90 },
            seed,
        }
    }

    /// Every file under `dir`, by relative path.
    fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
        let mut out = BTreeMap::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let rel = path
                        .strip_prefix(dir)
                        .unwrap()
                        .to_string_lossy()
                        .into_owned();
                    out.insert(rel, fs::read(&path).unwrap());
                }
            }
        }
        out
    }

    #[test]
    fn class_counts_sum_fall_and_keep_the_ratio() {
        let counts = class_counts(10_000, 5, 10.0).unwrap();
        assert_eq!(counts.iter().sum::<usize>(), 10_000);
        assert!(counts.windows(2).all(|w| w[0] >= w[1]), "{counts:?}");
        let ratio = counts[0] as f64 / counts[4] as f64;
        assert!((ratio - 10.0).abs() < 0.05, "{counts:?}");
        assert_eq!(class_counts(10, 3, 1.0).unwrap(), [4, 3, 3]);
        assert_eq!(class_counts(7, 1, 5.0).unwrap(), [7]);
        // Every class keeps an image however steep the imbalance.
        let steep = class_counts(5, 5, 1e6).unwrap();
        assert_eq!(steep, [1, 1, 1, 1, 1]);
        let steep = class_counts(12, 5, 1e9).unwrap();
        assert_eq!(steep.iter().sum::<usize>(), 12);
        assert!(steep.iter().all(|&c| c >= 1) && steep.windows(2).all(|w| w[0] >= w[1]));
        assert!(class_counts(3, 4, 1.0).is_err());
    }

    #[test]
    fn writes_the_set_with_a_manifest() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("set");
        let summary = generate(&spec(1), &out, false).unwrap();
        assert_eq!(summary.class_counts.iter().sum::<usize>(), 40);
        let ratio = summary.class_counts[0] as f64 / summary.class_counts[3] as f64;
        assert!((3.0..=5.0).contains(&ratio), "{:?}", summary.class_counts);
        assert_eq!(summary.manifest, out.join("manifest.csv"));
        let all = files(&out);
        assert_eq!(all.len(), 41);
        let image_bytes: u64 = all
            .iter()
            .filter(|(p, _)| p.ends_with(".jpg"))
            .map(|(_, b)| b.len() as u64)
            .sum();
        assert_eq!(summary.bytes, image_bytes);
        let manifest = String::from_utf8(all["manifest.csv"].clone()).unwrap();
        let mut lines = manifest.lines();
        assert_eq!(lines.next(), Some("path,label"));
        let rows: Vec<(String, String)> = lines
            .map(|l| {
                let (p, l) = l.split_once(',').unwrap();
                (p.to_owned(), l.to_owned())
            })
            .collect();
        assert_eq!(rows.len(), 40);
        for (i, (path, label)) in rows.iter().enumerate() {
            assert_eq!(path, &format!("{label}/{i:06}.jpg"));
            let img = ::image::load_from_memory(&all[path]).unwrap();
            assert_eq!((img.width(), img.height()), (16, 16));
        }
        let mut per_class = BTreeMap::new();
        for (_, label) in &rows {
            *per_class.entry(label.clone()).or_insert(0usize) += 1;
        }
        let names: Vec<_> = per_class.keys().cloned().collect();
        assert_eq!(names, ["class-00", "class-01", "class-02", "class-03"]);
        assert_eq!(
            per_class.values().copied().collect::<Vec<_>>(),
            summary.class_counts
        );
        // Nothing left beside it.
        let siblings: Vec<_> = fs::read_dir(root.path()).unwrap().collect();
        assert_eq!(siblings.len(), 1);
    }

    #[test]
    fn same_seed_same_bytes_other_seed_other_bytes() {
        let root = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            root.path().join("a"),
            root.path().join("b"),
            root.path().join("c"),
        );
        generate(&spec(7), &a, false).unwrap();
        generate(&spec(7), &b, false).unwrap();
        generate(&spec(8), &c, false).unwrap();
        let (fa, fb, fc) = (files(&a), files(&b), files(&c));
        assert_eq!(fa, fb);
        assert_eq!(fa.keys().collect::<Vec<_>>(), fc.keys().collect::<Vec<_>>());
        let differing = fa.iter().filter(|(p, bytes)| fc[*p] != **bytes).count();
        assert_eq!(differing, 40, "every image differs; the manifest does not");
        // PNG too.
        let png = SynthSpec {
            format: SynthFormat::Png,
            ..spec(7)
        };
        generate(&png, &root.path().join("p1"), false).unwrap();
        generate(&png, &root.path().join("p2"), false).unwrap();
        assert_eq!(
            files(&root.path().join("p1")),
            files(&root.path().join("p2"))
        );
    }

    #[test]
    fn thread_count_does_not_change_the_bytes() -> Result<(), Box<dyn std::error::Error>> {
        let root = tempfile::tempdir()?;
        let (one, two) = (root.path().join("one"), root.path().join("two"));
        rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()?
            .install(|| generate(&spec(3), &one, false))?;
        rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()?
            .install(|| generate(&spec(3), &two, false))?;
        assert_eq!(files(&one), files(&two));
        Ok(())
    }

    #[test]
    fn refuses_a_non_empty_directory_without_force() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("set");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("keep.txt"), b"mine").unwrap();
        let err = generate(&spec(1), &out, false).unwrap_err().to_string();
        assert!(err.contains(&out.display().to_string()), "{err}");
        assert!(err.contains("not empty"), "{err}");
        assert_eq!(fs::read(out.join("keep.txt")).unwrap(), b"mine");
        assert_eq!(
            fs::read_dir(root.path()).unwrap().count(),
            1,
            "no temp dir left"
        );
        // An empty directory is fine; force replaces a full one.
        let empty = root.path().join("empty");
        fs::create_dir(&empty).unwrap();
        generate(&spec(1), &empty, false).unwrap();
        generate(&spec(1), &out, true).unwrap();
        assert!(!out.join("keep.txt").exists());
        assert_eq!(files(&out), files(&empty));
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 2);
        // A file in the way is refused even with force.
        let file = root.path().join("file");
        fs::write(&file, b"x").unwrap();
        assert!(generate(&spec(1), &file, true).is_err());
    }

    #[test]
    fn invalid_specs_are_named() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("set");
        let cases = [
            (
                SynthSpec {
                    n_classes: 0,
                    ..spec(0)
                },
                "at least 1 class",
            ),
            (
                SynthSpec {
                    n_images: 3,
                    ..spec(0)
                },
                "3 images",
            ),
            (
                SynthSpec {
                    imbalance: 0.5,
                    ..spec(0)
                },
                "imbalance",
            ),
            (
                SynthSpec {
                    imbalance: f64::NAN,
                    ..spec(0)
                },
                "imbalance",
            ),
            (
                SynthSpec {
                    imbalance: f64::INFINITY,
                    ..spec(0)
                },
                "imbalance",
            ),
            (SynthSpec { size: 7, ..spec(0) }, "size 7"),
            (
                SynthSpec {
                    format: SynthFormat::Jpeg { quality: 0 },
                    ..spec(0)
                },
                "quality 0",
            ),
            (
                SynthSpec {
                    format: SynthFormat::Jpeg { quality: 101 },
                    ..spec(0)
                },
                "quality 101",
            ),
        ];
        for (bad, needle) in cases {
            let err = generate(&bad, &out, false).unwrap_err().to_string();
            assert!(err.contains(needle), "{err} should mention {needle}");
        }
        assert!(!out.exists());
        assert_eq!(fs::read_dir(root.path()).unwrap().count(), 0);
    }

    #[test]
    fn class_names_sort_in_index_order() {
        assert_eq!(class_name(3, 5), "class-03");
        assert_eq!(class_name(0, 1), "class-00");
        assert_eq!(class_name(7, 150), "class-007");
    }

    /// Nearest class mean (of the mean-centred pixels) fitted on half the images, tested on the
    /// other half, beats chance (0.1) several times over: the shapes move, so it cannot be perfect.
    #[test]
    fn classes_are_learnable() {
        let root = tempfile::tempdir().unwrap();
        let out = root.path().join("set");
        let n_classes = 10;
        let spec = SynthSpec {
            n_images: 200,
            n_classes,
            imbalance: 1.0,
            size: 16,
            format: SynthFormat::Png,
            seed: 11,
        };
        generate(&spec, &out, false).unwrap();
        let manifest = fs::read_to_string(out.join("manifest.csv")).unwrap();
        let samples: Vec<(Vec<f32>, usize)> = manifest
            .lines()
            .skip(1)
            .map(|line| {
                let (path, label) = line.split_once(',').unwrap();
                let img = ::image::open(out.join(path)).unwrap().to_rgb8();
                // Each channel less its image mean, so that the random background level does
                // not swamp the distances.
                let raw = img.as_raw();
                let mut mean = [0f32; 3];
                for (j, &v) in raw.iter().enumerate() {
                    mean[j % 3] += f32::from(v) / 255.0;
                }
                let pixels = (raw.len() / 3) as f32;
                let x = raw
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| f32::from(v) / 255.0 - mean[j % 3] / pixels)
                    .collect();
                let k: usize = label.trim_start_matches("class-").parse().unwrap();
                (x, k)
            })
            .collect();
        let dim = samples[0].0.len();
        let mut means = vec![vec![0f32; dim]; n_classes];
        let mut seen = vec![0usize; n_classes];
        for (x, k) in samples.iter().step_by(2) {
            seen[*k] += 1;
            for (m, v) in means[*k].iter_mut().zip(x) {
                *m += v;
            }
        }
        for (m, n) in means.iter_mut().zip(&seen) {
            m.iter_mut().for_each(|v| *v /= *n as f32);
        }
        let test: Vec<_> = samples.iter().skip(1).step_by(2).collect();
        let correct = test
            .iter()
            .filter(|(x, k)| {
                let dist =
                    |m: &Vec<f32>| m.iter().zip(x).map(|(a, b)| (a - b).powi(2)).sum::<f32>();
                let best = (0..n_classes)
                    .min_by(|&a, &b| dist(&means[a]).total_cmp(&dist(&means[b])))
                    .unwrap();
                best == *k
            })
            .count();
        let accuracy = correct as f64 / test.len() as f64;
        assert!(
            accuracy > 0.45,
            "nearest-mean accuracy {accuracy} (chance 0.1)"
        );
    }
}
