//! The synthetic generator end to end: determinism, layout, masks, regeneration rules.
use image::GenericImageView;
use memad_data::mvtec::{list_categories, read_category, Label};
use memad_data::synthetic::{
    ensure_generated, generate, SyntheticSpec, MARKER_FILE, MAX_DEFECT_AREA, MIN_DEFECT_AREA,
};
use memad_data::MaskRef;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn small_spec() -> SyntheticSpec {
    SyntheticSpec {
        categories: vec!["wood".into(), "grid".into()],
        image_size: 48,
        train_per_category: 4,
        test_good_per_category: 2,
        test_per_defect: 2,
        defects: vec![
            "scratch".into(),
            "hole".into(),
            "stain".into(),
            "missing".into(),
        ],
        seed: 5,
    }
}

/// Every file under `root` (relative path → bytes).
fn files(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

#[test]
fn same_spec_gives_byte_identical_files() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let spec = small_spec();
    let report = generate(a.path(), &spec).unwrap();
    generate(b.path(), &spec).unwrap();
    assert_eq!(report.images, spec.image_count());
    assert_eq!(report.images, 2 * (4 + 2 + 4 * 2));
    assert_eq!(report.masks, 2 * 4 * 2);
    let (fa, fb) = (files(a.path()), files(b.path()));
    // images + masks + the marker; no temporary files left behind
    assert_eq!(fa.len(), report.images + report.masks + 1);
    assert!(fa.keys().all(|p| !p.to_string_lossy().ends_with(".tmp")));
    assert_eq!(fa, fb);

    let other = tempfile::tempdir().unwrap();
    generate(other.path(), &SyntheticSpec { seed: 6, ..spec }).unwrap();
    let fc = files(other.path());
    let first = Path::new("wood/train/good/000.png");
    assert_ne!(fa[first], fc[first]);
}

#[test]
fn reader_reads_the_generated_set_and_masks_are_plausible() {
    let dir = tempfile::tempdir().unwrap();
    let spec = small_spec();
    generate(dir.path(), &spec).unwrap();
    assert_eq!(list_categories(dir.path()).unwrap(), ["grid", "wood"]);
    for category in &spec.categories {
        let split = read_category(dir.path(), category).unwrap();
        assert_eq!(split.train.len(), 4);
        assert!(split
            .train
            .iter()
            .all(|s| s.label == Label::Normal && s.mask.is_none()));
        assert_eq!(split.test.len(), 2 + 4 * 2);
        assert_eq!(split.defects(), ["hole", "missing", "scratch", "stain"]);
        let normal = split
            .test
            .iter()
            .filter(|s| !s.label.is_anomalous())
            .count();
        assert_eq!(normal, 2);
        for sample in split.test.iter().filter(|s| s.label.is_anomalous()) {
            let mask_path = sample.mask.as_ref().and_then(MaskRef::file).unwrap();
            let image = image::open(&sample.image).unwrap();
            let mask = image::open(mask_path).unwrap().into_luma8();
            assert_eq!(image.dimensions(), (48, 48));
            assert_eq!(mask.dimensions(), (48, 48));
            assert!(mask.pixels().all(|p| p[0] == 0 || p[0] == 255));
            let area = mask.pixels().filter(|p| p[0] == 255).count() as f32 / (48.0 * 48.0);
            assert!(
                (MIN_DEFECT_AREA..=MAX_DEFECT_AREA).contains(&area),
                "{}: area {area}",
                mask_path.display()
            );
            assert!(image.color().has_color());
        }
    }
}

#[test]
fn ensure_generated_only_regenerates_when_needed() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("synthetic");
    let spec = SyntheticSpec {
        categories: vec!["carpet".into()],
        defects: vec!["hole".into()],
        image_size: 32,
        train_per_category: 2,
        test_good_per_category: 1,
        test_per_defect: 1,
        seed: 0,
    };
    assert!(ensure_generated(&root, &spec).unwrap());
    assert!(!ensure_generated(&root, &spec).unwrap());

    // A changed spec regenerates and leaves nothing of the old one behind.
    let bigger = SyntheticSpec {
        categories: vec!["tile".into()],
        train_per_category: 3,
        ..spec.clone()
    };
    assert!(ensure_generated(&root, &bigger).unwrap());
    assert_eq!(list_categories(&root).unwrap(), ["tile"]);
    assert_eq!(read_category(&root, "tile").unwrap().train.len(), 3);

    // An interrupted run (no marker yet) is regenerated, stray files included.
    std::fs::remove_file(root.join(MARKER_FILE)).unwrap();
    std::fs::write(root.join("memad-synthetic.incomplete"), b"").unwrap();
    std::fs::write(root.join("tile/train/good/999.png"), b"partial").unwrap();
    assert!(ensure_generated(&root, &bigger).unwrap());
    assert_eq!(read_category(&root, "tile").unwrap().train.len(), 3);
    assert!(!ensure_generated(&root, &bigger).unwrap());
    assert!(!root.join("memad-synthetic.incomplete").exists());

    // Without either marker the folder is not recognisably the generator's: refused.
    std::fs::remove_file(root.join(MARKER_FILE)).unwrap();
    let err = ensure_generated(&root, &bigger).unwrap_err().to_string();
    assert!(err.contains("refusing"), "{err}");
}

#[test]
fn refuses_to_overwrite_a_folder_it_did_not_make() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("precious.txt"), b"keep me").unwrap();
    let err = ensure_generated(dir.path(), &small_spec())
        .unwrap_err()
        .to_string();
    assert!(err.contains("refusing"), "{err}");
    assert!(dir.path().join("precious.txt").is_file());
}

#[test]
fn invalid_spec_is_rejected_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("out");
    let spec = SyntheticSpec {
        defects: vec!["crack".into()],
        ..small_spec()
    };
    let err = generate(&root, &spec).unwrap_err().to_string();
    assert!(err.contains("crack") && err.contains("scratch"), "{err}");
    assert!(!root.exists());
}
