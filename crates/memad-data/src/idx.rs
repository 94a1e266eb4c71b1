//! The IDX reader for MNIST and Fashion-MNIST, gzip-compressed or not:
//!
//! ```text
//! <root>/train-images-idx3-ubyte[.gz]    magic 0x00000803, [n, rows, cols] u8
//! <root>/train-labels-idx1-ubyte[.gz]    magic 0x00000801, [n] u8
//! <root>/t10k-images-idx3-ubyte[.gz]
//! <root>/t10k-labels-idx1-ubyte[.gz]
//! ```
//!
//! The `.idx3-ubyte` spelling (`train-images.idx3-ubyte`) of some re-distributions is
//! accepted too. Compression is recognised by the gzip magic bytes, not the name. Every
//! format error (magic, dimensions, length, image and label counts) names the file.
//! The one-class protocol on these is in [`crate::one_class`].
use crate::error::{DataError, Result};
use crate::one_class::{one_class_split, OneClassSplit};
use flate2::read::MultiGzDecoder;
use std::io::Read;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// The IDX element type code of unsigned bytes, the only one MNIST uses.
const UBYTE: u8 = 0x08;

/// Images of one IDX file: `count` images of `rows`x`cols` bytes, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdxImages {
    pub count: usize,
    pub rows: usize,
    pub cols: usize,
    /// `[count, rows, cols]`, 0 = background.
    pub pixels: Vec<u8>,
}

impl IdxImages {
    /// The pixels of image `i` (`rows * cols` bytes).
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.rows * self.cols;
        &self.pixels[i * n..(i + 1) * n]
    }
}

/// The training or the test part of MNIST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MnistPart {
    Train,
    Test,
}

impl MnistPart {
    fn prefix(self) -> &'static str {
        match self {
            MnistPart::Train => "train",
            MnistPart::Test => "t10k",
        }
    }
}

/// The images and labels of one part, checked to have the same count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistSplit {
    pub images: IdxImages,
    pub labels: Vec<u8>,
}

impl MnistSplit {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Images `indices` as a `[N, 1, rows, cols]` float tensor in `[0, 1]` (on the CPU).
    pub fn images_tensor(&self, indices: &[usize]) -> Tensor {
        let mut bytes = Vec::with_capacity(indices.len() * self.images.rows * self.images.cols);
        for &i in indices {
            bytes.extend_from_slice(self.images.image(i));
        }
        Tensor::from_slice(&bytes)
            .reshape([
                indices.len() as i64,
                1,
                self.images.rows as i64,
                self.images.cols as i64,
            ])
            .to_kind(Kind::Float)
            / 255.0
    }
}

/// Both parts of an MNIST-like dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MnistDataset {
    pub train: MnistSplit,
    pub test: MnistSplit,
}

impl MnistDataset {
    /// The one-class split with `normal_class` normal (see [`crate::one_class`]).
    pub fn one_class(&self, normal_class: u8) -> Result<OneClassSplit> {
        one_class_split(&self.train.labels, &self.test.labels, normal_class)
    }
}

/// Reads `path` whole, gunzipping it when it starts with the gzip magic bytes.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let mut out = Vec::with_capacity(raw.len() * 2);
    MultiGzDecoder::new(&raw[..])
        .read_to_end(&mut out)
        .map_err(|e| DataError::Format {
            path: path.to_path_buf(),
            message: format!("corrupt gzip data: {e}"),
        })?;
    Ok(out)
}

/// Parses an IDX file of unsigned bytes with `ndim` dimensions: (dimensions, data).
fn parse_idx(path: &Path, bytes: &[u8], ndim: u8) -> Result<(Vec<usize>, Vec<u8>)> {
    let fail = |message: String| DataError::Format {
        path: path.to_path_buf(),
        message,
    };
    let what = if ndim == 1 { "labels" } else { "images" };
    if bytes.len() < 4 {
        return Err(fail(format!(
            "{} bytes is too short for an IDX file",
            bytes.len()
        )));
    }
    let magic = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
    let expected = u32::from_be_bytes([0, 0, UBYTE, ndim]);
    if magic != expected {
        return Err(fail(format!(
            "bad IDX magic number 0x{magic:08x}, expected 0x{expected:08x} (IDX {what}: \
             unsigned bytes, {ndim} dimension{})",
            if ndim == 1 { "" } else { "s" }
        )));
    }
    let header = 4 + 4 * ndim as usize;
    if bytes.len() < header {
        return Err(fail(format!(
            "truncated IDX header: {} bytes, expected {header}",
            bytes.len()
        )));
    }
    let dims: Vec<usize> = bytes[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let len = dims
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| fail(format!("dimensions {dims:?} overflow")))?;
    let data = &bytes[header..];
    if data.len() != len {
        return Err(fail(format!(
            "dimensions {dims:?} need {len} data bytes but the file has {}",
            data.len()
        )));
    }
    Ok((dims, data.to_vec()))
}

/// Reads an IDX image file (`*-images-idx3-ubyte[.gz]`).
pub fn read_idx_images(path: &Path) -> Result<IdxImages> {
    let (dims, pixels) = parse_idx(path, &read_maybe_gz(path)?, 3)?;
    Ok(IdxImages {
        count: dims[0],
        rows: dims[1],
        cols: dims[2],
        pixels,
    })
}

/// Reads an IDX label file (`*-labels-idx1-ubyte[.gz]`).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u8>> {
    Ok(parse_idx(path, &read_maybe_gz(path)?, 1)?.1)
}

/// The file of `part`'s `kind` (`images` or `labels`) under `root`; an error naming the
/// expected file when there is none.
pub fn idx_path(root: &Path, part: MnistPart, kind: &str) -> Result<PathBuf> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    let ndim = if kind == "images" { 3 } else { 1 };
    let prefix = part.prefix();
    let names = [
        format!("{prefix}-{kind}-idx{ndim}-ubyte"),
        format!("{prefix}-{kind}.idx{ndim}-ubyte"),
    ];
    names
        .iter()
        .flat_map(|n| [format!("{n}.gz"), n.clone()])
        .map(|n| root.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| DataError::Layout {
            path: root.join(format!("{}.gz", names[0])),
            message: format!(
                "missing: expected {0}[.gz] in {1}",
                names[0],
                root.display()
            ),
        })
}

/// Reads the images and labels of `part` under `root`.
pub fn read_mnist_part(root: &Path, part: MnistPart) -> Result<MnistSplit> {
    let images_path = idx_path(root, part, "images")?;
    let labels_path = idx_path(root, part, "labels")?;
    let images = read_idx_images(&images_path)?;
    let labels = read_idx_labels(&labels_path)?;
    if images.count != labels.len() {
        return Err(DataError::Format {
            path: labels_path,
            message: format!(
                "{} labels but {} holds {} images",
                labels.len(),
                images_path.display(),
                images.count
            ),
        });
    }
    // Both MNIST and Fashion-MNIST have ten classes; another byte is a damaged file.
    if let Some(i) = labels.iter().position(|&l| l >= 10) {
        return Err(DataError::Format {
            path: labels_path,
            message: format!("label {} of image {i} is not a class (0..9)", labels[i]),
        });
    }
    Ok(MnistSplit { images, labels })
}

/// Reads both parts of MNIST or Fashion-MNIST under `root`.
pub fn read_mnist(root: &Path) -> Result<MnistDataset> {
    Ok(MnistDataset {
        train: read_mnist_part(root, MnistPart::Train)?,
        test: read_mnist_part(root, MnistPart::Test)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_errors_name_the_file() {
        let p = Path::new("/x/train-labels-idx1-ubyte");
        let err = parse_idx(p, &[0, 0, 8, 3, 0, 0, 0, 0], 1)
            .unwrap_err()
            .to_string();
        assert!(err.contains("/x/train-labels-idx1-ubyte") && err.contains("magic"));
        let err = parse_idx(p, &[0, 0, 8, 1, 0, 0, 0, 2, 5], 1)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("need 2 data bytes but the file has 1"),
            "{err}"
        );
        let (dims, data) = parse_idx(p, &[0, 0, 8, 1, 0, 0, 0, 2, 5, 6], 1).unwrap();
        assert_eq!((dims, data), (vec![2], vec![5, 6]));
        let err = parse_idx(p, &[0, 0, 8], 1).unwrap_err().to_string();
        assert!(
            err.contains("/x/train-labels-idx1-ubyte")
                && err.contains("3 bytes is too short for an IDX file"),
            "{err}"
        );
        let err = parse_idx(p, &[0, 0, 8, 1, 0], 1).unwrap_err().to_string();
        assert!(
            err.contains("/x/train-labels-idx1-ubyte")
                && err.contains("truncated IDX header: 5 bytes, expected 8"),
            "{err}"
        );
    }
}
