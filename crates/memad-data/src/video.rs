//! Video anomaly detection datasets as folders of frames, in the two usual layouts.
//!
//! The MNAD layout (Park et al., CVPR 2020; UCSD Ped2, CUHK Avenue, ShanghaiTech):
//!
//! ```text
//! <root>/training/frames/<video>/<frame>.jpg    normal training videos (01, 02, ...)
//! <root>/testing/frames/<video>/<frame>.jpg     test videos
//! <root>/testing/masks/<video>/<frame>.png      optional pixel masks, same stems as frames
//! <root>/frame_labels_<name>.npy                frame labels of all test videos, concatenated
//!   or <root>/UCSDpedN.m                        the official UCSD ranges (see below)
//!   or <root>/<name>.mat                        Liu et al.'s ranges (ped1/ped2/avenue.mat)
//! ```
//!
//! The original UCSD Anomaly Detection layout (`UCSD_Anomaly_Dataset.v1p2/UCSDped2`):
//!
//! ```text
//! <root>/Train/Train001/001.tif          normal training videos
//! <root>/Test/Test001/001.tif            test videos
//! <root>/Test/Test001_gt/001.bmp         optional pixel masks, same stems as frames
//! <root>/Test/UCSDped2.m  (or <root>/)   frame labels
//! ```
//!
//! `UCSDpedN.m` holds one `TestVideoFile{end+1}.gt_frame = [61:180];` line per test video
//! (in order): the 1-based inclusive ranges of anomalous frames, several separated by
//! commas (`[5:90, 140:200]`). A `.npy` label file holds one 0/1 value per test frame,
//! videos concatenated in order (MNAD's `frame_labels_ped2.npy`, shape `(1, 2010)`). A
//! `.mat` label file is that of the frame tarballs of Liu et al. (CVPR 2018; `ped2.mat`
//! beside `training/` and `testing/`, where MNAD's README sends its users): variable `gt`,
//! a cell per test video holding a `2 x K` matrix, one column per anomalous event (first
//! and last frame, 1-based, inclusive: the ranges of `UCSDpedN.m`).
//!
//! UCSD Ped1 as distributed (v1p2) is reported to hold a truncated frame,
//! `Test/Test017/142.tif`: `memad datasets check` names it and `memad run` refuses to start.
//! Other frameworks' loaders repeat the previous frame in its place; to do the same, replace
//! it with a copy of `141.tif` (a deliberate change of the data, so say so with the results).
//!
//! `<root>` is one dataset (a category named after its folder) when it has the layout;
//! otherwise each of its sub-folders that has it is one (`UCSD_Anomaly_Dataset.v1p2` holds
//! `UCSDped1` and `UCSDped2`). Videos and frames are sorted naturally; nothing is decoded.
//!
//! Clips: [`prediction_clips`] (`past` frames predict the next one, MNAD) and
//! [`centred_clips`] (fixed-length 3D clips labelled by their centre frame, MemAE).
use crate::catalog::DatasetFormat;
use crate::error::{DataError, Result};
use crate::folder::{categories_where, category_dir_where};
use crate::mask::MaskRef;
use crate::mvtec::{
    entries, files_by_stem, images_in, name_of, pick_mask, stem_of, CategorySplit, Label, Sample,
    GOOD,
};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One video: its frames, their labels and masks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// The folder name (`01`, `Test001`).
    pub name: String,
    pub frames: Vec<PathBuf>,
    /// One per frame (all normal for training videos).
    pub labels: Vec<Label>,
    /// One per frame when the dataset has pixel masks for this video, else empty: image
    /// files, or frames of a mask volume (ShanghaiTech, Avenue).
    pub masks: Vec<MaskRef>,
}

impl Video {
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// The mask of frame `k`, when the video has masks.
    pub fn mask(&self, k: usize) -> Option<&MaskRef> {
        self.masks.get(k)
    }
}

/// The training and test videos of one video dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoDataset {
    pub root: PathBuf,
    pub train: Vec<Video>,
    pub test: Vec<Video>,
    /// The file the test labels came from (a folder of per-video files for ShanghaiTech
    /// and Avenue).
    pub labels_file: PathBuf,
}

impl VideoDataset {
    /// The number of frames of `videos`.
    pub fn frame_count(videos: &[Video]) -> usize {
        videos.iter().map(Video::len).sum()
    }

    /// The labels of all test frames, videos concatenated in order.
    pub fn test_labels(&self) -> Vec<Label> {
        self.test.iter().flat_map(|v| v.labels.clone()).collect()
    }

    /// The frames as an image dataset (frame-level one-class protocol): training frames
    /// normal (`good`), test frames `good` or `anomalous`, anomalous frames with their masks
    /// when the dataset has masks.
    pub fn to_category_split(&self, category: &str) -> CategorySplit {
        let frames = |videos: &[Video]| -> Vec<Sample> {
            videos
                .iter()
                .flat_map(|v| (0..v.len()).map(move |k| frame_sample(v, k, Vec::new())))
                .collect()
        };
        CategorySplit {
            category: category.to_string(),
            train: frames(&self.train),
            test: frames(&self.test),
        }
    }
}

/// How video frames are grouped into samples (`[data.clip]` of an experiment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClipMode {
    /// `frames - 1` past frames and the frame to predict (MNAD prediction); the first
    /// `frames - 1` frames of each video are never scored.
    Predict,
    /// `frames` frames centred on the scored frame, clamped at the video's ends (MemAE's 3D
    /// clips, labelled by their centre frame); every frame is scored.
    Centred,
    /// The clips of [`ClipMode::Centred`] that lie wholly inside their video, no frame
    /// repeated: every full window of `frames` consecutive frames, scoring its centre (the
    /// official MemAE index files). The first `frames / 2` and last `frames - frames / 2 - 1`
    /// frames of each video are neither trained on nor scored (16 frames: 8 and 7, the
    /// official `gt_labels[8:-7]`).
    CentredValid,
}

impl VideoDataset {
    /// The videos as clip samples: each sample's `frames` are the clip in time order and its
    /// `image`, `label` and `mask` those of the frame it scores (the target of
    /// [`ClipMode::Predict`], the centre of [`ClipMode::Centred`]).
    pub fn to_clip_split(&self, category: &str, frames: usize, mode: ClipMode) -> CategorySplit {
        CategorySplit {
            category: category.to_string(),
            train: clip_samples(&self.train, frames, mode),
            test: clip_samples(&self.test, frames, mode),
        }
    }
}

fn clip_samples(videos: &[Video], frames: usize, mode: ClipMode) -> Vec<Sample> {
    let clips: Vec<(usize, Vec<usize>, usize)> = match mode {
        ClipMode::Predict => prediction_clips(videos, frames.saturating_sub(1))
            .into_iter()
            .map(|c| (c.video, c.inputs.chain([c.target]).collect(), c.target))
            .collect(),
        ClipMode::Centred => centred_clips(videos, frames, 1)
            .into_iter()
            .map(|c| (c.video, c.frames, c.centre))
            .collect(),
        ClipMode::CentredValid => centred_clips(videos, frames, 1)
            .into_iter()
            .filter(Clip::is_unclamped)
            .map(|c| (c.video, c.frames, c.centre))
            .collect(),
    };
    clips
        .into_iter()
        .map(|(v, clip, k)| {
            let video = &videos[v];
            let frames = clip.iter().map(|&i| video.frames[i].clone()).collect();
            frame_sample(video, k, frames)
        })
        .collect()
}

/// Frame `k` of `video` as a sample: its label, its mask when anomalous, the video's name,
/// and `frames` (the clip it is scored in; empty for single frames).
fn frame_sample(video: &Video, k: usize, frames: Vec<PathBuf>) -> Sample {
    let label = video.labels[k];
    Sample {
        image: video.frames[k].clone(),
        label,
        defect: if label.is_anomalous() {
            "anomalous".to_string()
        } else {
            GOOD.to_string()
        },
        mask: if label.is_anomalous() {
            video.mask(k).cloned()
        } else {
            None
        },
        frames,
        video: Some(video.name.clone()),
        pixels: None,
    }
}

/// Whether `dir` has the MNAD layout (`training/frames` and `testing/frames`).
pub fn is_video_frames_dir(dir: &Path) -> bool {
    dir.join("training/frames").is_dir() && dir.join("testing/frames").is_dir()
}

/// Whether `dir` has the original UCSD layout (`Train` and `Test`).
pub fn is_ucsd_dir(dir: &Path) -> bool {
    dir.join("Train").is_dir() && dir.join("Test").is_dir()
}

/// The datasets (categories) of the MNAD layout under `root`. None where `root` holds the
/// original UCSD layout instead is an error that says to use `format = "ucsd"`.
pub fn list_video_frames(root: &Path) -> Result<Vec<String>> {
    let found = categories_where(root, is_video_frames_dir)?;
    if found.is_empty() {
        if let Some(err) = ucsd_layout_error(root)? {
            return Err(err);
        }
    }
    Ok(found)
}

/// Where `root` (or one of its sub-folders) has the original UCSD layout, the error for
/// reading it as the MNAD layout.
fn ucsd_layout_error(root: &Path) -> Result<Option<DataError>> {
    let ucsd = categories_where(root, is_ucsd_dir)?;
    if ucsd.is_empty() {
        return Ok(None);
    }
    Ok(Some(DataError::Layout {
        path: root.to_path_buf(),
        message: format!(
            "no video_frames dataset here (expected {}), but {} has Train/ and Test/: this \
             looks like the original UCSD layout ({}): use format = \"ucsd\" in datasets.toml",
            DatasetFormat::VideoFrames.layout(),
            ucsd.join(", "),
            DatasetFormat::Ucsd.layout()
        ),
    }))
}

/// The datasets (categories) of the original UCSD layout under `root`.
pub fn list_ucsd(root: &Path) -> Result<Vec<String>> {
    categories_where(root, is_ucsd_dir)
}

/// Reads the MNAD-layout dataset `category` under `root` (see [`list_video_frames`]).
pub fn read_video_frames_category(root: &Path, category: &str) -> Result<VideoDataset> {
    let dir = match category_dir_where(root, category, is_video_frames_dir) {
        Ok(dir) => dir,
        Err(e @ DataError::CategoryMissing { .. }) => {
            return Err(ucsd_layout_error(root)?.unwrap_or(e));
        }
        Err(e) => return Err(e),
    };
    read_video_frames(&dir)
}

/// Reads the original-UCSD-layout dataset `category` under `root` (see [`list_ucsd`]).
pub fn read_ucsd_category(root: &Path, category: &str) -> Result<VideoDataset> {
    read_ucsd(&category_dir_where(root, category, is_ucsd_dir)?)
}

/// The videos (sub-folders, natural order, `skip`ped names left out) of `dir` with their
/// frames. A missing `dir`, one without videos, an empty video and a gap in a video's frame
/// numbers are pushed to `problems` (the video left out), so that one read names them all.
pub(crate) fn read_videos(
    dir: &Path,
    skip: impl Fn(&str) -> bool,
    problems: &mut Vec<DataError>,
) -> Result<Vec<Video>> {
    if !dir.is_dir() {
        problems.push(DataError::Layout {
            path: dir.to_path_buf(),
            message: "missing: expected one folder of frames per video".into(),
        });
        return Ok(Vec::new());
    }
    let (dirs, _) = entries(dir)?;
    let mut videos = Vec::new();
    let mut found = false;
    for d in dirs.iter().filter(|d| !skip(&name_of(d))) {
        found = true;
        let frames = images_in(d)?;
        if frames.is_empty() {
            problems.push(DataError::no_images(d));
            continue;
        }
        if let Err(e) = check_numbering(d, &frames) {
            problems.push(e);
            continue;
        }
        videos.push(Video {
            name: name_of(d),
            labels: vec![Label::Normal; frames.len()],
            frames,
            masks: Vec::new(),
        });
    }
    if !found {
        problems.push(DataError::Layout {
            path: dir.to_path_buf(),
            message: "holds no video folders".into(),
        });
    }
    Ok(videos)
}

/// `Ok(())` when a read found no `problems`, else all of them (in [`DataError::Several`] when
/// there are more than one), under the dataset named after `root`.
pub(crate) fn no_problems(root: &Path, problems: Vec<DataError>) -> Result<()> {
    DataError::gathered(&name_of(root), ((), problems))
}

/// Frames named by number (`000.jpg`, `0001.tif`) must be consecutive: labels and clips are
/// by position, so a missing frame would give every later frame its neighbour's label and
/// join clips across the gap. Frames not all named by number are not checked.
fn check_numbering(dir: &Path, frames: &[PathBuf]) -> Result<()> {
    let numbers: Option<Vec<u64>> = (frames.iter())
        .map(|f| f.file_stem()?.to_str()?.parse().ok())
        .collect();
    let Some(numbers) = numbers else {
        return Ok(());
    };
    for (pair, names) in numbers.windows(2).zip(frames.windows(2)) {
        if pair[1] != pair[0] + 1 {
            let message = format!(
                "frame numbers jump from {} to {}: a frame is missing or extra, and frame \
                 labels and clips go by position (restore the frame, or renumber the video)",
                name_of(&names[0]),
                name_of(&names[1])
            );
            return Err(DataError::Layout {
                path: dir.to_path_buf(),
                message,
            });
        }
    }
    Ok(())
}

/// Fills `video.masks` from `mask_dir` when it exists: one mask per frame, same stem (two,
/// such as `001.png` and `001.bmp`, are a problem: which one is meant is not guessed). Every
/// problem is pushed to `problems`.
fn attach_masks(video: &mut Video, mask_dir: &Path, problems: &mut Vec<DataError>) -> Result<()> {
    if !mask_dir.is_dir() {
        return Ok(());
    }
    let by_stem = files_by_stem(images_in(mask_dir)?);
    let mut masks = Vec::with_capacity(video.frames.len());
    for frame in &video.frames {
        let stem = stem_of(frame);
        let candidates = by_stem.get(&stem).map(Vec::as_slice).unwrap_or_default();
        let expected = mask_dir.join(format!("{stem}.png"));
        masks.extend(pick_mask(candidates, frame, expected, "", true, problems));
    }
    video.masks = masks;
    Ok(())
}

/// The label files directly in `dirs`: `frame_labels_*.npy`, `*.m` and `*.mat`, sorted.
fn label_files(dirs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for dir in dirs.iter().filter(|d| d.is_dir()) {
        let (_, files) = entries(dir)?;
        found.extend(files.into_iter().filter(|f| {
            let name = name_of(f);
            (name.starts_with("frame_labels_") && name.ends_with(".npy"))
                || name.ends_with(".m")
                || name.ends_with(".mat")
        }));
    }
    Ok(found)
}

/// The one label file among `dirs`; none or several is an error.
fn find_labels(dirs: &[PathBuf]) -> Result<PathBuf> {
    let found = label_files(dirs)?;
    match found.len() {
        1 => Ok(found[0].clone()),
        0 => Err(DataError::Layout {
            path: dirs[0].clone(),
            message: format!(
                "no frame labels: expected frame_labels_<name>.npy, UCSDpedN.m or <name>.mat \
                 (Liu et al.'s ped2.mat) in {}",
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }),
        _ => Err(DataError::Layout {
            path: dirs[0].clone(),
            message: format!(
                "several frame label files ({}) in {}: the dataset's labels must be the one \
                 frame_labels_<name>.npy, UCSDpedN.m or <name>.mat file there; move or rename \
                 the others",
                found
                    .iter()
                    .map(|f| name_of(f))
                    .collect::<Vec<_>>()
                    .join(", "),
                dirs.iter()
                    .map(|d| d.display().to_string())
                    .collect::<Vec<_>>()
                    .join(" or ")
            ),
        }),
    }
}

/// Reads an MNAD-layout dataset at `root`, labels from the one label file in `root`.
pub fn read_video_frames(root: &Path) -> Result<VideoDataset> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    read_mnad_layout(root, find_labels(&[root.to_path_buf()]))
}

/// [`read_video_frames`] with the labels from `labels` (`.npy` or UCSD `.m`).
pub fn read_video_frames_with_labels(root: &Path, labels: &Path) -> Result<VideoDataset> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    read_mnad_layout(root, Ok(labels.to_path_buf()))
}

/// The MNAD layout at `root` with the label file `labels` (or the problem of finding it),
/// every layout problem named at once.
fn read_mnad_layout(root: &Path, labels: Result<PathBuf>) -> Result<VideoDataset> {
    let mut problems = Vec::new();
    let labels = labels.unwrap_or_else(|e| {
        problems.push(e);
        PathBuf::new() // not used: `no_problems` returns the error
    });
    let train = read_videos(&root.join("training/frames"), |_| false, &mut problems)?;
    let mut test = read_videos(&root.join("testing/frames"), |_| false, &mut problems)?;
    let mask_root = root.join("testing/masks");
    for v in &mut test {
        attach_masks(v, &mask_root.join(&v.name), &mut problems)?;
    }
    // Labels go by position: they are matched to the test videos only when all were read.
    no_problems(root, problems)?;
    apply_labels(&mut test, &labels)?;
    Ok(VideoDataset {
        root: root.to_path_buf(),
        train,
        test,
        labels_file: labels,
    })
}

/// Reads an original-UCSD-layout dataset (`UCSDped1`, `UCSDped2`) at `root`.
pub fn read_ucsd(root: &Path) -> Result<VideoDataset> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    let is_gt = |n: &str| n.ends_with("_gt");
    let mut problems = Vec::new();
    let train = read_videos(&root.join("Train"), is_gt, &mut problems)?;
    let test_dir = root.join("Test");
    let mut test = read_videos(&test_dir, is_gt, &mut problems)?;
    for v in &mut test {
        attach_masks(v, &test_dir.join(format!("{}_gt", v.name)), &mut problems)?;
    }
    let labels = find_labels(&[test_dir, root.to_path_buf()]).unwrap_or_else(|e| {
        problems.push(e);
        PathBuf::new() // not used: `no_problems` returns the error
    });
    // Labels go by position: they are matched to the test videos only when all were read.
    no_problems(root, problems)?;
    apply_labels(&mut test, &labels)?;
    Ok(VideoDataset {
        root: root.to_path_buf(),
        train,
        test,
        labels_file: labels,
    })
}

/// Sets the labels of the `test` videos from `path` (`.npy` or `.m`).
fn apply_labels(test: &mut [Video], path: &Path) -> Result<()> {
    let mismatch = |message: String| DataError::FrameLabels {
        path: path.to_path_buf(),
        message,
    };
    if path.extension().is_some_and(|e| e == "npy") {
        let flat = read_npy_labels(path)?;
        let total = VideoDataset::frame_count(test);
        if flat.len() != total {
            return Err(mismatch(format!(
                "{} labels for {total} test frames in {} videos",
                flat.len(),
                test.len()
            )));
        }
        let mut at = 0;
        for v in test {
            v.labels = flat[at..at + v.len()].to_vec();
            at += v.len();
        }
        return Ok(());
    }
    let (ranges, entries) = if path.extension().is_some_and(|e| e == "mat") {
        (read_mat_ranges(path)?, "`gt` cells")
    } else {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        (parse_ucsd_ranges(&text, path)?, "gt_frame entries")
    };
    if ranges.len() != test.len() {
        return Err(mismatch(format!(
            "{} {entries} for {} test videos",
            ranges.len(),
            test.len()
        )));
    }
    for (v, ranges) in test.iter_mut().zip(&ranges) {
        let mut labels = vec![Label::Normal; v.len()];
        for &(first, last) in ranges {
            if last > v.len() {
                return Err(mismatch(format!(
                    "range {first}:{last} of video {} goes past its {} frames",
                    v.name,
                    v.len()
                )));
            }
            labels[first - 1..last].fill(Label::Anomalous);
        }
        v.labels = labels;
    }
    Ok(())
}

/// The variable `gt` of Liu et al.'s `.mat` labels: per test video (a cell), the columns of
/// its `2 x K` matrix as 1-based inclusive ranges; a cell of two values in a row (`1 x 2`)
/// is one range, and an empty cell none (as their `evaluate.py`, which squeezes each cell).
pub fn read_mat_ranges(path: &Path) -> Result<Vec<Vec<(usize, usize)>>> {
    let mut videos = Vec::new();
    crate::matv5::read_cell_values(path, "gt", |k, m| {
        let fail = |message: String| DataError::Format {
            path: path.to_path_buf(),
            message: format!("`gt` cell {} (test video {}): {message}", k + 1, k + 1),
        };
        // Two values, a 1 x 2 row or a 2 x 1 column: (first, last) of one event.
        let (rows, cols) = match m.data.len() {
            2 => (2, 1),
            _ => (m.rows, m.cols),
        };
        if rows != 2 && !m.data.is_empty() {
            return Err(fail(format!(
                "a {} x {} matrix; expected 2 x K (first and last frame of each event)",
                m.rows, m.cols
            )));
        }
        let frame = |v: f64| match v >= 1.0 && v.fract() == 0.0 {
            true => Ok(v as usize),
            false => Err(fail(format!("{v} is not a 1-based frame number"))),
        };
        let ranges = (0..cols.min(m.data.len() / 2))
            .map(|j| {
                let (first, last) = (frame(m.data[j])?, frame(m.data[cols + j])?);
                match first <= last {
                    true => Ok((first, last)),
                    false => Err(fail(format!("event {} ends before it starts", j + 1))),
                }
            })
            .collect::<Result<Vec<_>>>()?;
        videos.push(ranges);
        Ok(())
    })?;
    Ok(videos)
}

/// Parses the `gt_frame = [a:b, c:d]` lines of a UCSD `.m` file (`path` for errors): per
/// test video, its 1-based inclusive ranges (`[a:b]` or a single frame `[a]`).
pub fn parse_ucsd_ranges(text: &str, path: &Path) -> Result<Vec<Vec<(usize, usize)>>> {
    let mut videos = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let fail = |message: String| DataError::Format {
            path: path.to_path_buf(),
            message: format!("line {}: {message}", n + 1),
        };
        let line = line.split('%').next().unwrap_or("");
        let Some(at) = line.find("gt_frame") else {
            continue;
        };
        let rest = &line[at..];
        let (Some(open), Some(close)) = (rest.find('['), rest.rfind(']')) else {
            return Err(fail("expected `gt_frame = [first:last, ...]`".into()));
        };
        let mut ranges = Vec::new();
        for token in rest[open + 1..close]
            .split([',', ';', ' ', '\t'])
            .filter(|t| !t.is_empty())
        {
            let parse = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .map_err(|_| fail(format!("`{token}` is not a frame range")))
            };
            let (first, last) = match token.split_once(':') {
                Some((a, b)) => (parse(a)?, parse(b)?),
                None => (parse(token)?, parse(token)?),
            };
            if first == 0 || last < first {
                return Err(fail(format!("`{token}` is not a 1-based range first:last")));
            }
            ranges.push((first, last));
        }
        videos.push(ranges);
    }
    if videos.is_empty() {
        return Err(DataError::Format {
            path: path.to_path_buf(),
            message: "no `gt_frame = [...]` lines".into(),
        });
    }
    Ok(videos)
}

/// Reads a `.npy` array of frame labels (any shape, flattened in file order; bool, integer
/// or float; non-zero is anomalous).
pub fn read_npy_labels(path: &Path) -> Result<Vec<Label>> {
    let (_, flags) = crate::npy::read_nonzero(path)?;
    Ok(flags
        .into_iter()
        .map(|on| if on { Label::Anomalous } else { Label::Normal })
        .collect())
}

/// A frame-prediction sample: frames `inputs` of video `video` predict frame `target`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PredictionClip {
    pub video: usize,
    pub inputs: Range<usize>,
    pub target: usize,
    /// The target frame's label.
    pub label: Label,
}

/// Every prediction sample of `videos` with `past` input frames: for each video and each
/// target `t >= past`, inputs `t - past..t`. The first `past` frames of a video are never
/// targets (and are left out of frame-level scoring, as in MNAD).
pub fn prediction_clips(videos: &[Video], past: usize) -> Vec<PredictionClip> {
    let mut clips = Vec::new();
    for (v, video) in videos.iter().enumerate() {
        for target in past.max(1)..video.len() {
            clips.push(PredictionClip {
                video: v,
                inputs: target - past.max(1)..target,
                target,
                label: video.labels[target],
            });
        }
    }
    clips
}

/// A fixed-length clip of one video, labelled by its centre frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Clip {
    pub video: usize,
    /// `length` frame indices, consecutive except where clamped at the video's ends.
    pub frames: Vec<usize>,
    pub centre: usize,
    pub label: Label,
}

impl Clip {
    /// Whether the clip lies wholly inside its video (no index clamped at an end).
    pub fn is_unclamped(&self) -> bool {
        self.frames.windows(2).all(|w| w[1] == w[0] + 1)
    }
}

/// Clips of `length` frames centred on every `stride`-th frame of each video (frames
/// `c - length/2 .. c - length/2 + length`, indices clamped to the video, so the first and
/// last frames repeat at the ends and every frame can be scored with `stride` 1).
pub fn centred_clips(videos: &[Video], length: usize, stride: usize) -> Vec<Clip> {
    let length = length.max(1);
    let half = length / 2;
    let mut clips = Vec::new();
    for (v, video) in videos.iter().enumerate() {
        let last = video.len().saturating_sub(1);
        for centre in (0..video.len()).step_by(stride.max(1)) {
            clips.push(Clip {
                video: v,
                frames: (0..length)
                    .map(|i| (centre + i).saturating_sub(half).min(last))
                    .collect(),
                centre,
                label: video.labels[centre],
            });
        }
    }
    clips
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ucsd_ranges_parse() {
        let text = "TestVideoFile = {};\n\
                    TestVideoFile{end+1}.gt_frame = [61:180];\n\
                    % TestVideoFile{end+1}.gt_frame = [1:2];\n\
                    TestVideoFile{end+1}.gt_frame = [5:90, 140:200];\n\
                    TestVideoFile{end+1}.gt_frame = [7];\n";
        let r = parse_ucsd_ranges(text, Path::new("UCSDped1.m")).unwrap();
        assert_eq!(
            r,
            vec![vec![(61, 180)], vec![(5, 90), (140, 200)], vec![(7, 7)]]
        );
        let err = parse_ucsd_ranges("x.gt_frame = [0:3];", Path::new("a.m"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.m") && err.contains("line 1"), "{err}");
        let err = parse_ucsd_ranges("x.gt_frame = [a:3];", Path::new("a.m"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.m") && err.contains("line 1: `a:3` is not a frame range"),
            "{err}"
        );
        let err = parse_ucsd_ranges("nothing", Path::new("a.m"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.m") && err.contains("no `gt_frame = [...]` lines"),
            "{err}"
        );
    }

    #[test]
    fn the_original_ucsd_layout_read_as_video_frames_says_to_use_ucsd() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("UCSDped2");
        for d in ["Train/Train001", "Test/Test001"] {
            std::fs::create_dir_all(root.join(d)).unwrap();
            image::GrayImage::new(4, 4)
                .save(root.join(d).join("001.tif"))
                .unwrap();
        }
        std::fs::write(root.join("Test/UCSDped2.m"), "").unwrap();
        for r in [&root, &dir.path().to_path_buf()] {
            let err = list_video_frames(r).unwrap_err().to_string();
            assert!(
                err.contains("this looks like the original UCSD layout")
                    && err.contains("use format = \"ucsd\"")
                    && err.contains("UCSDped2 has Train/ and Test/"),
                "{err}"
            );
        }
        let err = read_video_frames_category(dir.path(), "UCSDped2")
            .unwrap_err()
            .to_string();
        assert!(err.contains("use format = \"ucsd\""), "{err}");
        // A folder with neither layout still lists no categories.
        let other = tempfile::tempdir().unwrap();
        assert!(list_video_frames(other.path()).unwrap().is_empty());
    }

    #[test]
    fn a_gap_in_the_frame_numbers_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let v = dir.path().join("03");
        std::fs::create_dir_all(&v).unwrap();
        let frame = image::GrayImage::new(2, 2);
        for k in [98, 99, 101] {
            frame.save(v.join(format!("{k:03}.png"))).unwrap();
        }
        let read = || {
            let mut problems = Vec::new();
            let videos = read_videos(dir.path(), |_| false, &mut problems).unwrap();
            (videos, problems)
        };
        let (videos, problems) = read();
        assert!(videos.is_empty(), "the video with the gap is left out");
        let err = problems[0].to_string();
        assert!(
            err.contains("03") && err.contains("frame numbers jump from 099.png to 101.png"),
            "{err}"
        );
        frame.save(v.join("100.png")).unwrap();
        let (videos, problems) = read();
        assert!(problems.is_empty());
        assert_eq!(videos[0].len(), 4);
        // Names that are not all numbers are left alone.
        frame.save(v.join("extra.png")).unwrap();
        assert_eq!(read().0[0].len(), 5);
    }

    fn video(n: usize, anomalous: Range<usize>) -> Video {
        Video {
            name: "01".into(),
            frames: (0..n).map(|k| PathBuf::from(format!("{k}.jpg"))).collect(),
            labels: (0..n)
                .map(|k| {
                    if anomalous.contains(&k) {
                        Label::Anomalous
                    } else {
                        Label::Normal
                    }
                })
                .collect(),
            masks: Vec::new(),
        }
    }

    #[test]
    fn clips() {
        let videos = [video(6, 4..6), video(3, 0..1)];
        let p = prediction_clips(&videos, 4);
        assert_eq!(p.len(), 2);
        assert_eq!(p[0].inputs, 0..4);
        assert_eq!((p[1].target, p[1].label), (5, Label::Anomalous));
        let c = centred_clips(&videos, 4, 1);
        assert_eq!(c.len(), 9);
        assert_eq!(c[0].frames, [0, 0, 0, 1]);
        assert_eq!(c[3].frames, [1, 2, 3, 4]);
        assert_eq!(c[5].frames, [3, 4, 5, 5]);
        assert_eq!((c[6].video, c[6].label), (1, Label::Anomalous));
        assert_eq!(centred_clips(&videos, 16, 2).len(), 5);
        let whole: Vec<_> = c.iter().filter(|c| c.is_unclamped()).collect();
        assert_eq!(
            whole.len(),
            3,
            "6 frames hold 3 windows of 4, 3 frames none"
        );
        assert_eq!(
            whole.iter().map(|c| c.centre).collect::<Vec<_>>(),
            [2, 3, 4]
        );
    }

    #[test]
    fn clip_samples_score_the_target_or_centre_frame() {
        let mut v = video(6, 4..6);
        v.masks = (0..6)
            .map(|k| MaskRef::File(PathBuf::from(format!("{k}.png"))))
            .collect();
        let data = VideoDataset {
            root: PathBuf::new(),
            train: vec![video(5, 0..0)],
            test: vec![v],
            labels_file: PathBuf::new(),
        };
        let split = data.to_clip_split("ped", 5, ClipMode::Predict);
        assert_eq!((split.train.len(), split.test.len()), (1, 2));
        let last = &split.test[1];
        assert_eq!(last.image, PathBuf::from("5.jpg"));
        assert_eq!(last.frames.last(), Some(&PathBuf::from("5.jpg")));
        assert_eq!(last.frames[0], PathBuf::from("1.jpg"));
        assert_eq!(last.mask, Some(MaskRef::File(PathBuf::from("5.png"))));
        assert_eq!(
            (last.label, last.video.as_deref()),
            (Label::Anomalous, Some("01"))
        );
        let centred = data.to_clip_split("ped", 3, ClipMode::Centred);
        assert_eq!(centred.test.len(), 6);
        assert_eq!(
            centred.test[0].frames,
            ["0.jpg", "0.jpg", "1.jpg"].map(PathBuf::from)
        );
        assert_eq!(centred.test[3].image, PathBuf::from("3.jpg"));
        assert!(
            centred.test[3].mask.is_none(),
            "normal frames carry no mask"
        );
        // Official MemAE windows: 16 frames score frames 8 ..= n - 8 (gt_labels[8:-7]).
        let data = VideoDataset {
            test: vec![video(40, 0..0)],
            ..data
        };
        let valid = data.to_clip_split("ped", 16, ClipMode::CentredValid);
        let scored: Vec<_> = valid.test.iter().map(|s| s.image.clone()).collect();
        assert_eq!(scored.len(), 40 - 15);
        assert_eq!(scored[0], PathBuf::from("8.jpg"));
        assert_eq!(scored.last(), Some(&PathBuf::from("32.jpg")));
        assert_eq!(valid.test[0].frames[0], PathBuf::from("0.jpg"));
        assert_eq!(valid.test[0].frames[15], PathBuf::from("15.jpg"));
        assert!(
            valid.train.is_empty(),
            "a 5-frame video holds no 16-frame window"
        );
    }
}
