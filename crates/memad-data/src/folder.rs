//! A generic folder format, MVTec-AD-like with optional masks, for one's own data:
//!
//! ```text
//! <root>/train/good/*.png                       normal training images
//! <root>/test/good/*.png                        normal test images
//! <root>/test/<label>/*.png                     anomalous test images, by anomaly type
//! <root>/ground_truth/<label>/<stem>_mask.png   optional masks (0/255, image size)
//! ```
//!
//! `<root>` is one category (named after its folder) when it has `train/`; otherwise each
//! of its sub-folders that has `train/` is a category, as in MVTec AD (one without
//! `train/good`, a typo or a stray copy, is an error that names it rather than a category
//! skipped in silence). Unlike
//! [`crate::mvtec`], an anomalous test image may have no mask (`mask: None`); masks that
//! exist are found as in MVTec AD.
use crate::error::{DataError, Result};
use crate::mvtec::{
    check_root, entries, name_of, read_category_dir, read_category_dir_and_problems, CategorySplit,
    Masks,
};
use std::path::{Path, PathBuf};

/// The categories under `root` of a layout recognised by `is_category`: `root` itself
/// (named after its folder) when it is one, else its sub-folders that are, sorted.
pub(crate) fn categories_where(root: &Path, is_category: fn(&Path) -> bool) -> Result<Vec<String>> {
    check_root(root)?;
    if is_category(root) {
        return Ok(vec![root_name(root)]);
    }
    let (dirs, _) = entries(root)?;
    Ok(dirs
        .iter()
        .filter(|d| is_category(d))
        .map(|d| name_of(d))
        .collect())
}

/// The folder of `category` under `root` (see [`categories_where`]).
pub(crate) fn category_dir_where(
    root: &Path,
    category: &str,
    is_category: fn(&Path) -> bool,
) -> Result<PathBuf> {
    check_root(root)?;
    if is_category(root) && category == root_name(root) {
        return Ok(root.to_path_buf());
    }
    let dir = root.join(category);
    if category.is_empty() || category.contains('/') || !is_category(&dir) {
        return Err(DataError::CategoryMissing {
            root: root.to_path_buf(),
            category: category.to_string(),
            available: categories_where(root, is_category)?,
        });
    }
    Ok(dir)
}

/// The last component of `root` (after resolving `.` and `..` when possible).
fn root_name(root: &Path) -> String {
    let name = name_of(root);
    if name.is_empty() || name == "." || name == ".." {
        root.canonicalize().map(|p| name_of(&p)).unwrap_or_default()
    } else {
        name
    }
}

fn is_folder_category(dir: &Path) -> bool {
    dir.join("train").is_dir()
}

/// The categories of a folder-format dataset at `root`.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    categories_where(root, is_folder_category)
}

/// Lists the training and test images of `category` (paths only).
pub fn read_category(root: &Path, category: &str) -> Result<CategorySplit> {
    let dir = category_dir_where(root, category, is_folder_category)?;
    read_folder(&dir, category)
}

/// [`read_category`], going on past every problem it can: the images that could be listed
/// and every problem found; `Err` when the category cannot be read at all.
pub fn read_category_and_problems(
    root: &Path,
    category: &str,
) -> Result<(CategorySplit, Vec<DataError>)> {
    let dir = category_dir_where(root, category, is_folder_category)?;
    Ok(read_category_dir_and_problems(
        &dir,
        category,
        Masks::Optional,
    ))
}

/// Reads one category folder `dir` (holding `train/good` and `test/`) as `category`.
pub fn read_folder(dir: &Path, category: &str) -> Result<CategorySplit> {
    read_category_dir(dir, category, Masks::Optional)
}
