//! The IDX reader on hand-made MNIST files (raw and gzip) and on the real Fashion-MNIST in
//! `../shared/data/fashion-mnist` (skipped with a message when absent).
use flate2::write::GzEncoder;
use flate2::Compression;
use memad_data::idx::{read_idx_labels, read_mnist, read_mnist_part, MnistPart};
use memad_data::one_class::{one_class_split_with_anomalies, OneClassSplit};
use memad_data::{DataError, Label};
use std::io::Write;
use std::path::{Path, PathBuf};

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(data);
    b
}

fn write(path: &Path, bytes: &[u8], gz: bool) {
    if gz {
        let mut e = GzEncoder::new(Vec::new(), Compression::fast());
        e.write_all(bytes).unwrap();
        std::fs::write(path, e.finish().unwrap()).unwrap();
    } else {
        std::fs::write(path, bytes).unwrap();
    }
}

/// A tiny MNIST: `n` 4x3 images per part whose pixels all equal their label * 10 + index.
fn tiny_mnist(root: &Path, gz: bool, n: usize) {
    std::fs::create_dir_all(root).unwrap();
    let ext = if gz { ".gz" } else { "" };
    for (prefix, offset) in [("train", 0usize), ("t10k", 1)] {
        let labels: Vec<u8> = (0..n).map(|i| ((i + offset) % 3) as u8).collect();
        let pixels: Vec<u8> = (0..n)
            .flat_map(|i| std::iter::repeat_n(labels[i] * 10 + i as u8, 12))
            .collect();
        write(
            &root.join(format!("{prefix}-images-idx3-ubyte{ext}")),
            &idx_bytes(&[n as u32, 4, 3], &pixels),
            gz,
        );
        write(
            &root.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
            &idx_bytes(&[n as u32], &labels),
            gz,
        );
    }
}

#[test]
fn reads_raw_and_gzip_idx_files() {
    for gz in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        tiny_mnist(dir.path(), gz, 9);
        let data = read_mnist(dir.path()).unwrap();
        assert_eq!(data.train.len(), 9);
        let im = &data.train.images;
        assert_eq!((im.count, im.rows, im.cols), (9, 4, 3));
        assert_eq!(data.train.labels, [0, 1, 2, 0, 1, 2, 0, 1, 2]);
        assert_eq!(data.test.labels, [1, 2, 0, 1, 2, 0, 1, 2, 0]);
        assert!(im.image(4).iter().all(|&p| p == 14));
        let t = data.train.images_tensor(&[4, 0]);
        assert_eq!(t.size(), [2, 1, 4, 3]);
        assert!((t.double_value(&[0, 0, 3, 2]) - 14.0 / 255.0).abs() < 1e-6);
        let split = data.one_class(1).unwrap();
        let idx: Vec<usize> = split.train.iter().map(|s| s.index).collect();
        assert_eq!(idx, [1, 4, 7]);
        assert_eq!(OneClassSplit::counts(&split.test), (3, 6));
        assert_eq!(split.test[0].label, Label::Normal);
    }
}

#[test]
fn bad_files_are_named() {
    let dir = tempfile::tempdir().unwrap();
    tiny_mnist(dir.path(), false, 5);
    // Labels that do not match the image count.
    let labels = dir.path().join("t10k-labels-idx1-ubyte");
    write(&labels, &idx_bytes(&[4], &[0, 1, 2, 0]), false);
    let msg = read_mnist_part(dir.path(), MnistPart::Test)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte") && msg.contains("4 labels but"),
        "{msg}"
    );
    // A label that is no class (a damaged byte).
    write(&labels, &idx_bytes(&[5], &[0, 1, 42, 0, 1]), false);
    let msg = read_mnist_part(dir.path(), MnistPart::Test)
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("t10k-labels-idx1-ubyte") && msg.contains("label 42 of image 2"),
        "{msg}"
    );
    // Images given where labels are expected: wrong magic.
    let images: PathBuf = dir.path().join("t10k-images-idx3-ubyte");
    let msg = read_idx_labels(&images).unwrap_err().to_string();
    assert!(
        msg.contains("t10k-images-idx3-ubyte") && msg.contains("magic"),
        "{msg}"
    );
    // A truncated gzip file.
    write(&labels, &idx_bytes(&[5], &[0, 1, 2, 0, 1]), true);
    let bytes = std::fs::read(&labels).unwrap();
    std::fs::write(&labels, &bytes[..bytes.len() - 12]).unwrap();
    let msg = read_idx_labels(&labels).unwrap_err().to_string();
    assert!(msg.contains("t10k-labels-idx1-ubyte"), "{msg}");
    // A missing file names what was expected.
    std::fs::remove_file(dir.path().join("train-images-idx3-ubyte")).unwrap();
    let err = read_mnist(dir.path()).unwrap_err();
    assert!(matches!(err, DataError::Layout { .. }));
    assert!(err.to_string().contains("train-images-idx3-ubyte"), "{err}");
    let msg = read_mnist(&dir.path().join("nowhere"))
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not exist"), "{msg}");
}

#[test]
fn real_fashion_mnist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fashion-mnist");
    if !root.is_dir() {
        eprintln!(
            "skipping: Fashion-MNIST not found at {} (see shared/data/README.md)",
            root.display()
        );
        return;
    }
    let data = read_mnist(&root).unwrap();
    assert_eq!((data.train.len(), data.test.len()), (60_000, 10_000));
    assert_eq!((data.train.images.rows, data.train.images.cols), (28, 28));
    for labels in [&data.train.labels, &data.test.labels] {
        let mut counts = [0usize; 10];
        labels.iter().for_each(|&l| counts[l as usize] += 1);
        let per_class = labels.len() / 10;
        assert_eq!(counts, [per_class; 10]);
    }
    // The first training image of Fashion-MNIST is an ankle boot (9), the first test one too.
    assert_eq!((data.train.labels[0], data.test.labels[0]), (9, 9));
    let split = data.one_class(0).unwrap();
    assert_eq!(split.train.len(), 6000);
    assert_eq!(OneClassSplit::counts(&split.test), (1000, 9000));
    let u =
        one_class_split_with_anomalies(&data.train.labels, &data.test.labels, 0, 0.05, 0).unwrap();
    let (normal, anomalous) = OneClassSplit::counts(&u.train);
    assert_eq!((normal, anomalous), (6000, 316));
    assert!(u
        .train
        .iter()
        .all(|s| (s.class == 0) == (s.label == Label::Normal)));
}

#[test]
fn one_class_categories_run_through_the_batch_loader() {
    let dir = tempfile::tempdir().unwrap();
    tiny_mnist(dir.path(), true, 9);
    let entry = memad_data::DatasetCatalog::parse(
        &format!(
            "[tiny]\nformat = \"mnist_idx\"\nroot = \"{}\"\n",
            dir.path().display()
        ),
        &dir.path().join("datasets.toml"),
    )
    .unwrap()
    .get("tiny")
    .unwrap()
    .clone();
    let split = entry.read_category("1").unwrap();
    assert_eq!((split.train.len(), split.test.len()), (3, 9));
    assert!(split.train.iter().all(|s| s.label == Label::Normal));
    assert_eq!(
        split.test[1].defect, "2",
        "anomalies are named by their class"
    );
    assert_eq!(split.test[0].defect, "good");
    // Training image 1 of the file (class 1) holds the value 11, grey -> RGB.
    let b = memad_data::loader::decode_batch(&split.train, &[0], 4, false).unwrap();
    assert_eq!(b.channels, 3);
    assert!(b.images.iter().all(|&v| (v - 11.0 / 255.0).abs() < 1e-6));
    let err = entry.read_category("7").unwrap_err().to_string();
    assert!(err.contains("no training images"), "{err}");
    // The unbalanced setting: 3 normal + 1 labelled anomaly (fraction 0.25).
    let anomalies = memad_data::arrays::TrainAnomalies {
        fraction: 0.25,
        seed: 0,
    };
    let unbalanced = entry.read_classes("1", anomalies).unwrap();
    let labels: Vec<Label> = unbalanced.train.iter().map(|s| s.label).collect();
    assert_eq!(labels.len(), 4);
    assert_eq!(labels.iter().filter(|l| l.is_anomalous()).count(), 1);
    let test_labels = |t: &[memad_data::Sample]| t.iter().map(|s| s.label).collect::<Vec<_>>();
    assert_eq!(test_labels(&unbalanced.test), test_labels(&split.test));
}
