//! `memad metrics` as a user runs it, on `.npz` files written here (stored zip of `.npy`
//! v1, as `np.savez` writes them): the JSON and the table against `memad_metrics`, and the
//! errors (missing key, misspelt or duplicate arrays, shape mismatches, NaN score,
//! unsupported dtype).
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use memad_metrics::{evaluate_images, ImageMetrics, PixelInputs};

fn memad(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memad"))
        .args(args)
        .output()
        .expect("memad runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A `.npy` (version 1) of `descr` and `shape` holding `data`.
fn npy(descr: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    let dims: Vec<String> = shape.iter().map(|d| format!("{d},")).collect();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({}), }}",
        dims.join(" ")
    );
    while (header.len() + 11) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

fn f32s(shape: &[usize], values: &[f32]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    npy("<f4", shape, &data)
}

fn bools(shape: &[usize], values: &[bool]) -> Vec<u8> {
    let data: Vec<u8> = values.iter().map(|&b| u8::from(b)).collect();
    npy("|b1", shape, &data)
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                0xedb8_8320 ^ (crc >> 1)
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// Writes a zip of stored (uncompressed) members, as `np.savez` does.
fn npz(path: &Path, members: &[(&str, Vec<u8>)]) -> String {
    let (mut out, mut dir) = (Vec::new(), Vec::new());
    for (name, data) in members {
        let name = format!("{name}.npy");
        let offset = out.len() as u32;
        let (crc, size, len) = (crc32(data), data.len() as u32, name.len() as u16);
        let sizes: Vec<u8> = [crc, size, size]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        out.extend_from_slice(&sizes);
        out.extend_from_slice(&[len.to_le_bytes(), [0, 0]].concat());
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(data);
        dir.extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
        dir.extend_from_slice(&sizes);
        dir.extend_from_slice(&len.to_le_bytes());
        dir.extend_from_slice(&[0; 12]); // extra, comment, disk, attributes
        dir.extend_from_slice(&offset.to_le_bytes());
        dir.extend_from_slice(name.as_bytes());
    }
    let (dir_offset, dir_size, n) = (out.len() as u32, dir.len() as u32, members.len() as u16);
    out.extend_from_slice(&dir);
    out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
    out.extend_from_slice(&[n.to_le_bytes(), n.to_le_bytes()].concat());
    out.extend_from_slice(&[dir_size.to_le_bytes(), dir_offset.to_le_bytes()].concat());
    out.extend_from_slice(&[0, 0]);
    std::fs::write(path, out).unwrap();
    path.display().to_string()
}

/// Eight 6x7 images in two interleaved categories, with anomalies in each.
struct Case {
    scores: Vec<f32>,
    labels: Vec<bool>,
    maps: Vec<f32>,
    masks: Vec<bool>,
    categories: [&'static str; 8],
}

const N: usize = 8;
const H: usize = 6;
const W: usize = 7;

fn case() -> Case {
    let labels = vec![false, true, true, false, true, false, false, true];
    let mut masks = vec![false; N * H * W];
    for (i, _) in labels.iter().enumerate().filter(|(_, &l)| l) {
        for p in [8, 9, 15, 16 + i % 3, 40 - i] {
            masks[i * H * W + p] = true;
        }
    }
    let maps = masks
        .iter()
        .enumerate()
        .map(|(p, &m)| ((p * 53) % 97) as f32 / 97.0 + if m { 0.35 } else { 0.0 })
        .collect();
    Case {
        scores: vec![0.2, 0.8, 0.6, 0.3, 0.25, 0.1, 0.5, 0.9],
        labels,
        maps,
        masks,
        categories: [
            "screw", "bottle", "screw", "bottle", "screw", "bottle", "screw", "bottle",
        ],
    }
}

/// `pred.npz` and `gt.npz` of `c` in `dir`.
fn write_case(dir: &Path, c: &Case) -> (String, String) {
    let cats: Vec<u8> = c
        .categories
        .iter()
        .flat_map(|s| {
            let mut chars: Vec<u32> = s.chars().map(u32::from).collect();
            chars.resize(6, 0);
            chars.into_iter().flat_map(u32::to_le_bytes)
        })
        .collect();
    let pred = npz(
        &dir.join("pred.npz"),
        &[
            ("image_scores", f32s(&[N], &c.scores)),
            ("anomaly_maps", f32s(&[N, H, W], &c.maps)),
        ],
    );
    let gt = npz(
        &dir.join("gt.npz"),
        &[
            ("image_labels", bools(&[N], &c.labels)),
            ("masks", bools(&[N, H, W], &c.masks)),
            ("categories", npy("<U6", &[N], &cats)),
        ],
    );
    (pred, gt)
}

/// What the metrics crate gives for the images of category `name`.
fn expected(c: &Case, name: &str) -> ImageMetrics {
    let images: Vec<usize> = (0..N).filter(|&i| c.categories[i] == name).collect();
    let pick = |i: &usize| i * H * W..(i + 1) * H * W;
    let scores: Vec<f32> = images.iter().map(|&i| c.scores[i]).collect();
    let labels: Vec<bool> = images.iter().map(|&i| c.labels[i]).collect();
    let maps: Vec<f32> = images
        .iter()
        .flat_map(|i| c.maps[pick(i)].to_vec())
        .collect();
    let masks: Vec<bool> = images
        .iter()
        .flat_map(|i| c.masks[pick(i)].to_vec())
        .collect();
    evaluate_images(
        &scores,
        &labels,
        Some(PixelInputs::new(&maps, &masks, H, W)),
    )
    .unwrap()
}

#[test]
fn json_and_table_match_the_metrics_crate() {
    let dir = tempfile::tempdir().unwrap();
    let c = case();
    let (pred, gt) = write_case(dir.path(), &c);
    let out = memad(&["metrics", "--pred", &pred, "--gt", &gt, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    let rows = json["categories"].as_array().unwrap();
    let want = [expected(&c, "bottle"), expected(&c, "screw")];
    for (row, (name, want)) in rows.iter().zip(["bottle", "screw"].iter().zip(&want)) {
        assert_eq!(row["category"], *name);
        assert_eq!(row["images"], 4);
        for (metric, value) in want.named() {
            assert_eq!(row[metric].as_f64(), Some(value), "{name} {metric}");
        }
    }
    assert_eq!(rows.len(), 2);
    for (metric, value) in want[0].named() {
        let mean = (value + want[1].named().iter().find(|m| m.0 == metric).unwrap().1) / 2.0;
        assert_eq!(json["mean"][metric].as_f64(), Some(mean), "mean {metric}");
    }

    let out = memad(&["metrics", "--pred", &pred, "--gt", &gt]);
    assert!(out.status.success(), "{}", text(&out));
    let table = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = table.lines().collect();
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    let names: Vec<&str> = want[0].named().iter().map(|m| m.0).collect();
    assert_eq!(header[..2], ["category", "images"]);
    assert_eq!(header[2..], names[..]);
    let bottle: Vec<String> = want[0]
        .named()
        .iter()
        .map(|(_, v)| format!("{v:.4}"))
        .collect();
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(row[..2], ["bottle", "4"]);
    assert_eq!(row[2..], bottle[..]);
    assert!(lines[2].starts_with("screw") && lines[3].starts_with("mean"));
}

#[test]
fn errors_name_the_file_keys_shapes_and_dtype() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| -> PathBuf { dir.path().join(name) };
    let mut c = case();
    let (_, gt) = write_case(dir.path(), &c);
    let fails = |pred: &str, gt: &str, expect: &[&str]| {
        let out = memad(&["metrics", "--pred", pred, "--gt", gt]);
        assert!(!out.status.success(), "{}", text(&out));
        for e in expect {
            assert!(text(&out).contains(e), "`{e}` not in:\n{}", text(&out));
        }
    };
    fails(
        &gt,
        &gt,
        &[
            "gt.npz",
            "no array `image_scores`; it holds: image_labels, masks, categories",
        ],
    );
    let wide = npz(
        &path("wide.npz"),
        &[
            ("image_scores", f32s(&[N], &c.scores)),
            ("anomaly_maps", f32s(&[N, W, H], &c.maps)),
        ],
    );
    fails(
        &wide,
        &gt,
        &[
            "anomaly_maps has shape [8, 7, 6]",
            "masks has shape [8, 6, 7]",
        ],
    );
    let short = npz(
        &path("short.npz"),
        &[("image_scores", f32s(&[N - 1], &c.scores[1..]))],
    );
    fails(
        &short,
        &gt,
        &["image_scores has shape [7]", "image_labels has shape [8]"],
    );
    let complex = npz(
        &path("complex.npz"),
        &[("image_scores", npy("<c8", &[N], &[0; 8 * N]))],
    );
    fails(&complex, &gt, &["complex.npz", "unsupported dtype '<c8'"]);
    // A soft mask (a 0/1 mask resized with interpolation) is refused, naming a pixel.
    let mut soft: Vec<f32> = c.masks.iter().map(|&m| f32::from(u8::from(m))).collect();
    soft[H * W + 10] = 0.5;
    let soft_gt = npz(
        &path("soft.npz"),
        &[
            ("image_labels", bools(&[N], &c.labels)),
            ("masks", f32s(&[N, H, W], &soft)),
        ],
    );
    let (pred, _) = write_case(dir.path(), &c);
    fails(
        &pred,
        &soft_gt,
        &[
            "soft.npz: masks[1, 1, 3] = 0.5 is neither 0, 1 nor 255",
            "threshold it first",
        ],
    );
    // --fpr-limit is checked before any file is read (these do not exist).
    let out = memad(&[
        "metrics",
        "--pred",
        "no.npz",
        "--gt",
        "no.npz",
        "--fpr-limit",
        "0",
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("0 is not in (0, 1]"), "{}", text(&out));
    c.scores[3] = f32::NAN;
    let nan = npz(&path("nan.npz"), &[("image_scores", f32s(&[N], &c.scores))]);
    fails(
        &nan,
        &gt,
        &[
            "category bottle: image level: score at index 1 is not finite",
            "nan.npz: image_scores[3] = NaN",
        ],
    );
}

#[test]
fn misspelt_and_duplicate_arrays_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let c = case();
    let (pred, gt) = write_case(dir.path(), &c);
    let fails = |pred: &str, gt: &str, expect: &[&str]| {
        let out = memad(&["metrics", "--pred", pred, "--gt", gt]);
        assert!(!out.status.success(), "{}", text(&out));
        for e in expect {
            assert!(text(&out).contains(e), "`{e}` not in:\n{}", text(&out));
        }
    };
    // Without the refusal, a misspelt `anomaly_map` or `category` drops its metrics unsaid.
    let typo = npz(
        &dir.path().join("typo.npz"),
        &[
            ("image_scores", f32s(&[N], &c.scores)),
            ("anomaly_map", f32s(&[N, H, W], &c.maps)),
        ],
    );
    fails(
        &typo,
        &gt,
        &[
            "typo.npz: unknown array(s) `anomaly_map` (did you mean `anomaly_maps`?); expected \
             `image_scores` and optionally `anomaly_maps`",
        ],
    );
    let typo_gt = npz(
        &dir.path().join("typo_gt.npz"),
        &[
            ("image_labels", bools(&[N], &c.labels)),
            ("categores", npy("|S1", &[N], b"abababab")),
        ],
    );
    fails(
        &pred,
        &typo_gt,
        &[
            "typo_gt.npz: unknown array(s) `categores` (did you mean `categories`?); expected \
             `image_labels` and optionally `masks`, `categories`, `videos`",
        ],
    );
    // Two copies of one array: NumPy reads the last, so neither is picked.
    let twice = npz(
        &dir.path().join("twice.npz"),
        &[
            ("image_scores", f32s(&[N], &c.scores)),
            ("image_scores", f32s(&[N], &c.scores)),
        ],
    );
    fails(
        &twice,
        &gt,
        &[
            "reading ",
            "twice.npz",
            "zip member `image_scores.npy` appears more than once",
        ],
    );
}

#[test]
fn constant_videos_under_min_max_are_named() {
    // Video `b` has anomalies but one score throughout: min_max makes it all 0.
    let dir = tempfile::tempdir().unwrap();
    let scores = [0.1f32, 0.2, 0.8, 0.9, 0.5, 0.5, 0.5, 0.5];
    let labels = [false, false, true, true, false, false, true, true];
    let pred = npz(
        &dir.path().join("pred.npz"),
        &[("image_scores", f32s(&[8], &scores))],
    );
    let videos: Vec<u8> = b"aaaabbbb".to_vec();
    let gt = npz(
        &dir.path().join("gt.npz"),
        &[
            ("image_labels", bools(&[8], &labels)),
            ("videos", npy("|S1", &[8], &videos)),
        ],
    );
    let args = [
        "metrics",
        "--pred",
        &pred,
        "--gt",
        &gt,
        "--video-normalization",
    ];
    let out = memad(&[&args[..], &["min_max"]].concat());
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("note: 1 video(s) with constant scores (b): min_max makes each all 0"),
        "{}",
        text(&out)
    );
    let out = memad(&[&args[..], &["none"]].concat());
    assert!(!text(&out).contains("constant scores"), "{}", text(&out));
}
