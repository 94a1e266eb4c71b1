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
//! can be split into logical and structural. The validation images are not read: memad
//! reports last-epoch results and selects nothing, on the test set or elsewhere. Pixel
//! metrics use the OR-ed masks; the saturated per-region overlap (sPRO, the benchmark's
//! localisation metric) reads each region on its own with its saturation area from the
//! category's `defects_config.json` ([`spro_regions`]).
use crate::error::{DataError, Result};
use crate::image_io::{decode_luma, fit_mask_to, image_dimensions, Geometry, MaskResize};
use crate::mask::MaskRef;
use crate::mvtec::{
    check_root, images_in, name_of, read_train_good, stem_of, test_label_dirs, CategorySplit,
    Label, Sample, GOOD,
};
use serde::Deserialize;
use std::collections::HashMap;
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

/// Lists the training and test images of `category` with their masks (paths only); any
/// problem found fails it (all of them, in [`DataError::Several`] when there are more).
pub fn read_category(root: &Path, category: &str) -> Result<CategorySplit> {
    DataError::gathered(category, read_category_and_problems(root, category)?)
}

/// [`read_category`], going on past every problem it can: the images that could be listed
/// (an anomalous image whose mask folder is missing without a mask) and every problem found;
/// `Err` when the category cannot be read at all.
pub fn read_category_and_problems(
    root: &Path,
    category: &str,
) -> Result<(CategorySplit, Vec<DataError>)> {
    let dir = category_dir(root, category)?;
    let mut problems = Vec::new();
    let train = read_train_good(&dir, &mut problems);
    let layout = "test/good, test/logical_anomalies and test/structural_anomalies";
    let mut test = Vec::new();
    for type_dir in test_label_dirs(&dir, layout, &mut problems) {
        let defect = name_of(&type_dir);
        let images = match images_in(&type_dir) {
            Ok(images) => images,
            Err(e) => {
                problems.push(e);
                continue;
            }
        };
        for image in images {
            test.push(if defect == GOOD {
                Sample::still(image, Label::Normal, GOOD, None)
            } else {
                let mask = match find_masks(&dir, &defect, &image) {
                    Ok(mask) => Some(mask),
                    Err(e) => {
                        problems.push(e);
                        None
                    }
                };
                Sample::still(image, Label::Anomalous, &defect, mask)
            });
        }
    }
    let split = CategorySplit {
        category: category.to_string(),
        train,
        test,
    };
    Ok((split, problems))
}

/// The mask files of `test/<defect>/<stem>.png`: every image in
/// `ground_truth/<defect>/<stem>/`, sorted; none is an error naming the folder `.../<stem>/`.
fn find_masks(category_dir: &Path, defect: &str, image: &Path) -> Result<MaskRef> {
    let folder = category_dir.join("ground_truth").join(defect);
    let folder = folder.join(stem_of(image));
    let files = if folder.is_dir() {
        images_in(&folder)?
    } else {
        Vec::new()
    };
    if files.is_empty() {
        return Err(DataError::MaskMissing {
            image: image.to_path_buf(),
            // The trailing separator: the expected thing is the folder.
            expected: folder.join(""),
            hint: "; a LOCO mask is that folder, one image per annotated region (000.png, \
                   001.png, ...), and it is missing or holds no images",
        });
    }
    Ok(MaskRef::Union(files))
}

/// One entry of a category's `defects_config.json`: the defect whose ground-truth regions
/// carry `pixel_value`, and how much of such a region must be found to count it as found.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct DefectConfig {
    pub defect_name: String,
    pub pixel_value: u8,
    /// A pixel count, or with `relative_saturation` a fraction of the region's area.
    pub saturation_threshold: f64,
    pub relative_saturation: bool,
}

impl DefectConfig {
    /// The saturation area of a region of `area` pixels at the annotation's resolution, as
    /// the official `GroundTruthChannel.get_saturation_area`: `int(threshold * area)` when
    /// relative, else `min(threshold, area)`.
    pub fn saturation_area(&self, area: usize) -> f64 {
        if self.relative_saturation {
            (self.saturation_threshold * area as f64).floor()
        } else {
            self.saturation_threshold.min(area as f64)
        }
    }
}

/// Reads `<category dir>/defects_config.json`, checked as the official evaluation checks
/// it (pixel values 1..=255 and distinct, relative thresholds in (0, 1], absolute ones
/// whole pixel counts).
pub fn read_defects_config(category_dir: &Path) -> Result<Vec<DefectConfig>> {
    let path = category_dir.join("defects_config.json");
    let bad = |message: String| DataError::Format {
        path: path.clone(),
        message,
    };
    let text = std::fs::read_to_string(&path).map_err(|e| DataError::Layout {
        path: path.clone(),
        message: format!(
            "cannot read the defects config ({e}): MVTec LOCO AD ships one per category; \
             sPRO needs its saturation thresholds"
        ),
    })?;
    let entries: Vec<DefectConfig> =
        serde_json::from_str(&text).map_err(|e| bad(format!("not a list of defects: {e}")))?;
    for (i, d) in entries.iter().enumerate() {
        if d.pixel_value == 0 {
            return Err(bad(format!(
                "entry {i} ({}): pixel_value 0 marks normal pixels",
                d.defect_name
            )));
        }
        if entries[..i].iter().any(|e| e.pixel_value == d.pixel_value) {
            return Err(bad(format!("pixel_value {} is used twice", d.pixel_value)));
        }
        let t = d.saturation_threshold;
        let valid = if d.relative_saturation {
            t > 0.0 && t <= 1.0
        } else {
            t >= 1.0 && t.fract() == 0.0
        };
        if !valid {
            return Err(bad(format!(
                "entry {i} ({}): saturation_threshold {t} must be {}",
                d.defect_name,
                if d.relative_saturation {
                    "in (0, 1] (relative_saturation = true)"
                } else {
                    "a whole number of pixels (relative_saturation = false)"
                }
            )));
        }
    }
    Ok(entries)
}

/// One ground-truth region of a test sample for sPRO, at the evaluation resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct SproRegion {
    /// Index of the sample in the test list.
    pub sample: usize,
    /// Row-major pixel indices in the `S x S` (or cropped `crop x crop`) mask.
    pub pixels: Vec<u32>,
    /// The saturation area in pixels of this resolution.
    pub saturation: f64,
}

/// The sPRO regions of `samples` (an MVTec LOCO AD test list) as evaluated: each region
/// file (`ground_truth/<type>/<stem>/NNN.png`) is one region, its defect looked up by its
/// grey value in the category's `defects_config.json`, resized to `size x size` (nearest,
/// as the union mask) and centre-cropped to `crop`.
///
/// Saturation: the official area `s` at the annotation's resolution (see
/// [`DefectConfig::saturation_area`]), scaled by the resized region's area over the
/// original one, so that the same fraction of the region saturates it; at least one pixel
/// and at most the region. A region that vanishes when resized (a few pixels in a large
/// image) or lies outside the crop is left out, as it is from the union mask (the official
/// evaluation, at the annotation's resolution and without a crop, keeps every region). A
/// region the crop cuts keeps the saturation area of its whole resized region, so it may not
/// reach saturation. Samples without a LOCO mask folder have no region.
///
/// # Errors
/// A missing or invalid `defects_config.json`, a region file with no or several non-zero
/// values, a value no defect uses, or a size other than its image's, each naming the file.
pub fn spro_regions(samples: &[Sample], size: u32, crop: Option<u32>) -> Result<Vec<SproRegion>> {
    let geometry = Geometry {
        crop,
        ..Geometry::square(size)
    };
    spro_regions_fitted(samples, &geometry)
}

/// [`spro_regions`] of regions brought to the input as `geometry` says (resized as its
/// `shape` says, nearest, then centre-cropped as the images are).
pub fn spro_regions_fitted(samples: &[Sample], geometry: &Geometry) -> Result<Vec<SproRegion>> {
    geometry.check()?;
    let crop = geometry.side();
    let mut configs: HashMap<PathBuf, Vec<DefectConfig>> = HashMap::new();
    let mut regions = Vec::new();
    for (index, sample) in samples.iter().enumerate() {
        let Some(MaskRef::Union(files)) = &sample.mask else {
            continue;
        };
        let expected = image_dimensions(&sample.image)?;
        for file in files {
            let category_dir = file
                .ancestors()
                .nth(4)
                .unwrap_or(Path::new(""))
                .to_path_buf();
            if !configs.contains_key(&category_dir) {
                let read = read_defects_config(&category_dir)?;
                configs.insert(category_dir.clone(), read);
            }
            let defects = &configs[&category_dir];
            let gray = decode_luma(file)?;
            let mut values = gray.pixels().map(|p| p[0]).filter(|&v| v > 0);
            let value = values.next().ok_or_else(|| DataError::Format {
                path: file.clone(),
                message: "a region file without any non-zero pixel".into(),
            })?;
            if let Some(other) = values.find(|&v| v != value) {
                return Err(DataError::Format {
                    path: file.clone(),
                    message: format!(
                        "holds the values {value} and {other}: a LOCO region file marks one \
                         defect with one grey value"
                    ),
                });
            }
            let defect = defects
                .iter()
                .find(|d| d.pixel_value == value)
                .ok_or_else(|| DataError::Format {
                    path: file.clone(),
                    message: format!(
                        "grey value {value} is no defect of {} (values {:?})",
                        category_dir.join("defects_config.json").display(),
                        defects.iter().map(|d| d.pixel_value).collect::<Vec<_>>()
                    ),
                })?;
            let (mut binary, mut area) = (gray, 0usize);
            for p in binary.pixels_mut().filter(|p| p[0] > 0) {
                p[0] = 255;
                area += 1;
            }
            let (nearest, to) = (MaskResize::Nearest, geometry.resized(expected));
            let resized = fit_mask_to(binary, file, Some(&sample.image), expected, to, nearest)?;
            let (off_x, off_y) = geometry.crop_offsets(to)?;
            let resized_area = resized.pixels().filter(|p| p[0] > 0).count();
            let pixels: Vec<u32> = (0..crop)
                .flat_map(|y| (0..crop).map(move |x| (x, y)))
                .filter(|&(x, y)| resized.get_pixel(x + off_x, y + off_y)[0] > 0)
                .map(|(x, y)| y * crop + x)
                .collect();
            if pixels.is_empty() {
                continue;
            }
            let scaled = defect.saturation_area(area) * resized_area as f64 / area as f64;
            regions.push(SproRegion {
                sample: index,
                saturation: scaled.max(1.0).min(resized_area as f64),
                pixels,
            });
        }
    }
    Ok(regions)
}
