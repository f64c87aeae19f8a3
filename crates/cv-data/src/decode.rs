//! Decoding image files into [`Image`]s: JPEG, PNG, BMP, WebP and TIFF, 8 or 16 bits per sample,
//! grayscale, RGB or with alpha, honouring the EXIF orientation of JPEG (and WebP/TIFF) files.

use std::io::Cursor;
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader};

use crate::{DataError, Image};

/// Reads and decodes `path` into an image of `channels` channels (1 or 3).
///
/// Alpha is dropped (not composited), as `PIL.Image.convert("RGB")` does. Colour becomes gray
/// with PIL's weights (0.299, 0.587, 0.114); gray becomes colour by repeating the channel.
/// Samples are scaled to `[0, 1]` from the file's bit depth (8 or 16 bits).
pub fn decode_file(path: &Path, channels: usize) -> Result<Image, DataError> {
    let bytes = std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    decode_bytes(&bytes, path, channels)
}

/// Decodes an encoded image held in memory; `path` only names it in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path, channels: usize) -> Result<Image, DataError> {
    let fail = |message: String| DataError::Decode {
        path: path.to_path_buf(),
        message,
    };
    if !(channels == 1 || channels == 3) {
        return Err(fail(format!(
            "{channels} channels asked for; 1 or 3 are supported"
        )));
    }
    if bytes.is_empty() {
        return Err(fail("the file is empty (0 bytes)".into()));
    }
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| fail(e.to_string()))?;
    if reader.format().is_none() {
        return Err(fail("not a recognised image format".into()));
    }
    let mut decoder = reader.into_decoder().map_err(|e| fail(e.to_string()))?;
    let orientation = decoder.orientation().map_err(|e| fail(e.to_string()))?;
    let mut decoded = DynamicImage::from_decoder(decoder).map_err(|e| fail(e.to_string()))?;
    decoded.apply_orientation(orientation);
    Ok(to_image(&decoded, channels))
}

fn to_image(decoded: &DynamicImage, channels: usize) -> Image {
    let (width, height) = (decoded.width() as usize, decoded.height() as usize);
    let area = width * height;
    let mut data = vec![0f32; channels * area];
    // 16-bit sources keep their precision; everything else goes through 8 bits, as PIL reads it.
    // Samples are divided by the maximum, as torchvision's `to_tensor` does (`x / 255`), not
    // multiplied by its reciprocal, which can differ in the last bit.
    let sixteen = matches!(
        decoded,
        DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
            | DynamicImage::ImageRgb16(_)
            | DynamicImage::ImageRgba16(_)
    );
    let is_gray = matches!(
        decoded,
        DynamicImage::ImageLuma8(_)
            | DynamicImage::ImageLumaA8(_)
            | DynamicImage::ImageLuma16(_)
            | DynamicImage::ImageLumaA16(_)
    );
    if is_gray {
        let gray: Vec<f32> = if sixteen {
            decoded
                .to_luma16()
                .into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 65535.0)
                .collect()
        } else {
            decoded
                .to_luma8()
                .into_raw()
                .into_iter()
                .map(|v| f32::from(v) / 255.0)
                .collect()
        };
        for c in 0..channels {
            data[c * area..(c + 1) * area].copy_from_slice(&gray);
        }
        return Image::new(channels, height, width, data);
    }
    let (rgb, max): (Vec<f32>, f32) = if sixteen {
        let raw = decoded.to_rgb16().into_raw();
        (raw.into_iter().map(f32::from).collect(), 65535.0)
    } else {
        let raw = decoded.to_rgb8().into_raw();
        (raw.into_iter().map(f32::from).collect(), 255.0)
    };
    if channels == 3 {
        let (r, rest) = data.split_at_mut(area);
        let (g, b) = rest.split_at_mut(area);
        for (i, px) in rgb.chunks_exact(3).enumerate() {
            r[i] = px[0] / max;
            g[i] = px[1] / max;
            b[i] = px[2] / max;
        }
    } else {
        for (out, px) in data.iter_mut().zip(rgb.chunks_exact(3)) {
            *out = (0.299 * px[0] + 0.587 * px[1] + 0.114 * px[2]) / max;
        }
    }
    Image::new(channels, height, width, data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb, Rgba};

    fn encode(img: DynamicImage, format: image::ImageFormat) -> Vec<u8> {
        let mut bytes = Vec::new();
        img.write_to(&mut Cursor::new(&mut bytes), format).unwrap();
        bytes
    }

    fn rgb_2x2() -> DynamicImage {
        let px = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 255]];
        DynamicImage::ImageRgb8(ImageBuffer::from_fn(2, 2, |x, y| {
            Rgb(px[(y * 2 + x) as usize])
        }))
    }

    #[test]
    fn lossless_formats_decode_to_exact_planes() {
        for format in [
            image::ImageFormat::Png,
            image::ImageFormat::Bmp,
            image::ImageFormat::Tiff,
            image::ImageFormat::WebP,
        ] {
            let img = decode_bytes(&encode(rgb_2x2(), format), Path::new("x"), 3).unwrap();
            assert_eq!(
                (img.channels, img.height, img.width),
                (3, 2, 2),
                "{format:?}"
            );
            assert_eq!(img.plane(0), &[1.0, 0.0, 0.0, 1.0], "{format:?}");
            assert_eq!(img.plane(1), &[0.0, 1.0, 0.0, 1.0], "{format:?}");
            assert_eq!(img.plane(2), &[0.0, 0.0, 1.0, 1.0], "{format:?}");
        }
    }

    #[test]
    fn jpeg_decodes_close_to_its_source() {
        let flat = DynamicImage::ImageRgb8(ImageBuffer::from_pixel(16, 16, Rgb([200, 100, 50])));
        let img = decode_bytes(&encode(flat, image::ImageFormat::Jpeg), Path::new("x"), 3).unwrap();
        for (c, want) in [200.0, 100.0, 50.0].iter().enumerate() {
            for &v in img.plane(c) {
                assert!((v * 255.0 - want).abs() < 3.0, "channel {c}: {}", v * 255.0);
            }
        }
    }

    #[test]
    fn alpha_is_dropped_and_gray_is_repeated_or_weighted() {
        let rgba = DynamicImage::ImageRgba8(ImageBuffer::from_pixel(1, 1, Rgba([255, 0, 0, 0])));
        let img = decode_bytes(&encode(rgba, image::ImageFormat::Png), Path::new("x"), 3).unwrap();
        assert_eq!(img.data, vec![1.0, 0.0, 0.0]);
        let gray = DynamicImage::ImageLuma8(ImageBuffer::from_pixel(1, 1, Luma([51])));
        let img = decode_bytes(&encode(gray, image::ImageFormat::Png), Path::new("x"), 3).unwrap();
        assert_eq!(img.data, vec![51.0 / 255.0; 3]);
        let img = decode_bytes(
            &encode(rgb_2x2(), image::ImageFormat::Png),
            Path::new("x"),
            1,
        )
        .unwrap();
        assert!((img.data[0] - 0.299).abs() < 1e-6);
        assert!((img.data[3] - 1.0).abs() < 1e-6);
    }

    #[test]
    fn sixteen_bit_keeps_its_precision() {
        let img16: ImageBuffer<Luma<u16>, Vec<u16>> = ImageBuffer::from_pixel(1, 1, Luma([257]));
        let bytes = encode(DynamicImage::ImageLuma16(img16), image::ImageFormat::Png);
        let img = decode_bytes(&bytes, Path::new("x"), 1).unwrap();
        assert_eq!(img.data, vec![257.0 / 65535.0]);
    }

    #[test]
    fn exif_orientation_is_applied() {
        // A 2×1 JPEG whose EXIF says "rotate 90° clockwise" must come out 1×2.
        let wide = DynamicImage::ImageRgb8(ImageBuffer::from_fn(16, 8, |x, _| {
            if x < 8 {
                Rgb([255, 255, 255])
            } else {
                Rgb([0, 0, 0])
            }
        }));
        let jpeg = encode(wide, image::ImageFormat::Jpeg);
        let with_exif = insert_exif_orientation(&jpeg, 6);
        let img = decode_bytes(&with_exif, Path::new("x"), 1).unwrap();
        assert_eq!((img.height, img.width), (16, 8));
        // The white left half is now the top half.
        assert!(img.at(0, 0, 4) > 0.9 && img.at(0, 15, 4) < 0.1);
    }

    /// Inserts an APP1 EXIF segment holding only an Orientation tag after the SOI marker.
    fn insert_exif_orientation(jpeg: &[u8], orientation: u16) -> Vec<u8> {
        let mut tiff = Vec::new();
        tiff.extend_from_slice(b"MM\0\x2a\0\0\0\x08"); // big-endian TIFF header, IFD at 8
        tiff.extend_from_slice(&1u16.to_be_bytes()); // one entry
        tiff.extend_from_slice(&0x0112u16.to_be_bytes()); // Orientation
        tiff.extend_from_slice(&3u16.to_be_bytes()); // SHORT
        tiff.extend_from_slice(&1u32.to_be_bytes()); // count
        tiff.extend_from_slice(&orientation.to_be_bytes());
        tiff.extend_from_slice(&[0, 0]);
        tiff.extend_from_slice(&0u32.to_be_bytes()); // no next IFD
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let mut out = jpeg[..2].to_vec();
        out.extend_from_slice(&[0xFF, 0xE1]);
        out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(&app1);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    #[test]
    fn bad_bytes_are_named_errors() {
        let err = decode_bytes(&[], Path::new("a.png"), 3).unwrap_err();
        assert_eq!(
            err.to_string(),
            "cannot decode a.png: the file is empty (0 bytes)"
        );
        let err = decode_bytes(b"not an image at all", Path::new("b.jpg"), 3).unwrap_err();
        assert!(err.to_string().starts_with("cannot decode b.jpg"), "{err}");
        let mut truncated = encode(rgb_2x2(), image::ImageFormat::Png);
        truncated.truncate(truncated.len() / 2);
        assert!(decode_bytes(&truncated, Path::new("c.png"), 3).is_err());
    }
}
