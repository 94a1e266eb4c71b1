//! The MVTec AD reader and image loading on hand-made folders in the real dataset's layout.
use image::{GrayImage, Luma, Rgb, RgbImage};
use memad_data::image_io::{load_mask, load_mask_for, load_rgb, MaskResize};
use memad_data::mvtec::{list_categories, read_category, Label};
use memad_data::{DataError, MaskRef};
use std::path::{Path, PathBuf};

fn png(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb([90, 120, 150]))
        .save(path)
        .unwrap();
}

fn mask(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut m = GrayImage::new(w, h);
    m.put_pixel(1, 1, Luma([255]));
    m.save(path).unwrap();
}

/// A tiny MVTec-AD-like tree: `bottle` (2 defects) and `screw`, plus the files the real
/// download has at its root.
fn mvtec_tree(root: &Path) {
    std::fs::write(root.join("license.txt"), "cc by-nc-sa").unwrap();
    std::fs::write(root.join("readme.txt"), "mvtec ad").unwrap();
    for i in [0, 1, 2, 10] {
        png(&root.join(format!("bottle/train/good/{i:03}.png")), 20, 16);
    }
    png(&root.join("bottle/test/good/000.png"), 20, 16);
    png(&root.join("bottle/test/good/001.png"), 20, 16);
    for defect in ["broken_large", "contamination"] {
        for i in 0..2 {
            png(
                &root.join(format!("bottle/test/{defect}/{i:03}.png")),
                20,
                16,
            );
            mask(
                &root.join(format!("bottle/ground_truth/{defect}/{i:03}_mask.png")),
                20,
                16,
            );
        }
    }
    std::fs::write(root.join("bottle/train/good/.DS_Store"), "junk").unwrap();
    png(&root.join("screw/train/good/000.png"), 8, 8);
    std::fs::create_dir_all(root.join("screw/test/good")).unwrap();
    std::fs::create_dir_all(root.join("not_a_category")).unwrap();
}

fn tree() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec_anomaly_detection");
    std::fs::create_dir_all(&root).unwrap();
    mvtec_tree(&root);
    (dir, root)
}

#[test]
fn reads_the_real_layout_in_sorted_order() {
    let (_dir, root) = tree();
    assert_eq!(list_categories(&root).unwrap(), ["bottle", "screw"]);
    let split = read_category(&root, "bottle").unwrap();
    assert_eq!(split.category, "bottle");
    let names: Vec<_> = split
        .train
        .iter()
        .map(|s| s.image.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["000.png", "001.png", "002.png", "010.png"]);
    let test: Vec<_> = split
        .test
        .iter()
        .map(|s| (s.defect.as_str(), s.label, s.mask.is_some()))
        .collect();
    assert_eq!(
        test,
        [
            ("broken_large", Label::Anomalous, true),
            ("broken_large", Label::Anomalous, true),
            ("contamination", Label::Anomalous, true),
            ("contamination", Label::Anomalous, true),
            ("good", Label::Normal, false),
            ("good", Label::Normal, false),
        ]
    );
    let s = &split.test[1];
    assert_eq!(
        s.mask.as_ref().and_then(MaskRef::file).unwrap(),
        root.join("bottle/ground_truth/broken_large/001_mask.png")
    );
    let m = load_mask_for(s.mask.as_ref().unwrap(), &s.image, 10, MaskResize::Nearest).unwrap();
    assert_eq!(m.dimensions(), (10, 10));
    assert_eq!(load_rgb(&s.image, 12).unwrap().dimensions(), (12, 12));
    assert!(read_category(&root, "screw").unwrap().test.is_empty());
}

#[test]
fn missing_mask_names_the_expected_path() {
    let (_dir, root) = tree();
    std::fs::remove_file(root.join("bottle/ground_truth/contamination/001_mask.png")).unwrap();
    let err = read_category(&root, "bottle").unwrap_err();
    assert!(matches!(err, DataError::MaskMissing { .. }));
    let msg = err.to_string();
    assert!(msg.contains("test/contamination/001.png"), "{msg}");
    assert!(
        msg.contains("expected mask at") && msg.contains("ground_truth/contamination/001_mask.png"),
        "{msg}"
    );
    assert!(msg.contains("can use `format = \"folder\"`"), "{msg}");
}

#[test]
fn mask_of_the_wrong_size_is_an_error() {
    let (_dir, root) = tree();
    let mask_path = root.join("bottle/ground_truth/broken_large/000_mask.png");
    mask(&mask_path, 10, 8);
    let image = root.join("bottle/test/broken_large/000.png");
    let msg = load_mask_for(
        &MaskRef::File(mask_path.clone()),
        &image,
        16,
        MaskResize::Nearest,
    )
    .unwrap_err()
    .to_string();
    assert!(msg.contains("000_mask.png is 10x8 but its image"), "{msg}");
    assert!(msg.contains("broken_large/000.png is 20x16"), "{msg}");
    let msg = load_mask(&mask_path, (20, 16), 16).unwrap_err().to_string();
    assert!(msg.contains("is 10x8 but its image is 20x16"), "{msg}");
}

#[test]
fn corrupt_png_names_the_path() {
    let (_dir, root) = tree();
    let path = root.join("bottle/train/good/002.png");
    std::fs::write(&path, [0x13u8, 0x37, 0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3]).unwrap();
    let msg = load_rgb(&path, 16).unwrap_err().to_string();
    assert!(msg.contains("bottle/train/good/002.png"), "{msg}");
    assert!(msg.contains("corrupt or unreadable"), "{msg}");
    // A truncated real PNG too.
    let good = root.join("bottle/train/good/000.png");
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(&good, &bytes[..bytes.len() / 2]).unwrap();
    let msg = load_rgb(&good, 16).unwrap_err().to_string();
    assert!(msg.contains("bottle/train/good/000.png"), "{msg}");
}

#[test]
fn category_typo_lists_the_categories() {
    let (_dir, root) = tree();
    let msg = read_category(&root, "botle").unwrap_err().to_string();
    assert!(
        msg.contains("`botle`") && msg.contains("bottle, screw"),
        "{msg}"
    );
}

/// A misspelt category (in `datasets.toml`'s `categories` or an experiment's) is answered
/// with the near one; a name near none gets no guess.
#[test]
fn category_typo_suggests_the_near_category() {
    let (_dir, root) = tree();
    let msg = read_category(&root, "bottel").unwrap_err().to_string();
    assert!(
        msg.contains("category `bottel` not found in")
            && msg.contains("(did you mean `bottle`?); categories there: bottle, screw"),
        "{msg}"
    );
    let msg = read_category(&root, "zipper").unwrap_err().to_string();
    assert!(!msg.contains("did you mean"), "{msg}");
    let text = format!(
        "[m]\nformat = \"mvtec\"\nroot = \"{}\"\ncategories = [\"bottel\"]\n",
        root.display()
    );
    let catalog = memad_data::DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let entry = catalog.get("m").unwrap();
    let msg = entry.read_category("bottel").unwrap_err().to_string();
    assert!(msg.contains("(did you mean `bottle`?)"), "{msg}");
    let report = memad_data::check_dataset(entry).unwrap().to_string();
    assert!(report.contains("(did you mean `bottle`?)"), "{report}");
}

/// An image with two mask files, `000_mask.png` beside `000.png` (or one mask in two
/// formats), is refused with both named: the reader does not pick one. MVTec AD's own
/// layout (`<stem>_mask.png` only) and converted VisA's (`<stem>.png` only) read as before.
#[test]
fn an_image_with_two_masks_is_refused_naming_both() {
    let (_dir, root) = tree();
    let gt = root.join("bottle/ground_truth/broken_large");
    mask(&gt.join("000.png"), 20, 16);
    let err = read_category(&root, "bottle").unwrap_err();
    assert!(matches!(err, DataError::TwoMasks { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "test image {} has 2 masks, {} and {}: keep one mask per image",
            root.join("bottle/test/broken_large/000.png").display(),
            gt.join("000_mask.png").display(),
            gt.join("000.png").display()
        )),
        "{msg}"
    );
    std::fs::remove_file(gt.join("000.png")).unwrap();
    mask(&gt.join("001_mask.bmp"), 20, 16);
    let msg = read_category(&root, "bottle").unwrap_err().to_string();
    assert!(
        msg.contains("001_mask.png and ") && msg.contains("001_mask.bmp: keep one"),
        "{msg}"
    );
    std::fs::remove_file(gt.join("001_mask.bmp")).unwrap();
    // One mask per image under either name reads.
    std::fs::rename(gt.join("001_mask.png"), gt.join("001.png")).unwrap();
    let split = read_category(&root, "bottle").unwrap();
    let masks: Vec<_> = (split.test.iter().take(2))
        .map(|s| {
            s.mask
                .as_ref()
                .and_then(MaskRef::file)
                .unwrap()
                .to_path_buf()
        })
        .collect();
    assert_eq!(masks, [gt.join("000_mask.png"), gt.join("001.png")]);
}

/// A test image named as another's mask (`x_mask.png` beside `x.png`) has its own mask,
/// `x_mask_mask.png`: `ground_truth/<defect>/x_mask.png` is `x`'s mask, not a second one of
/// `x_mask` (converted VisA's name), so neither image has two. Without its own, `x_mask` has
/// none; with no image `x`, `x_mask.png` is the converted-VisA mask of `x_mask`.
#[test]
fn an_image_named_like_another_images_mask_has_its_own_mask() {
    let (_dir, root) = tree();
    let (test, gt) = (
        root.join("bottle/test/broken_large"),
        root.join("bottle/ground_truth/broken_large"),
    );
    png(&test.join("x.png"), 20, 16);
    png(&test.join("x_mask.png"), 20, 16);
    mask(&gt.join("x_mask.png"), 20, 16);
    mask(&gt.join("x_mask_mask.png"), 20, 16);
    let mask_of = |split: &memad_data::CategorySplit, image: &str| {
        let sample = split.test.iter().find(|s| s.image == test.join(image));
        sample.and_then(|s| s.mask.clone())
    };
    let split = read_category(&root, "bottle").unwrap();
    assert_eq!(
        mask_of(&split, "x.png"),
        Some(MaskRef::File(gt.join("x_mask.png")))
    );
    assert_eq!(
        mask_of(&split, "x_mask.png"),
        Some(MaskRef::File(gt.join("x_mask_mask.png")))
    );
    let text = format!("[m]\nformat = \"mvtec\"\nroot = \"{}\"\n", root.display());
    let catalog = memad_data::DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = memad_data::check_dataset(catalog.get("m").unwrap()).unwrap();
    assert!(
        !report
            .problems
            .iter()
            .any(|p| p.category.as_deref() == Some("bottle")),
        "{report}"
    );

    std::fs::remove_file(gt.join("x_mask_mask.png")).unwrap();
    let err = read_category(&root, "bottle").unwrap_err();
    assert!(
        matches!(&err, DataError::MisplacedMask { file, image, place, own_mask }
            if *file == test.join("x_mask.png") && *image == test.join("x.png")
                && *place == gt.join("x_mask.png") && *own_mask == gt.join("x_mask_mask.png")),
        "{err}"
    );

    std::fs::remove_file(test.join("x.png")).unwrap();
    let split = read_category(&root, "bottle").unwrap();
    assert_eq!(
        mask_of(&split, "x_mask.png"),
        Some(MaskRef::File(gt.join("x_mask.png")))
    );
    // Its two masks under both names are still refused.
    mask(&gt.join("x_mask_mask.png"), 20, 16);
    let err = read_category(&root, "bottle").unwrap_err();
    assert!(
        matches!(&err, DataError::TwoMasks { masks, .. }
            if *masks == [gt.join("x_mask_mask.png"), gt.join("x_mask.png")]),
        "{err}"
    );
}

/// Every layout problem of a category is found in one read: the missing masks of two
/// defects and an image directly in `test/`, each named, in one error.
#[test]
fn every_layout_problem_of_a_category_is_reported_at_once() {
    let (_dir, root) = tree();
    std::fs::remove_file(root.join("bottle/ground_truth/broken_large/000_mask.png")).unwrap();
    std::fs::remove_file(root.join("bottle/ground_truth/contamination/001_mask.png")).unwrap();
    png(&root.join("bottle/test/stray.png"), 20, 16);
    png(&root.join("bottle/train/stray.png"), 20, 16);
    let err = read_category(&root, "bottle").unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("4 problems in category `bottle`"), "{msg}");
    for named in [
        "train/stray.png",
        "test/stray.png",
        "broken_large/000.png has no ground-truth mask",
        "contamination/001.png has no ground-truth mask",
    ] {
        assert!(msg.contains(named), "{named}: {msg}");
    }
    let errors = err.into_errors();
    assert_eq!(errors.len(), 4);
    assert!(matches!(errors[3], DataError::MaskMissing { .. }));
    // What could be read comes with them (for `memad datasets check`).
    let (split, problems) = memad_data::mvtec::read_category_and_problems(&root, "bottle").unwrap();
    assert_eq!(problems.len(), 4);
    assert_eq!((split.train.len(), split.test.len()), (4, 6));
}

#[test]
fn missing_root_and_broken_layouts_are_named() {
    let (dir, root) = tree();
    let missing = dir.path().join("nowhere");
    let msg = read_category(&missing, "bottle").unwrap_err().to_string();
    assert!(
        msg.contains("nowhere") && msg.contains("does not exist"),
        "{msg}"
    );

    // An empty train/good.
    std::fs::remove_file(root.join("screw/train/good/000.png")).unwrap();
    let msg = read_category(&root, "screw").unwrap_err().to_string();
    assert!(
        msg.contains("screw/train/good") && msg.contains("no images"),
        "{msg}"
    );

    // No train/good at all.
    std::fs::create_dir_all(root.join("pill/test/good")).unwrap();
    let msg = read_category(&root, "pill").unwrap_err().to_string();
    assert!(msg.contains("pill/train/good is missing"), "{msg}");

    // Test images outside a defect folder; a missing test folder.
    png(&root.join("bottle/test/stray.png"), 20, 16);
    let msg = read_category(&root, "bottle").unwrap_err().to_string();
    assert!(
        msg.contains("unexpected dataset layout") && msg.contains("stray.png"),
        "{msg}"
    );
    std::fs::remove_dir_all(root.join("bottle/test")).unwrap();
    let msg = read_category(&root, "bottle").unwrap_err().to_string();
    assert!(msg.contains("bottle/test"), "{msg}");
}

#[test]
fn bilinear_mask_resizing_agrees_with_pil() {
    // tests/fixtures/mask_resize_*.png (tools/make_mask_resize_fixture.py): a 300 px mask of
    // discs and thin lines and PIL's BILINEAR resize of it to 64 px, the masks of RD4AD's and
    // PatchCore's official evaluations before they binarise.
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let source = fixtures.join("mask_resize_source.png");
    let pil = image::open(fixtures.join("mask_resize_pil_64.png"))
        .unwrap()
        .into_luma8()
        .into_raw();
    let ours = |resize| -> Vec<bool> {
        let m = load_mask_for(&MaskRef::File(source.clone()), &source, 64, resize).unwrap();
        m.into_raw().into_iter().map(|v| v == 255).collect()
    };
    let differ = |a: &[bool], b: &[bool]| a.iter().zip(b).filter(|(x, y)| x != y).count();
    // RD4AD: `gt > 0.5` of the resized [0, 1] mask.
    let half: Vec<bool> = pil.iter().map(|&v| v as f64 / 255.0 > 0.5).collect();
    assert_eq!(differ(&ours(MaskResize::BilinearHalf), &half), 0);
    // PatchCore: `astype(int)` keeps exactly 1. The two filters round differently by at most
    // one grey level, which can move a pixel at 254/255: allow one pixel in a thousand.
    let full: Vec<bool> = pil.iter().map(|&v| v == 255).collect();
    let n = ours(MaskResize::BilinearFull);
    assert!(
        differ(&n, &full) <= full.len() / 1000,
        "{}",
        differ(&n, &full)
    );
    assert!(
        full.iter().filter(|&&f| f).count() > 400,
        "the fixture has covered pixels"
    );
    // Nearest-neighbour is another protocol: it keeps thin lines the bilinear filter thins.
    assert!(differ(&ours(MaskResize::Nearest), &half) > 0);
}

/// `000_MASK.PNG` is `000`'s mask (the suffix in any letter case, as the extension); a
/// mask copied into `test/<defect>/` is refused with where masks belong, also in the
/// `folder` format, whose images may lack masks; a category typo in capitals is answered.
#[test]
fn mask_names_in_capitals_and_masks_misplaced_in_test() {
    let (_dir, root) = tree();
    let gt = root.join("bottle/ground_truth/contamination");
    std::fs::rename(gt.join("001_mask.png"), gt.join("001_MASK.PNG")).unwrap();
    let split = read_category(&root, "bottle").unwrap();
    let image = root.join("bottle/test/contamination/001.png");
    let sample = split.test.iter().find(|s| s.image == image).unwrap();
    assert_eq!(sample.mask, Some(MaskRef::File(gt.join("001_MASK.PNG"))));

    std::fs::copy(
        gt.join("000_mask.png"),
        root.join("bottle/test/contamination/000_mask.png"),
    )
    .unwrap();
    let test = root.join("bottle/test/contamination");
    let expected = format!(
        "{} is named as the mask of {} beside it, but masks belong in ground_truth/<defect>/ \
         (here {}) and a file in test/<defect>/ is scored as a test image: move it there, or, \
         if it is an image, give it a mask of its own ({})",
        test.join("000_mask.png").display(),
        test.join("000.png").display(),
        gt.join("000_mask.png").display(),
        gt.join("000_mask_mask.png").display()
    );
    let msg = read_category(&root, "bottle").unwrap_err().to_string();
    assert_eq!(msg, expected);
    let text = format!("[f]\nformat = \"folder\"\nroot = \"{}\"\n", root.display());
    let catalog = memad_data::DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let msg = (catalog.get("f").unwrap().read_category("bottle"))
        .unwrap_err()
        .to_string();
    assert_eq!(msg, expected);
    // An image named `*_mask` with no image of that name beside it is an image: in `folder`
    // its mask is optional.
    std::fs::rename(test.join("000_mask.png"), test.join("gas_mask.png")).unwrap();
    let split = (catalog.get("f").unwrap().read_category("bottle")).unwrap();
    let gas = split
        .test
        .iter()
        .find(|s| s.image == test.join("gas_mask.png"));
    assert_eq!(gas.unwrap().mask, None);

    let msg = read_category(&root, "BOTTLE").unwrap_err().to_string();
    assert!(msg.contains("(did you mean `bottle`?)"), "{msg}");
}

/// A folder holding only images in formats memad skips says so in its "no images" error.
#[test]
fn a_folder_of_unread_images_names_them() {
    let (_dir, root) = tree();
    let good = root.join("screw/train/good");
    std::fs::remove_file(good.join("000.png")).unwrap();
    for name in ["a.webp", "b.WEBP", "c.gif", "notes.txt"] {
        std::fs::write(good.join(name), "x").unwrap();
    }
    let msg = read_category(&root, "screw").unwrap_err().to_string();
    assert!(
        msg.contains("train/good holds no images (png, jpg, jpeg, bmp, tif, tiff); it holds 1 .gif, 2 .webp file(s) in formats memad does not read: convert them to PNG"),
        "{msg}"
    );
}
