//! The VisA reader and the generic folder format on hand-made trees in their layouts.
use image::{GrayImage, Luma, Rgb, RgbImage};
use memad_data::{folder, visa, DataError, Label, MaskRef};
use std::path::Path;

fn img(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb([10, 20, 30]))
        .save(path)
        .unwrap();
}

fn mask(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut m = GrayImage::new(w, h);
    m.put_pixel(0, 0, Luma([255]));
    m.save(path).unwrap();
}

/// A mask as VisA's raw download stores it: a label map, 1 (and 2) on the anomaly.
fn label_mask(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut m = GrayImage::new(w, h);
    m.put_pixel(0, 0, Luma([1]));
    m.put_pixel(1, 0, Luma([2]));
    m.save(path).unwrap();
}

/// VisA with `candle` (3 train, 1 normal + 2 anomalous test) and `pcb1` (1 train).
fn visa_tree(root: &Path) {
    let mut csv = String::from("object,split,label,image,mask\n");
    for i in 0..4 {
        let rel = format!("candle/Data/Images/Normal/{i:04}.JPG");
        img(&root.join(&rel), 16, 12);
        let split = if i < 3 { "train" } else { "test" };
        csv += &format!("candle,{split},normal,{rel},\n");
    }
    for i in 0..2 {
        let rel = format!("candle/Data/Images/Anomaly/{i:03}.JPG");
        let m = format!("candle/Data/Masks/Anomaly/{i:03}.png");
        img(&root.join(&rel), 16, 12);
        label_mask(&root.join(&m), 16, 12);
        csv += &format!("candle,test,anomaly,{rel},{m}\n");
    }
    img(&root.join("pcb1/Data/Images/Normal/0000.JPG"), 8, 8);
    csv += "pcb1,train,normal,pcb1/Data/Images/Normal/0000.JPG,\n";
    std::fs::create_dir_all(root.join("split_csv")).unwrap();
    std::fs::write(root.join("split_csv/1cls.csv"), csv).unwrap();
}

#[test]
fn reads_visa() {
    let dir = tempfile::tempdir().unwrap();
    visa_tree(dir.path());
    assert_eq!(
        visa::list_categories(dir.path()).unwrap(),
        ["candle", "pcb1"]
    );
    let split = visa::read_category(dir.path(), "candle").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 3));
    assert_eq!(split.defects(), ["anomaly"]);
    let t = &split.test[1];
    assert_eq!(t.label, Label::Anomalous);
    assert_eq!(
        t.mask.as_ref().and_then(MaskRef::file).unwrap(),
        dir.path().join("candle/Data/Masks/Anomaly/000.png")
    );
    assert!(split.test[0].mask.is_none());
    // The label map's 1 and 2 are anomalous pixels (a 0/255 threshold would empty it).
    let m = t.mask.as_ref().unwrap().decode().unwrap();
    let marked: Vec<(u32, u32)> = (m.enumerate_pixels())
        .filter(|(_, _, p)| p[0] == 255)
        .map(|(x, y, _)| (x, y))
        .collect();
    assert_eq!(marked, [(0, 0), (1, 0)]);
    // The split as a spreadsheet program saves it: with a UTF-8 byte-order mark.
    let split_csv = dir.path().join("split_csv/1cls.csv");
    let text = std::fs::read_to_string(&split_csv).unwrap();
    std::fs::write(&split_csv, format!("\u{feff}{text}")).unwrap();
    assert_eq!(
        visa::read_category(dir.path(), "candle")
            .unwrap()
            .test
            .len(),
        3
    );
    let msg = visa::read_category(dir.path(), "candel")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("candle, pcb1"), "{msg}");
    std::fs::remove_file(dir.path().join("candle/Data/Masks/Anomaly/001.png")).unwrap();
    let msg = visa::read_category(dir.path(), "candle")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("Masks/Anomaly/001.png") && msg.contains("listed in"),
        "{msg}"
    );
    let csv = dir.path().join("split_csv/1cls.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    // An anomaly row with an empty mask column: its CSV line is named, not a mask path.
    let no_mask = text.replace(",candle/Data/Masks/Anomaly/001.png", ",");
    std::fs::write(&csv, no_mask).unwrap();
    let msg = visa::read_category(dir.path(), "candle")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("split_csv/1cls.csv: line 7:")
            && msg.contains("candle/Data/Images/Anomaly/001.JPG has an empty `mask` column")
            && !msg.contains("expected mask at"),
        "{msg}"
    );
    std::fs::write(&csv, text.replace("candle,test,anomaly", "candle,test,bad")).unwrap();
    let msg = visa::read_category(dir.path(), "pcb1")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("1cls.csv") && msg.contains("line 6") && msg.contains("`bad`"),
        "{msg}"
    );
    std::fs::remove_file(&csv).unwrap();
    let err = visa::list_categories(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Io { .. }), "{err}");
    assert!(err.to_string().contains("split_csv/1cls.csv"), "{err}");
}

/// Every missing file of an object and an anomalous training row are named in one error.
#[test]
fn visa_lists_every_problem_of_an_object() {
    let dir = tempfile::tempdir().unwrap();
    visa_tree(dir.path());
    for file in [
        "candle/Data/Images/Normal/0001.JPG",
        "candle/Data/Masks/Anomaly/000.png",
        "candle/Data/Masks/Anomaly/001.png",
    ] {
        std::fs::remove_file(dir.path().join(file)).unwrap();
    }
    let csv = dir.path().join("split_csv/1cls.csv");
    let text = std::fs::read_to_string(&csv).unwrap();
    let text = text.replace("candle,train,normal,candle/Data/Images/Normal/0002.JPG,", "candle,train,anomaly,candle/Data/Images/Normal/0002.JPG,candle/Data/Images/Normal/0002.JPG");
    // A row of candle naming pcb1's image.
    let text = text + "candle,train,normal,pcb1/Data/Images/Normal/0000.JPG,\n";
    std::fs::write(&csv, text).unwrap();
    let err = visa::read_category(dir.path(), "candle").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("5 problems in category `candle`"), "{msg}");
    for named in [
        "Normal/0001.JPG: listed in",
        "Anomaly/000.png: listed in",
        "Anomaly/001.png: listed in",
        "Normal/0002.JPG: an anomalous training image",
        "pcb1/Data/Images/Normal/0000.JPG: listed for `candle` in",
    ] {
        assert!(msg.contains(named), "{named}: {msg}");
    }
    assert!(
        msg.contains("but not under candle/ (a row of another object?)"),
        "{msg}"
    );
    let (split, problems) = visa::read_category_and_problems(dir.path(), "candle").unwrap();
    assert_eq!(problems.len(), 5);
    assert_eq!((split.train.len(), split.test.len()), (1, 3));
    // pcb1 itself still reads.
    assert_eq!(
        visa::read_category(dir.path(), "pcb1").unwrap().train.len(),
        1
    );
}

#[test]
fn reads_the_folder_format_with_and_without_masks() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("widgets");
    for i in 0..3 {
        img(&root.join(format!("train/good/{i}.png")), 10, 10);
    }
    img(&root.join("test/good/a.png"), 10, 10);
    img(&root.join("test/crack/1.png"), 10, 10);
    img(&root.join("test/crack/2.png"), 10, 10);
    img(&root.join("test/dent/1.png"), 10, 10);
    mask(&root.join("ground_truth/crack/1_mask.png"), 10, 10);
    assert_eq!(folder::list_categories(&root).unwrap(), ["widgets"]);
    assert_eq!(folder::list_categories(dir.path()).unwrap(), ["widgets"]);
    let split = folder::read_category(&root, "widgets").unwrap();
    assert_eq!(split, folder::read_category(dir.path(), "widgets").unwrap());
    assert_eq!(split.train.len(), 3);
    let test: Vec<_> = split
        .test
        .iter()
        .map(|s| (s.defect.as_str(), s.label, s.mask.is_some()))
        .collect();
    assert_eq!(
        test,
        [
            ("crack", Label::Anomalous, true),
            ("crack", Label::Anomalous, false),
            ("dent", Label::Anomalous, false),
            ("good", Label::Normal, false),
        ]
    );
    let msg = folder::read_category(dir.path(), "gadgets")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("`gadgets`") && msg.contains("widgets"),
        "{msg}"
    );
    // An image directly in test/ or train/ is not skipped silently: it names its place.
    img(&root.join("test/stray.png"), 10, 10);
    let msg = folder::read_category(&root, "widgets")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("test/stray.png") && msg.contains("test/good and test/<defect>"),
        "{msg}"
    );
    std::fs::remove_file(root.join("test/stray.png")).unwrap();
    img(&root.join("train/stray.png"), 10, 10);
    let msg = folder::read_category(&root, "widgets")
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("train/stray.png") && msg.contains("belong in train/good"),
        "{msg}"
    );
    std::fs::remove_dir_all(root.join("train/good")).unwrap();
    let msg = folder::read_category(&root, "widgets")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("widgets/train/good is missing"), "{msg}");
}

/// VisA converted to the MVTec AD layout by its `prepare_data.py` (or anomalib): a mask is
/// named as its image, without `_mask`, and is 0/255.
#[test]
fn reads_visa_converted_to_the_mvtec_layout() {
    let dir = tempfile::tempdir().unwrap();
    let category = dir.path().join("candle");
    img(&category.join("train/good/0000.JPG"), 16, 12);
    img(&category.join("test/good/0001.JPG"), 16, 12);
    img(&category.join("test/bad/000.JPG"), 16, 12);
    mask(&category.join("ground_truth/bad/000.png"), 16, 12);
    let split = memad_data::mvtec::read_category(dir.path(), "candle").unwrap();
    let bad = split.test.iter().find(|s| s.defect == "bad").unwrap();
    assert_eq!(
        bad.mask.as_ref().and_then(MaskRef::file).unwrap(),
        category.join("ground_truth/bad/000.png")
    );
}
