//! The CUHK Avenue reader (Lu et al., ICCV 2013) with the official ground truth:
//!
//! ```text
//! <root>/training/frames/01/0000.jpg                             normal training videos
//! <root>/testing/frames/01/0000.jpg                              test videos (MNAD layout)
//! <root>/ground_truth_demo/testing_label_mask/1_label.mat        per test video N (01 -> 1)
//! ```
//!
//! Each `<N>_label.mat` (MAT v5, read with [`crate::matv5`]) holds `volLabel`, a 1 x T cell
//! array of H x W pixel masks, one per frame of test video N; a frame is anomalous when its
//! mask marks any pixel. The files are decoded once, when the dataset is read (in parallel
//! over videos), and the masks kept as runs ([`MaskRef::MatFrame`]), a few bytes per frame.
//!
//! Avenue in the MNAD layout with `frame_labels_avenue.npy` (no pixel masks) is read by the
//! `video_frames` format ([`crate::video`]). `<root>` is one dataset (named after its folder)
//! when it has the layout; otherwise each sub-folder that has it is one.
use crate::error::{DataError, Result};
use crate::folder::{categories_where, category_dir_where};
use crate::mask::{MaskRef, RunMask};
use crate::matv5::read_cell_flags;
use crate::mvtec::Label;
use crate::video::{is_video_frames_dir, no_problems, read_videos, Video, VideoDataset};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the ground-truth files are, relative to the root.
pub const AVENUE_LABEL_DIR: &str = "ground_truth_demo/testing_label_mask";

/// The MAT variable holding the masks.
pub const AVENUE_VARIABLE: &str = "volLabel";

/// Whether `dir` has the Avenue layout (frames and the official ground truth).
pub fn is_avenue_dir(dir: &Path) -> bool {
    is_video_frames_dir(dir) && dir.join(AVENUE_LABEL_DIR).is_dir()
}

/// The datasets (categories) of the Avenue layout under `root`; a root with the frames but
/// without the ground truth is an error saying what is missing.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    let found = categories_where(root, is_avenue_dir)?;
    if found.is_empty() && is_video_frames_dir(root) {
        return Err(missing_ground_truth(root));
    }
    Ok(found)
}

fn missing_ground_truth(root: &Path) -> DataError {
    DataError::Layout {
        path: root.join(AVENUE_LABEL_DIR),
        message: "missing: the official Avenue ground truth (<N>_label.mat); with MNAD's \
                  frame_labels_avenue.npy instead, use format = \"video_frames\""
            .into(),
    }
}

/// Reads the Avenue dataset `category` under `root` (see [`list_categories`]).
pub fn read_category(root: &Path, category: &str) -> Result<VideoDataset> {
    if is_video_frames_dir(root) && !is_avenue_dir(root) {
        return Err(missing_ground_truth(root));
    }
    read_avenue(&category_dir_where(root, category, is_avenue_dir)?)
}

/// The ground-truth file of test video `name` (`01` -> `1_label.mat`).
pub fn label_file(root: &Path, name: &str) -> Result<PathBuf> {
    let n: u32 = name.parse().map_err(|_| DataError::Layout {
        path: root.join("testing/frames").join(name),
        message: "Avenue test videos are numbered (01, 02, ...): their ground truth is \
                  <number>_label.mat"
            .into(),
    })?;
    Ok(root.join(AVENUE_LABEL_DIR).join(format!("{n}_label.mat")))
}

/// Reads the Avenue dataset at `root`, decoding every test video's ground truth; every
/// video's problems are named at once.
pub fn read_avenue(root: &Path) -> Result<VideoDataset> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    if !root.join(AVENUE_LABEL_DIR).is_dir() {
        return Err(missing_ground_truth(root));
    }
    let mut problems = Vec::new();
    let train = read_videos(&root.join("training/frames"), |_| false, &mut problems)?;
    let mut test = read_videos(&root.join("testing/frames"), |_| false, &mut problems)?;
    let ground_truth: Vec<DataError> = (test.par_iter_mut())
        .filter_map(|v| attach_ground_truth(root, v).err())
        .collect();
    problems.extend(ground_truth);
    no_problems(root, problems)?;
    Ok(VideoDataset {
        root: root.to_path_buf(),
        train,
        test,
        labels_file: root.join(AVENUE_LABEL_DIR),
    })
}

/// Sets the labels and masks of test video `v` from its `.mat` file.
fn attach_ground_truth(root: &Path, v: &mut Video) -> Result<()> {
    let path = label_file(root, &v.name)?;
    if !path.is_file() {
        return Err(DataError::Layout {
            path,
            message: format!("missing: the ground truth of test video {}", v.name),
        });
    }
    let frames = v.len();
    let mut masks = Vec::with_capacity(frames);
    let cells = read_cell_flags(&path, AVENUE_VARIABLE, |k, m| {
        if k < frames {
            let runs = RunMask::from_flags(m.cols as u32, m.rows as u32, &m.data);
            masks.push(MaskRef::MatFrame {
                path: path.clone(),
                index: k,
                runs: Arc::new(runs),
            });
        }
        Ok(())
    })?;
    if cells != frames {
        return Err(DataError::FrameLabels {
            path,
            message: format!(
                "{cells} masks in `{AVENUE_VARIABLE}` for the {frames} frames of {}",
                v.name
            ),
        });
    }
    v.labels = masks
        .iter()
        .map(|m| match m {
            MaskRef::MatFrame { runs, .. } if !runs.is_empty() => Label::Anomalous,
            _ => Label::Normal,
        })
        .collect();
    v.masks = masks;
    Ok(())
}
