//! The workspace's `datasets.toml` and catalog errors on files.
use memad_data::catalog::{DatasetCatalog, DatasetFormat};
use memad_data::mvtec::{read_category, MVTEC_AD_CATEGORIES};
use std::path::Path;

#[test]
fn workspace_catalog_loads() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../datasets.toml");
    let catalog = DatasetCatalog::load(&path).unwrap();
    assert_eq!(
        catalog.names().collect::<Vec<_>>(),
        [
            "avenue",
            "btad",
            "cifar10",
            "fashion-mnist",
            "mnist",
            "mvtec",
            "mvtec-loco",
            "ped2",
            "shanghaitech",
            "synthetic-mvtec",
            "synthetic-mvtec-sized",
            "visa"
        ]
    );
    let synthetic = catalog.get("synthetic-mvtec").unwrap();
    assert_eq!(synthetic.format, DatasetFormat::Mvtec);
    assert!(synthetic.root.ends_with("data/synthetic-mvtec"));
    let spec = synthetic.synthetic.as_ref().unwrap();
    assert_eq!(spec, &Default::default());
    assert_eq!(synthetic.categories.as_deref(), Some(&spec.categories[..]));
    let mvtec = catalog.get("mvtec").unwrap();
    assert!(mvtec.synthetic.is_none() && mvtec.categories.is_none());
    assert!(mvtec.root.ends_with("datasets/mvtec_anomaly_detection"));
    assert!(MVTEC_AD_CATEGORIES.contains(&"metal_nut"));
    let formats: Vec<_> = catalog.entries().map(|e| e.format).collect();
    use DatasetFormat::*;
    assert_eq!(
        formats,
        [
            Avenue,
            Btad,
            Cifar10,
            MnistIdx,
            MnistIdx,
            Mvtec,
            MvtecLoco,
            VideoFrames,
            ShanghaiTech,
            Mvtec,
            Mvtec,
            Visa
        ]
    );
    // The evaluation benchmark's set: MVTec AD's test-set size and resolution.
    let sized = catalog.get("synthetic-mvtec-sized").unwrap();
    let spec = sized.synthetic.as_ref().unwrap();
    let test_images = spec.categories.len()
        * (spec.test_good_per_category + spec.defects.len() * spec.test_per_defect);
    assert_eq!((test_images, spec.image_size), (1725, 256));
    for (name, folder) in [
        ("avenue", "datasets/avenue"),
        ("btad", "datasets/BTech_Dataset_transformed"),
        ("mvtec-loco", "datasets/mvtec_loco_anomaly_detection"),
        ("shanghaitech", "datasets/shanghaitech"),
    ] {
        let entry = catalog.get(name).unwrap();
        assert!(
            entry.root.ends_with(folder),
            "{name}: {}",
            entry.root.display()
        );
        assert!(entry.categories.is_none() && entry.synthetic.is_none());
    }
    let ped2 = catalog.get("ped2").unwrap();
    assert!(ped2.root.ends_with("shared/data/ucsd_ped2"));
    if ped2.root.is_dir() {
        assert_eq!(ped2.category_names().unwrap(), ["ucsd_ped2"]);
        let split = ped2.read_category("ucsd_ped2").unwrap();
        assert_eq!((split.train.len(), split.test.len()), (2550, 2010));
        assert!(split
            .test
            .iter()
            .all(|s| s.label.is_anomalous() == s.mask.is_some()));
    }
    let fashion = catalog.get("fashion-mnist").unwrap();
    assert!(fashion.root.ends_with("shared/data/fashion-mnist"));
    assert_eq!(fashion.class_index("9").unwrap(), 9);
}

#[test]
fn typo_in_a_file_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datasets.toml");
    std::fs::write(
        &path,
        "[mvtec]\nformat = \"mvtec\"\nroot = \"x\"\ncatgories = [\"bottle\"]\n",
    )
    .unwrap();
    let msg = DatasetCatalog::load(&path).unwrap_err().to_string();
    assert!(msg.contains(&path.display().to_string()), "{msg}");
    assert!(msg.contains("mvtec.catgories"), "{msg}");
    assert!(msg.contains("`categories`"), "{msg}");
}

#[test]
fn prepare_generates_a_synthetic_entry_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datasets.toml");
    let text = r#"
[tiny]
format = "mvtec"
root = "data/tiny"
[tiny.synthetic]
categories = ["leather"]
defects = ["stain"]
image_size = 32
train_per_category = 3
test_good_per_category = 1
test_per_defect = 2
"#;
    std::fs::write(&path, text).unwrap();
    let catalog = DatasetCatalog::load(&path).unwrap();
    let entry = catalog.get("tiny").unwrap();
    assert_eq!(entry.root, dir.path().join("data/tiny"));
    entry.prepare().unwrap();
    entry.prepare().unwrap();
    assert_eq!(entry.category_names().unwrap(), ["leather"]);
    let split = entry.read_category("leather").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 3));
    assert_eq!(read_category(&entry.root, "leather").unwrap(), split);
    let missing = catalog.get("mvtec").unwrap_err().to_string();
    assert!(missing.contains("tiny"), "{missing}");
}

#[test]
fn a_missing_root_names_the_entry_and_its_catalog() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("datasets.toml");
    std::fs::write(&path, "[mine]\nformat = \"mvtec\"\nroot = \"not/here\"\n").unwrap();
    let catalog = DatasetCatalog::load(&path).unwrap();
    let entry = catalog.get("mine").unwrap();
    entry.prepare().unwrap();
    let msg = entry.check_root().unwrap_err().to_string();
    assert_eq!(
        msg,
        format!(
            "dataset `mine`: its root {} does not exist or is not a folder (put the dataset \
             there, or fix `root` of [mine] in {})",
            dir.path().join("not/here").display(),
            path.display()
        )
    );
}
