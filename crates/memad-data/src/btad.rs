//! The BTAD reader (beanTech Anomaly Detection, Mishra et al., ISIE 2021), for the dataset
//! as downloaded (`BTech_Dataset_transformed`):
//!
//! ```text
//! <root>/01/train/ok/0000.bmp            normal training images (.bmp or .png)
//! <root>/01/test/ok/0000.bmp             normal test images
//! <root>/01/test/ko/0000.bmp             anomalous test images
//! <root>/01/ground_truth/ko/0000.png     their masks (.png, or .bmp in some categories)
//! ```
//!
//! Categories are `01`, `02`, `03`. A mask is matched to its image by file stem, whatever the
//! two extensions. Normal samples get the `defect` `good` (as in every reader); anomalous
//! ones `ko`.
use crate::error::{DataError, Result};
use crate::mask::MaskRef;
use crate::mvtec::{check_root, entries, images_in, name_of, CategorySplit, Label, Sample, GOOD};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The three categories (products) of BTAD.
pub const BTAD_CATEGORIES: [&str; 3] = ["01", "02", "03"];

/// The folder of normal images.
pub const OK: &str = "ok";

/// The folder (and `defect`) of anomalous images.
pub const KO: &str = "ko";

/// The categories under `root`: its folders holding `train/ok`, sorted.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    check_root(root)?;
    let (dirs, _) = entries(root)?;
    let mut names: Vec<String> = dirs
        .iter()
        .filter(|d| d.join("train").join(OK).is_dir())
        .map(|d| name_of(d))
        .collect();
    names.sort();
    Ok(names)
}

fn sample(image: PathBuf, label: Label, mask: Option<MaskRef>) -> Sample {
    let defect = if label.is_anomalous() { KO } else { GOOD };
    Sample::still(image, label, defect, mask)
}

/// The images of `dir`, which must exist and hold some.
fn images_of(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(DataError::Layout {
            path: dir.to_path_buf(),
            message: "missing: a BTAD category holds train/ok, test/ok, test/ko and \
                      ground_truth/ko"
                .into(),
        });
    }
    let images = images_in(dir)?;
    if images.is_empty() {
        return Err(DataError::NoImages {
            path: dir.to_path_buf(),
        });
    }
    Ok(images)
}

fn stem(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Lists the training and test images of `category` with their masks (paths only).
pub fn read_category(root: &Path, category: &str) -> Result<CategorySplit> {
    check_root(root)?;
    let dir = root.join(category);
    if category.is_empty() || category.contains('/') || !dir.join("train").is_dir() {
        return Err(DataError::CategoryMissing {
            root: root.to_path_buf(),
            category: category.to_string(),
            available: list_categories(root)?,
        });
    }
    let train = images_of(&dir.join("train").join(OK))?
        .into_iter()
        .map(|image| sample(image, Label::Normal, None))
        .collect();
    let test_dir = dir.join("test");
    let (test_dirs, _) = if test_dir.is_dir() {
        entries(&test_dir)?
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some(other) = test_dirs.iter().find(|d| ![OK, KO].contains(&&*name_of(d))) {
        return Err(DataError::Layout {
            path: other.clone(),
            message: "BTAD's test/ holds only `ok` and `ko`".into(),
        });
    }
    let mut test: Vec<Sample> = images_of(&test_dir.join(OK))?
        .into_iter()
        .map(|image| sample(image, Label::Normal, None))
        .collect();
    let mask_dir = dir.join("ground_truth").join(KO);
    let masks: HashMap<String, PathBuf> = if mask_dir.is_dir() {
        images_in(&mask_dir)?
            .into_iter()
            .map(|m| (stem(&m), m))
            .collect()
    } else {
        HashMap::new()
    };
    for image in images_of(&test_dir.join(KO))? {
        let mask = masks
            .get(&stem(&image))
            .cloned()
            .ok_or_else(|| DataError::MaskMissing {
                image: image.clone(),
                expected: mask_dir.join(format!("{}.png", stem(&image))),
                hint: "",
            })?;
        test.push(sample(image, Label::Anomalous, Some(MaskRef::File(mask))));
    }
    Ok(CategorySplit {
        category: category.to_string(),
        train,
        test,
    })
}
