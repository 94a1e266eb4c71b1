//! `check_dataset` on hand-made datasets with known faults, and on the real shared data.
use image::{GrayImage, Luma, Rgb, RgbImage};
use memad_data::check::check_dataset;
use memad_data::DatasetCatalog;
use std::path::Path;

fn img(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb([1, 2, 3]))
        .save(path)
        .unwrap();
}

fn mask(path: &Path, w: u32, h: u32, on: bool) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_pixel(w, h, Luma([if on { 255 } else { 0 }]))
        .save(path)
        .unwrap();
}

#[test]
fn reports_counts_sizes_and_every_broken_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    for i in 0..3 {
        img(&root.join(format!("bottle/train/good/{i:03}.png")), 16, 16);
    }
    img(&root.join("bottle/train/good/003.png"), 20, 16);
    img(&root.join("bottle/test/good/000.png"), 16, 16);
    for i in 0..3 {
        img(&root.join(format!("bottle/test/crack/{i:03}.png")), 16, 16);
    }
    mask(
        &root.join("bottle/ground_truth/crack/000_mask.png"),
        16,
        16,
        true,
    );
    mask(
        &root.join("bottle/ground_truth/crack/001_mask.png"),
        8,
        8,
        true,
    );
    std::fs::create_dir_all(root.join("bottle/ground_truth/crack")).unwrap();
    std::fs::write(
        root.join("bottle/ground_truth/crack/002_mask.png"),
        b"not a png",
    )
    .unwrap();
    std::fs::write(
        root.join("bottle/train/good/001.png"),
        b"\x89PNG\r\n\x1a\ngarbage",
    )
    .unwrap();
    // A second category whose mask is missing: reported, the first still checked, and what
    // could be read of the second checked too (its test set has no normal image).
    img(&root.join("screw/train/good/000.png"), 8, 8);
    img(&root.join("screw/test/bent/000.png"), 8, 8);

    let text = format!("[m]\nformat = \"mvtec\"\nroot = \"{}\"\n", root.display());
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("m").unwrap()).unwrap();
    assert!(!report.is_ok());
    assert_eq!(report.categories.len(), 2);
    assert_eq!(report.categories[1].split_count("test"), 1);
    let c = &report.categories[0];
    assert_eq!(c.split_count("train"), 4);
    assert_eq!(c.split_count("test"), 4);
    assert_eq!(c.counts[&("test".to_string(), "crack".to_string())], 3);
    assert_eq!(c.sizes[&(16, 16)], 6);
    assert_eq!(c.sizes[&(20, 16)], 1);
    assert_eq!(c.masks_checked, 2);
    let text = report.to_string();
    assert!(text.contains("dataset `m` (mvtec)"), "{text}");
    assert!(text.contains("train/good/001.png"), "{text}");
    assert!(
        text.contains("001_mask.png: mask is 8x8 but its image"),
        "{text}"
    );
    assert!(
        text.contains("002_mask.png: corrupt or unreadable mask"),
        "{text}"
    );
    assert!(text.contains("screw/test/bent/000.png"), "{text}");
    assert!(
        text.contains("category `screw`: no normal test image"),
        "{text}"
    );
    assert!(text.contains("5 problem(s)"), "{text}");

    // A root with nothing of the format under it: the expected layout is named.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("training/videos")).unwrap();
    let text = format!(
        "[e]\nformat = \"shanghaitech\"\nroot = \"{}\"\n",
        empty.display()
    );
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("e").unwrap())
        .unwrap()
        .to_string();
    assert!(
        report.contains("no categories found: expected training/frames/<video>/*.jpg")
            && report.contains("training/videos/*.avi must be extracted"),
        "{report}"
    );

    let missing = "[x]\nformat = \"folder\"\nroot = \"/nonexistent/memad\"\n";
    let catalog = DatasetCatalog::parse(missing, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("x").unwrap()).unwrap();
    assert!(report
        .to_string()
        .contains("/nonexistent/memad: dataset root does not exist"));
}

#[test]
fn a_test_set_without_normal_or_anomalous_images_is_a_problem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    for category in ["cable", "wood"] {
        img(&root.join(format!("{category}/train/good/0.png")), 8, 8);
    }
    img(&root.join("cable/test/good/0.png"), 8, 8);
    img(&root.join("wood/test/hole/0.png"), 8, 8);
    mask(&root.join("wood/ground_truth/hole/0_mask.png"), 8, 8, true);
    let text = format!("[m]\nformat = \"mvtec\"\nroot = \"{}\"\n", root.display());
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let entry = catalog.get("m").unwrap();
    let text = check_dataset(entry).unwrap().to_string();
    assert!(text.contains("2 problem(s)"), "{text}");
    assert!(
        text.contains(
            "category `cable`: no anomalous test image, so its detection metrics are undefined"
        ),
        "{text}"
    );
    assert!(
        text.contains("category `wood`: no normal test image"),
        "{text}"
    );
    let wood = entry.read_category("wood").unwrap();
    assert!(memad_data::file_problems(&wood).is_empty());
    assert!(memad_data::test_set_problem(&wood).is_some());
    img(&root.join("wood/test/good/0.png"), 8, 8);
    let wood = entry.read_category("wood").unwrap();
    assert_eq!(memad_data::test_set_problem(&wood), None);
}

/// A 64 x 64 image with texture.
fn noise() -> RgbImage {
    RgbImage::from_fn(64, 64, |x, y| {
        Rgb([(x * 7 + y * 13) as u8, (x * y) as u8, 9])
    })
}

/// Writes `bottle`'s test set under `root` (one good image, one crack with its mask, 64 x
/// 64) and returns a catalog naming `root` as the MVTec AD dataset `m`.
fn bottle_test_set_and_catalog(root: &Path) -> DatasetCatalog {
    img(&root.join("bottle/test/good/000.png"), 64, 64);
    img(&root.join("bottle/test/crack/000.png"), 64, 64);
    mask(
        &root.join("bottle/ground_truth/crack/000_mask.png"),
        64,
        64,
        true,
    );
    let text = format!("[m]\nformat = \"mvtec\"\nroot = \"{}\"\n", root.display());
    DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap()
}

/// Damage inside a PNG's compressed data (header and end marker intact): only a full decode
/// finds it.
#[test]
fn decoding_every_image_finds_damage_the_header_check_misses() {
    use memad_data::check::{check_dataset_with, ImageCheck};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    let noise = noise();
    let damaged = root.join("bottle/train/good/001.png");
    std::fs::create_dir_all(damaged.parent().unwrap()).unwrap();
    noise.save(root.join("bottle/train/good/000.png")).unwrap();
    noise.save(&damaged).unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut bytes[idat + 4..idat + 40] {
        *b ^= 0x5a;
    }
    std::fs::write(&damaged, bytes).unwrap();
    let catalog = bottle_test_set_and_catalog(&root);
    let entry = catalog.get("m").unwrap();
    let header = check_dataset_with(entry, ImageCheck::Header).unwrap();
    assert!(header.is_ok(), "{header}");
    let decoded = check_dataset_with(entry, ImageCheck::Decode)
        .unwrap()
        .to_string();
    assert!(
        decoded.contains("1 problem(s)")
            && decoded.contains("001.png: corrupt or unreadable image"),
        "{decoded}"
    );
}

/// A `folder`-format category at `root`: one training image, one good test image and
/// `dents` anomalous ones (`test/dent/0.png`, ...), 8 x 8, without masks.
fn folder_category(root: &Path, dents: u32) {
    img(&root.join("train/good/0.png"), 8, 8);
    img(&root.join("test/good/0.png"), 8, 8);
    for k in 0..dents {
        img(&root.join(format!("test/dent/{k}.png")), 8, 8);
    }
}

#[test]
fn folder_format_without_masks_and_class_datasets() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    folder_category(&root, 3);
    mask(&root.join("ground_truth/dent/0_mask.png"), 8, 8, false);
    mask(&root.join("ground_truth/dent/2_mask.png"), 8, 8, true);
    let text = format!(
        "[f]\nformat = \"folder\"\nroot = \"{}\"\n[c]\nformat = \"cifar10\"\nroot = \"{}\"\n",
        root.display(),
        dir.path().display()
    );
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("f").unwrap()).unwrap();
    assert!(report.is_ok(), "{report}");
    let c = &report.categories[0];
    let without: Vec<_> = c.without_mask.iter().collect();
    assert_eq!(without, [(&"dent".to_string(), &1)]);
    assert_eq!((c.empty_masks, c.masks_checked), (1, 2));
    let text = report.to_string();
    assert!(
        text.contains("anomalous without a mask: dent 1 (left out of pixel metrics)"),
        "{text}"
    );
    assert!(text.contains("no problems found"), "{text}");
    // Every mask empty: a mask convention the reader does not know, not a dataset.
    mask(&root.join("ground_truth/dent/2_mask.png"), 8, 8, false);
    let report = check_dataset(catalog.get("f").unwrap()).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("all 2 masks of anomalous images mark no pixel"),
        "{text}"
    );
    let split = memad_data::folder::read_folder(&root, "parts").unwrap();
    let problems = memad_data::file_problems(&split);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0]
        .to_string()
        .contains("pixel metrics cannot be computed"));
    let report = check_dataset(catalog.get("c").unwrap()).unwrap();
    assert!(
        report.to_string().contains("no CIFAR-10 batches"),
        "{report}"
    );
}

#[test]
fn real_shared_datasets() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.toml");
    let catalog = DatasetCatalog::load(&path).unwrap();
    let fashion = catalog.get("fashion-mnist").unwrap();
    if !fashion.root.is_dir() {
        eprintln!("skipping: {} not found", fashion.root.display());
        return;
    }
    let report = check_dataset(fashion).unwrap();
    assert!(report.is_ok(), "{report}");
    let c = &report.categories[0];
    assert_eq!(c.split_count("train"), 60_000);
    assert_eq!(c.counts[&("test".to_string(), "3".to_string())], 1000);
    assert_eq!(c.sizes[&(28, 28)], 70_000);
    eprintln!("{report}");
}

/// Decodes every mask of Ped2 (well under a second).
#[test]
fn real_ped2() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.toml");
    let catalog = DatasetCatalog::load(&path).unwrap();
    let ped2 = catalog.get("ped2").unwrap();
    if !ped2.root.is_dir() {
        eprintln!("skipping: {} not found", ped2.root.display());
        return;
    }
    let report = check_dataset(ped2).unwrap();
    eprintln!("{report}");
    assert!(report.is_ok(), "{report}");
    let c = &report.categories[0];
    assert_eq!(
        (c.split_count("train"), c.split_count("test")),
        (2550, 2010)
    );
    assert_eq!(c.sizes[&(360, 240)], 4560);
    assert_eq!(c.videos["train"].0, 16);
    assert_eq!(c.videos["test"].0, 12);
    let text = report.to_string();
    assert!(text.contains("; train 16 videos of "), "{text}");
}

/// A PNG or JPEG cut short still has a readable header: the check finds it by its missing
/// end marker, before a run trains and then fails on it.
#[test]
fn truncated_images_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    let noise = noise();
    let good = root.join("bottle/train/good");
    std::fs::create_dir_all(&good).unwrap();
    noise.save(good.join("000.png")).unwrap();
    noise.save(good.join("001.jpg")).unwrap();
    noise.save(good.join("004.tif")).unwrap();
    noise.save(good.join("005.bmp")).unwrap();
    for (name, from) in [
        ("002.png", "000.png"),
        ("003.jpg", "001.jpg"),
        ("006.tif", "004.tif"),
        ("007.bmp", "005.bmp"),
    ] {
        let whole = std::fs::read(good.join(from)).unwrap();
        std::fs::write(good.join(name), &whole[..whole.len() / 2]).unwrap();
    }
    let catalog = bottle_test_set_and_catalog(&root);
    let text = check_dataset(catalog.get("m").unwrap())
        .unwrap()
        .to_string();
    assert!(
        text.contains("002.png: corrupt or unreadable image: truncated: the PNG file"),
        "{text}"
    );
    assert!(
        text.contains("003.jpg: corrupt or unreadable image: truncated: the JPEG"),
        "{text}"
    );
    // TIFF and BMP have no end marker: decoded whole (UCSD's frames are TIFF).
    assert!(
        text.contains("006.tif: corrupt or unreadable image"),
        "{text}"
    );
    assert!(
        text.contains("007.bmp: corrupt or unreadable image"),
        "{text}"
    );
    for whole in ["000.png:", "001.jpg:", "004.tif:", "005.bmp:"] {
        assert!(!text.contains(whole), "{text}");
    }
    assert!(text.contains("4 problem(s)"), "{text}");
}

/// Two masks of one image (`0_mask.png` and `0.png`): the reader refuses the pair, naming
/// both and saying to keep one, so a run stops before training rather than reading one of
/// them; `datasets check` names it once (both masks are read, neither is "unused").
#[test]
fn a_second_mask_of_an_image_is_refused_naming_both() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    folder_category(&root, 2);
    mask(&root.join("ground_truth/dent/0_mask.png"), 8, 8, true);
    mask(&root.join("ground_truth/dent/0.png"), 8, 8, false);
    mask(&root.join("ground_truth/dent/1_mask.png"), 8, 8, true);
    let err = memad_data::folder::read_folder(&root, "parts").unwrap_err();
    let gt = root.join("ground_truth/dent");
    assert_eq!(
        err.to_string(),
        format!(
            "test image {} has 2 masks, {} and {}: keep one mask per image (delete or move \
             the others); memad does not guess which one is meant",
            root.join("test/dent/0.png").display(),
            gt.join("0_mask.png").display(),
            gt.join("0.png").display()
        )
    );
    let text = format!("[f]\nformat = \"folder\"\nroot = \"{}\"\n", root.display());
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("f").unwrap()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    assert!(
        report.problems[0].message.contains("has 2 masks"),
        "{report}"
    );
    assert_eq!(report.categories[0].masks_checked, 2, "{report}");
}

/// `datasets check` lists every problem of a category, not its first: 25 missing masks and
/// an image directly in `test/` (read past), then what could be read is checked. The report
/// prints 20 per category and counts the rest, so a later category's problems still show.
#[test]
fn every_problem_of_a_category_is_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("mvtec");
    img(&root.join("bottle/train/good/000.png"), 8, 8);
    img(&root.join("bottle/test/good/000.png"), 8, 8);
    for i in 0..25 {
        img(&root.join(format!("bottle/test/crack/{i:03}.png")), 8, 8);
    }
    img(&root.join("bottle/test/stray.png"), 8, 8);
    img(&root.join("cable/train/good/000.png"), 8, 8);
    img(&root.join("cable/test/good/000.png"), 8, 8);
    img(&root.join("cable/test/bent/000.png"), 8, 8);
    let text = format!("[m]\nformat = \"mvtec\"\nroot = \"{}\"\n", root.display());
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("m").unwrap()).unwrap();
    let bottle: Vec<&memad_data::check::Problem> = (report.problems.iter())
        .filter(|p| p.category.as_deref() == Some("bottle"))
        .collect();
    assert_eq!(bottle.len(), 26, "{report}");
    assert!(
        bottle[0].message.contains("stray.png") && bottle[0].message.contains("belong in a folder"),
        "{report}"
    );
    assert_eq!(
        (bottle.iter())
            .filter(|p| p.message.contains("has no ground-truth mask"))
            .count(),
        25
    );
    assert_eq!(report.categories[0].split_count("test"), 26);
    // `mvtec` needs every mask: the images without one are problems above, not images
    // "left out of the pixel metrics" as the `folder` format's would be.
    assert!(report.categories[0].without_mask.is_empty(), "{report}");
    let text = report.to_string();
    assert!(text.contains("27 problem(s)"), "{text}");
    assert!(text.contains("crack/018.png has no"), "{text}");
    assert!(!text.contains("crack/019.png has no"), "{text}");
    assert!(
        text.contains("... and 6 more of category `bottle`"),
        "{text}"
    );
    assert!(text.contains("cable/test/bent/000.png has no"), "{text}");
    // A run refuses the category with all of them, 20 shown.
    let err = memad_data::mvtec::read_category(&root, "bottle").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("26 problems in category `bottle`") && msg.ends_with("... and 6 more"),
        "{msg}"
    );
    assert_eq!(err.into_errors().len(), 26);
}

/// Image files in formats memad does not read (WebP, GIF, any letter case) are named once
/// per category, with a count per format and two examples; hidden files and files that are
/// not images are not. A run notes them ([`memad_data::unused_files`]).
#[test]
fn image_files_memad_does_not_read_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    folder_category(&root, 1);
    mask(&root.join("ground_truth/dent/0_mask.png"), 8, 8, true);
    for name in ["train/good/1.webp", "train/good/2.webp", "test/dent/1.GIF"] {
        std::fs::write(root.join(name), b"RIFF").unwrap();
    }
    for name in [
        "train/good/.3.webp",
        "train/good/Thumbs.db",
        "train/good/notes.txt",
        "test/labels.csv",
        "test/meta.json",
        ".DS_Store",
    ] {
        std::fs::write(root.join(name), b"x").unwrap();
    }
    std::fs::create_dir_all(root.join(".cache")).unwrap();
    std::fs::write(root.join(".cache/4.webp"), b"x").unwrap();
    let text = format!("[f]\nformat = \"folder\"\nroot = \"{}\"\n", root.display());
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("f").unwrap()).unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    assert_eq!(
        report.problems[0].to_string(),
        format!(
            "{}: category `parts`: 3 image file(s) memad does not read (1 .gif, 2 .webp; e.g. \
             test/dent/1.GIF, train/good/1.webp, ...): memad reads PNG, JPG, BMP, TIFF: convert \
             these or they are not used",
            root.display()
        )
    );
    let split = memad_data::folder::read_folder(&root, "parts").unwrap();
    let notes: Vec<String> = (memad_data::unused_files(&split).iter())
        .map(|p| p.to_string())
        .collect();
    assert_eq!(notes, [report.problems[0].to_string()]);
    std::fs::remove_file(root.join("test/dent/1.GIF")).unwrap();
    for name in ["train/good/1.webp", "train/good/2.webp"] {
        std::fs::remove_file(root.join(name)).unwrap();
    }
    assert!(memad_data::unread_images(&split).is_none());
}

/// Unread image files are looked for below the category's own folder only: a split file
/// (VisA) naming a file elsewhere does not widen the search to a folder above the category,
/// only to the folders holding the split's files, none below them. Video frames are not
/// looked for (their readers list each video's folder).
#[test]
fn unread_images_are_looked_for_below_the_category_folder_only() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    folder_category(&root, 1);
    mask(&root.join("ground_truth/dent/0_mask.png"), 8, 8, true);
    let mut split = memad_data::folder::read_folder(&root, "parts").unwrap();
    let elsewhere = dir.path().join("elsewhere");
    img(&elsewhere.join("0.png"), 8, 8);
    split.train.push(memad_data::mvtec::Sample::still(
        elsewhere.join("0.png"),
        memad_data::mvtec::Label::Normal,
        "good",
        None,
    ));
    std::fs::create_dir_all(dir.path().join("far/away")).unwrap();
    std::fs::create_dir_all(elsewhere.join("deeper")).unwrap();
    for name in ["stray.webp", "far/away/1.webp", "elsewhere/deeper/2.webp"] {
        std::fs::write(dir.path().join(name), b"RIFF").unwrap();
    }
    assert_eq!(memad_data::unread_images(&split), None);
    for name in ["elsewhere/1.webp", "parts/train/good/1.webp"] {
        std::fs::write(dir.path().join(name), b"RIFF").unwrap();
    }
    let found = memad_data::unread_images(&split).unwrap();
    assert_eq!(found.path.as_deref(), Some(dir.path()));
    assert!(
        found.message.contains(
            "2 image file(s) memad does not read (2 .webp; e.g. elsewhere/1.webp, \
             parts/train/good/1.webp)"
        ),
        "{found}"
    );
    // Video frames: not looked for.
    for s in split.train.iter_mut().chain(&mut split.test) {
        s.video = Some("01".into());
    }
    assert_eq!(memad_data::unread_images(&split), None);
}

/// Mask files the reader did not match are reported per folder: a misnamed mask (the
/// `folder` format then silently has no mask for its image), masks under
/// `ground_truth/good`, and a LOCO mask folder without its test image.
#[test]
fn mask_files_no_test_image_uses_are_problems() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parts");
    folder_category(&root, 2);
    mask(&root.join("ground_truth/dent/0_mask.png"), 8, 8, true);
    mask(&root.join("ground_truth/dent/1-gt.png"), 8, 8, true);
    mask(&root.join("ground_truth/good/0_mask.png"), 8, 8, false);
    std::fs::write(root.join("ground_truth/dent/notes.txt"), "not an image").unwrap();
    let text = format!("[f]\nformat = \"folder\"\nroot = \"{}\"\n", root.display());
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("f").unwrap()).unwrap();
    let text = report.to_string();
    assert_eq!(report.problems.len(), 2, "{text}");
    assert!(
        text.contains("ground_truth/dent: 1 unused mask(s) that match no test image (first: 1-gt.png; the mask of"),
        "{text}"
    );
    assert!(
        text.contains("ground_truth/good: 1 unused mask(s) of normal test images"),
        "{text}"
    );
    // What a run reads is unchanged: these are not problems that stop it.
    let split = memad_data::folder::read_folder(&root, "parts").unwrap();
    assert!(memad_data::file_problems(&split).is_empty());

    let loco = dir.path().join("loco");
    img(&loco.join("box/train/good/000.png"), 8, 8);
    img(&loco.join("box/test/good/000.png"), 8, 8);
    img(&loco.join("box/test/logical_anomalies/000.png"), 8, 8);
    mask(
        &loco.join("box/ground_truth/logical_anomalies/000/000.png"),
        8,
        8,
        true,
    );
    mask(
        &loco.join("box/ground_truth/logical_anomalies/001/000.png"),
        8,
        8,
        true,
    );
    let text = format!(
        "[l]\nformat = \"mvtec_loco\"\nroot = \"{}\"\n",
        loco.display()
    );
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    let report = check_dataset(catalog.get("l").unwrap()).unwrap();
    let unused: Vec<String> = (report.problems.iter())
        .filter(|p| p.message.contains("unused"))
        .map(|p| p.to_string())
        .collect();
    assert_eq!(unused.len(), 1, "{report}");
    assert!(
        unused[0].ends_with(
            "logical_anomalies/001: 1 unused mask(s) that match no test image (first: 000.png)"
        ),
        "{report}"
    );
}
