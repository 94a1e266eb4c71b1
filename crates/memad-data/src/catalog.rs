//! `datasets.toml`: the catalog of datasets that experiments name.
//!
//! ```toml
//! # Roots are relative to this file's folder unless absolute; `~` expands to $HOME.
//! [synthetic-mvtec]
//! format = "mvtec"
//! root = "data/synthetic-mvtec"
//! [synthetic-mvtec.synthetic]      # optional: generated on first use (see `synthetic`)
//! categories = ["carpet", "grid", "leather"]
//!
//! [mvtec]
//! format = "mvtec"
//! root = "~/datasets/mvtec_anomaly_detection"
//! categories = ["carpet", "bottle"]   # optional: restrict to these
//! ```
//!
//! Formats: `mvtec`, `mvtec_loco`, `btad`, `folder`, `visa` (image files by category),
//! `video_frames`, `ucsd`, `shanghaitech`, `avenue` (video frames), `mnist_idx`, `cifar10`
//! (arrays; categories are the classes). See [`DatasetFormat`].
//!
//! Entries are parsed with `deny_unknown_fields`, so a misspelt key is an error naming the
//! key path, the file and the valid keys.
use crate::arrays::TrainAnomalies;
use crate::cifar10::CIFAR10_CLASSES;
use crate::error::{DataError, Result};
use crate::mvtec::{self, CategorySplit};
use crate::synthetic::{ensure_generated, SyntheticSpec};
use crate::{arrays, avenue, btad, folder, mvtec_loco, shanghaitech, video, visa};
use memad_core::{parse_section, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The on-disk layout of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatasetFormat {
    /// MVTec AD: `<category>/{train/good, test/<defect>, ground_truth/<defect>}`.
    Mvtec,
    /// MNIST / Fashion-MNIST IDX files (see [`crate::idx`]); categories are the classes
    /// `"0"`..`"9"`, each the normal class of a one-class split.
    MnistIdx,
    /// CIFAR-10, binary or python batches (see [`crate::cifar10`]); categories are the
    /// class names (`airplane`, ...), each the normal class of a one-class split.
    Cifar10,
    /// Video frames in the MNAD layout (see [`crate::video`]); read as images, the frames
    /// are one category named after the dataset folder.
    VideoFrames,
    /// The original UCSD Anomaly Detection layout (see [`crate::video`]).
    Ucsd,
    /// VisA with its `split_csv/1cls.csv` (see [`crate::visa`]).
    Visa,
    /// `train/good`, `test/<label>`, optional `ground_truth` (see [`crate::folder`]).
    Folder,
    /// ShanghaiTech Campus frames with `.npy` frame labels and pixel masks (see
    /// [`crate::shanghaitech`]).
    #[serde(rename = "shanghaitech")]
    ShanghaiTech,
    /// CUHK Avenue frames with the official `.mat` ground truth (see [`crate::avenue`]).
    Avenue,
    /// MVTec LOCO AD: logical and structural anomalies, a mask folder per image (see
    /// [`crate::mvtec_loco`]).
    MvtecLoco,
    /// BTAD: `<01|02|03>/{train/ok, test/{ok,ko}, ground_truth/ko}` (see [`crate::btad`]).
    Btad,
}

impl DatasetFormat {
    /// The name used in `datasets.toml`.
    pub fn name(self) -> &'static str {
        match self {
            DatasetFormat::Mvtec => "mvtec",
            DatasetFormat::MnistIdx => "mnist_idx",
            DatasetFormat::Cifar10 => "cifar10",
            DatasetFormat::VideoFrames => "video_frames",
            DatasetFormat::Ucsd => "ucsd",
            DatasetFormat::Visa => "visa",
            DatasetFormat::Folder => "folder",
            DatasetFormat::ShanghaiTech => "shanghaitech",
            DatasetFormat::Avenue => "avenue",
            DatasetFormat::MvtecLoco => "mvtec_loco",
            DatasetFormat::Btad => "btad",
        }
    }

    /// What a category of this format looks like, relative to the root (or to a folder
    /// under it), for the error when no category is found.
    /// Where the pixel masks of a dataset of this format go, for messages: the video formats'
    /// mask folders, else the format's [`DatasetFormat::layout`].
    pub fn masks_layout(self) -> String {
        match self {
            DatasetFormat::VideoFrames => "testing/masks/<video>/<frame>.png: one mask image \
                 per test frame of the video, named as the frame \
                 (testing/frames/<video>/<frame>.jpg)"
                .into(),
            DatasetFormat::Ucsd => "Test/<video>_gt/<frame>.bmp: one mask image per test frame \
                 of the video, named as the frame (Test/<video>/<frame>.tif)"
                .into(),
            other => format!("layout: {}", other.layout()),
        }
    }

    pub fn layout(self) -> &'static str {
        match self {
            DatasetFormat::Mvtec => {
                "<category>/train/good/*.png, <category>/test/<defect>/*.png and \
                 <category>/ground_truth/<defect>/<image>_mask.png"
            }
            DatasetFormat::MnistIdx => {
                "train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and \
                 t10k-labels-idx1-ubyte (or .gz)"
            }
            DatasetFormat::Cifar10 => {
                "cifar-10-batches-bin/ (data_batch_1.bin .. test_batch.bin) or \
                 cifar-10-batches-py/ (data_batch_1 .. test_batch)"
            }
            DatasetFormat::VideoFrames => {
                "training/frames/<video>/*.jpg, testing/frames/<video>/*.jpg and \
                 frame_labels_<name>.npy or UCSDpedN.m"
            }
            DatasetFormat::Ucsd => {
                "Train/Train001/*.tif, Test/Test001/*.tif and UCSDpedN.m (masks in \
                 Test/Test001_gt/)"
            }
            DatasetFormat::Visa => "split_csv/1cls.csv and <object>/Data/Images/{Normal,Anomaly}/",
            DatasetFormat::Folder => {
                "[<category>/]train/good/*, [<category>/]test/<label>/* and, optionally, \
                 [<category>/]ground_truth/<label>/<image>_mask.png"
            }
            DatasetFormat::ShanghaiTech => {
                "training/frames/<video>/*.jpg, testing/frames/<video>/*.jpg and \
                 testing/test_frame_mask/<video>.npy (the download's training/videos/*.avi \
                 must be extracted to frames first)"
            }
            DatasetFormat::Avenue => {
                "training/frames/<video>/*.jpg, testing/frames/<video>/*.jpg and \
                 ground_truth_demo/testing_label_mask/<N>_label.mat"
            }
            DatasetFormat::MvtecLoco => {
                "<category>/train/good/*.png, <category>/test/<type>/*.png, \
                 <category>/ground_truth/<type>/<image>/*.png and <category>/defects_config.json"
            }
            DatasetFormat::Btad => {
                "<01|02|03>/train/ok/, <01|02|03>/test/{ok,ko}/ and ground_truth/ko/"
            }
        }
    }

    /// Whether the dataset is made of videos (frames with per-video labels; clips can be
    /// read with [`DatasetEntry::read_clips`]).
    pub fn is_video(self) -> bool {
        matches!(
            self,
            DatasetFormat::VideoFrames
                | DatasetFormat::Ucsd
                | DatasetFormat::ShanghaiTech
                | DatasetFormat::Avenue
        )
    }
}

impl std::fmt::Display for DatasetFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One dataset of the catalog, its root resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    /// The table name in `datasets.toml`.
    pub name: String,
    /// The `datasets.toml` the entry was read from.
    pub catalog: PathBuf,
    pub format: DatasetFormat,
    /// Absolute, or relative to the current folder when the catalog path was relative.
    pub root: PathBuf,
    /// The categories when known without reading the disk: the entry's `categories`, else
    /// the synthetic spec's; `None` means "whatever is under `root`".
    pub categories: Option<Vec<String>>,
    /// Generated into `root` by [`DatasetEntry::prepare`] when set.
    pub synthetic: Option<SyntheticSpec>,
}

impl DatasetEntry {
    /// The spec of a synthetic dataset that [`DatasetEntry::prepare`] has still to generate.
    pub fn to_generate(&self) -> Option<&SyntheticSpec> {
        (self.synthetic.as_ref()).filter(|spec| !crate::synthetic::is_generated(&self.root, spec))
    }

    /// Makes the data available: generates a synthetic dataset unless it is already there.
    pub fn prepare(&self) -> Result<()> {
        if let Some(spec) = &self.synthetic {
            ensure_generated(&self.root, spec)?;
        }
        Ok(())
    }

    /// An error naming the entry and its catalog when the root is not a folder (for a run
    /// here; a Slurm sweep submitted from a host without the data does not ask).
    pub fn check_root(&self) -> Result<()> {
        if !self.root.is_dir() {
            return Err(DataError::EntryRootMissing {
                name: self.name.clone(),
                root: self.root.clone(),
                catalog: self.catalog.clone(),
            });
        }
        Ok(())
    }

    /// The categories to use: [`DatasetEntry::categories`] or
    /// [`DatasetEntry::categories_on_disk`].
    pub fn category_names(&self) -> Result<Vec<String>> {
        match &self.categories {
            Some(c) => Ok(c.clone()),
            None => self.categories_on_disk(),
        }
    }

    /// The categories found under `root`, whatever the entry lists (for `mnist_idx` and
    /// `cifar10`: the classes, without reading the disk).
    pub fn categories_on_disk(&self) -> Result<Vec<String>> {
        match self.format {
            DatasetFormat::Mvtec => mvtec::list_categories(&self.root),
            DatasetFormat::MnistIdx => Ok((0..10).map(|c| c.to_string()).collect()),
            DatasetFormat::Cifar10 => Ok(CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect()),
            DatasetFormat::VideoFrames => video::list_video_frames(&self.root),
            DatasetFormat::Ucsd => video::list_ucsd(&self.root),
            DatasetFormat::Visa => visa::list_categories(&self.root),
            DatasetFormat::Folder => folder::list_categories(&self.root),
            DatasetFormat::ShanghaiTech => shanghaitech::list_categories(&self.root),
            DatasetFormat::Avenue => avenue::list_categories(&self.root),
            DatasetFormat::MvtecLoco => mvtec_loco::list_categories(&self.root),
            DatasetFormat::Btad => btad::list_categories(&self.root),
        }
    }

    /// Lists the training and test images of `category`; for `mnist_idx` and `cifar10` the
    /// one-class split of that class (held in memory, [`arrays`]).
    pub fn read_category(&self, category: &str) -> Result<CategorySplit> {
        match self.format {
            DatasetFormat::Mvtec => mvtec::read_category(&self.root, category),
            DatasetFormat::VideoFrames
            | DatasetFormat::Ucsd
            | DatasetFormat::ShanghaiTech
            | DatasetFormat::Avenue => Ok(self.read_videos(category)?.to_category_split(category)),
            DatasetFormat::Visa => visa::read_category(&self.root, category),
            DatasetFormat::Folder => folder::read_category(&self.root, category),
            DatasetFormat::MvtecLoco => mvtec_loco::read_category(&self.root, category),
            DatasetFormat::Btad => btad::read_category(&self.root, category),
            DatasetFormat::MnistIdx | DatasetFormat::Cifar10 => {
                let none = TrainAnomalies {
                    fraction: 0.0,
                    seed: 0,
                };
                self.read_classes(category, none)
            }
        }
    }

    /// [`DatasetEntry::read_category`], going on past every problem it can where the format's
    /// reader can (`mvtec`, `folder`, `mvtec_loco`, `btad`, `visa`): the category as far as it
    /// could be read, and every problem found, which `read_category` fails with. The video
    /// readers name all their layout problems at once too, as an `Err`
    /// ([`DataError::Several`]); the class formats check byte counts. `Err` when the
    /// category cannot be read at all.
    pub fn read_category_and_problems(
        &self,
        category: &str,
    ) -> Result<(CategorySplit, Vec<DataError>)> {
        match self.format {
            DatasetFormat::Mvtec => mvtec::read_category_and_problems(&self.root, category),
            DatasetFormat::Folder => folder::read_category_and_problems(&self.root, category),
            DatasetFormat::MvtecLoco => {
                mvtec_loco::read_category_and_problems(&self.root, category)
            }
            DatasetFormat::Btad => btad::read_category_and_problems(&self.root, category),
            DatasetFormat::Visa => visa::read_category_and_problems(&self.root, category),
            DatasetFormat::VideoFrames
            | DatasetFormat::Ucsd
            | DatasetFormat::ShanghaiTech
            | DatasetFormat::Avenue
            | DatasetFormat::MnistIdx
            | DatasetFormat::Cifar10 => Ok((self.read_category(category)?, Vec::new())),
        }
    }

    /// The one-class split of class `category` of `mnist_idx` and `cifar10` datasets, with
    /// labelled anomalies in the training set when `anomalies.fraction > 0` (the unbalanced
    /// setting); an error for other formats.
    pub fn read_classes(&self, category: &str, anomalies: TrainAnomalies) -> Result<CategorySplit> {
        let class = self.class_index(category)?;
        match self.format {
            DatasetFormat::MnistIdx => {
                arrays::mnist_one_class(&self.root, category, class, anomalies)
            }
            DatasetFormat::Cifar10 => {
                arrays::cifar10_one_class(&self.root, category, class, anomalies)
            }
            _ => unreachable!("class_index accepts only classification formats"),
        }
    }

    /// The clips of a video dataset's `category` ([`video::VideoDataset::to_clip_split`]); an
    /// error naming the format for datasets that are not videos.
    pub fn read_clips(
        &self,
        category: &str,
        frames: usize,
        mode: video::ClipMode,
    ) -> Result<CategorySplit> {
        if !self.format.is_video() {
            return Err(DataError::InvalidArgument(format!(
                "dataset `{}` has format {}, not a video format (video_frames, ucsd, \
                 shanghaitech, avenue): it has no clips; remove [data.clip]",
                self.name, self.format
            )));
        }
        let data = self.read_videos(category)?;
        // Predicting and whole windows need videos of `frames` frames (centred clips are
        // clamped at the ends and fit any video).
        if mode != video::ClipMode::Centred {
            for (part, videos) in [("training", &data.train), ("test", &data.test)] {
                let longest = videos.iter().map(video::Video::len).max().unwrap_or(0);
                if longest < frames {
                    return Err(DataError::InvalidArgument(format!(
                        "data.clip.frames = {frames}: no {part} video of `{category}` has that \
                         many frames (the longest has {longest}), so it has no clip of mode \
                         \"{}\"; lower the clip length (data.clip.frames, with method.frames)",
                        match mode {
                            video::ClipMode::Predict => "predict",
                            _ => "centred_valid",
                        }
                    )));
                }
            }
        }
        Ok(data.to_clip_split(category, frames, mode))
    }

    /// The videos of a video dataset's `category`; an error for other formats.
    pub fn read_videos(&self, category: &str) -> Result<video::VideoDataset> {
        match self.format {
            DatasetFormat::VideoFrames => video::read_video_frames_category(&self.root, category),
            DatasetFormat::Ucsd => video::read_ucsd_category(&self.root, category),
            DatasetFormat::ShanghaiTech => shanghaitech::read_category(&self.root, category),
            DatasetFormat::Avenue => avenue::read_category(&self.root, category),
            _ => Err(DataError::InvalidArgument(format!(
                "dataset `{}` has format {}, not a video format",
                self.name, self.format
            ))),
        }
    }

    /// The class index of `category` for `mnist_idx` (`"0"`..`"9"`) and `cifar10` (a
    /// class name or its index); an error for other formats or unknown classes.
    pub fn class_index(&self, category: &str) -> Result<u8> {
        let names: Vec<String> = match self.format {
            DatasetFormat::MnistIdx => (0..10).map(|c| c.to_string()).collect(),
            DatasetFormat::Cifar10 => CIFAR10_CLASSES.iter().map(|c| c.to_string()).collect(),
            _ => {
                return Err(DataError::InvalidArgument(format!(
                    "dataset `{}` (format {}) has no classes",
                    self.name, self.format
                )))
            }
        };
        names
            .iter()
            .position(|n| n == category)
            .or_else(|| category.parse::<usize>().ok().filter(|&i| i < names.len()))
            .map(|i| i as u8)
            .ok_or_else(|| DataError::CategoryMissing {
                root: self.root.clone(),
                category: category.to_string(),
                available: names,
            })
    }
}

/// An entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    format: DatasetFormat,
    root: String,
    categories: Option<Vec<String>>,
    synthetic: Option<SyntheticSpec>,
}

/// The datasets of a `datasets.toml`, by name.
#[derive(Debug, Clone)]
pub struct DatasetCatalog {
    path: PathBuf,
    entries: BTreeMap<String, DatasetEntry>,
}

impl DatasetCatalog {
    /// Reads and checks `path`; relative roots are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses catalog `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| DataError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut entries = BTreeMap::new();
        for (name, value) in &table {
            let fail = |key: String, message: String| {
                DataError::from(ConfigError::new(key, message).in_file(path))
            };
            let raw: RawEntry = parse_section(value, name).map_err(|e| e.in_file(path))?;
            let root =
                resolve_root(&raw.root, base).map_err(|m| fail(format!("{name}.root"), m))?;
            if let Some(spec) = &raw.synthetic {
                spec.validate()
                    .map_err(|e| fail(format!("{name}.synthetic"), e.to_string()))?;
            }
            if let Some(categories) = &raw.categories {
                if categories.is_empty() {
                    return Err(fail(
                        format!("{name}.categories"),
                        "empty; leave it out to use every category".into(),
                    ));
                }
                if let Some(spec) = &raw.synthetic {
                    if let Some(c) = categories.iter().find(|c| !spec.categories.contains(c)) {
                        return Err(fail(
                            format!("{name}.categories"),
                            format!(
                                "`{c}` is not generated by `synthetic.categories`{} ({})",
                                crate::error::did_you_mean(c, &spec.categories),
                                spec.categories.join(", ")
                            ),
                        ));
                    }
                }
            }
            let categories = raw
                .categories
                .or_else(|| raw.synthetic.as_ref().map(|s| s.categories.clone()));
            let entry = DatasetEntry {
                name: name.clone(),
                catalog: path.to_path_buf(),
                format: raw.format,
                root,
                categories,
                synthetic: raw.synthetic,
            };
            entries.insert(name.clone(), entry);
        }
        Ok(DatasetCatalog {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file the catalog was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry called `name`; an unknown name is an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&DatasetEntry> {
        self.entries
            .get(name)
            .ok_or_else(|| DataError::UnknownDataset {
                name: name.to_string(),
                catalog: self.path.clone(),
                known: self.names().map(String::from).collect(),
            })
    }

    /// The dataset names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &DatasetEntry> {
        self.entries.values()
    }
}

/// `~` and `~/...` expand to `$HOME`; other relative roots are taken from `base`.
fn resolve_root(raw: &str, base: &Path) -> std::result::Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("empty path".into());
    }
    if raw == "~" || raw.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{raw}` uses `~` but $HOME is not set"))?;
        let home = PathBuf::from(home);
        return Ok(match raw.strip_prefix("~/") {
            Some(rest) if !rest.is_empty() => home.join(rest),
            _ => home,
        });
    }
    let path = PathBuf::from(raw);
    Ok(if path.is_absolute() {
        path
    } else {
        base.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[synth]
format = "mvtec"
root = "data/synth"
[synth.synthetic]
categories = ["carpet", "wood"]
image_size = 64

[real]
format = "mvtec"
root = "/abs/mvtec"
categories = ["bottle"]

[home]
format = "mvtec"
root = "~/datasets/mvtec"
"#;

    #[test]
    fn entries_resolve_roots_and_categories() {
        let catalog = DatasetCatalog::parse(TEXT, Path::new("/work/datasets.toml")).unwrap();
        assert_eq!(
            catalog.names().collect::<Vec<_>>(),
            ["home", "real", "synth"]
        );
        let synth = catalog.get("synth").unwrap();
        assert_eq!(synth.root, Path::new("/work/data/synth"));
        assert_eq!(synth.format, DatasetFormat::Mvtec);
        let spec = synth.synthetic.as_ref().unwrap();
        assert_eq!(spec.image_size, 64);
        assert_eq!(
            spec.train_per_category,
            SyntheticSpec::default().train_per_category
        );
        assert_eq!(
            synth.categories.as_deref(),
            Some(&["carpet".to_string(), "wood".into()][..])
        );
        let real = catalog.get("real").unwrap();
        assert_eq!(real.root, Path::new("/abs/mvtec"));
        assert!(real.synthetic.is_none());
        if let Some(home) = std::env::var_os("HOME") {
            let entry = catalog.get("home").unwrap();
            assert_eq!(entry.root, PathBuf::from(home).join("datasets/mvtec"));
            assert_eq!(entry.categories, None);
        }
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let catalog = DatasetCatalog::parse(TEXT, Path::new("datasets.toml")).unwrap();
        let err = catalog.get("mvtecc").unwrap_err().to_string();
        assert!(
            err.contains("`mvtecc`") && err.contains("home, real, synth"),
            "{err}"
        );
    }

    #[test]
    fn typo_in_a_key_names_the_key_the_file_and_the_valid_keys() {
        let text = "[mvtec]\nformat = \"mvtec\"\nrooot = \"x\"\n";
        let err = DatasetCatalog::parse(text, Path::new("cfg/datasets.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cfg/datasets.toml"), "{err}");
        assert!(err.contains("mvtec.rooot"), "{err}");
        assert!(err.contains("root") && err.contains("synthetic"), "{err}");
        let text = "[s]\nformat = \"mvtec\"\nroot = \"x\"\n[s.synthetic]\nimage_sise = 3\n";
        let err = DatasetCatalog::parse(text, Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.synthetic.image_sise"), "{err}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let cases = [
            ("[a]\nformat = \"vissa\"\nroot = \"x\"\n", "a.format"),
            (
                "[a]\nformat = \"mvtec\"\nroot = \"x\"\ncategories = []\n",
                "a.categories",
            ),
            (
                "[a]\nformat = \"mvtec\"\nroot = \"x\"\ncategories = [\"tile\"]\n[a.synthetic]\n",
                "a.categories",
            ),
            (
                "[a]\nformat = \"mvtec\"\nroot = \"x\"\n[a.synthetic]\ncategories = [\"rug\"]\n",
                "a.synthetic",
            ),
        ];
        for (text, key) in cases {
            let err = DatasetCatalog::parse(text, Path::new("d.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = DatasetCatalog::parse("[a\n", Path::new("broken.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("broken.toml"), "{err}");
    }

    #[test]
    fn every_format_parses_and_class_datasets_name_their_classes() {
        let formats = [
            ("mvtec", DatasetFormat::Mvtec),
            ("mnist_idx", DatasetFormat::MnistIdx),
            ("cifar10", DatasetFormat::Cifar10),
            ("video_frames", DatasetFormat::VideoFrames),
            ("ucsd", DatasetFormat::Ucsd),
            ("visa", DatasetFormat::Visa),
            ("folder", DatasetFormat::Folder),
            ("shanghaitech", DatasetFormat::ShanghaiTech),
            ("avenue", DatasetFormat::Avenue),
            ("mvtec_loco", DatasetFormat::MvtecLoco),
            ("btad", DatasetFormat::Btad),
        ];
        for (name, format) in formats {
            let text = format!("[d]\nformat = \"{name}\"\nroot = \"/r\"\n");
            let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
            assert_eq!(catalog.get("d").unwrap().format, format);
            assert_eq!(format.to_string(), name);
            assert_eq!(
                format.is_video(),
                ["video_frames", "ucsd", "shanghaitech", "avenue"].contains(&name)
            );
        }
        let text = "[c]\nformat = \"cifar10\"\nroot = \"/r\"\n[m]\nformat = \"mnist_idx\"\nroot = \"/r\"\n";
        let catalog = DatasetCatalog::parse(text, Path::new("d.toml")).unwrap();
        let c = catalog.get("c").unwrap();
        assert_eq!(c.category_names().unwrap()[3], "cat");
        assert_eq!(c.class_index("cat").unwrap(), 3);
        assert_eq!(c.class_index("9").unwrap(), 9);
        let err = c.class_index("kat").unwrap_err().to_string();
        assert!(err.contains("`kat`") && err.contains("airplane"), "{err}");
        let m = catalog.get("m").unwrap();
        assert_eq!(m.category_names().unwrap().len(), 10);
        assert_eq!(m.class_index("7").unwrap(), 7);
        let err = m.class_index("10").unwrap_err().to_string();
        assert!(
            err.contains("category `10` not found in /r") && err.contains("0, 1, 2"),
            "{err}"
        );
        // Class datasets are read as in-memory splits: the missing root is named.
        let err = m.read_category("7").unwrap_err().to_string();
        assert!(err.contains("/r does not exist"), "{err}");
    }
}
