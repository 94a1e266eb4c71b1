//! The ShanghaiTech Campus reader (Luo et al., ICCV 2017), in the common frame layout (the
//! test part as downloaded, the training videos extracted to frames):
//!
//! ```text
//! <root>/training/frames/01_001/000.jpg          normal training videos, <scene>_<video>
//! <root>/testing/frames/01_0014/000.jpg          test videos
//! <root>/testing/test_frame_mask/01_0014.npy     frame labels: one int 0/1 per frame
//! <root>/testing/test_pixel_mask/01_0014.npy     pixel masks: [T, H, W] uint8 0/1
//! ```
//!
//! Frame labels are read when the dataset is read; pixel masks stay on disk, referenced as
//! ([`MaskRef::NpyFrame`], file and frame) and read in place, one frame at a time, by the
//! batch loader and `datasets check` (only each volume's header is read up front, to check
//! that it has one frame per frame of its video). `test_pixel_mask/` is optional: without
//! it the dataset has frame labels only. The training videos are all normal.
//!
//! `<root>` is one dataset (a category named after its folder) when it has the layout;
//! otherwise each sub-folder that has it is one. Read as images ([`VideoDataset::
//! to_category_split`]) or as clips ([`VideoDataset::to_clip_split`]), like `video_frames`.
//! ShanghaiTech in the MNAD layout (`frame_labels_shanghai.npy`) is `video_frames`.
use crate::error::{DataError, Result};
use crate::folder::{categories_where, category_dir_where};
use crate::mask::MaskRef;
use crate::npy::{read_header, volume_shape};
use crate::video::{no_problems, read_npy_labels, read_videos, Video, VideoDataset};
use std::path::Path;

/// Whether `dir` has the ShanghaiTech layout (frames and `testing/test_frame_mask`).
pub fn is_shanghaitech_dir(dir: &Path) -> bool {
    dir.join("training/frames").is_dir()
        && dir.join("testing/frames").is_dir()
        && dir.join("testing/test_frame_mask").is_dir()
}

/// The datasets (categories) of the ShanghaiTech layout under `root`.
pub fn list_categories(root: &Path) -> Result<Vec<String>> {
    categories_where(root, is_shanghaitech_dir)
}

/// Reads the ShanghaiTech dataset `category` under `root` (see [`list_categories`]).
pub fn read_category(root: &Path, category: &str) -> Result<VideoDataset> {
    read_shanghaitech(&category_dir_where(root, category, is_shanghaitech_dir)?)
}

/// Reads the ShanghaiTech dataset at `root`; every video's problems are named at once.
pub fn read_shanghaitech(root: &Path) -> Result<VideoDataset> {
    if !root.is_dir() {
        return Err(DataError::RootMissing {
            path: root.to_path_buf(),
        });
    }
    let mut problems = Vec::new();
    let train = read_videos(&root.join("training/frames"), |_| false, &mut problems)?;
    let mut test = read_videos(&root.join("testing/frames"), |_| false, &mut problems)?;
    let label_dir = root.join("testing/test_frame_mask");
    let mask_dir = root.join("testing/test_pixel_mask");
    for v in &mut test {
        if let Err(e) = attach_labels_and_masks(v, &label_dir, &mask_dir) {
            problems.push(e);
        }
    }
    no_problems(root, problems)?;
    Ok(VideoDataset {
        root: root.to_path_buf(),
        train,
        test,
        labels_file: label_dir,
    })
}

/// Sets the labels of test video `v` from `<label_dir>/<video>.npy` and, when `mask_dir`
/// exists, its masks from the frames of `<mask_dir>/<video>.npy`.
fn attach_labels_and_masks(v: &mut Video, label_dir: &Path, mask_dir: &Path) -> Result<()> {
    let labels_path = label_dir.join(format!("{}.npy", v.name));
    if !labels_path.is_file() {
        return Err(DataError::Layout {
            path: labels_path,
            message: format!("missing: the frame labels of test video {}", v.name),
        });
    }
    let labels = read_npy_labels(&labels_path)?;
    if labels.len() != v.len() {
        return Err(DataError::FrameLabels {
            path: labels_path,
            message: format!(
                "{} labels for the {} frames of {}",
                labels.len(),
                v.len(),
                v.name
            ),
        });
    }
    v.labels = labels;
    if !mask_dir.is_dir() {
        return Ok(());
    }
    let mask_path = mask_dir.join(format!("{}.npy", v.name));
    if !mask_path.is_file() {
        return Err(DataError::MaskMissing {
            image: v.frames[0].clone(),
            expected: mask_path,
            hint: "",
        });
    }
    let (t, _, _) = volume_shape(&read_header(&mask_path)?, &mask_path)?;
    if t != v.len() {
        return Err(DataError::FrameLabels {
            path: mask_path,
            message: format!("{t} mask frames for the {} frames of {}", v.len(), v.name),
        });
    }
    v.masks = (0..t)
        .map(|index| MaskRef::NpyFrame {
            path: mask_path.clone(),
            index,
        })
        .collect();
    Ok(())
}
