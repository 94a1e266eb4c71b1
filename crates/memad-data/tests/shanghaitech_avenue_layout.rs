//! ShanghaiTech (`.npy` frame labels and pixel masks) and CUHK Avenue (the official `.mat`
//! ground truth) on small trees in the real layouts. The Avenue `.mat` files are the
//! fixtures written by `tools/make_avenue_fixture.py` (scipy's `savemat`, compressed and
//! uncompressed): `volLabel` = 4 masks of 4 x 6 pixels, frame 0 empty (double), frame 1 one
//! pixel at row 0 column 5 (double), frame 2 rows 2-3 x columns 1-2 (uint8), frame 3 row 3
//! and (1, 0) (logical).
use image::{GrayImage, Luma};
use memad_data::check::check_dataset;
use memad_data::image_io::{load_mask_for, MaskResize};
use memad_data::loader::decode_batch;
use memad_data::mask::MaskRef;
use memad_data::matv5::read_cell_flags;
use memad_data::npy::encode;
use memad_data::video::{read_video_frames, ClipMode};
use memad_data::{avenue, shanghaitech, DataError, DatasetCatalog, DatasetEntry, Label};
use std::path::{Path, PathBuf};

use Label::{Anomalous as A, Normal as N};

fn frame(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_pixel(w, h, Luma([90])).save(path).unwrap();
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn entry(format: &str, root: &Path) -> DatasetEntry {
    let text = format!(
        "[d]\nformat = \"{format}\"\nroot = \"{}\"\n",
        root.display()
    );
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    catalog.get("d").unwrap().clone()
}

fn white_pixels(img: &GrayImage) -> usize {
    img.pixels().filter(|p| p[0] == 255).count()
}

/// A `[T, 8, 12]` mask volume: `on(t, y, x)` per pixel.
fn volume(t: usize, on: impl Fn(usize, usize, usize) -> bool) -> Vec<u8> {
    let mut v = Vec::new();
    for k in 0..t {
        for y in 0..8 {
            for x in 0..12 {
                v.push(on(k, y, x) as u8);
            }
        }
    }
    encode(&[t, 8, 12], &v, false)
}

/// ShanghaiTech with 2 training videos (3 and 2 frames) and 2 test videos: `01_0014` (4
/// frames, frames 2-3 anomalous: the top-left 6 x 4 block) and `02_0128` (3 frames, frame
/// 0 anomalous: one pixel), frames 12 x 8.
fn shanghaitech_tree(root: &Path) {
    for (v, n) in [("01_001", 3), ("02_002", 2)] {
        for k in 0..n {
            frame(&root.join(format!("training/frames/{v}/{k:03}.jpg")), 12, 8);
        }
    }
    for (v, n) in [("01_0014", 4), ("02_0128", 3)] {
        for k in 0..n {
            frame(&root.join(format!("testing/frames/{v}/{k:03}.jpg")), 12, 8);
        }
    }
    let labels = root.join("testing/test_frame_mask");
    write(
        &labels.join("01_0014.npy"),
        &encode(&[4], &[0, 0, 1, 1], true),
    );
    write(&labels.join("02_0128.npy"), &encode(&[3], &[1, 0, 0], true));
    let masks = root.join("testing/test_pixel_mask");
    write(
        &masks.join("01_0014.npy"),
        &volume(4, |t, y, x| t >= 2 && y < 4 && x < 6),
    );
    write(
        &masks.join("02_0128.npy"),
        &volume(3, |t, y, x| t == 0 && (y, x) == (7, 11)),
    );
}

#[test]
fn reads_shanghaitech_frames_labels_and_npy_masks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shanghaitech");
    shanghaitech_tree(&root);
    assert_eq!(
        shanghaitech::list_categories(dir.path()).unwrap(),
        ["shanghaitech"]
    );
    let data = shanghaitech::read_category(&root, "shanghaitech").unwrap();
    let names: Vec<_> = data.test.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["01_0014", "02_0128"]);
    assert_eq!(data.train.len(), 2);
    assert_eq!(data.test_labels(), [N, N, A, A, A, N, N]);
    let masks_01 = root.join("testing/test_pixel_mask/01_0014.npy");
    assert_eq!(
        data.test[0].mask(2),
        Some(&MaskRef::NpyFrame {
            path: masks_01.clone(),
            index: 2
        })
    );
    // Frames of the volume read in place.
    let m = data.test[0].mask(3).unwrap().decode().unwrap();
    assert_eq!(m.dimensions(), (12, 8));
    assert_eq!(white_pixels(&m), 24);
    assert_eq!(m.get_pixel(5, 3)[0], 255);
    assert_eq!(m.get_pixel(6, 3)[0], 0);
    assert_eq!(
        white_pixels(&data.test[0].mask(1).unwrap().decode().unwrap()),
        0
    );
    let m = data.test[1].mask(0).unwrap().decode().unwrap();
    assert_eq!((white_pixels(&m), m.get_pixel(11, 7)[0]), (1, 255));

    // Through the catalog: images, clips, batches and the check.
    let e = entry("shanghaitech", &root);
    assert!(e.format.is_video());
    assert_eq!(e.category_names().unwrap(), ["shanghaitech"]);
    let split = e.read_category("shanghaitech").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (5, 7));
    assert_eq!(split.defects(), ["anomalous"]);
    assert_eq!(split.test[2].mask.as_ref(), data.test[0].mask(2));
    assert!(split.test[0].mask.is_none() && split.test[5].mask.is_none());
    assert_eq!(split.test[4].video.as_deref(), Some("02_0128"));
    let clips = e.read_clips("shanghaitech", 3, ClipMode::Predict).unwrap();
    // 4 - 2 and 3 - 2 targets; the first target is frame 2 of 01_0014.
    assert_eq!(clips.test.len(), 3);
    assert_eq!(clips.test[0].frames.len(), 3);
    assert_eq!(clips.test[0].image, data.test[0].frames[2]);
    assert_eq!(clips.test[0].mask.as_ref(), data.test[0].mask(2));
    let batch = decode_batch(&split.test, &[2, 4, 0], 8, true).unwrap();
    let masks = batch.masks.unwrap();
    let ones = |k: usize| {
        masks[k * 64..(k + 1) * 64]
            .iter()
            .filter(|&&v| v > 0.5)
            .count()
    };
    // 12 x 8 -> 8 x 8 (nearest): the 6 x 4 block covers the top-left 4 x 4.
    assert_eq!((ones(0), ones(1), ones(2)), (16, 1, 0));
    let clip_batch = decode_batch(&clips.test, &[0, 1], 8, true).unwrap();
    assert_eq!(clip_batch.channels, 9);
    let report = check_dataset(&e).unwrap();
    assert!(report.is_ok(), "{report}");
    let c = &report.categories[0];
    assert_eq!(
        (c.masks_checked, c.empty_masks, c.without_mask.len()),
        (3, 0, 0)
    );
    assert_eq!(c.counts[&("test".to_string(), "anomalous".to_string())], 3);
    assert_eq!(c.sizes[&(12, 8)], 12);
}

#[test]
fn file_problems_check_the_clip_input_frames_that_are_never_scored() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shanghaitech");
    shanghaitech_tree(&root);
    let e = entry("shanghaitech", &root);
    let clips = e.read_clips("shanghaitech", 3, ClipMode::Predict).unwrap();
    assert!(memad_data::file_problems(&clips).is_empty());
    // Frame 0 of a test video is an input of the first clip, never a scored frame.
    let first = root.join("testing/frames/01_0014/000.jpg");
    assert!(clips.test.iter().all(|s| s.image != first));
    write(&first, b"not a jpeg");
    let problems = memad_data::file_problems(&clips);
    assert_eq!(problems.len(), 1, "{problems:?}");
    let text = problems[0].to_string();
    assert!(text.contains("01_0014/000.jpg"), "{text}");
}

#[test]
fn shanghaitech_errors_name_the_file_and_masks_are_optional() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shanghaitech");
    shanghaitech_tree(&root);
    let labels = root.join("testing/test_frame_mask/02_0128.npy");
    write(&labels, &encode(&[2], &[1, 0], true));
    let msg = shanghaitech::read_shanghaitech(&root)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("02_0128.npy") && msg.contains("2 labels for the 3 frames of 02_0128"),
        "{msg}"
    );
    write(&labels, &encode(&[3], &[1, 0, 0], true));
    let masks = root.join("testing/test_pixel_mask/02_0128.npy");
    write(&masks, &volume(2, |_, _, _| true));
    let msg = shanghaitech::read_shanghaitech(&root)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("2 mask frames for the 3 frames"), "{msg}");
    std::fs::remove_file(&masks).unwrap();
    let err = shanghaitech::read_shanghaitech(&root).unwrap_err();
    assert!(matches!(err, DataError::MaskMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("test_pixel_mask/02_0128.npy"),
        "{err}"
    );
    // Without test_pixel_mask/: frame labels only.
    std::fs::remove_dir_all(root.join("testing/test_pixel_mask")).unwrap();
    let data = shanghaitech::read_shanghaitech(&root).unwrap();
    assert!(data.test.iter().all(|v| v.masks.is_empty()));
    assert_eq!(data.test_labels(), [N, N, A, A, A, N, N]);
    std::fs::remove_file(root.join("testing/test_frame_mask/01_0014.npy")).unwrap();
    let msg = shanghaitech::read_shanghaitech(&root)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("01_0014.npy") && msg.contains("frame labels of test video 01_0014"),
        "{msg}"
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Avenue with one training video and two test videos of 4 frames (6 x 4), their ground
/// truth the compressed (video 01) and uncompressed (video 02) fixtures.
fn avenue_tree(root: &Path) {
    for k in 0..3 {
        frame(&root.join(format!("training/frames/01/{k:04}.jpg")), 6, 4);
    }
    for v in ["01", "02"] {
        for k in 0..4 {
            frame(&root.join(format!("testing/frames/{v}/{k:04}.jpg")), 6, 4);
        }
    }
    let gt = root.join("ground_truth_demo/testing_label_mask");
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::copy(
        fixture("avenue_label_compressed.mat"),
        gt.join("1_label.mat"),
    )
    .unwrap();
    std::fs::copy(
        fixture("avenue_label_uncompressed.mat"),
        gt.join("2_label.mat"),
    )
    .unwrap();
}

#[test]
fn mat_v5_fixtures_compressed_and_not_decode_alike() {
    let read = |name: &str| {
        let mut cells = Vec::new();
        let n = read_cell_flags(&fixture(name), "volLabel", |k, m| {
            cells.push((k, m));
            Ok(())
        })
        .unwrap();
        assert_eq!(n, 4);
        cells
    };
    let compressed = read("avenue_label_compressed.mat");
    assert_eq!(compressed, read("avenue_label_uncompressed.mat"));
    let set = |k: usize| -> Vec<(usize, usize)> {
        let m = &compressed[k].1;
        assert_eq!((m.rows, m.cols), (4, 6));
        (0..24)
            .filter(|&i| m.data[i])
            .map(|i| (i / 6, i % 6))
            .collect()
    };
    assert_eq!(set(0), []);
    assert_eq!(set(1), [(0, 5)]);
    assert_eq!(set(2), [(2, 1), (2, 2), (3, 1), (3, 2)]);
    assert_eq!(
        set(3),
        [(1, 0), (3, 0), (3, 1), (3, 2), (3, 3), (3, 4), (3, 5)]
    );
    let err = read_cell_flags(&fixture("avenue_label_compressed.mat"), "gt", |_, _| Ok(()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("no variable `gt`; the file holds: note (char), volLabel (cell)"),
        "{err}"
    );
}

#[test]
fn reads_avenue_with_the_official_mat_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("avenue");
    avenue_tree(&root);
    assert_eq!(avenue::list_categories(&root).unwrap(), ["avenue"]);
    let data = avenue::read_category(&root, "avenue").unwrap();
    assert_eq!(data.test_labels(), [N, A, A, A, N, A, A, A]);
    assert_eq!(
        data.labels_file,
        root.join("ground_truth_demo/testing_label_mask")
    );
    let areas: Vec<usize> = data
        .test
        .iter()
        .flat_map(|v| v.masks.iter().map(|m| white_pixels(&m.decode().unwrap())))
        .collect();
    assert_eq!(areas, [0, 1, 4, 7, 0, 1, 4, 7]);
    let m = data.test[0].mask(1).unwrap();
    assert_eq!(
        m.name(),
        PathBuf::from(format!(
            "{}[1]",
            root.join("ground_truth_demo/testing_label_mask/1_label.mat")
                .display()
        ))
    );
    let img = m.decode().unwrap();
    assert_eq!((img.dimensions(), img.get_pixel(5, 0)[0]), ((6, 4), 255));

    let e = entry("avenue", &root);
    let split = e.read_category("avenue").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 8));
    let s = &split.test[3];
    let mask = load_mask_for(s.mask.as_ref().unwrap(), &s.image, 6, MaskResize::Nearest).unwrap();
    assert_eq!(mask.dimensions(), (6, 6));
    let clips = e.read_clips("avenue", 3, ClipMode::Centred).unwrap();
    assert_eq!(clips.test.len(), 8);
    assert_eq!(clips.test[1].frames, &data.test[0].frames[0..3]);
    let batch = decode_batch(&clips.test, &[1, 3, 4], 4, true).unwrap();
    assert_eq!(batch.labels, [1, 1, 0]);
    assert_eq!(batch.channels, 9);
    let masks = batch.masks.unwrap();
    // Frame 3 (row 3 and (1, 0)) at 4 x 4: the last row and (1, 0); frame 0 of 02 is normal.
    assert_eq!(masks[16..32].iter().filter(|&&v| v > 0.5).count(), 5);
    assert!(masks[32..].iter().all(|&v| v == 0.0));
    let report = check_dataset(&e).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.categories[0].masks_checked, 6);
}

#[test]
fn avenue_errors_and_the_mnad_npy_path() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("avenue");
    avenue_tree(&root);
    frame(&root.join("testing/frames/01/0004.jpg"), 6, 4);
    let msg = avenue::read_avenue(&root).unwrap_err().to_string();
    assert!(
        msg.contains("1_label.mat") && msg.contains("4 masks in `volLabel` for the 5 frames of 01"),
        "{msg}"
    );
    std::fs::remove_file(root.join("testing/frames/01/0004.jpg")).unwrap();
    let gt = root.join("ground_truth_demo/testing_label_mask");
    // A MAT v7.3 (HDF5) file is refused with the way out.
    let mut v73 = vec![b' '; 128];
    v73[..19].copy_from_slice(b"MATLAB 7.3 MAT-file");
    v73[124..128].copy_from_slice(&[0, 2, b'I', b'M']);
    std::fs::write(gt.join("2_label.mat"), &v73).unwrap();
    let msg = avenue::read_avenue(&root).unwrap_err().to_string();
    assert!(
        msg.contains("2_label.mat") && msg.contains("MAT v7.3 files are HDF5 and not supported"),
        "{msg}"
    );
    std::fs::remove_file(gt.join("2_label.mat")).unwrap();
    let msg = avenue::read_avenue(&root).unwrap_err().to_string();
    assert!(
        msg.contains("2_label.mat") && msg.contains("ground truth of test video 02"),
        "{msg}"
    );
    // MNAD's Avenue: frame_labels_avenue.npy, no .mat files: `video_frames`, not `avenue`.
    std::fs::remove_dir_all(root.join("ground_truth_demo")).unwrap();
    write(
        &root.join("frame_labels_avenue.npy"),
        &encode(&[1, 8], &[0, 1, 1, 1, 0, 0, 0, 1], true),
    );
    let msg = entry("avenue", &root)
        .category_names()
        .unwrap_err()
        .to_string();
    assert!(msg.contains("format = \"video_frames\""), "{msg}");
    let data = read_video_frames(&root).unwrap();
    assert_eq!(data.test_labels(), [N, A, A, A, N, N, N, A]);
    let split = entry("video_frames", &root)
        .read_category("avenue")
        .unwrap();
    assert_eq!(split.test.len(), 8);
}

/// ShanghaiTech and Avenue name the problems of every test video at once.
#[test]
fn shanghaitech_and_avenue_name_every_video_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shanghaitech");
    shanghaitech_tree(&root);
    std::fs::remove_file(root.join("testing/test_frame_mask/01_0014.npy")).unwrap();
    std::fs::remove_file(root.join("testing/test_pixel_mask/02_0128.npy")).unwrap();
    let err = shanghaitech::read_shanghaitech(&root).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("frame labels of test video 01_0014")
            && msg.contains("test_pixel_mask/02_0128.npy"),
        "{msg}"
    );
    assert_eq!(err.into_errors().len(), 2);

    let root = dir.path().join("avenue");
    avenue_tree(&root);
    let gt = root.join("ground_truth_demo/testing_label_mask");
    std::fs::remove_file(gt.join("1_label.mat")).unwrap();
    std::fs::remove_file(gt.join("2_label.mat")).unwrap();
    let err = avenue::read_avenue(&root).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("ground truth of test video 01")
            && msg.contains("ground truth of test video 02"),
        "{msg}"
    );
    assert_eq!(err.into_errors().len(), 2);
}
