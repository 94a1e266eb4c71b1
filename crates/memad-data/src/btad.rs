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
use crate::mvtec::{
    check_root, entries, files_by_stem, images_in, name_of, pick_mask, stem_of, CategorySplit,
    Label, Sample, GOOD,
};
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

/// The images of `dir`, which must exist and hold some; each problem is pushed to
/// `problems`.
fn images_of(dir: &Path, problems: &mut Vec<DataError>) -> Vec<PathBuf> {
    if !dir.is_dir() {
        problems.push(DataError::Layout {
            path: dir.to_path_buf(),
            message: "missing: a BTAD category holds train/ok, test/ok, test/ko and \
                      ground_truth/ko"
                .into(),
        });
        return Vec::new();
    }
    match images_in(dir) {
        Ok(images) if images.is_empty() => {
            problems.push(DataError::no_images(dir));
            images
        }
        Ok(images) => images,
        Err(e) => {
            problems.push(e);
            Vec::new()
        }
    }
}

/// Lists the training and test images of `category` with their masks (paths only); any
/// problem found fails it (all of them, in [`DataError::Several`] when there are more).
pub fn read_category(root: &Path, category: &str) -> Result<CategorySplit> {
    DataError::gathered(category, read_category_and_problems(root, category)?)
}

/// [`read_category`], going on past every problem it can: the images that could be listed
/// (an anomalous image without a mask listed without one, one with two masks, such as
/// `0000.png` and `0000.bmp`, with their union) and every problem found; `Err` when the
/// category cannot be read at all.
pub fn read_category_and_problems(
    root: &Path,
    category: &str,
) -> Result<(CategorySplit, Vec<DataError>)> {
    check_root(root)?;
    let dir = root.join(category);
    if category.is_empty() || category.contains('/') || !dir.join("train").is_dir() {
        return Err(DataError::CategoryMissing {
            root: root.to_path_buf(),
            category: category.to_string(),
            available: list_categories(root)?,
        });
    }
    let mut problems = Vec::new();
    let train = images_of(&dir.join("train").join(OK), &mut problems)
        .into_iter()
        .map(|image| sample(image, Label::Normal, None))
        .collect();
    let test_dir = dir.join("test");
    let test_dirs = match test_dir.is_dir().then(|| entries(&test_dir)) {
        Some(Ok((dirs, _))) => dirs,
        Some(Err(e)) => {
            problems.push(e);
            Vec::new()
        }
        None => Vec::new(),
    };
    for other in test_dirs
        .iter()
        .filter(|d| ![OK, KO].contains(&&*name_of(d)))
    {
        problems.push(DataError::Layout {
            path: other.clone(),
            message: "BTAD's test/ holds only `ok` and `ko`".into(),
        });
    }
    let mut test: Vec<Sample> = images_of(&test_dir.join(OK), &mut problems)
        .into_iter()
        .map(|image| sample(image, Label::Normal, None))
        .collect();
    let mask_dir = dir.join("ground_truth").join(KO);
    let masks = match mask_dir.is_dir().then(|| images_in(&mask_dir)) {
        Some(Ok(files)) => files_by_stem(files),
        Some(Err(e)) => {
            problems.push(e);
            Default::default()
        }
        None => Default::default(),
    };
    for image in images_of(&test_dir.join(KO), &mut problems) {
        let stem = stem_of(&image);
        let candidates = masks.get(&stem).map(Vec::as_slice).unwrap_or_default();
        let expected = mask_dir.join(format!("{stem}.png"));
        let mask = pick_mask(candidates, &image, expected, "", true, &mut problems);
        test.push(sample(image, Label::Anomalous, mask));
    }
    let split = CategorySplit {
        category: category.to_string(),
        train,
        test,
    };
    Ok((split, problems))
}
