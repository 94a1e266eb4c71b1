//! The CIFAR-10 reader on hand-made batches in both downloads' layouts: binary records and
//! Python pickles as Python 2's cPickle wrote the real files (and as Python 3 writes them
//! with protocol 2).
use memad_data::cifar10::{
    find_batches, read_bin_batch, read_cifar10, read_py_batch, Cifar10Layout,
};
use memad_data::one_class::OneClassSplit;
use std::path::Path;

const N: usize = 3;

/// Image `i` of batch `b`: every byte is `(b * 16 + i * 3 + channel) % 256`.
fn image(b: usize, i: usize) -> Vec<u8> {
    (0..3)
        .flat_map(|c| std::iter::repeat_n(((b * 16 + i * 3 + c) % 256) as u8, 1024))
        .collect()
}

fn label(b: usize, i: usize) -> u8 {
    ((b + i) % 10) as u8
}

/// Batches `1..=5` are training batches, `6` is the test batch.
fn batch_name(b: usize) -> String {
    if b == 6 {
        "test_batch".into()
    } else {
        format!("data_batch_{b}")
    }
}

fn bin_batches(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for b in 1..=6 {
        let bytes: Vec<u8> = (0..N)
            .flat_map(|i| std::iter::once(label(b, i)).chain(image(b, i)))
            .collect();
        std::fs::write(dir.join(format!("{}.bin", batch_name(b))), bytes).unwrap();
    }
    std::fs::write(dir.join("batches.meta.txt"), "airplane\n").unwrap();
}

/// A pickled str key: Python 2 `U` (short binstring) or Python 3 bytes via
/// `_codecs.encode(..., 'latin1')`.
fn key(py3: bool, s: &str) -> Vec<u8> {
    let mut p = Vec::new();
    if py3 {
        p.extend_from_slice(b"c_codecs\nencode\nq\x01X");
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
        p.extend_from_slice(b"X\x06\x00\x00\x00latin1\x86R");
    } else {
        p.push(b'U');
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    }
    p
}

/// The pickle of `{data: uint8 [n, 3072], labels: [...], batch_label: ...}`.
fn pickle(py3: bool, labels: &[u8], data: &[u8]) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x00(".to_vec();
    p.extend(key(py3, "data"));
    p.extend_from_slice(
        b"cnumpy.core.multiarray\n_reconstruct\nq\x03cnumpy\nndarray\nq\x04K\x00\x85q\x05",
    );
    p.extend(key(py3, "b"));
    p.extend_from_slice(b"\x87q\x06Rq\x07(K\x01K");
    p.push(labels.len() as u8);
    p.extend_from_slice(b"M\x00\x0c\x86q\x08cnumpy\ndtype\nq\x09");
    p.extend_from_slice(b"X\x02\x00\x00\x00u1K\x00K\x01\x87q\x0aRq\x0b(K\x03X\x01\x00\x00\x00|NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89");
    if py3 {
        // bytes > 127 become two UTF-8 bytes of the latin-1 str.
        let s: String = data.iter().map(|&b| b as char).collect();
        p.extend_from_slice(b"c_codecs\nencode\nq\x0dX");
        p.extend_from_slice(&(s.len() as u32).to_le_bytes());
        p.extend_from_slice(s.as_bytes());
        p.extend_from_slice(b"X\x06\x00\x00\x00latin1\x86R");
    } else {
        p.push(b'T');
        p.extend_from_slice(&(data.len() as u32).to_le_bytes());
        p.extend_from_slice(data);
    }
    p.extend_from_slice(b"q\x0etq\x0fb");
    p.extend(key(py3, "labels"));
    p.extend_from_slice(b"]q\x10(");
    for &l in labels {
        p.extend_from_slice(&[b'K', l]);
    }
    p.push(b'e');
    p.extend(key(py3, "batch_label"));
    p.extend(key(py3, "training batch"));
    p.extend_from_slice(b"u.");
    p
}

fn py_batches(dir: &Path, py3: bool) {
    std::fs::create_dir_all(dir).unwrap();
    for b in 1..=6 {
        let labels: Vec<u8> = (0..N).map(|i| label(b, i)).collect();
        let data: Vec<u8> = (0..N).flat_map(|i| image(b, i)).collect();
        std::fs::write(dir.join(batch_name(b)), pickle(py3, &labels, &data)).unwrap();
    }
}

fn check(data: &memad_data::cifar10::Cifar10) {
    assert_eq!((data.train.len(), data.test.len()), (5 * N, N));
    assert_eq!(data.train.labels[..4], [1, 2, 3, 2]);
    assert_eq!(data.train.image(4), image(2, 1));
    assert_eq!(data.test.image(2), image(6, 2));
    assert_eq!(data.test.labels, [6, 7, 8]);
    let t = data.test.images_tensor(&[2]);
    assert_eq!(t.size(), [1, 3, 32, 32]);
    let expected = (6 * 16 + 2 * 3 + 1) as f64 / 255.0;
    assert!((t.double_value(&[0, 1, 31, 31]) - expected).abs() < 1e-6);
    let split = data.one_class(2).unwrap();
    assert_eq!(split.train.len(), 2);
    assert_eq!(OneClassSplit::counts(&split.test), (0, 3));
}

#[test]
fn reads_the_binary_layout() {
    let dir = tempfile::tempdir().unwrap();
    bin_batches(&dir.path().join("cifar-10-batches-bin"));
    assert_eq!(
        find_batches(dir.path()).unwrap(),
        (
            dir.path().join("cifar-10-batches-bin"),
            Cifar10Layout::Binary
        )
    );
    let data = read_cifar10(dir.path()).unwrap();
    check(&data);
    assert_eq!(
        read_cifar10(&dir.path().join("cifar-10-batches-bin")).unwrap(),
        data
    );
    // A truncated batch and a bad label name the file.
    let path = dir.path().join("cifar-10-batches-bin/data_batch_3.bin");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    let msg = read_cifar10(dir.path()).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_3.bin") && msg.contains("3073-byte records"),
        "{msg}"
    );
    let mut bad = bytes.clone();
    bad[3073] = 12;
    std::fs::write(&path, bad).unwrap();
    let msg = read_bin_batch(&path).unwrap_err().to_string();
    assert!(msg.contains("label 12 of image 1"), "{msg}");
}

#[test]
fn reads_the_python_layout_from_python_2_and_3_pickles() {
    for py3 in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        py_batches(&dir.path().join("cifar-10-batches-py"), py3);
        assert_eq!(find_batches(dir.path()).unwrap().1, Cifar10Layout::Python);
        check(&read_cifar10(dir.path()).unwrap());
    }
}

#[test]
fn bad_pickles_are_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data_batch_1");
    let labels = [1u8, 2];
    let data = vec![7u8; 2 * 3072];
    let good = pickle(false, &labels, &data);
    std::fs::write(&path, &good).unwrap();
    assert_eq!(read_py_batch(&path).unwrap().labels, labels);
    // Truncated.
    std::fs::write(&path, &good[..good.len() / 2]).unwrap();
    let msg = read_py_batch(&path).unwrap_err().to_string();
    assert!(
        msg.contains("data_batch_1") && msg.contains("truncated"),
        "{msg}"
    );
    // Labels that do not match the rows.
    std::fs::write(&path, pickle(false, &[1, 2, 3], &data)).unwrap();
    let msg = read_py_batch(&path).unwrap_err().to_string();
    assert!(msg.contains("data_batch_1"), "{msg}");
    // A pickle of something else (a list).
    std::fs::write(&path, b"\x80\x02]q\x00.").unwrap();
    let msg = read_py_batch(&path).unwrap_err().to_string();
    assert!(msg.contains("does not hold a dict"), "{msg}");
    // Not a pickle at all (protocol 0 text).
    std::fs::write(&path, b"(dp0\n.").unwrap();
    let msg = read_py_batch(&path).unwrap_err().to_string();
    assert!(msg.contains("unsupported pickle opcode"), "{msg}");
    // Nothing there.
    let msg = read_cifar10(dir.path().join("x").as_path())
        .unwrap_err()
        .to_string();
    assert!(msg.contains("does not exist"), "{msg}");
    std::fs::remove_file(&path).unwrap();
    let msg = read_cifar10(dir.path()).unwrap_err().to_string();
    assert!(msg.contains("no CIFAR-10 batches"), "{msg}");
}
