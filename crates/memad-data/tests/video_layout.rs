//! Video frame datasets: the real UCSD Ped2 in `../shared/data/ucsd_ped2` (MNAD layout,
//! skipped with a message when absent) and hand-made trees in the original UCSD layout and
//! the MNAD layout with `.npy` labels.
use image::{GrayImage, Luma};
use memad_data::image_io::load_mask;
use memad_data::video::{
    centred_clips, list_ucsd, prediction_clips, read_ucsd, read_ucsd_category, read_video_frames,
    ClipMode, VideoDataset,
};
use memad_data::{loader::decode_batch, mvtec::Sample};
use memad_data::{DataError, Label, MaskRef};
use std::path::Path;

fn frame(path: &Path, value: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_pixel(12, 8, Luma([value]))
        .save(path)
        .unwrap();
}

/// `UCSD_Anomaly_Dataset.v1p2/UCSDped2` with 2 training videos (3 and 4 frames), 2 test
/// videos (5 and 4 frames), masks for the first test video, the labels in `Test/`, and the
/// macOS droppings of the real download.
fn ucsd_tree(root: &Path) -> std::path::PathBuf {
    let ped = root.join("UCSDped2");
    for (v, n) in [(1, 3), (2, 4)] {
        for k in 1..=n {
            frame(&ped.join(format!("Train/Train{v:03}/{k:03}.tif")), 100);
        }
    }
    for (v, n) in [(1, 5), (2, 4)] {
        for k in 1..=n {
            frame(&ped.join(format!("Test/Test{v:03}/{k:03}.tif")), 100);
        }
    }
    for k in 1..=5 {
        frame(
            &ped.join(format!("Test/Test001_gt/{k:03}.bmp")),
            if k >= 3 { 255 } else { 0 },
        );
    }
    std::fs::write(
        ped.join("Test/UCSDped2.m"),
        "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [3:5];\n\
         TestVideoFile{end+1}.gt_frame = [1:1, 3:4];\n",
    )
    .unwrap();
    std::fs::write(ped.join("Test/.DS_Store"), "junk").unwrap();
    std::fs::create_dir_all(ped.join("Train/._Train001")).unwrap();
    ped
}

#[test]
fn reads_the_original_ucsd_layout() {
    let dir = tempfile::tempdir().unwrap();
    let ped = ucsd_tree(dir.path());
    assert_eq!(list_ucsd(dir.path()).unwrap(), ["UCSDped2"]);
    let data = read_ucsd_category(dir.path(), "UCSDped2").unwrap();
    assert_eq!(data, read_ucsd(&ped).unwrap());
    assert_eq!(list_ucsd(&ped).unwrap(), ["UCSDped2"]);
    let names: Vec<_> = data.test.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names, ["Test001", "Test002"]);
    assert_eq!(VideoDataset::frame_count(&data.train), 7);
    assert_eq!(VideoDataset::frame_count(&data.test), 9);
    use Label::{Anomalous as A, Normal as N};
    assert_eq!(data.test_labels(), [N, N, A, A, A, A, N, A, A]);
    assert_eq!(data.labels_file, ped.join("Test/UCSDped2.m"));
    let v = &data.test[0];
    assert_eq!(v.masks.len(), 5);
    assert_eq!(
        v.mask(2).and_then(MaskRef::file).unwrap(),
        ped.join("Test/Test001_gt/003.bmp")
    );
    assert!(data.test[1].masks.is_empty());
    let split = data.to_category_split("UCSDped2");
    assert_eq!((split.train.len(), split.test.len()), (7, 9));
    assert_eq!(split.test[2].mask.as_ref(), v.mask(2));
    assert!(split.test[0].mask.is_none() && split.test[5].mask.is_none());
    assert_eq!(split.defects(), ["anomalous"]);

    // Clips for prediction (4 past frames) and 3D clips (labels of the centre frame).
    let p = prediction_clips(&data.test, 4);
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].video, p[0].target, p[0].label), (0, 4, A));
    let c = centred_clips(&data.test, 16, 1);
    assert_eq!(c.len(), 9);
    assert_eq!(
        c[5].frames,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3]
    );
    assert_eq!((c[5].video, c[5].centre, c[5].label), (1, 0, A));
}

#[test]
fn bad_labels_and_missing_masks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let ped = ucsd_tree(dir.path());
    let m = ped.join("Test/UCSDped2.m");
    std::fs::write(
        &m,
        "T{end+1}.gt_frame = [3:5];\nT{end+1}.gt_frame = [2:9];\n",
    )
    .unwrap();
    let msg = read_ucsd(&ped).unwrap_err().to_string();
    assert!(
        msg.contains("UCSDped2.m") && msg.contains("2:9 of video Test002"),
        "{msg}"
    );
    std::fs::write(&m, "T{end+1}.gt_frame = [3:5];\n").unwrap();
    let msg = read_ucsd(&ped).unwrap_err().to_string();
    assert!(
        msg.contains("1 gt_frame entries for 2 test videos"),
        "{msg}"
    );
    std::fs::remove_file(&m).unwrap();
    let msg = read_ucsd(&ped).unwrap_err().to_string();
    assert!(msg.contains("no frame labels"), "{msg}");
    std::fs::write(&m, "T{end+1}.gt_frame = [3:5];\nT{end+1}.gt_frame = [1];\n").unwrap();
    std::fs::remove_file(ped.join("Test/Test001_gt/004.bmp")).unwrap();
    let err = read_ucsd(&ped).unwrap_err();
    assert!(matches!(err, DataError::MaskMissing { .. }), "{err}");
    assert!(err.to_string().contains("Test001/004.tif"), "{err}");
    let msg = read_ucsd_category(dir.path(), "UCSDped1")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("UCSDped2"), "{msg}");
}

/// A frame with two masks (`003.bmp` and `003.png` in its `_gt` folder) is refused with
/// both named, not read with one of them.
#[test]
fn a_frame_with_two_masks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ped = ucsd_tree(dir.path());
    let gt = ped.join("Test/Test001_gt");
    frame(&gt.join("003.png"), 255);
    let err = read_ucsd(&ped).unwrap_err();
    assert!(matches!(err, DataError::TwoMasks { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "test image {} has 2 masks, {} and {}: keep one",
            ped.join("Test/Test001/003.tif").display(),
            gt.join("003.bmp").display(),
            gt.join("003.png").display()
        )),
        "{msg}"
    );
}

/// A `.npy` file of little-endian i64 values, shape `(1, n)`, as MNAD's label files.
fn npy_i64(values: &[i64]) -> Vec<u8> {
    let mut header = format!(
        "{{'descr': '<i8', 'fortran_order': False, 'shape': (1, {}), }}",
        values.len()
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut b = b"\x93NUMPY\x01\x00".to_vec();
    b.extend_from_slice(&(header.len() as u16).to_le_bytes());
    b.extend_from_slice(header.as_bytes());
    for v in values {
        b.extend_from_slice(&v.to_le_bytes());
    }
    b
}

#[test]
fn reads_the_mnad_layout_with_npy_labels() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("avenue");
    for k in 0..3 {
        frame(&root.join(format!("training/frames/01/{k:04}.jpg")), 50);
        frame(&root.join(format!("testing/frames/01/{k:04}.jpg")), 50);
        frame(&root.join(format!("testing/frames/02/{k:04}.jpg")), 50);
    }
    std::fs::write(
        root.join("frame_labels_avenue.npy"),
        npy_i64(&[0, 1, 1, 0, 0, 1]),
    )
    .unwrap();
    let data = read_video_frames(&root).unwrap();
    use Label::{Anomalous as A, Normal as N};
    assert_eq!(data.test_labels(), [N, A, A, N, N, A]);
    assert!(data.test.iter().all(|v| v.masks.is_empty()));
    std::fs::write(root.join("frame_labels_avenue.npy"), npy_i64(&[0, 1])).unwrap();
    let msg = read_video_frames(&root).unwrap_err().to_string();
    assert!(
        msg.contains("frame_labels_avenue.npy") && msg.contains("2 labels for 6 test frames"),
        "{msg}"
    );
    std::fs::write(root.join("UCSDped2.m"), "").unwrap();
    let msg = read_video_frames(&root).unwrap_err().to_string();
    assert!(msg.contains("several frame label files"), "{msg}");
    assert!(
        msg.contains("move or rename the others") && !msg.contains("read_video_frames"),
        "the message speaks of files, not of Rust functions: {msg}"
    );
}

#[test]
fn reads_liu_et_al_mat_labels() {
    // tests/fixtures/liu_gt.mat (tools/make_liu_gt_fixture.py, scipy's savemat): `gt` of
    // three videos, events [3:5], [1:2, 7:8] and none.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("ped2");
    for k in 0..3 {
        frame(&root.join(format!("training/frames/01/{k:03}.jpg")), 50);
    }
    for (video, frames) in [("01", 6), ("02", 8), ("03", 2)] {
        for k in 0..frames {
            frame(&root.join(format!("testing/frames/{video}/{k:03}.jpg")), 50);
        }
    }
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/liu_gt.mat");
    std::fs::copy(&fixture, root.join("ped2.mat")).unwrap();
    let data = read_video_frames(&root).unwrap();
    assert_eq!(data.labels_file, root.join("ped2.mat"));
    use Label::{Anomalous as A, Normal as N};
    let labels: Vec<Vec<Label>> = data.test.iter().map(|v| v.labels.clone()).collect();
    assert_eq!(
        labels,
        [
            vec![N, N, A, A, A, N],
            vec![A, A, N, N, N, N, A, A],
            vec![N, N]
        ]
    );
    // An event past the end of its video is named.
    std::fs::remove_file(root.join("testing/frames/02/007.jpg")).unwrap();
    let msg = read_video_frames(&root).unwrap_err().to_string();
    assert!(
        msg.contains("ped2.mat") && msg.contains("7:8 of video 02 goes past its 7 frames"),
        "{msg}"
    );
    std::fs::remove_dir_all(root.join("testing/frames/03")).unwrap();
    let msg = read_video_frames(&root).unwrap_err().to_string();
    assert!(msg.contains("3 `gt` cells for 2 test videos"), "{msg}");
}

#[test]
fn real_ucsd_ped2() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/ucsd_ped2");
    if !root.is_dir() {
        eprintln!(
            "skipping: UCSD Ped2 not found at {} (see shared/data/README.md)",
            root.display()
        );
        return;
    }
    let data = read_video_frames(&root).unwrap();
    assert_eq!(data.labels_file, root.join("UCSDped2.m"));
    assert_eq!(data.train.len(), 16);
    assert_eq!(VideoDataset::frame_count(&data.train), 2550);
    assert_eq!(data.test.len(), 12);
    assert_eq!(VideoDataset::frame_count(&data.test), 2010);
    assert_eq!(data.test[0].name, "01");
    assert!(data.test[0].frames[10].ends_with("testing/frames/01/010.jpg"));
    assert!(data.test.iter().all(|v| v.masks.len() == v.len()));
    let labels = data.test_labels();
    let anomalous = labels.iter().filter(|l| l.is_anomalous()).count();
    // The sum of the UCSDped2.m ranges.
    let expected = [120, 86, 146, 150, 129, 159, 135, 180, 120, 150, 180, 93];
    assert_eq!(anomalous, expected.iter().sum::<usize>());
    let v = &data.test[0];
    assert_eq!(v.labels[59], Label::Normal);
    assert_eq!(v.labels[60], Label::Anomalous);
    // The masks agree with the frame labels around the first anomaly of video 01.
    let blank = load_mask(v.mask(30).and_then(MaskRef::file).unwrap(), (360, 240), 360).unwrap();
    assert!(blank.pixels().all(|p| p[0] == 0));
    let marked = load_mask(
        v.mask(100).and_then(MaskRef::file).unwrap(),
        (360, 240),
        360,
    )
    .unwrap();
    assert!(marked.pixels().any(|p| p[0] == 255));
    let clips = prediction_clips(&data.test, 4);
    assert_eq!(clips.len(), 2010 - 12 * 4);

    // Clip samples through the batch loader: 5 frames stacked channel-wise, the last one the
    // frame that is scored.
    let split = data.to_clip_split("ucsd_ped2", 5, ClipMode::Predict);
    assert_eq!(split.test.len(), 2010 - 12 * 4);
    let k = split.test.iter().position(|s| s.mask.is_some()).unwrap();
    let batch = decode_batch(&split.test, &[k, k + 1], 32, true).unwrap();
    assert_eq!(batch.channels, 15);
    assert_eq!(batch.images.len(), 2 * 15 * 32 * 32);
    let alone = decode_batch(
        &[Sample {
            frames: Vec::new(),
            ..split.test[k].clone()
        }],
        &[0],
        32,
        false,
    )
    .unwrap();
    let plane = 3 * 32 * 32;
    assert_eq!(&batch.images[4 * plane..5 * plane], &alone.images[..]);
    assert!(batch.masks.unwrap()[..32 * 32].iter().any(|&m| m > 0.5));
}

/// Every layout problem of a video dataset is named in one error (as the image readers do),
/// not one per attempt: a gap in a training video, an empty test video, a frame with two
/// masks and the missing label file.
#[test]
fn every_layout_problem_of_a_video_dataset_is_named_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let ped = ucsd_tree(dir.path());
    std::fs::remove_file(ped.join("Train/Train002/002.tif")).unwrap();
    for k in 1..=4 {
        std::fs::remove_file(ped.join(format!("Test/Test002/{k:03}.tif"))).unwrap();
    }
    frame(&ped.join("Test/Test001_gt/003.png"), 255);
    std::fs::remove_file(ped.join("Test/UCSDped2.m")).unwrap();
    let err = read_ucsd(&ped).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("4 problems in category `UCSDped2`"),
        "{msg}"
    );
    for part in [
        "frame numbers jump from 001.tif to 003.tif",
        "Test002",
        "has 2 masks",
        "no frame labels",
    ] {
        assert!(msg.contains(part), "{part}: {msg}");
    }
    assert_eq!(err.into_errors().len(), 4);
}

/// A clip longer than every video of a part is refused naming the clip length and the
/// longest video (it left the part empty: "no test image"); centred clips fit any video.
#[test]
fn clips_longer_than_every_video_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    ucsd_tree(dir.path());
    let text = format!(
        "[u]\nformat = \"ucsd\"\nroot = \"{}\"\n",
        dir.path().display()
    );
    let catalog = memad_data::DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let entry = catalog.get("u").unwrap();
    let err = entry
        .read_clips("UCSDped2", 5, ClipMode::Predict)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid argument: data.clip.frames = 5: no training video of `UCSDped2` has that many \
         frames (the longest has 4), so it has no clip of mode \"predict\"; lower the clip \
         length (data.clip.frames, with method.frames)"
    );
    assert_eq!(
        entry
            .read_clips("UCSDped2", 4, ClipMode::Predict)
            .unwrap()
            .test
            .len(),
        3
    );
    assert_eq!(
        entry
            .read_clips("UCSDped2", 50, ClipMode::Centred)
            .unwrap()
            .test
            .len(),
        9
    );
}
