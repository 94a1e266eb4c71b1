//! The MVTec AD reader (Bergmann et al., CVPR 2019), for the dataset as downloaded and for
//! the synthetic generator's output, which uses the same layout:
//!
//! ```text
//! <root>/<category>/train/good/000.png              normal training images
//! <root>/<category>/test/good/000.png               normal test images (no masks)
//! <root>/<category>/test/<defect>/000.png           anomalous test images
//! <root>/<category>/ground_truth/<defect>/000_mask.png   their masks (0/255, image size)
//! ```
//!
//! A mask may also be named as its image without `_mask` (`ground_truth/<defect>/000.png`:
//! VisA converted to this layout by its official `prepare_data.py` or by anomalib), unless
//! that name is the `_mask` file of another test image (`x_mask.png` of `x`, beside the
//! image `x_mask`, whose mask is `x_mask_mask.png`). An image
//! with two mask files (both names, or one name in two formats) is an error naming both:
//! which one is meant is not guessed. A reader goes on past the problems it can, so that
//! [`read_category_and_problems`] lists them all; [`read_category`] fails with them.
//!
//! Only paths are listed here (nothing is decoded); files are sorted naturally
//! (`2.png` before `10.png`), test folders by name. Hidden files and files that are not
//! images are skipped.
use crate::error::{DataError, Result};
use crate::image_io::is_image_path;
use crate::mask::MaskRef;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// The 15 categories of MVTec AD.
pub const MVTEC_AD_CATEGORIES: [&str; 15] = [
    "bottle",
    "cable",
    "capsule",
    "carpet",
    "grid",
    "hazelnut",
    "leather",
    "metal_nut",
    "pill",
    "screw",
    "tile",
    "toothbrush",
    "transistor",
    "wood",
    "zipper",
];

/// The test folder holding normal images.
pub const GOOD: &str = "good";

/// Normal or anomalous.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Label {
    Normal,
    Anomalous,
}

impl Label {
    pub fn is_anomalous(self) -> bool {
        self == Label::Anomalous
    }
}

/// One image of a split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub image: PathBuf,
    pub label: Label,
    /// The test folder it came from (`good` for normal images, training images included).
    pub defect: String,
    /// The ground-truth mask of an anomalous image (an image file, several OR-ed, or a
    /// frame of a mask volume: [`MaskRef`]); `None` for normal images.
    pub mask: Option<MaskRef>,
    /// Video clips: every frame the sample's input holds, in time order (`image`, the frame
    /// that is scored and labelled, among them); empty for still images.
    pub frames: Vec<PathBuf>,
    /// The video the frame belongs to (per-video metrics and normalisation); `None` for
    /// still images.
    pub video: Option<String>,
    /// Images held in memory (IDX, CIFAR-10): the pixels, and `image` only names them.
    pub pixels: Option<crate::arrays::ArrayRef>,
}

impl Sample {
    /// A still image on disk (no frames, no video, no pixels in memory).
    pub fn still(image: PathBuf, label: Label, defect: &str, mask: Option<MaskRef>) -> Self {
        Self {
            image,
            label,
            defect: defect.to_string(),
            mask,
            frames: Vec::new(),
            video: None,
            pixels: None,
        }
    }
}

/// The training (normal only) and test images of one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CategorySplit {
    pub category: String,
    pub train: Vec<Sample>,
    pub test: Vec<Sample>,
}

impl CategorySplit {
    /// The defect types of the test set (folders other than `good`), sorted.
    pub fn defects(&self) -> Vec<&str> {
        let mut d: Vec<&str> = self
            .test
            .iter()
            .filter(|s| s.label.is_anomalous())
            .map(|s| s.defect.as_str())
            .collect();
        d.dedup();
        d
    }

    /// A smaller split for a smoke run: about `train` training samples, each label in its
    /// share but at least one (the labelled anomalies of an unbalanced split stay), and, for
    /// each test group (label and defect type: `good`, each defect), `test_per_type`
    /// samples; each picked evenly spaced through its group so that they span it, groups no
    /// larger than asked kept whole, order kept.
    pub fn subset(&self, train: usize, test_per_type: usize) -> CategorySplit {
        let train_groups = groups(&self.train, |s| (s.label, ""));
        let total = self.train.len().max(1);
        let train = pick(&self.train, &train_groups, |members| {
            (train * members / total).max(1)
        });
        let test_groups = groups(&self.test, |s| (s.label, s.defect.as_str()));
        CategorySplit {
            category: self.category.clone(),
            train,
            test: pick(&self.test, &test_groups, |_| test_per_type),
        }
    }
}

/// The indices of `samples` grouped by `key`, groups in order of first appearance.
fn groups<'a>(
    samples: &'a [Sample],
    key: impl Fn(&'a Sample) -> (Label, &'a str),
) -> Vec<Vec<usize>> {
    let mut found: Vec<((Label, &str), Vec<usize>)> = Vec::new();
    for (i, s) in samples.iter().enumerate() {
        let k = key(s);
        match found.iter_mut().find(|(g, _)| *g == k) {
            Some((_, members)) => members.push(i),
            None => found.push((k, vec![i])),
        }
    }
    found.into_iter().map(|(_, members)| members).collect()
}

/// `count(group size)` samples of each group, evenly spaced through it, in `samples`' order.
fn pick(samples: &[Sample], groups: &[Vec<usize>], count: impl Fn(usize) -> usize) -> Vec<Sample> {
    let mut kept: Vec<usize> = (groups.iter())
        .flat_map(|members| evenly_spaced(members.len(), count(members.len())).map(|k| members[k]))
        .collect();
    kept.sort_unstable();
    kept.into_iter().map(|i| samples[i].clone()).collect()
}

/// `min(n, k)` indices of `0..n`, evenly spaced from 0.
fn evenly_spaced(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let k = k.min(n);
    (0..k).map(move |i| i * n / k)
}

pub(crate) fn check_root(root: &Path) -> Result<()> {
    if root.is_dir() {
        Ok(())
    } else {
        Err(DataError::RootMissing {
            path: root.to_path_buf(),
        })
    }
}

fn is_hidden(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.starts_with('.'))
}

/// The entries of `dir` that are not hidden, split into (sub-folders, files), each sorted.
pub(crate) fn entries(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let read = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let (mut dirs, mut files) = (Vec::new(), Vec::new());
    for entry in read {
        let path = entry.map_err(|e| DataError::io(dir, e))?.path();
        if is_hidden(&path) {
            continue;
        }
        if path.is_dir() {
            dirs.push(path);
        } else {
            files.push(path);
        }
    }
    dirs.sort_by(|a, b| natural_cmp(&name_of(a), &name_of(b)));
    files.sort_by(|a, b| natural_cmp(&name_of(a), &name_of(b)));
    Ok((dirs, files))
}

pub(crate) fn name_of(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Compares digit runs by value, the rest byte-wise: `2.png` < `10.png`.
fn natural_cmp(a: &str, b: &str) -> Ordering {
    let (mut a, mut b) = (a.as_bytes(), b.as_bytes());
    loop {
        match (a.first(), b.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) if x.is_ascii_digit() && y.is_ascii_digit() => {
                let da = a.iter().take_while(|c| c.is_ascii_digit()).count();
                let db = b.iter().take_while(|c| c.is_ascii_digit()).count();
                let (na, nb) = (trim_zeros(&a[..da]), trim_zeros(&b[..db]));
                let ord = na.len().cmp(&nb.len()).then(na.cmp(nb)).then(da.cmp(&db));
                if ord != Ordering::Equal {
                    return ord;
                }
                a = &a[da..];
                b = &b[db..];
            }
            (Some(x), Some(y)) => {
                if x != y {
                    return x.cmp(y);
                }
                a = &a[1..];
                b = &b[1..];
            }
        }
    }
}

fn trim_zeros(digits: &[u8]) -> &[u8] {
    let zeros = digits.iter().take_while(|&&c| c == b'0').count();
    &digits[zeros..]
}

/// The images directly in `dir` (sorted); a sub-folder there is a layout error.
pub(crate) fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let (dirs, files) = entries(dir)?;
    if let Some(sub) = dirs.first() {
        return Err(DataError::Layout {
            path: sub.clone(),
            message: format!("{} should hold only image files", dir.display()),
        });
    }
    Ok(files.into_iter().filter(|f| is_image_path(f)).collect())
}

/// The categories under `root`: its folders holding a `train/good` folder, sorted.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    check_root(root)?;
    let (dirs, _) = entries(root)?;
    let mut names: Vec<String> = dirs
        .iter()
        .filter(|d| d.join("train").join(GOOD).is_dir())
        .map(|d| name_of(d))
        .collect();
    names.sort();
    Ok(names)
}

/// The mask files of the folder `ground_truth/<defect>`, by the stem of the test image (of
/// `image_stems`, those of `test/<defect>`) each belongs to, in the order messages list them
/// (`<stem>_mask.<ext>` before `<stem>.<ext>`, PNG first), any image extension; a folder
/// that does not exist has none. `Y_mask.<ext>` is the mask of `Y` when `Y` is a test image,
/// else the converted-VisA mask of an image `Y_mask`: images `x` and `x_mask` have the masks
/// `x_mask.png` and `x_mask_mask.png`, one each. An unreadable folder is a problem pushed to
/// `problems`.
fn mask_files(
    dir: &Path,
    image_stems: &HashSet<String>,
    problems: &mut Vec<DataError>,
) -> HashMap<String, Vec<PathBuf>> {
    if !dir.is_dir() {
        return HashMap::new();
    }
    let files = match entries(dir) {
        Ok((_, files)) => files,
        Err(e) => {
            problems.push(e);
            return HashMap::new();
        }
    };
    // Each file with its image's stem and its rank in messages: `_mask` names first, PNG
    // first; a stable sort keeps the files of one rank in natural order.
    let mut ranked: Vec<((bool, bool), String, PathBuf)> = (files.into_iter())
        .filter(|f| is_image_path(f))
        .map(|file| {
            let stem = stem_of(&file);
            let (owner, plain) = match strip_mask_suffix(&stem) {
                Some(image) if image_stems.contains(image) => (image.to_string(), false),
                _ => (stem, true),
            };
            let png = (file.extension()).is_some_and(|e| e.eq_ignore_ascii_case("png"));
            ((plain, !png), owner, file)
        })
        .collect();
    ranked.sort_by_key(|(rank, _, _)| *rank);
    let mut by_stem: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for (_, owner, file) in ranked {
        by_stem.entry(owner).or_default().push(file);
    }
    by_stem
}

/// `stem` without a final `_mask` in any letter case (`000_MASK` -> `000`).
fn strip_mask_suffix(stem: &str) -> Option<&str> {
    let cut = stem.len().checked_sub("_mask".len())?;
    let (image, suffix) = (stem.get(..cut)?, stem.get(cut..)?);
    suffix.eq_ignore_ascii_case("_mask").then_some(image)
}

/// The mask of `image` among `candidates`, its mask files in the order messages list them:
/// one is its mask; none is a [`DataError::MaskMissing`] (at `expected`, with `hint`) pushed
/// to `problems` when `required`, and no mask; two or more are a [`DataError::TwoMasks`]
/// pushed to `problems` (which one is meant is not guessed), and their union, so that a
/// check reads them all.
pub(crate) fn pick_mask(
    candidates: &[PathBuf],
    image: &Path,
    expected: PathBuf,
    hint: &'static str,
    required: bool,
    problems: &mut Vec<DataError>,
) -> Option<MaskRef> {
    match candidates {
        [one] => Some(MaskRef::File(one.clone())),
        [] => {
            if required {
                problems.push(DataError::MaskMissing {
                    image: image.to_path_buf(),
                    expected,
                    hint,
                });
            }
            None
        }
        several => {
            problems.push(DataError::TwoMasks {
                image: image.to_path_buf(),
                masks: several.to_vec(),
            });
            Some(MaskRef::Union(several.to_vec()))
        }
    }
}

/// The files of `files` by stem (`0000.png` and `0000.bmp` under `0000`), each stem's in
/// `files`' order.
pub(crate) fn files_by_stem(files: Vec<PathBuf>) -> HashMap<String, Vec<PathBuf>> {
    let mut by_stem: HashMap<String, Vec<PathBuf>> = HashMap::new();
    for file in files {
        by_stem.entry(stem_of(&file)).or_default().push(file);
    }
    by_stem
}

pub(crate) fn stem_of(path: &Path) -> String {
    path.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Lists the training and test images of `category` under `root` (paths only).
pub fn read_category(root: &Path, category: &str) -> Result<CategorySplit> {
    DataError::gathered(category, read_category_and_problems(root, category)?)
}

/// [`read_category`], going on past every problem it can (see
/// [`read_category_dir_and_problems`]); `Err` when the category cannot be read at all.
pub fn read_category_and_problems(
    root: &Path,
    category: &str,
) -> Result<(CategorySplit, Vec<DataError>)> {
    check_root(root)?;
    let dir = root.join(category);
    if category.is_empty() || !dir.is_dir() {
        return Err(DataError::CategoryMissing {
            root: root.to_path_buf(),
            category: category.to_string(),
            available: list_categories(root)?,
        });
    }
    Ok(read_category_dir_and_problems(
        &dir,
        category,
        Masks::Required,
    ))
}

/// Whether an anomalous test image without a mask is an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Masks {
    Required,
    Optional,
}

/// The way out of a missing mask in the `mvtec` format, which needs one per anomalous image.
const MASKS_OPTIONAL_HINT: &str = "; your own data with masks for only some images (or none) \
    can use `format = \"folder\"` in datasets.toml, which leaves images without a mask out of \
    the pixel metrics";

/// Reads the category folder `dir` (`train/good`, `test/good`, `test/<defect>`,
/// `ground_truth/<defect>`) as `category`; any problem found fails it (all of them, in
/// [`DataError::Several`] when there are more than one).
pub(crate) fn read_category_dir(dir: &Path, category: &str, masks: Masks) -> Result<CategorySplit> {
    let read = read_category_dir_and_problems(dir, category, masks);
    DataError::gathered(category, read)
}

/// [`read_category_dir`], going on past every problem so that all are found at once: the
/// images that could be listed, and the problems in the order found. The mask of
/// `test/<defect>/<stem>.<ext>` is `ground_truth/<defect>/<stem>_mask.png` (or another image
/// extension) or `<stem>.png` (converted VisA; not when that is the `_mask` file of another
/// test image: [`mask_files`]); none is a problem where `masks` requires one (the image is
/// listed without a mask), two or more are one always ([`pick_mask`]).
pub(crate) fn read_category_dir_and_problems(
    dir: &Path,
    category: &str,
    masks: Masks,
) -> (CategorySplit, Vec<DataError>) {
    let mut problems = Vec::new();
    let train = read_train_good(dir, &mut problems);
    let mut test = Vec::new();
    for defect_dir in test_label_dirs(dir, "test/good and test/<defect>", &mut problems) {
        let defect = name_of(&defect_dir);
        let images = match images_in(&defect_dir) {
            Ok(images) => images,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        if defect == GOOD {
            let normal = |image| Sample::still(image, Label::Normal, GOOD, None);
            test.extend(images.into_iter().map(normal));
            continue;
        }
        let mask_dir = dir.join("ground_truth").join(&defect);
        let stems: HashSet<String> = images.iter().map(|i| stem_of(i)).collect();
        let by_stem = mask_files(&mask_dir, &stems, &mut problems);
        for image in &images {
            let stem = stem_of(image);
            let candidates = by_stem.get(&stem).map(Vec::as_slice).unwrap_or_default();
            // A mask copied into test/ beside its image (`000_mask.png` by `000.png`) would be
            // scored as an image without a mask: refused in either format (`folder` images
            // named `*_mask` with no such neighbour, or with a mask of their own, are images).
            let owner = strip_mask_suffix(&stem).filter(|owner| stems.contains(*owner));
            if let (Some(owner), []) = (owner, candidates) {
                problems.push(DataError::MisplacedMask {
                    file: image.clone(),
                    image: (images.iter())
                        .find(|i| stem_of(i) == owner)
                        .expect("`stems` holds the stems of `images`")
                        .clone(),
                    place: mask_dir.join(format!("{owner}_mask.png")),
                    own_mask: mask_dir.join(format!("{stem}_mask.png")),
                });
                continue;
            }
            let expected = mask_dir.join(format!("{stem}_mask.png"));
            let required = masks == Masks::Required;
            let mask = pick_mask(
                candidates,
                image,
                expected,
                MASKS_OPTIONAL_HINT,
                required,
                &mut problems,
            );
            test.push(Sample::still(
                image.clone(),
                Label::Anomalous,
                &defect,
                mask,
            ));
        }
    }
    let split = CategorySplit {
        category: category.to_string(),
        train,
        test,
    };
    (split, problems)
}

/// The training images of the category folder `dir`: the images of `train/good`, which
/// must hold some; another folder in `train/` or an image directly in it is a problem
/// (each pushed to `problems`).
pub(crate) fn read_train_good(dir: &Path, problems: &mut Vec<DataError>) -> Vec<Sample> {
    let train_dir = dir.join("train");
    let train_good = train_dir.join(GOOD);
    if !train_good.is_dir() {
        problems.push(DataError::TrainMissing { path: train_good });
        return Vec::new();
    }
    match entries(&train_dir) {
        Ok((subdirs, files)) => {
            for other in subdirs.iter().filter(|d| name_of(d) != GOOD) {
                problems.push(DataError::Layout {
                    path: other.clone(),
                    message: "train/ holds only `good` (training images are normal)".into(),
                });
            }
            for stray in files.iter().filter(|f| is_image_path(f)) {
                problems.push(DataError::Layout {
                    path: stray.clone(),
                    message: "training images belong in train/good".into(),
                });
            }
        }
        Err(e) => problems.push(e),
    }
    let images = match images_in(&train_good) {
        Ok(images) => images,
        Err(e) => {
            problems.push(e);
            return Vec::new();
        }
    };
    if images.is_empty() {
        problems.push(DataError::no_images(train_good));
    }
    (images.into_iter())
        .map(|image| Sample::still(image, Label::Normal, GOOD, None))
        .collect()
}

/// The label folders of `dir/test` (sorted). `layout` names them for the problems (`test/good
/// and test/<defect>`): a missing `test/`, or an image directly in it, is one (pushed to
/// `problems`).
pub(crate) fn test_label_dirs(
    dir: &Path,
    layout: &str,
    problems: &mut Vec<DataError>,
) -> Vec<PathBuf> {
    let test_dir = dir.join("test");
    if !test_dir.is_dir() {
        problems.push(DataError::Layout {
            path: test_dir,
            message: format!("missing: a category keeps its test images in {layout}"),
        });
        return Vec::new();
    }
    let (label_dirs, files) = match entries(&test_dir) {
        Ok(found) => found,
        Err(e) => {
            problems.push(e);
            return Vec::new();
        }
    };
    for stray in files.iter().filter(|f| is_image_path(f)) {
        problems.push(DataError::Layout {
            path: stray.clone(),
            message: format!("test images belong in a folder of test/ ({layout})"),
        });
    }
    label_dirs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn natural_order_compares_numbers_by_value() {
        let mut names = vec![
            "10.png", "2.png", "002.png", "1.png", "b.png", "a10.png", "a9.png",
        ];
        names.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            names,
            ["1.png", "2.png", "002.png", "10.png", "a9.png", "a10.png", "b.png"]
        );
    }

    #[test]
    fn subset_spans_each_test_group_and_keeps_order() {
        let still =
            |name: &str, label, defect| Sample::still(PathBuf::from(name), label, defect, None);
        let split = CategorySplit {
            category: "c".into(),
            train: (0..10)
                .map(|i| still(&format!("t{i}"), Label::Normal, GOOD))
                .collect(),
            test: [
                ("g0", Label::Normal, GOOD),
                ("h0", Label::Anomalous, "hole"),
                ("g1", Label::Normal, GOOD),
                ("h1", Label::Anomalous, "hole"),
                ("g2", Label::Normal, GOOD),
                ("g3", Label::Normal, GOOD),
                ("s0", Label::Anomalous, "scratch"),
            ]
            .map(|(n, l, d)| still(n, l, d))
            .to_vec(),
        };
        let names = |samples: &[Sample]| -> Vec<String> {
            samples
                .iter()
                .map(|s| s.image.display().to_string())
                .collect()
        };
        let small = split.subset(3, 2);
        assert_eq!(names(&small.train), ["t0", "t3", "t6"]);
        // An unbalanced split keeps a labelled anomaly among its training samples.
        let mut unbalanced = split.clone();
        unbalanced.train[9].label = Label::Anomalous;
        assert_eq!(names(&unbalanced.subset(3, 2).train), ["t0", "t4", "t9"]);
        // Two of each group, evenly spaced (g0 and g2 of four), in the test set's order.
        assert_eq!(names(&small.test), ["g0", "h0", "h1", "g2", "s0"]);
        assert_eq!(small.category, "c");
        // Asking for more than there is keeps everything.
        assert_eq!(names(&split.subset(99, 99).test), names(&split.test));
    }

    #[test]
    fn missing_root_is_named() {
        let err = list_categories(Path::new("/nonexistent/memad-root")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/memad-root"), "{err}");
    }
}
