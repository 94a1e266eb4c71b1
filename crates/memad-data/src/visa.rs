//! The VisA reader (Zou et al., ECCV 2022), for the dataset as downloaded:
//!
//! ```text
//! <root>/split_csv/1cls.csv                       object,split,label,image,mask
//! <root>/<object>/Data/Images/Normal/0000.JPG     normal images
//! <root>/<object>/Data/Images/Anomaly/000.JPG     anomalous images
//! <root>/<object>/Data/Masks/Anomaly/000.png      their masks (label maps: 0, defect ids)
//! ```
//!
//! The one-class split file lists every image with its object, split (`train`/`test`),
//! label (`normal`/`anomaly`) and, for anomalies, its mask, paths relative to `<root>`.
//! Rows keep the file's order. Every listed file must exist (checked with a `stat`, nothing
//! is decoded). The masks are label maps, any non-zero value anomalous ([`MaskRef::decode`]).
//! VisA converted to the MVTec AD layout (`test/bad/000.JPG`, `ground_truth/bad/000.png`, by
//! the dataset's `prepare_data.py` or anomalib) is read with [`crate::mvtec`].
use crate::error::{DataError, Result};
use crate::mask::MaskRef;
use crate::mvtec::{check_root, CategorySplit, Label, Sample, GOOD};
use std::path::{Path, PathBuf};

/// The split file, relative to the root.
pub const VISA_SPLIT_CSV: &str = "split_csv/1cls.csv";

/// The `defect` of VisA's anomalous samples (the split file has no anomaly types).
pub const VISA_ANOMALY: &str = "anomaly";

/// One row of the split file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VisaRow {
    pub object: String,
    pub train: bool,
    pub label: Label,
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
}

/// Parses the split file at `root/split_csv/1cls.csv` (paths resolved against `root`).
pub fn read_split_csv(root: &Path) -> Result<Vec<VisaRow>> {
    check_root(root)?;
    let path = root.join(VISA_SPLIT_CSV);
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::io(&path, e))?;
    // A spreadsheet program saving the split re-adds a UTF-8 byte-order mark.
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let fail = |line: usize, message: String| DataError::Format {
        path: path.clone(),
        message: format!("line {line}: {message}"),
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> = match lines.next() {
        Some((_, h)) => h.split(',').map(|c| c.trim().to_lowercase()).collect(),
        None => return Err(fail(1, "empty file".into())),
    };
    let column = |name: &str| {
        header
            .iter()
            .position(|c| c == name)
            .ok_or_else(|| fail(1, format!("no `{name}` column in header {header:?}")))
    };
    let (c_object, c_split, c_label, c_image, c_mask) = (
        column("object")?,
        column("split")?,
        column("label")?,
        column("image")?,
        column("mask")?,
    );
    let mut rows = Vec::new();
    for (n, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != header.len() {
            return Err(fail(
                n + 1,
                format!("{} fields, the header has {}", fields.len(), header.len()),
            ));
        }
        let train = match fields[c_split] {
            "train" => true,
            "test" => false,
            other => return Err(fail(n + 1, format!("split `{other}` (train or test)"))),
        };
        let label = match fields[c_label] {
            "normal" => Label::Normal,
            "anomaly" => Label::Anomalous,
            other => return Err(fail(n + 1, format!("label `{other}` (normal or anomaly)"))),
        };
        let mask = match fields[c_mask] {
            "" => None,
            m => Some(root.join(m)),
        };
        if label.is_anomalous() && mask.is_none() {
            return Err(fail(
                n + 1,
                format!(
                    "the anomaly row of {} has an empty `mask` column: an anomalous image \
                     needs the path of its ground-truth mask there (relative to {}, e.g. \
                     <object>/Data/Masks/Anomaly/000.png)",
                    fields[c_image],
                    root.display()
                ),
            ));
        }
        rows.push(VisaRow {
            object: fields[c_object].to_string(),
            train,
            label,
            image: root.join(fields[c_image]),
            mask,
        });
    }
    Ok(rows)
}

/// Whether `file` (a path of the split file joined to `root`) lies in `root/<object>/`; an
/// absolute path in the split file is not checked.
fn under_object(root: &Path, file: &Path, object: &str) -> bool {
    match file.strip_prefix(root) {
        Ok(relative) => relative.starts_with(object),
        Err(_) => true,
    }
}

/// The objects of the split file, sorted.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    let mut objects: Vec<String> = read_split_csv(root)?
        .into_iter()
        .map(|r| r.object)
        .collect();
    objects.sort();
    objects.dedup();
    Ok(objects)
}

/// Lists the training and test images of `object` (paths only, checked to exist); any
/// problem found fails it (all of them, in [`DataError::Several`] when there are more).
pub fn read_category(root: &Path, object: &str) -> Result<CategorySplit> {
    DataError::gathered(object, read_category_and_problems(root, object)?)
}

/// [`read_category`], going on past every problem of a row: the rows that could be read
/// (an image whose mask file is missing listed without one; a missing image and an
/// anomalous training image left out) and every problem found; `Err` when the split file
/// cannot be read or does not list `object`.
pub fn read_category_and_problems(
    root: &Path,
    object: &str,
) -> Result<(CategorySplit, Vec<DataError>)> {
    let rows = read_split_csv(root)?;
    if !rows.iter().any(|r| r.object == object) {
        let mut available: Vec<String> = rows.into_iter().map(|r| r.object).collect();
        available.sort();
        available.dedup();
        return Err(DataError::CategoryMissing {
            root: root.to_path_buf(),
            category: object.to_string(),
            available,
        });
    }
    let csv = root.join(VISA_SPLIT_CSV);
    let mut split = CategorySplit {
        category: object.to_string(),
        train: Vec::new(),
        test: Vec::new(),
    };
    let mut problems = Vec::new();
    for mut row in rows.into_iter().filter(|r| r.object == object) {
        let missing = |file: &PathBuf| DataError::Layout {
            path: file.clone(),
            message: format!("listed in {} but missing", csv.display()),
        };
        if !row.image.is_file() {
            problems.push(missing(&row.image));
            problems.extend(row.mask.as_ref().filter(|m| !m.is_file()).map(missing));
            continue;
        }
        // A row edited or copied from another object's would train or score this one on
        // that object's images (checked after existence: a path with backslashes is a
        // missing file on Unix, not another object's).
        let foreign =
            (std::iter::once(&row.image).chain(&row.mask)).find(|f| !under_object(root, f, object));
        if let Some(file) = foreign {
            problems.push(DataError::Layout {
                path: file.clone(),
                message: format!(
                    "listed for `{object}` in {}, but not under {object}/ (a row of another \
                     object?)",
                    csv.display()
                ),
            });
            continue;
        }
        if let Some(mask) = row.mask.take_if(|m| !m.is_file()) {
            problems.push(missing(&mask));
        }
        if row.train && row.label.is_anomalous() {
            problems.push(DataError::Layout {
                path: row.image,
                message: format!("an anomalous training image in {}", csv.display()),
            });
            continue;
        }
        let sample = if row.label.is_anomalous() {
            Sample::still(
                row.image,
                row.label,
                VISA_ANOMALY,
                row.mask.map(MaskRef::File),
            )
        } else {
            Sample::still(row.image, row.label, GOOD, None)
        };
        if row.train {
            split.train.push(sample);
        } else {
            split.test.push(sample);
        }
    }
    if split.train.is_empty() {
        problems.push(DataError::Layout {
            path: csv,
            message: format!("no training images of `{object}`"),
        });
    }
    Ok((split, problems))
}
