//! Image and mask loading with errors that name the file: decode, convert, resize.
//!
//! Images become RGB (grayscale is repeated over 3 channels) resized with a [`ResizeFilter`]
//! (antialiased bilinear unless told otherwise); masks are
//! checked against their image's size, resized with nearest neighbour and binarised to 0/255
//! (any [`MaskRef`]: files, LOCO unions, frames of video mask volumes).
use crate::error::{DataError, Result};
use crate::mask::MaskRef;
use image::imageops::{self, FilterType};
use image::{DynamicImage, GrayImage, ImageDecoder, ImageReader, RgbImage};
use std::path::Path;

/// File extensions read as images (lower case; matching is case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 6] = ["png", "jpg", "jpeg", "bmp", "tif", "tiff"];

/// Whether `path` has one of [`IMAGE_EXTENSIONS`].
pub fn is_image_path(path: &Path) -> bool {
    has_extension_in(path, &IMAGE_EXTENSIONS)
}

/// Whether the extension of `path` is one of `extensions` (lower case), in any letter case.
fn has_extension_in(path: &Path, extensions: &[&str]) -> bool {
    (path.extension().and_then(|e| e.to_str()))
        .is_some_and(|e| extensions.iter().any(|x| e.eq_ignore_ascii_case(x)))
}

/// Extensions of image formats memad does not read (lower case; matching is
/// case-insensitive): the readers skip such files as they skip any file that is not one of
/// [`IMAGE_EXTENSIONS`], so a dataset holding them is smaller than it looks;
/// [`crate::check::unread_images`] names them.
pub const UNREAD_IMAGE_EXTENSIONS: [&str; 23] = [
    "webp", "gif", "jp2", "j2k", "jpf", "jpx", "jpm", "jpeg2000", "heic", "heif", "avif", "jxl",
    "tga", "ppm", "pgm", "pbm", "pnm", "exr", "hdr", "ico", "qoi", "dds", "psd",
];

/// Whether `path` has one of [`UNREAD_IMAGE_EXTENSIONS`]: an image memad does not read.
pub fn is_unread_image_path(path: &Path) -> bool {
    has_extension_in(path, &UNREAD_IMAGE_EXTENSIONS)
}

/// `files` counted by lower-case extension, as `"2 .webp"`, sorted by extension: how the
/// unread image files of a folder or category are named.
pub(crate) fn count_by_extension(files: &[std::path::PathBuf]) -> Vec<String> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for file in files {
        let ext = file.extension().unwrap_or_default().to_string_lossy();
        *counts.entry(ext.to_lowercase()).or_default() += 1;
    }
    counts
        .iter()
        .map(|(ext, n)| format!("{n} .{ext}"))
        .collect()
}

/// Opens an image file for decoding; a path that is not a regular file (a FIFO or device
/// named like an image, which would block the reader forever) is refused.
pub(crate) fn open(path: &Path) -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
    let metadata = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if !metadata.is_file() {
        return Err(DataError::Image {
            path: path.to_path_buf(),
            message: "is not a regular file (a folder, FIFO or device named like an image)".into(),
        });
    }
    ImageReader::open(path)
        .map_err(|e| DataError::io(path, e))?
        .with_guessed_format()
        .map_err(|e| DataError::io(path, e))
}

fn decode(path: &Path) -> Result<DynamicImage> {
    open(path)?.decode().map_err(|e| DataError::Image {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Decodes `path` as one 8-bit grey channel.
pub(crate) fn decode_luma(path: &Path) -> Result<GrayImage> {
    Ok(decode(path)?.into_luma8())
}

/// Decodes the mask image `path` as 0/255, deciding each pixel at the image's own bit depth
/// (before any reduction to 8 bits, which would turn a 16-bit label map's 1s into 0s). With
/// `label_map_rule`, a mask holding a value above half its depth's maximum (127 at 8 bits,
/// 32767 at 16) marks its pixels above that half, any other its non-zero pixels; without it,
/// every non-zero pixel is marked.
pub(crate) fn decode_mask(path: &Path, label_map_rule: bool) -> Result<GrayImage> {
    let img = decode(path)?;
    let (width, height) = (img.width(), img.height());
    let color = img.color();
    let eight_bit = color.bytes_per_pixel() <= color.channel_count();
    let (values, max): (Vec<u16>, u16) = if eight_bit {
        let g = img.into_luma8();
        (
            g.pixels().map(|p| u16::from(p[0])).collect(),
            u16::from(u8::MAX),
        )
    } else {
        let g = img.into_luma16();
        (g.pixels().map(|p| p[0]).collect(), u16::MAX)
    };
    let half = max / 2;
    let threshold = if label_map_rule && values.iter().any(|&v| v > half) {
        half
    } else {
        0
    };
    let bytes = values
        .iter()
        .map(|&v| if v > threshold { 255 } else { 0 })
        .collect();
    Ok(GrayImage::from_raw(width, height, bytes).expect("one value per pixel"))
}

/// `(width, height)` from the file header, without decoding the pixels. A PNG must also end
/// with its `IEND` chunk and a JPEG with its end-of-image marker, so a truncated file is
/// found here, not when a loader decodes it after training; so is a header whose size is
/// over the decoder's memory limit (512 MiB). TIFF and BMP have no end marker
/// (UCSD's frames are TIFF, BTAD's masks partly BMP; both mostly uncompressed, so cheap to
/// decode): they are decoded whole.
pub fn image_dimensions(path: &Path) -> Result<(u32, u32)> {
    let reader = open(path)?;
    let format = reader.format();
    if matches!(
        format,
        Some(image::ImageFormat::Tiff | image::ImageFormat::Bmp)
    ) {
        let image = decode(path)?;
        return Ok((image.width(), image.height()));
    }
    let image_error = |message: String| DataError::Image {
        path: path.to_path_buf(),
        message,
    };
    let decoder = reader
        .into_decoder()
        .map_err(|e| image_error(e.to_string()))?;
    let size = decoder.dimensions();
    // The decoder's own allocation limit, checked here so that a header claiming a huge
    // image is found before training rather than when the image is decoded.
    if let Some(limit) = image::Limits::default().max_alloc {
        if decoder.total_bytes() > limit {
            return Err(image_error(format!(
                "{}x{} pixels need {} MiB to decode, over the decoder's limit of {} MiB",
                size.0,
                size.1,
                decoder.total_bytes() >> 20,
                limit >> 20
            )));
        }
    }
    let end = match format {
        Some(image::ImageFormat::Png) => Some(("PNG", PNG_END.as_slice())),
        Some(image::ImageFormat::Jpeg) => Some(("JPEG", JPEG_END.as_slice())),
        _ => None,
    };
    if let Some((name, marker)) = end {
        let tail = read_tail(path, TAIL_BYTES).map_err(|e| DataError::io(path, e))?;
        if !tail.windows(marker.len()).any(|w| w == marker) {
            return Err(DataError::Image {
                path: path.to_path_buf(),
                message: format!("truncated: the {name} file does not end with its end marker"),
            });
        }
    }
    Ok(size)
}

/// `(width, height)` of the image decoded in full: finds damage anywhere in the file, which
/// [`image_dimensions`] only finds at its ends.
pub fn decoded_dimensions(path: &Path) -> Result<(u32, u32)> {
    image_dimensions(path)?;
    let image = decode(path)?;
    Ok((image.width(), image.height()))
}

/// A PNG's last chunk: `IEND` with its CRC.
const PNG_END: [u8; 8] = *b"IEND\xaeB`\x82";
/// A JPEG's end-of-image marker.
const JPEG_END: [u8; 2] = [0xff, 0xd9];
/// How far from the end an end marker is looked for (some writers pad after it).
const TAIL_BYTES: u64 = 1024;

/// The last `n` bytes of the file (all of it when shorter).
fn read_tail(path: &Path, n: u64) -> std::io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(n)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail)
}

/// Bilinear, antialiased when shrinking (PIL's `BILINEAR`): the default [`ResizeFilter`] and
/// the filter of the bilinear [`MaskResize`] modes.
pub const IMAGE_FILTER: FilterType = FilterType::Triangle;

/// The filter images are resized with (`[data] resize_filter`): as the official code of the
/// method resizes them.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ResizeFilter {
    /// Bilinear, antialiased when shrinking (the kernel widened by the scale, [`IMAGE_FILTER`]):
    /// PIL's `BILINEAR`, hence torchvision's `Resize` of PIL images (RD4AD, PatchCore,
    /// anomalib).
    #[default]
    AntialiasedBilinear,
    /// Bilinear from the 2 x 2 nearest source pixels at any scale, half-pixel centres, edges
    /// clamped ([`resize_bilinear`]): OpenCV's `cv2.resize` with `INTER_LINEAR` (MNAD's
    /// official loader), torch's `interpolate(mode="bilinear", antialias=False)` rounded.
    Bilinear,
    /// Bicubic (Keys, `a = -0.5`), antialiased when shrinking: MATLAB's `imresize` (MemAE's
    /// official preprocessing of UCSD Ped2), PIL's `BICUBIC`. Within a grey level of both
    /// inside the image; in the outer 2-3 pixels MATLAB mirrors the image where this
    /// renormalises the taps (as PIL), up to about 13 levels apart on noisy images.
    AntialiasedBicubic,
}

impl ResizeFilter {
    /// Whether this is the default, [`ResizeFilter::AntialiasedBilinear`].
    pub fn is_default(&self) -> bool {
        *self == ResizeFilter::default()
    }

    /// Its name in the decoded-image cache's keys (the default's is the one the keys held
    /// before there was a choice, so that those entries stay valid).
    pub fn cache_name(&self) -> &'static str {
        match self {
            ResizeFilter::AntialiasedBilinear => "Triangle",
            ResizeFilter::Bilinear => "Bilinear",
            ResizeFilter::AntialiasedBicubic => "CatmullRom",
        }
    }

    /// `image` resized to `width x height` with this filter.
    pub fn resize(&self, image: &RgbImage, width: u32, height: u32) -> RgbImage {
        match self {
            ResizeFilter::AntialiasedBilinear => {
                imageops::resize(image, width, height, IMAGE_FILTER)
            }
            ResizeFilter::Bilinear => resize_bilinear(image, width, height),
            ResizeFilter::AntialiasedBicubic => {
                imageops::resize(image, width, height, FilterType::CatmullRom)
            }
        }
    }
}

/// For each of `n` output positions along an axis of `len` source pixels: the two source
/// pixels and the weight of the second, as OpenCV's `INTER_LINEAR` places them
/// (`x = (i + 0.5) * len / n - 0.5`, clamped to `[0, len - 1]`).
pub fn bilinear_taps(len: u32, n: u32) -> Vec<(usize, usize, f32)> {
    let scale = f64::from(len) / f64::from(n);
    let last = len as usize - 1;
    (0..n)
        .map(|i| {
            let x = ((f64::from(i) + 0.5) * scale - 0.5).max(0.0);
            let x0 = (x.floor() as usize).min(last);
            let w = if x0 == last { 0.0 } else { x - x0 as f64 };
            (x0, (x0 + 1).min(last), w as f32)
        })
        .collect()
}

/// [`ResizeFilter::Bilinear`]: each output pixel interpolated from the 2 x 2 source pixels
/// around its centre, rounded to the nearest level. Within one grey level of `cv2.resize`,
/// which weighs in 11-bit fixed point.
pub fn resize_bilinear(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (xs, ys) = (
        bilinear_taps(image.width(), width),
        bilinear_taps(image.height(), height),
    );
    let at = |x: usize, y: usize, c: usize| f32::from(image.get_pixel(x as u32, y as u32)[c]);
    RgbImage::from_fn(width, height, |x, y| {
        let ((x0, x1, wx), (y0, y1, wy)) = (xs[x as usize], ys[y as usize]);
        image::Rgb(std::array::from_fn(|c| {
            let top = at(x0, y0, c) * (1.0 - wx) + at(x1, y0, c) * wx;
            let bottom = at(x0, y1, c) * (1.0 - wx) + at(x1, y1, c) * wx;
            (top * (1.0 - wy) + bottom * wy).round().clamp(0.0, 255.0) as u8
        }))
    })
}

/// How ground-truth masks are brought to the input size and binarised (`[data] mask_resize`).
/// The official evaluations differ, and boundary pixels and thin defects with them (pixel
/// AUROC, AUPRO).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum MaskResize {
    /// Nearest neighbour at pixel centres: a pixel is anomalous where its source pixel is
    /// (anomalib's resizing of masks).
    #[default]
    Nearest,
    /// Bilinear ([`IMAGE_FILTER`], antialiased when shrinking, as PIL's), anomalous above
    /// half: RD4AD's official `Resize` of the mask then `gt > 0.5`.
    BilinearHalf,
    /// Bilinear, anomalous only where wholly covered (255): PatchCore's official `Resize`
    /// of the mask then `.astype(int)`, which keeps exactly 1.
    BilinearFull,
}

impl MaskResize {
    /// Whether this is the default, [`MaskResize::Nearest`].
    pub fn is_nearest(&self) -> bool {
        *self == MaskResize::Nearest
    }
}

/// What `[data] resize` sets before the centre crop to the input size.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum ResizeShape {
    /// Both sides become `resize`: a non-square image is stretched to a square (anomalib's,
    /// RD4AD's `Resize((256, 256))`).
    #[default]
    Square,
    /// The shorter side becomes `resize` and the longer `int(resize * long / short)`
    /// (truncated), keeping the aspect ratio: torchvision's `Resize(256)` with an int, as
    /// PatchCore's official code. The same as [`ResizeShape::Square`] on square images.
    ShorterSide,
}

impl ResizeShape {
    /// Whether this is the default, [`ResizeShape::Square`].
    pub fn is_square(&self) -> bool {
        *self == ResizeShape::Square
    }
}

/// How an image (or mask) of any size becomes the model's square input: resized with
/// `resize` as `shape` says, then the central `crop x crop` kept (`None`: `resize x resize`),
/// at torchvision's `CenterCrop` offsets `round((side - crop) / 2)` (half to even) of the
/// resized image, in one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Geometry {
    pub resize: u32,
    pub shape: ResizeShape,
    pub crop: Option<u32>,
    /// The filter of images' resize (masks follow [`MaskResize`]).
    pub filter: ResizeFilter,
}

impl Geometry {
    /// `size x size`, no crop, the default filter.
    pub fn square(size: u32) -> Self {
        Geometry {
            resize: size,
            shape: ResizeShape::Square,
            crop: None,
            filter: ResizeFilter::default(),
        }
    }

    /// The side of the output: the crop, else `resize`.
    pub fn side(&self) -> u32 {
        self.crop.unwrap_or(self.resize)
    }

    /// An error unless `1 <= side <= resize` (the shorter resized side).
    pub fn check(&self) -> Result<()> {
        self.crop_offsets((self.resize, self.resize)).map(drop)
    }

    /// `(width, height)` of an image of `(width, height)` = `size` after the resize, before
    /// the crop: `(resize, resize)`, or with [`ResizeShape::ShorterSide`] the shorter side
    /// `resize` and the longer `int(resize * long / short)`, as torchvision computes it.
    pub fn resized(&self, size: (u32, u32)) -> (u32, u32) {
        let r = self.resize;
        match self.shape {
            ResizeShape::Square => (r, r),
            ResizeShape::ShorterSide => {
                let (w, h) = size;
                let (short, long) = (w.min(h).max(1), w.max(h));
                // Python's `int(r * long / short)`: an exact product, a correctly rounded
                // division, truncated.
                let long_side = ((u64::from(r) * u64::from(long)) as f64 / f64::from(short)) as u32;
                if w <= h {
                    (r, long_side)
                } else {
                    (long_side, r)
                }
            }
        }
    }

    /// `(x, y)` of the crop's top-left corner in an image resized to `resized`
    /// ([`Geometry::resized`]): `round((side - crop) / 2)` per axis, half to even
    /// (torchvision's `CenterCrop`); an error when the crop does not fit.
    pub fn crop_offsets(&self, resized: (u32, u32)) -> Result<(u32, u32)> {
        let side = self.side();
        let offset = |n: u32| -> Result<u32> {
            if side > n || side == 0 {
                return Err(DataError::InvalidArgument(format!(
                    "centre crop {side} must be between 1 and the decoded size {n}"
                )));
            }
            Ok((f64::from(n - side) / 2.0).round_ties_even() as u32)
        };
        Ok((offset(resized.0)?, offset(resized.1)?))
    }

    /// `image` resized (with [`Geometry::filter`]) and centre-cropped, `side x side`.
    pub fn fit_rgb(&self, image: RgbImage) -> Result<RgbImage> {
        let to = self.resized(image.dimensions());
        let resized = if image.dimensions() == to {
            image
        } else {
            self.filter.resize(&image, to.0, to.1)
        };
        self.crop_image(resized)
    }

    /// The central `side x side` of the resized `image`.
    fn crop_image<P: image::Pixel + 'static>(
        &self,
        image: image::ImageBuffer<P, Vec<P::Subpixel>>,
    ) -> Result<image::ImageBuffer<P, Vec<P::Subpixel>>> {
        let side = self.side();
        if image.dimensions() == (side, side) {
            return Ok(image);
        }
        let (x, y) = self.crop_offsets(image.dimensions())?;
        Ok(imageops::crop_imm(&image, x, y, side, side).to_image())
    }
}

/// Decodes `path` as RGB, resized (with `geometry.filter`) and centre-cropped as `geometry`
/// says.
pub fn load_rgb_fitted(path: &Path, geometry: &Geometry) -> Result<RgbImage> {
    geometry.fit_rgb(decode(path)?.into_rgb8())
}

/// Decodes `path` as RGB and resizes it to `size`x`size` (the default [`ResizeFilter`]).
pub fn load_rgb(path: &Path, size: u32) -> Result<RgbImage> {
    load_rgb_fitted(path, &Geometry::square(size))
}

/// Decodes the mask at `path` as 0/255 ([`MaskRef::decode`]), checks that it is `expected`
/// (its image's original `(width, height)`) and resizes it to `size`x`size` (nearest).
pub fn load_mask(path: &Path, expected: (u32, u32), size: u32) -> Result<GrayImage> {
    let mask = MaskRef::File(path.to_path_buf()).decode()?;
    let nearest = MaskResize::Nearest;
    fit_mask_to(mask, path, None, expected, (size, size), nearest)
}

/// The mask `mask` of `image` (whose size is read from its header), checked to have the
/// image's size, resized to `size`x`size` as `resize` says, as 0/255; a size mismatch names
/// both.
pub fn load_mask_for(
    mask: &MaskRef,
    image: &Path,
    size: u32,
    resize: MaskResize,
) -> Result<GrayImage> {
    load_mask_fitted(mask, image, &Geometry::square(size), resize)
}

/// The mask `mask` of `image` (whose size is read from its header), checked to have the
/// image's size, brought to the input as `geometry` says (resized with the filter of
/// `resize`, binarised, centre-cropped as the image is), `side x side`, as 0/255.
pub fn load_mask_fitted(
    mask: &MaskRef,
    image: &Path,
    geometry: &Geometry,
    resize: MaskResize,
) -> Result<GrayImage> {
    let expected = image_dimensions(image)?;
    let to = geometry.resized(expected);
    let gray = fit_mask_to(
        mask.decode()?,
        &mask.name(),
        Some(image),
        expected,
        to,
        resize,
    )?;
    geometry.crop_image(gray)
}

/// Checks `gray` (the mask `name`, 0/255) against `expected`, resizes it to `(width,
/// height)` = `to` as `resize` says and binarises it to 0/255.
pub(crate) fn fit_mask_to(
    gray: GrayImage,
    name: &Path,
    image: Option<&Path>,
    expected: (u32, u32),
    to: (u32, u32),
    resize: MaskResize,
) -> Result<GrayImage> {
    if gray.dimensions() != expected {
        return Err(DataError::MaskSize {
            mask: name.to_path_buf(),
            mask_size: gray.dimensions(),
            image: image.map(Path::to_path_buf),
            image_size: expected,
        });
    }
    let (filter, lowest) = match resize {
        MaskResize::Nearest => (FilterType::Nearest, 128),
        MaskResize::BilinearHalf => (IMAGE_FILTER, 128), // v / 255 > 0.5
        MaskResize::BilinearFull => (IMAGE_FILTER, 255),
    };
    let mut mask = if gray.dimensions() == to {
        gray
    } else {
        imageops::resize(&gray, to.0, to.1, filter)
    };
    for p in mask.pixels_mut() {
        p[0] = if p[0] >= lowest { 255 } else { 0 };
    }
    Ok(mask)
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{Luma, Rgb};

    #[test]
    fn gray_images_become_rgb_at_the_requested_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("g.png");
        GrayImage::from_pixel(20, 10, Luma([77]))
            .save(&path)
            .unwrap();
        assert_eq!(image_dimensions(&path).unwrap(), (20, 10));
        let rgb = load_rgb(&path, 8).unwrap();
        assert_eq!(rgb.dimensions(), (8, 8));
        assert!(rgb.pixels().all(|p| *p == Rgb([77, 77, 77])));
    }

    #[test]
    fn a_header_over_the_decoders_memory_limit_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.jpg");
        RgbImage::from_pixel(8, 8, Rgb([9, 9, 9]))
            .save(&path)
            .unwrap();
        // Baseline JPEG: the frame header (SOF0, FF C0) holds height and width at bytes 5..9.
        let mut bytes = std::fs::read(&path).unwrap();
        let sof = bytes.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
        bytes[sof + 5..sof + 9].copy_from_slice(&[0x9c, 0x40, 0x9c, 0x40]); // 40000 x 40000
        std::fs::write(&path, bytes).unwrap();
        let e = image_dimensions(&path).unwrap_err().to_string();
        assert!(
            e.contains("huge.jpg") && e.contains("40000x40000 pixels need 4577 MiB to decode"),
            "{e}"
        );
    }

    #[test]
    fn mask_resizing_follows_each_official_protocol() {
        // 16 x 16 -> 4 x 4: a block over columns 0-7 and a 1-pixel line at column 10.
        // Output column 1 is 7/8 covered by the block, column 2 only by the line's weight.
        let mut m = GrayImage::new(16, 16);
        for (x, _, p) in m.enumerate_pixels_mut() {
            p[0] = if x < 8 || x == 10 { 255 } else { 0 };
        }
        let columns = |resize| -> Vec<u8> {
            let out =
                fit_mask_to(m.clone(), Path::new("m"), None, (16, 16), (4, 4), resize).unwrap();
            assert!(out.pixels().all(|p| p[0] == 0 || p[0] == 255));
            (0..4).map(|x| out.get_pixel(x, 2)[0] / 255).collect()
        };
        // Nearest samples source columns 2, 6, 10, 14: the thin line survives.
        assert_eq!(columns(MaskResize::Nearest), [1, 1, 1, 0]);
        // RD4AD (`gt > 0.5`): the 7/8-covered column is anomalous, the line is averaged away.
        assert_eq!(columns(MaskResize::BilinearHalf), [1, 1, 0, 0]);
        // PatchCore (`astype(int)`): only the wholly covered column.
        assert_eq!(columns(MaskResize::BilinearFull), [1, 0, 0, 0]);
    }

    /// `tests/fixtures/resize_shape_*.png` (tools/make_resize_shape_fixture.py): non-square
    /// images and a mask, and torchvision's `Resize(32)` + `CenterCrop(28)` of them.
    fn resize_shape_fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(format!("resize_shape_{name}.png"))
    }

    const SHORTER_32_CROP_28: Geometry = Geometry {
        resize: 32,
        shape: ResizeShape::ShorterSide,
        crop: Some(28),
        filter: ResizeFilter::AntialiasedBilinear,
    };

    /// Each `resize_filter` against the library of the official code it stands for, on the
    /// 92 x 60 fixture resized to 64 x 64 (one axis shrunk, the other enlarged, as UCSD
    /// Ped2's 360 x 240 frames to 256 x 256): `tests/fixtures/resize_filter_*.png`
    /// (tools/make_resize_filter_fixture.py).
    #[test]
    fn resize_filters_match_opencv_and_matlab() {
        let fixture = |name: &str| {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(name);
            image::open(path).unwrap().into_rgb8()
        };
        let source = fixture("resize_shape_landscape.png");
        let cv2 = fixture("resize_filter_cv2_linear.png");
        let matlab = fixture("resize_filter_matlab_bicubic.png");
        let pil_bicubic = fixture("resize_filter_pil_bicubic.png");
        let with = |filter: ResizeFilter| {
            let g = Geometry {
                filter,
                ..Geometry::square(64)
            };
            g.fit_rgb(source.clone()).unwrap()
        };
        let (bilinear, bicubic, default) = (
            with(ResizeFilter::Bilinear),
            with(ResizeFilter::AntialiasedBicubic),
            with(ResizeFilter::default()),
        );
        // OpenCV weighs in 11-bit fixed point: a level apart at most.
        assert!(
            max_difference(&bilinear, &cv2) <= 1,
            "{}",
            max_difference(&bilinear, &cv2)
        );
        assert!(
            max_difference(&bicubic, &matlab) <= 1,
            "{}",
            max_difference(&bicubic, &matlab)
        );
        assert!(max_difference(&bicubic, &pil_bicubic) <= 1);
        // The filters differ where it shows: the stripes the antialiasing averages.
        for (other, name) in [(&cv2, "OpenCV"), (&matlab, "MATLAB")] {
            let d = max_difference(&default, other);
            assert!(d > 20, "the default is {d} levels from {name}");
        }
        // Enlarging only: no antialiasing to tell the two bilinear filters apart.
        let small = imageops::crop_imm(&source, 0, 0, 20, 12).to_image();
        let up = |filter: ResizeFilter| filter.resize(&small, 50, 30);
        assert!(max_difference(&up(ResizeFilter::Bilinear), &up(ResizeFilter::default())) <= 1);
    }

    /// The largest difference of two images of one size, in grey levels.
    fn max_difference(a: &RgbImage, b: &RgbImage) -> u8 {
        assert_eq!(a.dimensions(), b.dimensions());
        (a.as_raw().iter().zip(b.as_raw()))
            .map(|(x, y)| x.abs_diff(*y))
            .max()
            .unwrap()
    }

    #[test]
    fn shorter_side_resize_and_centre_crop_match_torchvision() {
        let g = SHORTER_32_CROP_28;
        // torchvision: the shorter side 32, the longer int(32 * long / short), truncated;
        // the crop at int(round((side - 28) / 2.0)), half to even.
        assert_eq!(g.resized((92, 60)), (49, 32)); // 49.07
        assert_eq!(g.crop_offsets((49, 32)).unwrap(), (10, 2)); // round(10.5) = 10
        assert_eq!(g.resized((60, 96)), (32, 51)); // 51.2
        assert_eq!(g.crop_offsets((32, 51)).unwrap(), (2, 12)); // round(11.5) = 12
        assert_eq!(
            g.resized((70, 70)),
            (32, 32),
            "a square is resized as before"
        );
        let square = Geometry {
            shape: ResizeShape::Square,
            ..g
        };
        assert_eq!(square.resized((92, 60)), (32, 32));
        for name in ["landscape", "portrait"] {
            let ours = load_rgb_fitted(&resize_shape_fixture(name), &g).unwrap();
            let tv = image::open(resize_shape_fixture(&format!("{name}_tv")))
                .unwrap()
                .into_rgb8();
            assert_eq!(ours.dimensions(), (28, 28));
            // PIL's bilinear and the image crate's triangle filter round apart by a grey
            // level at most.
            let d = max_difference(&ours, &tv);
            assert!(d <= 1, "{name}: {d} grey levels from torchvision");
            // The ramps make a crop one pixel off visible, and a square resize stretches.
            let source = image::open(resize_shape_fixture(name)).unwrap().into_rgb8();
            let (w, h) = g.resized(source.dimensions());
            let resized = imageops::resize(&source, w, h, IMAGE_FILTER);
            let (x, y) = g.crop_offsets((w, h)).unwrap();
            for (dx, dy) in [(1, 0), (0, 1)] {
                let moved = imageops::crop_imm(&resized, x + dx, y + dy, 28, 28).to_image();
                let d = max_difference(&moved, &tv);
                assert!(d > 4, "{name}: a crop at +({dx}, {dy}) is {d} levels off");
            }
            let stretched = square.fit_rgb(source).unwrap();
            assert!(max_difference(&stretched, &tv) > 20, "{name}");
        }
    }

    #[test]
    fn shorter_side_masks_follow_their_images_as_torchvision() {
        let g = SHORTER_32_CROP_28;
        let path = resize_shape_fixture("mask");
        let tv = image::open(resize_shape_fixture("mask_tv"))
            .unwrap()
            .into_luma8();
        let ours = |resize| -> Vec<bool> {
            // The mask is its own image: its size is checked against the image's.
            let m = load_mask_fitted(&MaskRef::File(path.clone()), &path, &g, resize).unwrap();
            assert_eq!(m.dimensions(), (28, 28));
            m.into_raw().into_iter().map(|v| v == 255).collect()
        };
        // PatchCore's `astype(int)` of the resized, cropped mask, and RD4AD's `> 0.5`.
        let full: Vec<bool> = tv.pixels().map(|p| p[0] == 255).collect();
        let half: Vec<bool> = tv.pixels().map(|p| p[0] as f64 / 255.0 > 0.5).collect();
        // The filters round apart by a grey level at most: a pixel may only differ where
        // torchvision's grey is one level from the threshold (here the block's left edge, at
        // exactly half coverage: PIL 128, the triangle filter 127).
        for (resize, want, near) in [
            (MaskResize::BilinearFull, &full, [254, 255]),
            (MaskResize::BilinearHalf, &half, [127, 128]),
        ] {
            let got = ours(resize);
            let apart: Vec<usize> = (0..got.len()).filter(|&i| got[i] != want[i]).collect();
            assert!(apart.len() <= 4, "{resize:?}: {apart:?}");
            for i in apart {
                assert!(near.contains(&tv.as_raw()[i]), "{resize:?}: pixel {i}");
            }
        }
        // The block (x 46..70, y 20..40 of 92 x 60) lands where the geometry puts it:
        // scaled by 49/92 and 32/60, shifted by the crop (10, 2); wholly covered pixels are
        // x 15..=26, y 9..=18.
        let covered: Vec<(u32, u32)> = (0..28 * 28)
            .filter(|&i| full[i as usize])
            .map(|i| (i % 28, i / 28))
            .collect();
        let (xs, ys): (Vec<u32>, Vec<u32>) = covered.iter().copied().unzip();
        assert_eq!(
            (
                xs.iter().min(),
                xs.iter().max(),
                ys.iter().min(),
                ys.iter().max()
            ),
            (Some(&15), Some(&26), Some(&9), Some(&18))
        );
        assert_eq!(covered.len(), 12 * 10);
        // Nearest at pixel centres: output pixel x samples source floor((x + 0.5) * 92 / 49).
        let nearest = ours(MaskResize::Nearest);
        for y in 0..28u32 {
            for x in 0..28u32 {
                let sx = ((x + 10) as f64 + 0.5) * 92.0 / 49.0;
                let sy = ((y + 2) as f64 + 0.5) * 60.0 / 32.0;
                let want = (46.0..70.0).contains(&sx) && (20.0..40.0).contains(&sy)
                    || sx.floor() == 30.0 && (5.0..55.0).contains(&sy);
                assert_eq!(nearest[(y * 28 + x) as usize], want, "({x}, {y})");
            }
        }
    }

    #[test]
    fn masks_are_binarised_with_nearest_neighbour() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.png");
        let mut m = GrayImage::new(16, 16);
        for y in 0..16 {
            for x in 8..16 {
                m.put_pixel(x, y, Luma([200]));
            }
        }
        m.put_pixel(0, 0, Luma([100]));
        m.save(&path).unwrap();
        let out = load_mask(&path, (16, 16), 4).unwrap();
        let values: Vec<u8> = out.pixels().map(|p| p[0]).collect();
        assert_eq!(&values[..4], &[0, 0, 255, 255]);
        assert!(values.iter().all(|&v| v == 0 || v == 255));
    }

    #[test]
    fn mask_of_the_wrong_size_names_both_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (mask, img) = (dir.path().join("m.png"), dir.path().join("i.png"));
        GrayImage::new(8, 8).save(&mask).unwrap();
        RgbImage::new(16, 12).save(&img).unwrap();
        let err = load_mask_for(&MaskRef::File(mask.clone()), &img, 8, MaskResize::Nearest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("is 8x8 but its image"), "{err}");
        assert!(err.contains("i.png is 16x12"), "{err}");
        let err = load_mask(&mask, (16, 12), 8).unwrap_err().to_string();
        assert!(err.contains("m.png is 8x8 but its image is 16x12"), "{err}");
    }

    #[test]
    fn corrupt_and_missing_files_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.png");
        std::fs::write(&path, b"\x89PNG\r\n\x1a\nthis is not a png at all").unwrap();
        let err = load_rgb(&path, 8).unwrap_err().to_string();
        assert!(err.contains("bad.png") && err.contains("corrupt"), "{err}");
        let err = image_dimensions(&path).unwrap_err().to_string();
        assert!(err.contains("bad.png"), "{err}");
        let missing = dir.path().join("missing.png");
        let err = load_rgb(&missing, 8).unwrap_err().to_string();
        assert!(err.contains("missing.png"), "{err}");
    }

    /// A FIFO named like an image would block the reader forever (nothing writes to it).
    #[cfg(unix)]
    #[test]
    fn a_fifo_named_like_an_image_is_refused_not_waited_on() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("pipe.png");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        for err in [
            image_dimensions(&fifo).unwrap_err(),
            load_rgb(&fifo, 8).unwrap_err(),
            load_mask(&fifo, (8, 8), 8).unwrap_err(),
        ] {
            let err = err.to_string();
            assert!(
                err.contains("pipe.png") && err.contains("not a regular file"),
                "{err}"
            );
        }
        let err = image_dimensions(dir.path()).unwrap_err().to_string();
        assert!(err.contains("not a regular file"), "{err}");
    }
}
