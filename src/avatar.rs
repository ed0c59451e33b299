//! Profile pictures: decode what the user sent (bounded, so a crafted file cannot exhaust memory),
//! shrink it, and re-encode it, which also drops every byte of metadata (EXIF location and the like).

use std::io::Cursor;

use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// The longest side of a stored picture, in pixels.
pub const MAX_SIDE: u32 = 512;

/// A re-encoded picture ready to store.
#[derive(Debug)]
pub struct Encoded {
    /// Its media type.
    pub content_type: &'static str,
    /// Its bytes.
    pub data: Vec<u8>,
}

/// Why a picture was refused.
#[derive(Debug, thiserror::Error)]
pub enum AvatarError {
    /// Not an image of the declared kind, corrupt, or beyond the decoding limits.
    #[error("the body is not a valid {0} image")]
    Undecodable(&'static str),
    /// Encoding failed.
    #[error("could not re-encode the picture")]
    Encode,
}

/// The image format for an accepted `Content-Type`.
pub fn declared_format(content_type: &str) -> Option<ImageFormat> {
    match content_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" | "image/jpg" => Some(ImageFormat::Jpeg),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Decodes `bytes` as `format`, fits it into [`MAX_SIDE`], and re-encodes it: JPEG for opaque
/// pictures (small), PNG when there is transparency to keep.
pub fn normalize(bytes: &[u8], format: ImageFormat) -> Result<Encoded, AvatarError> {
    let name = format.to_mime_type();
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(10_000);
    limits.max_image_height = Some(10_000);
    limits.max_alloc = Some(256 * 1024 * 1024);
    reader.limits(limits);
    let image = reader
        .decode()
        .map_err(|_| AvatarError::Undecodable(name))?;
    let image = if image.width() > MAX_SIDE || image.height() > MAX_SIDE {
        image.resize(MAX_SIDE, MAX_SIDE, image::imageops::FilterType::Triangle)
    } else {
        image
    };
    let mut out = Cursor::new(Vec::new());
    if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
            .write_to(&mut out, ImageFormat::Png)
            .map_err(|_| AvatarError::Encode)?;
        Ok(Encoded {
            content_type: "image/png",
            data: out.into_inner(),
        })
    } else {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 85);
        DynamicImage::ImageRgb8(image.to_rgb8())
            .write_with_encoder(encoder)
            .map_err(|_| AvatarError::Encode)?;
        Ok(Encoded {
            content_type: "image/jpeg",
            data: out.into_inner(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32, alpha: bool) -> Vec<u8> {
        let image = if alpha {
            DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
                width,
                height,
                image::Rgba([10, 20, 30, 128]),
            ))
        } else {
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
                width,
                height,
                image::Rgb([10, 20, 30]),
            ))
        };
        let mut out = Cursor::new(Vec::new());
        image.write_to(&mut out, ImageFormat::Png).expect("encode");
        out.into_inner()
    }

    #[test]
    fn large_pictures_are_shrunk_and_reencoded() {
        let out = normalize(&png(2000, 1000, false), ImageFormat::Png).expect("valid");
        assert_eq!(out.content_type, "image/jpeg");
        let back = image::load_from_memory(&out.data).expect("decodes");
        assert_eq!((back.width(), back.height()), (512, 256));
    }

    #[test]
    fn transparency_is_kept_as_png() {
        let out = normalize(&png(64, 64, true), ImageFormat::Png).expect("valid");
        assert_eq!(out.content_type, "image/png");
    }

    #[test]
    fn non_images_and_mismatched_types_are_refused() {
        assert!(normalize(b"hello, not an image", ImageFormat::Png).is_err());
        assert!(
            normalize(&png(8, 8, false), ImageFormat::Jpeg).is_err(),
            "a PNG declared as JPEG"
        );
        assert!(
            normalize(&png(8, 8, false)[..40], ImageFormat::Png).is_err(),
            "truncated"
        );
    }
}
