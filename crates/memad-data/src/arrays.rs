//! Images held in memory (MNIST / Fashion-MNIST IDX, CIFAR-10 batches) as samples of the
//! one-class protocol, so that `memad run` trains and scores them like image files.
//!
//! A [`PixelArray`] holds the images a split needs, `[N, C, H, W]` bytes; a sample points
//! into it with an [`ArrayRef`] (no copy per sample). The sample's `image` path is a label
//! for reports (`<root>/<train|test>/<index>`), never opened.
use crate::cifar10::{read_cifar10, CIFAR10_CLASSES};
use crate::error::Result;
use crate::idx::read_mnist;
use crate::mvtec::{CategorySplit, Label, Sample, GOOD};
use crate::one_class::{one_class_split_with_anomalies, ClassSample, OneClassSplit};
use std::path::Path;
use std::sync::Arc;

/// `count` images of `channels` x `height` x `width` bytes, planar (`[N, C, H, W]`).
#[derive(PartialEq, Eq)]
pub struct PixelArray {
    pub channels: usize,
    pub height: usize,
    pub width: usize,
    pub data: Vec<u8>,
}

impl PixelArray {
    /// The `[C, H, W]` bytes of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.channels * self.height * self.width;
        &self.data[i * n..(i + 1) * n]
    }

    /// The images `indices` of `image(i)` in that order.
    fn gather(channels: usize, height: usize, width: usize, images: Vec<&[u8]>) -> Self {
        PixelArray {
            channels,
            height,
            width,
            data: images.concat(),
        }
    }
}

impl std::fmt::Debug for PixelArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.data.len() / (self.channels * self.height * self.width).max(1);
        write!(
            f,
            "PixelArray({n} x {}x{}x{})",
            self.channels, self.height, self.width
        )
    }
}

/// Image `index` of a shared [`PixelArray`].
#[derive(Debug, Clone)]
pub struct ArrayRef {
    pub array: Arc<PixelArray>,
    pub index: usize,
}

impl ArrayRef {
    /// The `[C, H, W]` bytes.
    pub fn bytes(&self) -> &[u8] {
        self.array.image(self.index)
    }
}

impl PartialEq for ArrayRef {
    fn eq(&self, other: &Self) -> bool {
        self.index == other.index && Arc::ptr_eq(&self.array, &other.array)
    }
}

impl Eq for ArrayRef {}

/// Labelled anomalies in the training set (the unbalanced setting): their share of it and
/// the seed that draws them ([`one_class_split_with_anomalies`]); `fraction` 0 = one-class.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainAnomalies {
    pub fraction: f64,
    pub seed: u64,
}

/// The one-class (or unbalanced) split of an `mnist_idx` dataset for `normal_class`.
pub fn mnist_one_class(
    root: &Path,
    category: &str,
    normal_class: u8,
    anomalies: TrainAnomalies,
) -> Result<CategorySplit> {
    let data = read_mnist(root)?;
    let split = one_class_split_with_anomalies(
        &data.train.labels,
        &data.test.labels,
        normal_class,
        anomalies.fraction,
        anomalies.seed,
    )?;
    let (h, w) = (data.train.images.rows, data.train.images.cols);
    let names: Vec<String> = (0..10).map(|c| c.to_string()).collect();
    Ok(to_category_split(
        root,
        category,
        &split,
        &names,
        (1, h, w),
        |i| data.train.images.image(i),
        |i| data.test.images.image(i),
    ))
}

/// The one-class (or unbalanced) split of a `cifar10` dataset for `normal_class`.
pub fn cifar10_one_class(
    root: &Path,
    category: &str,
    normal_class: u8,
    anomalies: TrainAnomalies,
) -> Result<CategorySplit> {
    let data = read_cifar10(root)?;
    let split = one_class_split_with_anomalies(
        &data.train.labels,
        &data.test.labels,
        normal_class,
        anomalies.fraction,
        anomalies.seed,
    )?;
    let names: Vec<String> = CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect();
    Ok(to_category_split(
        root,
        category,
        &split,
        &names,
        (3, 32, 32),
        |i| data.train.image(i),
        |i| data.test.image(i),
    ))
}

/// Samples of `split` over arrays holding just their images; `defect` is `good` for the
/// normal class and the class name for the others.
fn to_category_split<'a>(
    root: &Path,
    category: &str,
    split: &OneClassSplit,
    class_names: &[String],
    (c, h, w): (usize, usize, usize),
    train_image: impl Fn(usize) -> &'a [u8],
    test_image: impl Fn(usize) -> &'a [u8],
) -> CategorySplit {
    let samples = |part: &str, list: &[ClassSample], image: &dyn Fn(usize) -> &'a [u8]| {
        let array = Arc::new(PixelArray::gather(
            c,
            h,
            w,
            list.iter().map(|s| image(s.index)).collect(),
        ));
        list.iter()
            .enumerate()
            .map(|(k, s)| Sample {
                image: root.join(part).join(s.index.to_string()),
                label: s.label,
                defect: if s.label == Label::Normal {
                    GOOD.to_string()
                } else {
                    class_names[s.class as usize].clone()
                },
                mask: None,
                frames: Vec::new(),
                video: None,
                pixels: Some(ArrayRef {
                    array: array.clone(),
                    index: k,
                }),
            })
            .collect::<Vec<_>>()
    };
    CategorySplit {
        category: category.to_string(),
        train: samples("train", &split.train, &train_image),
        test: samples("test", &split.test, &test_image),
    }
}
