//! Ground-truth masks: where a sample's mask is, and decoding it at its native size.
//!
//! Most datasets keep one mask image per anomalous image ([`MaskRef::File`]); MVTec LOCO AD
//! keeps one image per annotated region ([`MaskRef::Union`], OR-ed); ShanghaiTech keeps a
//! `[T, H, W]` `.npy` volume per video ([`MaskRef::NpyFrame`], one frame read in place);
//! CUHK Avenue keeps a MAT file per video, decoded once when the dataset is read and held
//! as runs ([`MaskRef::MatFrame`], a few bytes per frame).
//!
//! [`MaskRef::decode`] gives a 0/255 [`GrayImage`] at the mask's own size. A mask image
//! with a value above 127 is a 0/255 mask, binarised at > 127 (MVTec AD; grey edges of a
//! resampled or JPEG mask fall on either side); one whose values all lie below 128 is a
//! label map, any non-zero value anomalous. A 16-bit mask is judged at 16 bits (above
//! 32767, else non-zero), so a 16-bit 0/1 label map is not lost to the 8-bit reduction (VisA's raw masks hold 0 and per-object defect
//! ids, at most 9; many custom datasets store 0/1). The other sources mark any non-zero
//! value (LOCO's regions carry their defect's grey value, ShanghaiTech's and Avenue's masks
//! are 0/1).
use crate::error::{DataError, Result};
use crate::image_io::decode_mask;
use crate::npy::read_frame_nonzero;
use image::{GrayImage, Luma};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the ground-truth mask of a sample (or video frame) is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MaskRef {
    /// One mask image of the image's size (0/255).
    File(PathBuf),
    /// Several mask images of the image's size, OR-ed (MVTec LOCO AD: one per region).
    Union(Vec<PathBuf>),
    /// Frame `index` of a `[T, H, W]` `.npy` volume of 0/1 values (ShanghaiTech).
    NpyFrame { path: PathBuf, index: usize },
    /// Frame `index` (0-based) of the `volLabel` cells of the MAT file `path` (CUHK
    /// Avenue), decoded when the dataset was read.
    MatFrame {
        path: PathBuf,
        index: usize,
        runs: Arc<RunMask>,
    },
}

impl MaskRef {
    /// The file of a [`MaskRef::File`] mask; `None` for the others.
    pub fn file(&self) -> Option<&Path> {
        match self {
            MaskRef::File(p) => Some(p),
            _ => None,
        }
    }

    /// A path naming the mask in messages: the file; a LOCO mask's folder; a volume's file
    /// with the frame index appended (`01_0014.npy[12]`).
    pub fn name(&self) -> PathBuf {
        match self {
            MaskRef::File(p) => p.clone(),
            MaskRef::Union(files) => files
                .first()
                .and_then(|f| f.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            MaskRef::NpyFrame { path, index } | MaskRef::MatFrame { path, index, .. } => {
                PathBuf::from(format!("{}[{index}]", path.display()))
            }
        }
    }

    /// Decodes the mask at its own size as 0/255.
    pub fn decode(&self) -> Result<GrayImage> {
        match self {
            MaskRef::File(path) => decode_mask(path, true),
            MaskRef::Union(files) => decode_union(files),
            MaskRef::NpyFrame { path, index } => {
                let (h, w, flags) = read_frame_nonzero(path, *index)?;
                Ok(flags_image(w as u32, h as u32, &flags))
            }
            MaskRef::MatFrame { runs, .. } => Ok(runs.to_image()),
        }
    }
}

impl From<PathBuf> for MaskRef {
    fn from(path: PathBuf) -> Self {
        MaskRef::File(path)
    }
}

/// `width` x `height` row-major flags as a 0/255 image.
fn flags_image(width: u32, height: u32, flags: &[bool]) -> GrayImage {
    GrayImage::from_fn(width, height, |x, y| {
        Luma([if flags[(y * width + x) as usize] {
            255
        } else {
            0
        }])
    })
}

/// The OR of the mask images `files` (any non-zero pixel), which must share one size.
fn decode_union(files: &[PathBuf]) -> Result<GrayImage> {
    let first = files.first().ok_or_else(|| {
        DataError::InvalidArgument("a union of mask files needs at least one file".into())
    })?;
    let mut out = decode_mask(first, false)?;
    for file in &files[1..] {
        let m = decode_mask(file, false)?;
        if m.dimensions() != out.dimensions() {
            return Err(DataError::MaskSize {
                mask: file.clone(),
                mask_size: m.dimensions(),
                image: Some(first.clone()),
                image_size: out.dimensions(),
            });
        }
        for (o, p) in out.pixels_mut().zip(m.pixels()) {
            if p[0] > 0 {
                o[0] = 255;
            }
        }
    }
    Ok(out)
}

/// A binary mask held as row-major runs of set pixels: small for the blobs of video
/// anomaly masks, whatever the frame size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunMask {
    pub width: u32,
    pub height: u32,
    /// `(start, length)` of each run, `start` a row-major pixel index, in increasing order.
    pub runs: Vec<(u32, u32)>,
}

impl RunMask {
    /// The runs of `width` x `height` row-major `flags`.
    pub fn from_flags(width: u32, height: u32, flags: &[bool]) -> Self {
        let mut runs = Vec::new();
        let mut start = None;
        for (i, &on) in flags.iter().enumerate() {
            match (on, start) {
                (true, None) => start = Some(i),
                (false, Some(s)) => {
                    runs.push((s as u32, (i - s) as u32));
                    start = None;
                }
                _ => {}
            }
        }
        if let Some(s) = start {
            runs.push((s as u32, (flags.len() - s) as u32));
        }
        RunMask {
            width,
            height,
            runs,
        }
    }

    /// Whether no pixel is set.
    pub fn is_empty(&self) -> bool {
        self.runs.is_empty()
    }

    /// The number of set pixels.
    pub fn area(&self) -> usize {
        self.runs.iter().map(|&(_, n)| n as usize).sum()
    }

    /// The mask as a 0/255 image.
    pub fn to_image(&self) -> GrayImage {
        let mut img = GrayImage::new(self.width, self.height);
        let buf: &mut [u8] = &mut img;
        for &(start, len) in &self.runs {
            buf[start as usize..(start + len) as usize].fill(255);
        }
        img
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_round_trip() {
        let flags = [true, true, false, false, true, false, true, true, true];
        let m = RunMask::from_flags(3, 3, &flags);
        assert_eq!(m.runs, [(0, 2), (4, 1), (6, 3)]);
        assert_eq!(m.area(), 6);
        let img = m.to_image();
        let back: Vec<bool> = img.pixels().map(|p| p[0] == 255).collect();
        assert_eq!(back, flags);
        assert!(RunMask::from_flags(2, 1, &[false, false]).is_empty());
    }

    #[test]
    fn a_mask_file_is_binarised_at_127_or_read_as_a_label_map() {
        let dir = tempfile::tempdir().unwrap();
        let decode = |values: [u8; 4]| {
            let path = dir.path().join("mask.png");
            GrayImage::from_raw(4, 1, values.to_vec())
                .unwrap()
                .save(&path)
                .unwrap();
            let m = MaskRef::File(path).decode().unwrap();
            m.pixels().map(|p| p[0]).collect::<Vec<u8>>()
        };
        // MVTec AD: 0/255, grey edges of a resampled mask split at 127.
        assert_eq!(decode([0, 255, 127, 128]), [0, 255, 0, 255]);
        // VisA's raw masks (0 and defect ids) and 0/1 masks: every non-zero value.
        assert_eq!(decode([0, 1, 2, 0]), [0, 255, 255, 0]);
        assert_eq!(decode([0, 0, 0, 0]), [0, 0, 0, 0]);
    }

    #[test]
    fn a_16_bit_mask_is_judged_at_its_own_depth() {
        let dir = tempfile::tempdir().unwrap();
        let decode = |values: [u16; 4]| {
            let path = dir.path().join("mask16.png");
            image::ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(4, 1, values.to_vec())
                .unwrap()
                .save(&path)
                .unwrap();
            let m = MaskRef::File(path).decode().unwrap();
            m.pixels().map(|p| p[0]).collect::<Vec<u8>>()
        };
        // A 16-bit 0/1 label map: 1/65535 is 0 at 8 bits, but it marks its pixels.
        assert_eq!(decode([0, 1, 1, 0]), [0, 255, 255, 0]);
        assert_eq!(decode([0, 3, 0, 0]), [0, 255, 0, 0]);
        // 0/65535 (and grey edges split at half of 65535).
        assert_eq!(decode([0, 65535, 32767, 32768]), [0, 255, 0, 255]);
        assert_eq!(decode([0, 0, 0, 0]), [0, 0, 0, 0]);
        // A LOCO-style union of 16-bit 0/1 region files keeps them too.
        let (a, b) = (dir.path().join("a.png"), dir.path().join("b.png"));
        for (path, at) in [(&a, 0usize), (&b, 3)] {
            let mut v = vec![0u16; 4];
            v[at] = 1;
            image::ImageBuffer::<Luma<u16>, Vec<u16>>::from_raw(4, 1, v)
                .unwrap()
                .save(path)
                .unwrap();
        }
        let union = MaskRef::Union(vec![a, b]).decode().unwrap();
        let on: Vec<u8> = union.pixels().map(|p| p[0]).collect();
        assert_eq!(on, [255, 0, 0, 255]);
    }

    #[test]
    fn union_ors_any_nonzero_value_and_checks_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = (
            dir.path().join("000.png"),
            dir.path().join("001.png"),
            dir.path().join("002.png"),
        );
        let mut m = GrayImage::new(4, 2);
        m.put_pixel(0, 0, Luma([255]));
        m.save(&a).unwrap();
        let mut m = GrayImage::new(4, 2);
        m.put_pixel(3, 1, Luma([7]));
        m.save(&b).unwrap();
        GrayImage::new(2, 2).save(&c).unwrap();
        let union = MaskRef::Union(vec![a.clone(), b.clone()]).decode().unwrap();
        let on: Vec<u8> = union.pixels().map(|p| p[0]).collect();
        assert_eq!(on, [255, 0, 0, 0, 0, 0, 0, 255]);
        // As a single file with no value above 127 it is a label map: 7 is anomalous.
        let single = MaskRef::File(b.clone()).decode().unwrap();
        assert_eq!(single.get_pixel(3, 1)[0], 255);
        assert_eq!(single.pixels().filter(|p| p[0] == 255).count(), 1);
        let err = MaskRef::Union(vec![a, c]).decode().unwrap_err().to_string();
        assert!(err.contains("002.png is 2x2 but its image"), "{err}");
        assert_eq!(
            MaskRef::Union(vec![b]).name(),
            dir.path(),
            "a union is named by its folder"
        );
    }
}
