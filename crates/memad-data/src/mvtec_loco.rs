//! The MVTec LOCO AD reader (Bergmann et al., IJCV 2022), for the dataset as downloaded:
//!
//! ```text
//! <root>/<category>/train/good/000.png                         normal training images
//! <root>/<category>/validation/good/000.png                    normal validation images
//! <root>/<category>/test/good/000.png                          normal test images
//! <root>/<category>/test/logical_anomalies/000.png             violated logical constraints
//! <root>/<category>/test/structural_anomalies/000.png          local defects
//! <root>/<category>/ground_truth/<type>/000/000.png            their masks: a folder per
//! <root>/<category>/ground_truth/<type>/000/001.png            image, one file per region
//! ```
//!
//! A test image's mask is the OR of every image in its folder ([`MaskRef::Union`]); LOCO
//! marks each region with its defect's grey value, so any non-zero pixel counts. A sample's
//! `defect` is its anomaly type (`logical_anomalies`, `structural_anomalies`), so results
//! can be split into logical and structural. The validation images (for thresholds or
//! early stopping) are not part of [`read_category`]'s split: [`read_validation`] lists
//! them. The sPRO metric (saturated per-region overlap, `defects_config.json`) is not
//! implemented; pixel metrics use the OR-ed masks.
use crate::error::{DataError, Result};
use crate::mask::MaskRef;
use crate::mvtec::{check_root, entries, images_in, name_of, CategorySplit, Label, Sample, GOOD};
use std::path::{Path, PathBuf};

/// The five categories of MVTec LOCO AD.
pub const LOCO_CATEGORIES: [&str; 5] = [
    "breakfast_box",
    "juice_bottle",
    "pushpins",
    "screw_bag",
    "splicing_connectors",
];

/// The test folder (and `defect`) of logical anomalies.
pub const LOGICAL: &str = "logical_anomalies";

/// The test folder (and `defect`) of structural anomalies.
pub const STRUCTURAL: &str = "structural_anomalies";

/// The categories under `root`: its folders holding `train/good`, sorted.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    crate::mvtec::list_categories(root)
}

/// The folder of `category` under `root`; an unknown one lists the categories there.
fn category_dir(root: &Path, category: &str) -> Result<PathBuf> {
    check_root(root)?;
    let dir = root.join(category);
    if category.is_empty() || category.contains('/') || !dir.join("train").is_dir() {
        return Err(DataError::CategoryMissing {
            root: root.to_path_buf(),
            category: category.to_string(),
            available: list_categories(root)?,
        });
    }
    Ok(dir)
}

/// Lists the training and test images of `category` with their masks (paths only).
pub fn read_category(root: &Path, category: &str) -> Result<CategorySplit> {
    let dir = category_dir(root, category)?;
    let train = read_train(&dir)?;
    let test_dir = dir.join("test");
    if !test_dir.is_dir() {
        return Err(DataError::Layout {
            path: test_dir,
            message: "missing: test images go in test/good, test/logical_anomalies and \
                      test/structural_anomalies"
                .into(),
        });
    }
    let (type_dirs, _) = entries(&test_dir)?;
    let mut test = Vec::new();
    for type_dir in &type_dirs {
        let defect = name_of(type_dir);
        for image in images_in(type_dir)? {
            let (label, mask) = if defect == GOOD {
                (Label::Normal, None)
            } else {
                (Label::Anomalous, Some(find_masks(&dir, &defect, &image)?))
            };
            test.push(Sample {
                frames: Vec::new(),
                video: None,
                pixels: None,
                image,
                label,
                defect: defect.clone(),
                mask,
            });
        }
    }
    Ok(CategorySplit {
        category: category.to_string(),
        train,
        test,
    })
}

/// The training images of the category folder `dir` (`train/good` only).
fn read_train(dir: &Path) -> Result<Vec<Sample>> {
    let (others, _) = entries(&dir.join("train"))?;
    if let Some(other) = others.iter().find(|d| name_of(d) != GOOD) {
        return Err(DataError::Layout {
            path: other.clone(),
            message: "train/ holds only `good` (training images are normal)".into(),
        });
    }
    let train_good = dir.join("train").join(GOOD);
    if !train_good.is_dir() {
        return Err(DataError::TrainMissing { path: train_good });
    }
    let train: Vec<Sample> = images_in(&train_good)?.into_iter().map(normal).collect();
    if train.is_empty() {
        return Err(DataError::NoImages { path: train_good });
    }
    Ok(train)
}

/// A normal image (`good`, no mask).
fn normal(image: PathBuf) -> Sample {
    Sample {
        frames: Vec::new(),
        video: None,
        pixels: None,
        image,
        label: Label::Normal,
        defect: GOOD.to_string(),
        mask: None,
    }
}

/// The mask files of `test/<defect>/<stem>.png`: every image in
/// `ground_truth/<defect>/<stem>/`, sorted; none is an error naming `.../<stem>/000.png`.
fn find_masks(category_dir: &Path, defect: &str, image: &Path) -> Result<MaskRef> {
    let stem = image
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let folder = category_dir.join("ground_truth").join(defect).join(&stem);
    let files = if folder.is_dir() {
        images_in(&folder)?
    } else {
        Vec::new()
    };
    if files.is_empty() {
        return Err(DataError::MaskMissing {
            image: image.to_path_buf(),
            expected: folder.join("000.png"),
        });
    }
    Ok(MaskRef::Union(files))
}

/// The normal validation images of `category` (`validation/good`), sorted.
pub fn read_validation(root: &Path, category: &str) -> Result<Vec<Sample>> {
    let dir = category_dir(root, category)?;
    let good = dir.join("validation").join(GOOD);
    if !good.is_dir() {
        return Err(DataError::Layout {
            path: good,
            message: "missing: MVTec LOCO AD keeps its validation images there".into(),
        });
    }
    Ok(images_in(&good)?.into_iter().map(normal).collect())
}
