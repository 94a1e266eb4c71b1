//! Validation of a catalogued dataset: what is there, and what is wrong with it.
//!
//! [`check_dataset`] lists every category (class datasets: both parts) and reports counts per
//! split and class (test folder, `good`/`anomalous` frames, or class), the distinct image
//! sizes (read from each file's header), the number of videos per split with their fewest
//! and most frames (video formats), and every problem with the file it is about:
//! unreadable images, anomalous test images without a mask, masks that do not decode or do
//! not have their image's size (masks are decoded in full), labels that contradict the
//! split, a test set without normal or without anomalous images, and mask files under a
//! category's `ground_truth/` that no test image uses (a misnamed mask, or one under
//! `ground_truth/good`), and image files in a format memad does not read ([`unread_images`]).
//! Nothing panics on bad data; a problem in one category does not stop the others, nor
//! the category's other problems: its reader goes on past those it can
//! ([`DatasetEntry::read_category_and_problems`]: every missing mask, every image with two
//! masks, ...), and what it could read is checked. The report prints at most
//! [`SHOWN_PROBLEMS`] problems per category, then how many more.
use crate::catalog::{DatasetEntry, DatasetFormat};
use crate::cifar10::{read_cifar10, CIFAR10_CLASSES};
use crate::error::{write_capped, DataError, Result};
use crate::idx::read_mnist;
use crate::image_io::{decoded_dimensions, image_dimensions, is_image_path, is_unread_image_path};
use crate::mask::MaskRef;
use crate::mvtec::{entries, CategorySplit, Sample, GOOD};
use rayon::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

/// Something wrong, and the file or folder it is about when there is one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: Option<PathBuf>,
    pub message: String,
    /// The category it was found in, where [`check_dataset`] knows it (not printed: the
    /// report shows at most [`SHOWN_PROBLEMS`] per category).
    pub category: Option<String>,
}

impl Problem {
    /// A problem about `path`.
    pub fn at(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Problem {
            path: Some(path.into()),
            message: message.into(),
            category: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.path {
            Some(path) => write!(f, "{}: {}", path.display(), self.message),
            None => write!(f, "{}", self.message),
        }
    }
}

/// What was found in one category (or, for class datasets, the whole dataset).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CategoryReport {
    pub category: String,
    /// Images per (`train`/`test`, class); the class is the test folder (`good`, a defect),
    /// `good`/`anomalous` for video frames, or the class label.
    pub counts: BTreeMap<(String, String), usize>,
    /// Images per `(width, height)`.
    pub sizes: BTreeMap<(u32, u32), usize>,
    /// Masks decoded and checked against their image's size.
    pub masks_checked: usize,
    /// Anomalous test images without a mask, per defect type (allowed by `folder` and the
    /// video formats; runs leave them out of the pixel-level metrics).
    pub without_mask: BTreeMap<String, usize>,
    /// Masks that decode but mark no pixel.
    pub empty_masks: usize,
    /// Video datasets: per split, (videos, fewest frames, most frames); a video shorter than
    /// a method's clip has clamped or no clips.
    pub videos: BTreeMap<String, (usize, usize, usize)>,
}

impl CategoryReport {
    /// The number of images of `split`.
    pub fn split_count(&self, split: &str) -> usize {
        self.counts
            .iter()
            .filter(|((s, _), _)| s == split)
            .map(|(_, n)| n)
            .sum()
    }
}

/// The result of [`check_dataset`]; `Display` prints a readable summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckReport {
    pub name: String,
    pub format: DatasetFormat,
    pub root: PathBuf,
    pub categories: Vec<CategoryReport>,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// At most this many problems of a category (or of the dataset as a whole) are printed by
/// `Display`, then how many more there are.
pub const SHOWN_PROBLEMS: usize = 20;

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "dataset `{}` ({}) at {}",
            self.name,
            self.format,
            self.root.display()
        )?;
        for c in &self.categories {
            write!(f, "  {}:", c.category)?;
            for split in ["train", "test"] {
                let classes: Vec<String> = c
                    .counts
                    .iter()
                    .filter(|((s, _), _)| s == split)
                    .map(|((_, class), n)| format!("{class} {n}"))
                    .collect();
                write!(
                    f,
                    " {split} {} ({});",
                    c.split_count(split),
                    classes.join(", ")
                )?;
            }
            let sizes: Vec<String> = c
                .sizes
                .iter()
                .map(|((w, h), n)| format!("{w}x{h} ({n})"))
                .collect();
            write!(f, " sizes {}", sizes.join(", "))?;
            if c.sizes.keys().any(|(w, h)| w != h) {
                write!(
                    f,
                    " (runs resize to a square, stretching non-square images, unless \
                     [data] resize_shape = \"shorter_side\")"
                )?;
            }
            write!(f, "; {} masks checked", c.masks_checked)?;
            if !c.without_mask.is_empty() {
                let types: Vec<String> = (c.without_mask.iter())
                    .map(|(defect, n)| format!("{defect} {n}"))
                    .collect();
                write!(
                    f,
                    "; anomalous without a mask: {} (left out of pixel metrics)",
                    types.join(", ")
                )?;
            }
            if c.empty_masks > 0 {
                write!(f, "; {} empty masks", c.empty_masks)?;
            }
            for split in ["train", "test"] {
                if let Some((videos, fewest, most)) = c.videos.get(split) {
                    write!(f, "; {split} {videos} videos of {fewest} to {most} frames")?;
                }
            }
            writeln!(f)?;
        }
        if self.problems.is_empty() {
            return write!(f, "  no problems found");
        }
        write!(f, "  {} problem(s):", self.problems.len())?;
        // Each category's (consecutive) problems, so that one category with hundreds of
        // missing masks does not hide the others'.
        for group in self.problems.chunk_by(|a, b| a.category == b.category) {
            let of = match &group[0].category {
                Some(c) => format!(" of category `{c}`"),
                None => String::new(),
            };
            write_capped(f, "    ", group, SHOWN_PROBLEMS, &of)?;
        }
        Ok(())
    }
}

fn problem(e: impl fmt::Display) -> Problem {
    Problem {
        path: None,
        message: e.to_string(),
        category: None,
    }
}

/// Checks the dataset of `entry` (after [`DatasetEntry::prepare`] for synthetic ones).
/// Errors of the data become [`Problem`]s; a root that does not exist is one too.
pub fn check_dataset(entry: &DatasetEntry) -> Result<CheckReport> {
    check_dataset_with(entry, ImageCheck::Header)
}

/// How much of each image [`check_dataset_with`] decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageCheck {
    /// The header and the end marker ([`image_dimensions`]): fast, and finds truncated
    /// files, but not damage inside the compressed data.
    Header,
    /// Every pixel: finds any image a run could not read, at the cost of decoding them all.
    Decode,
}

/// [`check_dataset`], decoding each image as `images` says.
pub fn check_dataset_with(entry: &DatasetEntry, images: ImageCheck) -> Result<CheckReport> {
    let mut report = CheckReport {
        name: entry.name.clone(),
        format: entry.format,
        root: entry.root.clone(),
        categories: Vec::new(),
        problems: Vec::new(),
    };
    if !entry.root.exists() {
        (report.problems).push(Problem::at(&entry.root, "dataset root does not exist"));
        return Ok(report);
    }
    match entry.format {
        DatasetFormat::MnistIdx => check_classes(&mut report, entry, true),
        DatasetFormat::Cifar10 => check_classes(&mut report, entry, false),
        _ => {
            let names = match entry.category_names() {
                Ok(n) => n,
                Err(e) => {
                    report.problems.push(problem(e));
                    return Ok(report);
                }
            };
            if names.is_empty() {
                let expected = format!("no categories found: expected {}", entry.format.layout());
                report.problems.push(Problem::at(&entry.root, expected));
            }
            for name in names {
                // Every problem of the category: its layout's (the reader goes on past them
                // where it can), then its files', labels' and masks' in what could be read.
                let mut problems: Vec<Problem> = match entry.read_category_and_problems(&name) {
                    Ok((split, layout)) => {
                        // An image the reader named as missing its mask (its format needs
                        // one) is a problem of `layout`, not an image left out of metrics.
                        let reported: BTreeSet<&Path> = (layout.iter())
                            .filter_map(|e| match e {
                                DataError::MaskMissing { image, .. } => Some(image.as_path()),
                                _ => None,
                            })
                            .collect();
                        let (mut c, checked) = check_split(&split, images, &reported);
                        if !(entry.format == DatasetFormat::Folder || entry.format.is_video()) {
                            // Formats that need a mask per anomalous image (VisA names a
                            // missing mask file as a layout problem of its own): none of
                            // their images is left out of the metrics, the run is refused.
                            c.without_mask.clear();
                        }
                        let mut problems: Vec<Problem> =
                            layout.into_iter().map(problem).chain(checked).collect();
                        if entry.format == DatasetFormat::MvtecLoco && problems.is_empty() {
                            problems.extend(spro_problem(&split));
                        }
                        problems.extend(unread_images(&split));
                        report.categories.push(c);
                        problems
                    }
                    Err(e) => e.into_errors().into_iter().map(problem).collect(),
                };
                for p in &mut problems {
                    p.category = Some(name.clone());
                }
                report.problems.extend(problems);
            }
        }
    }
    Ok(report)
}

/// Counts per class of an MNIST-like or CIFAR-10 dataset.
fn check_classes(report: &mut CheckReport, entry: &DatasetEntry, mnist: bool) {
    // Class datasets have no images to decode; their readers check every byte count.
    let parts = if mnist {
        read_mnist(&entry.root).map(|d| {
            let size = (d.train.images.cols as u32, d.train.images.rows as u32);
            let test_size = (d.test.images.cols as u32, d.test.images.rows as u32);
            [
                ("train", d.train.labels, size),
                ("test", d.test.labels, test_size),
            ]
        })
    } else {
        read_cifar10(&entry.root).map(|d| {
            [
                ("train", d.train.labels, (32, 32)),
                ("test", d.test.labels, (32, 32)),
            ]
        })
    };
    let parts = match parts {
        Ok(p) => p,
        Err(e) => return report.problems.push(problem(e)),
    };
    let mut c = CategoryReport {
        category: "all classes".into(),
        ..Default::default()
    };
    for (split, labels, size) in parts {
        for l in &labels {
            let class = match CIFAR10_CLASSES.get(*l as usize) {
                Some(name) if !mnist => name.to_string(),
                _ => l.to_string(),
            };
            *c.counts.entry((split.into(), class)).or_default() += 1;
        }
        *c.sizes.entry(size).or_default() += labels.len();
    }
    if c.sizes.len() > 1 {
        report
            .problems
            .push(problem("training and test images differ in size"));
    }
    report.categories.push(c);
}

/// (image size, mask checked, mask empty, problem) of one sample.
type FileCheck = (Option<(u32, u32)>, bool, bool, Option<Problem>);

/// The problems with `split`'s files that would stop a run part-way: an image whose
/// header does not decode, a mask that does not decode or differs from its image in size
/// ([`check_dataset`]'s file checks, without its counts or its checks of labels), and an
/// input frame of a video clip whose header does not decode. Samples held in memory have
/// no files and are skipped. `memad run` calls this before training, so a broken test file
/// fails in seconds rather than after the last epoch; an image whose header decodes but
/// whose data is truncated still fails when it is read.
pub fn file_problems(split: &CategorySplit) -> Vec<Problem> {
    let files: Vec<&Sample> = (split.train.iter().chain(&split.test))
        .filter(|s| s.pixels.is_none())
        .collect();
    let checks = check_files(&files, ImageCheck::Header);
    let anomalous_masks = (files.iter().zip(&checks))
        .filter(|(s, r)| s.label.is_anomalous() && r.1)
        .map(|(_, r)| r.2);
    let (masked, empty) = anomalous_masks.fold((0, 0), |(n, e), empty| (n + 1, e + empty as usize));
    let mut problems: Vec<Problem> = checks.into_iter().filter_map(|r| r.3).collect();
    problems.extend(all_masks_empty(&split.category, masked, empty));
    // Video clips: the input frames that are no sample's scored frame (each video's first).
    let scored: BTreeSet<&Path> = files.iter().map(|s| s.image.as_path()).collect();
    let inputs: BTreeSet<&Path> = (files.iter().flat_map(|s| &s.frames))
        .map(PathBuf::as_path)
        .filter(|f| !scored.contains(f))
        .collect();
    let broken: Vec<Problem> = (inputs.par_iter())
        .filter_map(|f| image_dimensions(f).err().map(problem))
        .collect();
    problems.extend(broken);
    problems
}

/// A problem when sPRO cannot read `split`'s regions (MVTec LOCO AD): its category's
/// defects config, and one grey value that config knows per region file (their sizes are
/// [`file_problems`]').
pub fn spro_problem(split: &CategorySplit) -> Option<Problem> {
    let e = crate::mvtec_loco::spro_regions(&split.test, 8, None).err()?;
    Some(problem(format!(
        "category `{}`: sPRO regions: {e}",
        split.category
    )))
}

/// A problem when `split`'s test set lacks normal or anomalous images: image AUROC, AP and
/// every other detection metric need both, so a run would train and then fail.
pub fn test_set_problem(split: &CategorySplit) -> Option<Problem> {
    let anomalous = split.test.iter().filter(|s| s.label.is_anomalous()).count();
    let missing = match (anomalous, split.test.len() - anomalous) {
        (0, 0) => "no test image",
        (0, _) => "no anomalous test image",
        (_, 0) => "no normal test image",
        _ => return None,
    };
    Some(problem(format!(
        "category `{}`: {missing}, so its detection metrics are undefined",
        split.category
    )))
}

/// A problem when every one of the `masked` anomalous images with a mask (`empty` of them
/// with an empty mask) has an empty mask: pixel metrics would have no anomalous pixel,
/// which is a mask convention this reader does not know rather than a dataset.
fn all_masks_empty(category: &str, masked: usize, empty: usize) -> Option<Problem> {
    (masked > 0 && empty == masked).then(|| {
        problem(format!(
            "category `{category}`: all {masked} masks of anomalous images mark no pixel \
             (a mask with a value above 127 marks its pixels above 127, any other its \
             non-zero pixels), so pixel metrics cannot be computed"
        ))
    })
}

/// Decodes the image of each sample as `images` says, and its mask in full.
fn check_files(samples: &[&Sample], images: ImageCheck) -> Vec<FileCheck> {
    samples
        .par_iter()
        .map(|s| {
            let size = match images {
                ImageCheck::Header => image_dimensions(&s.image),
                ImageCheck::Decode => decoded_dimensions(&s.image),
            };
            let size = match size {
                Ok(size) => size,
                Err(e) => return (None, false, false, Some(problem(e))),
            };
            let Some(mask) = &s.mask else {
                return (Some(size), false, false, None);
            };
            match mask.decode() {
                Err(e) => (
                    Some(size),
                    false,
                    false,
                    Some(Problem::at(
                        mask.name(),
                        format!("corrupt or unreadable mask: {e}"),
                    )),
                ),
                Ok(m) if m.dimensions() != size => (
                    Some(size),
                    true,
                    false,
                    Some(Problem::at(
                        mask.name(),
                        format!(
                            "mask is {}x{} but its image {} is {}x{}",
                            m.width(),
                            m.height(),
                            s.image.display(),
                            size.0,
                            size.1
                        ),
                    )),
                ),
                Ok(m) => (Some(size), true, !m.pixels().any(|p| p[0] > 0), None),
            }
        })
        .collect()
}

/// Decodes every image of `split` as `images` says, and every mask in full; anomalous
/// images without a mask count in `without_mask` unless `reported` (as problems) already.
fn check_split(
    split: &CategorySplit,
    images: ImageCheck,
    reported: &BTreeSet<&Path>,
) -> (CategoryReport, Vec<Problem>) {
    let mut c = CategoryReport {
        category: split.category.clone(),
        ..Default::default()
    };
    let mut problems = Vec::new();
    for s in &split.train {
        if s.label.is_anomalous() {
            problems.push(Problem::at(
                &s.image,
                "anomalous image in the training split",
            ));
        }
    }
    for s in &split.test {
        if s.label.is_anomalous() == (s.defect == GOOD) {
            let message = format!("label {:?} contradicts its class `{}`", s.label, s.defect);
            problems.push(Problem::at(&s.image, message));
        }
    }
    let samples: Vec<(&str, &Sample)> = split
        .train
        .iter()
        .map(|s| ("train", s))
        .chain(split.test.iter().map(|s| ("test", s)))
        .collect();
    let files: Vec<&Sample> = samples.iter().map(|(_, s)| *s).collect();
    let results = check_files(&files, images);
    for ((split_name, s), (size, checked, empty, p)) in samples.iter().zip(results) {
        *c.counts
            .entry((split_name.to_string(), s.defect.clone()))
            .or_default() += 1;
        if let Some(size) = size {
            *c.sizes.entry(size).or_default() += 1;
        }
        c.masks_checked += checked as usize;
        c.empty_masks += (s.label.is_anomalous() && empty) as usize;
        if s.label.is_anomalous() && s.mask.is_none() && !reported.contains(s.image.as_path()) {
            *c.without_mask.entry(s.defect.clone()).or_default() += 1;
        }
        problems.extend(p);
    }
    for (split_name, samples) in [("train", &split.train), ("test", &split.test)] {
        let mut frames: BTreeMap<&str, usize> = BTreeMap::new();
        for video in samples.iter().filter_map(|s| s.video.as_deref()) {
            *frames.entry(video).or_default() += 1;
        }
        if let (Some(fewest), Some(most)) = (frames.values().min(), frames.values().max()) {
            c.videos
                .insert(split_name.into(), (frames.len(), *fewest, *most));
        }
    }
    let masked = (split.test.iter())
        .filter(|s| s.label.is_anomalous() && s.mask.is_some())
        .count();
    problems.extend(all_masks_empty(&split.category, masked, c.empty_masks));
    problems.extend(test_set_problem(split));
    problems.extend(unused_masks(split));
    (c, problems)
}

/// One problem per folder under the category's `ground_truth/` holding mask images that
/// no test image uses: the reader did not match them (a name other than `<stem>_mask.png`
/// or `<stem>.png`, a defect folder without its test folder), or they sit under a normal
/// folder, whose images have no mask. The category folder is the one above `test/` of
/// the test images; formats without that layout (VisA as downloaded, videos) have none.
pub fn unused_masks(split: &CategorySplit) -> Vec<Problem> {
    let in_test_folder = |s: &&Sample| {
        let test = s.image.parent().and_then(Path::parent);
        s.pixels.is_none() && test.is_some_and(|t| t.ends_with("test"))
    };
    let Some(category_dir) =
        (split.test.iter().find(in_test_folder)).and_then(|s| s.image.ancestors().nth(3))
    else {
        return Vec::new();
    };
    let ground_truth = category_dir.join("ground_truth");
    let used: BTreeSet<&Path> = (split.test.iter().filter_map(|s| s.mask.as_ref()))
        .flat_map(|m| match m {
            MaskRef::File(p) => vec![p.as_path()],
            MaskRef::Union(files) => files.iter().map(PathBuf::as_path).collect(),
            _ => Vec::new(),
        })
        .collect();
    let normal: BTreeSet<&str> = (split.test.iter())
        .filter(|s| !s.label.is_anomalous())
        .filter_map(|s| s.image.parent()?.file_name()?.to_str())
        .collect();
    let mut folders = vec![ground_truth.clone()];
    let mut problems = Vec::new();
    while let Some(dir) = folders.pop() {
        let Ok((dirs, files)) = entries(&dir) else {
            continue;
        };
        folders.extend(dirs);
        let unused: Vec<&PathBuf> = (files.iter())
            .filter(|f| is_image_path(f) && !used.contains(f.as_path()))
            .collect();
        let Some(first) = unused.first() else {
            continue;
        };
        let below = dir.strip_prefix(&ground_truth).unwrap_or(&dir);
        let defect = below.iter().next().and_then(|d| d.to_str());
        // A second mask of an image is none of these: the readers refuse it (naming both).
        let why = if defect.is_some_and(|d| normal.contains(d)) {
            "mask(s) of normal test images, which have none".to_string()
        } else {
            let first = crate::mvtec::name_of(first);
            let hint = match below.iter().count() {
                1 => "; the mask of `test/<defect>/<stem>.<ext>` is `ground_truth/<defect>/<stem>_mask.png` or `<stem>.png`",
                _ => "",
            };
            format!("mask(s) that match no test image (first: {first}{hint})")
        };
        problems.push(Problem::at(dir, format!("{} unused {why}", unused.len())));
    }
    problems.sort_by(|a, b| a.path.cmp(&b.path));
    problems
}

/// What `memad run` notes about `split` before training without refusing it: mask files no
/// test image uses ([`unused_masks`]) and image files in a format memad does not read
/// ([`unread_images`]), one notice per folder or category.
pub fn unused_files(split: &CategorySplit) -> Vec<Problem> {
    let mut notes = unused_masks(split);
    notes.extend(unread_images(split));
    notes
}

/// At most this many examples of unread image files are named.
const SHOWN_UNREAD: usize = 2;

/// How deep below the category folder [`unread_images`] looks (a symbolic link loop ends).
const UNREAD_DEPTH: usize = 8;

/// One problem naming the image files under `split`'s category folder in a format memad
/// does not read ([`crate::image_io::UNREAD_IMAGE_EXTENSIONS`]: WebP, GIF, JPEG 2000, ...):
/// the readers skip them as they skip any file that is not an image, so the images or masks
/// they hold are silently not used. The folder looked through (8 levels deep) is the deepest
/// one holding every image and mask file of the split, when it is the category's own folder
/// (named after the category) or below it; otherwise (a VisA split file naming files
/// elsewhere) only the folders holding the split's files are, none below them. Video frames
/// are not looked for (their readers list each video's folder, and a video dataset's
/// folders hold hundreds of thousands of frames), nor are samples held in memory; hidden
/// files and folders, and files that are not images (`.txt`, `.csv`, `.json`, `Thumbs.db`),
/// are not named.
pub fn unread_images(split: &CategorySplit) -> Option<Problem> {
    let files: Vec<&Path> = (split.train.iter().chain(&split.test))
        .filter(|s| s.pixels.is_none() && s.video.is_none())
        .flat_map(|s| {
            let masks: Vec<&Path> = match &s.mask {
                Some(MaskRef::File(p)) => vec![p.as_path()],
                Some(MaskRef::Union(files)) => files.iter().map(PathBuf::as_path).collect(),
                _ => Vec::new(),
            };
            std::iter::once(s.image.as_path()).chain(masks)
        })
        .collect();
    let mut folder: Option<&Path> = None;
    for file in &files {
        let mut common = folder.or(file.parent())?;
        while !file.starts_with(common) {
            common = common.parent()?;
        }
        folder = Some(common);
    }
    let folder = folder?;
    let in_category = (folder.ancestors()).any(|d| d.file_name() == Some(split.category.as_ref()));
    let mut folders: Vec<(PathBuf, usize)> = if in_category {
        vec![(folder.to_path_buf(), 0)]
    } else {
        let parents: BTreeSet<&Path> = files.iter().filter_map(|f| f.parent()).collect();
        (parents.into_iter().rev())
            .map(|d| (d.to_path_buf(), UNREAD_DEPTH))
            .collect()
    };
    let mut unread = Vec::new();
    while let Some((dir, depth)) = folders.pop() {
        let Ok((dirs, files)) = entries(&dir) else {
            continue;
        };
        if depth < UNREAD_DEPTH {
            folders.extend(dirs.into_iter().rev().map(|d| (d, depth + 1)));
        }
        unread.extend(files.into_iter().filter(|f| is_unread_image_path(f)));
    }
    if unread.is_empty() {
        return None;
    }
    let formats = crate::image_io::count_by_extension(&unread);
    let examples: Vec<String> = (unread.iter().take(SHOWN_UNREAD))
        .map(|f| f.strip_prefix(folder).unwrap_or(f).display().to_string())
        .collect();
    let more = if unread.len() > SHOWN_UNREAD {
        ", ..."
    } else {
        ""
    };
    Some(Problem::at(
        folder,
        format!(
            "category `{}`: {} image file(s) memad does not read ({}; e.g. {}{more}): memad \
             reads PNG, JPG, BMP, TIFF: convert these or they are not used",
            split.category,
            unread.len(),
            formats.join(", "),
            examples.join(", ")
        ),
    ))
}
