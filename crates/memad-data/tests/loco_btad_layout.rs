//! MVTec LOCO AD (a mask folder per image, OR-ed) and BTAD (`ok`/`ko`, masks matched by
//! stem across extensions) on small trees in the real layouts.
use image::{GrayImage, Luma, Rgb, RgbImage};
use memad_data::check::check_dataset;
use memad_data::image_io::{load_mask_for, MaskResize};
use memad_data::loader::decode_batch;
use memad_data::mask::MaskRef;
use memad_data::mvtec_loco::{self, LOGICAL, STRUCTURAL};
use memad_data::{btad, DataError, DatasetCatalog, DatasetEntry, Label};
use std::path::Path;

fn img(path: &Path, w: u32, h: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    RgbImage::from_pixel(w, h, Rgb([10, 20, 30]))
        .save(path)
        .unwrap();
}

/// A `w` x `h` mask with value `v` on the rectangle `x0..x1` x `y0..y1`.
fn mask(path: &Path, (w, h): (u32, u32), (x0, x1, y0, y1): (u32, u32, u32, u32), v: u8) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    GrayImage::from_fn(w, h, |x, y| {
        Luma([if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
            v
        } else {
            0
        }])
    })
    .save(path)
    .unwrap();
}

fn entry(format: &str, root: &Path) -> DatasetEntry {
    let text = format!(
        "[d]\nformat = \"{format}\"\nroot = \"{}\"\n",
        root.display()
    );
    let catalog = DatasetCatalog::parse(&text, Path::new("d.toml")).unwrap();
    catalog.get("d").unwrap().clone()
}

/// A `defects_config.json` as LOCO ships it: an absolute threshold (255), a relative one
/// (100) and a region saturating only when all of it is found (254).
const DEFECTS_CONFIG: &str = r#"[
  {"defect_name": "missing_almonds", "pixel_value": 255, "saturation_threshold": 4, "relative_saturation": false},
  {"defect_name": "extra_banana", "pixel_value": 100, "saturation_threshold": 0.5, "relative_saturation": true},
  {"defect_name": "wrong_box", "pixel_value": 254, "saturation_threshold": 1.0, "relative_saturation": true}
]"#;

/// `breakfast_box` (16 x 12): 3 train, 2 validation, 2 good test images, 2 logical anomalies
/// (000 with two region masks, values 255 and 100; 001 with one) and 1 structural; and a
/// minimal `juice_bottle` (one good and one structural test image).
fn loco_tree(root: &Path) {
    let c = root.join("breakfast_box");
    let size = (16, 12);
    for i in 0..3 {
        img(&c.join(format!("train/good/{i:03}.png")), 16, 12);
    }
    for i in 0..2 {
        img(&c.join(format!("validation/good/{i:03}.png")), 16, 12);
        img(&c.join(format!("test/good/{i:03}.png")), 16, 12);
        img(&c.join(format!("test/{LOGICAL}/{i:03}.png")), 16, 12);
    }
    img(&c.join(format!("test/{STRUCTURAL}/000.png")), 16, 12);
    let gt = c.join("ground_truth");
    mask(
        &gt.join(format!("{LOGICAL}/000/000.png")),
        size,
        (0, 4, 0, 2),
        255,
    );
    mask(
        &gt.join(format!("{LOGICAL}/000/001.png")),
        size,
        (10, 16, 8, 12),
        100,
    );
    mask(
        &gt.join(format!("{LOGICAL}/001/000.png")),
        size,
        (0, 16, 0, 12),
        254,
    );
    mask(
        &gt.join(format!("{STRUCTURAL}/000/000.png")),
        size,
        (2, 3, 2, 3),
        255,
    );
    std::fs::write(c.join("defects_config.json"), DEFECTS_CONFIG).unwrap();
    let j = root.join("juice_bottle");
    img(&j.join("train/good/000.png"), 8, 16);
    img(&j.join("test/good/000.png"), 8, 16);
    img(&j.join(format!("test/{STRUCTURAL}/000.png")), 8, 16);
    let gt = j.join("ground_truth");
    mask(
        &gt.join(format!("{STRUCTURAL}/000/000.png")),
        (8, 16),
        (1, 3, 1, 3),
        255,
    );
    std::fs::write(j.join("defects_config.json"), DEFECTS_CONFIG).unwrap();
}

#[test]
fn reads_mvtec_loco_with_or_ed_mask_folders() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    loco_tree(root);
    assert_eq!(
        mvtec_loco::list_categories(root).unwrap(),
        ["breakfast_box", "juice_bottle"]
    );
    assert!(mvtec_loco::LOCO_CATEGORIES.contains(&"splicing_connectors"));
    let split = mvtec_loco::read_category(root, "breakfast_box").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 5));
    assert_eq!(split.defects(), [LOGICAL, STRUCTURAL]);
    let kinds: Vec<(&str, Label)> = split
        .test
        .iter()
        .map(|s| (s.defect.as_str(), s.label))
        .collect();
    use Label::{Anomalous as A, Normal as N};
    assert_eq!(
        kinds,
        [
            ("good", N),
            ("good", N),
            (LOGICAL, A),
            (LOGICAL, A),
            (STRUCTURAL, A)
        ]
    );
    let gt = root.join("breakfast_box/ground_truth");
    let s = &split.test[2];
    assert_eq!(
        s.mask,
        Some(MaskRef::Union(vec![
            gt.join(format!("{LOGICAL}/000/000.png")),
            gt.join(format!("{LOGICAL}/000/001.png")),
        ]))
    );
    // Both regions, whatever their grey value: 4 x 2 + 6 x 4.
    let m = load_mask_for(s.mask.as_ref().unwrap(), &s.image, 16, MaskResize::Nearest).unwrap();
    assert_eq!(m.dimensions(), (16, 16));
    let native = s.mask.as_ref().unwrap().decode().unwrap();
    assert_eq!(native.pixels().filter(|p| p[0] == 255).count(), 8 + 24);
    assert_eq!(native.get_pixel(15, 11)[0], 255);
    let batch = decode_batch(&split.test, &[0, 4], 12, true).unwrap();
    let masks = batch.masks.unwrap();
    assert!(masks[..144].iter().all(|&v| v == 0.0));
    assert_eq!(masks[144..].iter().filter(|&&v| v > 0.5).count(), 1);

    let e = entry("mvtec_loco", root);
    assert!(!e.format.is_video());
    let report = check_dataset(&e).unwrap();
    assert!(report.is_ok(), "{report}");
    let c = &report.categories[0];
    assert_eq!(c.masks_checked, 3);
    assert_eq!(c.counts[&("test".to_string(), LOGICAL.to_string())], 2);
    assert_eq!(report.categories[1].split_count("test"), 2);
    let msg = e
        .read_clips("breakfast_box", 3, memad_data::video::ClipMode::Predict)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a video format"), "{msg}");
}

#[test]
fn mvtec_loco_spro_regions_carry_their_saturation_areas() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    loco_tree(root);
    let split = mvtec_loco::read_category(root, "breakfast_box").unwrap();
    let regions = mvtec_loco::spro_regions(&split.test, 16, None).unwrap();
    // Test order: good 000, good 001, logical 000 (two regions), logical 001, structural 000.
    let owners: Vec<usize> = regions.iter().map(|r| r.sample).collect();
    assert_eq!(owners, [2, 2, 3, 4]);
    let gt = root.join("breakfast_box/ground_truth");
    let files = [
        gt.join(format!("{LOGICAL}/000/000.png")),
        gt.join(format!("{LOGICAL}/000/001.png")),
        gt.join(format!("{LOGICAL}/001/000.png")),
        gt.join(format!("{STRUCTURAL}/000/000.png")),
    ];
    // Native areas 8, 24, 192, 1 -> official saturation min(4, 8) = 4, int(0.5 * 24) = 12,
    // 192 and min(4, 1) = 1: the same fractions of the resized regions.
    for (k, (region, (file, fraction))) in regions
        .iter()
        .zip(files.iter().zip([0.5, 0.5, 1.0, 1.0]))
        .enumerate()
    {
        let image = &split.test[region.sample].image;
        let alone = load_mask_for(
            &MaskRef::Union(vec![file.clone()]),
            image,
            16,
            MaskResize::Nearest,
        )
        .unwrap();
        let want: Vec<u32> = (0..256u32)
            .filter(|&p| alone.as_raw()[p as usize] > 0)
            .collect();
        assert_eq!(region.pixels, want, "region {k}");
        let area = want.len() as f64;
        assert_eq!(region.saturation, (fraction * area).max(1.0), "region {k}");
    }
    // The centre 8 x 8 of 16 x 16 (offset 4): each region's pixels inside it, renumbered;
    // the structural speck and the top-left region fall outside and are left out.
    let cropped = mvtec_loco::spro_regions(&split.test, 16, Some(8)).unwrap();
    let inside: Vec<(usize, Vec<u32>, f64)> = regions
        .iter()
        .map(|r| {
            let pixels: Vec<u32> = (r.pixels.iter())
                .map(|&p| (p % 16, p / 16))
                .filter(|&(x, y)| (4..12).contains(&x) && (4..12).contains(&y))
                .map(|(x, y)| (y - 4) * 8 + x - 4)
                .collect();
            (r.sample, pixels, r.saturation)
        })
        .filter(|r| !r.1.is_empty())
        .collect();
    let got: Vec<(usize, Vec<u32>, f64)> = (cropped.iter())
        .map(|r| (r.sample, r.pixels.clone(), r.saturation))
        .collect();
    assert_eq!(got, inside);
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1, (0..64).collect::<Vec<u32>>());
    // Normal samples have none.
    assert!(mvtec_loco::spro_regions(&split.test[..2], 16, None)
        .unwrap()
        .is_empty());
}

#[test]
fn mvtec_loco_spro_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    loco_tree(root);
    let split = mvtec_loco::read_category(root, "breakfast_box").unwrap();
    let cat = root.join("breakfast_box");
    let gt = cat.join("ground_truth");
    let spro_error = || {
        mvtec_loco::spro_regions(&split.test, 16, None)
            .unwrap_err()
            .to_string()
    };
    // A grey value no defect has.
    mask(
        &gt.join(format!("{LOGICAL}/000/001.png")),
        (16, 12),
        (0, 2, 0, 2),
        7,
    );
    let msg = spro_error();
    assert!(
        msg.contains("001.png") && msg.contains("grey value 7"),
        "{msg}"
    );
    // Two values in one region file.
    let two = GrayImage::from_fn(16, 12, |x, _| {
        Luma([if x < 2 {
            255
        } else if x < 4 {
            100
        } else {
            0
        }])
    });
    two.save(gt.join(format!("{LOGICAL}/000/001.png"))).unwrap();
    let msg = spro_error();
    assert!(msg.contains("255 and 100"), "{msg}");
    let report = check_dataset(&entry("mvtec_loco", root)).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("sPRO regions") && text.contains("255 and 100"),
        "{text}"
    );
    // An invalid and a missing config.
    std::fs::write(
        cat.join("defects_config.json"),
        r#"[{"defect_name": "a", "pixel_value": 255, "saturation_threshold": 1.5, "relative_saturation": true}]"#,
    )
    .unwrap();
    let msg = spro_error();
    assert!(
        msg.contains("defects_config.json") && msg.contains("in (0, 1]"),
        "{msg}"
    );
    std::fs::remove_file(cat.join("defects_config.json")).unwrap();
    let msg = spro_error();
    assert!(
        msg.contains("defects_config.json") && msg.contains("saturation"),
        "{msg}"
    );
}

#[test]
fn mvtec_loco_missing_or_mis_sized_masks_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    loco_tree(root);
    let gt = root.join("breakfast_box/ground_truth");
    mask(
        &gt.join(format!("{LOGICAL}/001/001.png")),
        (8, 8),
        (0, 1, 0, 1),
        255,
    );
    let report = check_dataset(&entry("mvtec_loco", root)).unwrap();
    let text = report.to_string();
    assert!(
        text.contains("001/001.png is 8x8 but its image") && text.contains("1 problem(s)"),
        "{text}"
    );
    std::fs::remove_dir_all(gt.join(STRUCTURAL)).unwrap();
    let err = mvtec_loco::read_category(root, "breakfast_box").unwrap_err();
    assert!(matches!(err, DataError::MaskMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("expected mask at ")
            && err
                .to_string()
                .contains("ground_truth/structural_anomalies/000/;")
            && err.to_string().contains("a LOCO mask is that folder")
            && !err.to_string().contains("000/000.png"),
        "the message names the missing folder, not a file in it: {err}"
    );
    let msg = mvtec_loco::read_category(root, "breakfast")
        .unwrap_err()
        .to_string();
    assert!(msg.contains("breakfast_box, juice_bottle"), "{msg}");
}

/// BTAD: `01` bmp images with png masks, `02` png and png, `03` bmp and bmp.
fn btad_tree(root: &Path) {
    for (cat, ext, mask_ext) in [
        ("01", "bmp", "png"),
        ("02", "png", "png"),
        ("03", "bmp", "bmp"),
    ] {
        let c = root.join(cat);
        for i in 0..2 {
            img(&c.join(format!("train/ok/{i:04}.{ext}")), 10, 8);
            img(&c.join(format!("test/ko/{i:04}.{ext}")), 10, 8);
            mask(
                &c.join(format!("ground_truth/ko/{i:04}.{mask_ext}")),
                (10, 8),
                (0, 2 + i, 0, 2),
                255,
            );
        }
        img(&c.join(format!("test/ok/0000.{ext}")), 10, 8);
    }
}

#[test]
fn reads_btad_matching_masks_by_stem() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    btad_tree(root);
    assert_eq!(btad::list_categories(root).unwrap(), btad::BTAD_CATEGORIES);
    let split = btad::read_category(root, "01").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (2, 3));
    assert_eq!(split.defects(), ["ko"]);
    assert_eq!(
        (split.test[0].defect.as_str(), split.test[0].label),
        ("good", Label::Normal)
    );
    let s = &split.test[2];
    assert_eq!(s.image, root.join("01/test/ko/0001.bmp"));
    assert_eq!(
        s.mask.as_ref().and_then(MaskRef::file),
        Some(root.join("01/ground_truth/ko/0001.png").as_path())
    );
    let split = btad::read_category(root, "03").unwrap();
    let m = split.test[1].mask.as_ref().unwrap();
    assert_eq!(
        m.file(),
        Some(root.join("03/ground_truth/ko/0000.bmp").as_path())
    );
    let native = m.decode().unwrap();
    assert_eq!(native.pixels().filter(|p| p[0] == 255).count(), 4);
    let report = check_dataset(&entry("btad", root)).unwrap();
    assert!(report.is_ok(), "{report}");
    assert_eq!(report.categories.len(), 3);
    assert!(report.categories.iter().all(|c| c.masks_checked == 2));

    std::fs::remove_file(root.join("02/ground_truth/ko/0001.png")).unwrap();
    let err = btad::read_category(root, "02").unwrap_err();
    assert!(matches!(err, DataError::MaskMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("02/ground_truth/ko/0001.png"),
        "{err}"
    );
    img(&root.join("01/test/crack/0000.bmp"), 10, 8);
    let msg = btad::read_category(root, "01").unwrap_err().to_string();
    assert!(
        msg.contains("test/crack") && msg.contains("only `ok` and `ko`"),
        "{msg}"
    );
}

/// BTAD matches masks by stem across extensions: `0000.png` beside `0000.bmp` is two masks
/// of `test/ko/0000`, refused with both named (one was silently picked before); every
/// missing mask of the category is named in one error.
#[test]
fn btad_two_masks_of_one_image_are_refused_and_every_problem_listed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    btad_tree(root);
    let gt = root.join("01/ground_truth/ko");
    mask(&gt.join("0000.bmp"), (10, 8), (0, 2, 0, 2), 255);
    let err = btad::read_category(root, "01").unwrap_err();
    assert!(matches!(err, DataError::TwoMasks { .. }), "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!(
            "{} and {}: keep one mask per image",
            gt.join("0000.bmp").display(),
            gt.join("0000.png").display()
        )),
        "{msg}"
    );
    let report = check_dataset(&entry("btad", root)).unwrap();
    assert_eq!(report.problems.len(), 1, "{report}");
    std::fs::remove_file(gt.join("0000.bmp")).unwrap();
    btad::read_category(root, "01").unwrap();

    for i in 0..2 {
        std::fs::remove_file(root.join(format!("02/ground_truth/ko/{i:04}.png"))).unwrap();
    }
    let errors = btad::read_category(root, "02").unwrap_err().into_errors();
    assert_eq!(errors.len(), 2);
    assert!(errors
        .iter()
        .all(|e| matches!(e, DataError::MaskMissing { .. })));
}

/// LOCO: every missing mask folder is named in one error.
#[test]
fn mvtec_loco_lists_every_missing_mask_folder() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    loco_tree(root);
    let gt = root.join("breakfast_box/ground_truth");
    std::fs::remove_dir_all(gt.join(LOGICAL)).unwrap();
    let err = mvtec_loco::read_category(root, "breakfast_box").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("2 problems in category `breakfast_box`"),
        "{msg}"
    );
    assert!(
        msg.contains(&format!("{}/", gt.join(LOGICAL).join("000").display()))
            && msg.contains(&format!("{}/", gt.join(LOGICAL).join("001").display())),
        "{msg}"
    );
}
