//! Parity of the MemAE method (video variant) with a plain-torch reference of the official
//! 3D-conv model (`models/memae_3dconv.py` of donggong1/memae-anomaly-detection).
//!
//! Golden values: `tests/fixtures/memae_model_golden.npz`, written by
//! `tools/golden_memae_model.py` (`~/.cache/memad/torch-2.11.0/venv/bin/python
//! tools/golden_memae_model.py`; its docstring lists the arrays and the formula that fills
//! every parameter). The method is built through the registry from TOML, its variables are
//! filled with the same formula (which only works if they carry the official state_dict
//! keys and shapes), and it is fed the reference's gray frames as RGB clips
//! `[B, 3T, H, W]`. Checked: eval-mode clip scores and centre-frame maps, train-mode `mse`
//! and `entropy` terms (so layer order, strides, padding, output padding, BN, LeakyReLU,
//! the per-position memory read and the grayscale conversion all match).
use memad_conformance::read_golden;
use memad_core::{Batch, BuildContext, Registry};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn golden() -> HashMap<String, Tensor> {
    read_golden(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/memae_model_golden.npz"),
    )
}

/// Relative difference `max |a - b| / max |b|`.
fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    let (a, b) = (a.to_kind(Kind::Double), b.to_kind(Kind::Double));
    (&a - &b).abs().max().double_value(&[]) / b.abs().max().double_value(&[])
}

/// The formula of `tools/golden_memae_model.py`, for the `i`-th name in sorted order.
fn fill_value(i: usize, name: &str, shape: &[i64]) -> Tensor {
    let numel: i64 = shape.iter().product();
    let k = Tensor::arange(numel, (Kind::Double, Device::Cpu));
    let v = (k * 0.37 + i as f64).sin();
    let v = if name.ends_with("running_var") {
        v.square() * 0.02 + 0.02
    } else if shape.len() == 1 && name.ends_with("weight") {
        v * 0.1 + 1.0
    } else if shape.len() == 1 {
        v * 0.1
    } else {
        v / ((numel / shape[0]) as f64).sqrt()
    };
    v.reshape(shape).to_kind(Kind::Float)
}

#[test]
fn video_memae_matches_the_official_model() {
    let g = golden();
    let mut registry = Registry::default();
    memad_methods::register(&mut registry);
    let section: toml::Value = toml::from_str(
        "kind = \"memae\"\nvariant = \"video\"\nframes = 8\n\
         [memory]\nslots = 8\nshrink_threshold = 0.125",
    )
    .unwrap();
    let entry = registry.method("memae", "method.kind").unwrap();
    let resolved = (entry.resolve)(&section, "method", &registry).unwrap();
    let ctx = BuildContext {
        device: Device::Cpu,
        weights_dir: Default::default(),
        image_size: 16,
        classes: 1,
    };
    let mut method = (entry.build)(&resolved, &registry, &ctx).unwrap();

    let vars = method.trainable().variables();
    let mut names: Vec<&String> = vars.keys().collect();
    names.sort();
    // 8 conv/deconv (weight, bias), 7 BN (weight, bias, running_mean, running_var), items.
    assert_eq!(names.len(), 8 * 2 + 7 * 4 + 1, "{names:?}");
    for (i, name) in names.iter().enumerate() {
        let mut var = vars[*name].shallow_clone();
        let value = fill_value(i, name, &var.size());
        tch::no_grad(|| var.copy_(&value));
    }

    // Gray frames [B, 1, T, H, W] -> RGB clips [B, 3T, H, W] (R = G = B, frames in order).
    let gray = g["gray"].shallow_clone();
    let input = gray
        .permute([0, 2, 1, 3, 4])
        .expand([2, 8, 3, 16, 16], false)
        .reshape([2, 24, 16, 16]);
    let batch = Batch {
        input,
        label: Tensor::zeros([2], (Kind::Int64, Device::Cpu)),
        mask: None,
        class: None,
        synthetic: None,
    };

    let out = tch::no_grad(|| method.score(&batch)).unwrap();
    let d = rel_diff(&out.image_score, &g["eval.score"]);
    assert!(d < 1e-4, "score: relative difference {d}");
    let d = rel_diff(out.anomaly_map.as_ref().unwrap(), &g["eval.map"]);
    assert!(d < 1e-4, "centre-frame map: relative difference {d}");

    let train = method.train_step(&batch).unwrap();
    let (_, values) = train.read();
    let term = |n: &str| values[train.terms.iter().position(|t| t.name == n).unwrap()];
    let mse = g["train.mse"].double_value(&[]);
    assert!(
        (term("mse") - mse).abs() < 1e-4 * mse,
        "mse {} vs {mse}",
        term("mse")
    );
    let entropy = g["train.entropy"].double_value(&[]);
    let got = term("entropy") / 0.0002;
    assert!(
        (got - entropy).abs() < 1e-4 * entropy,
        "entropy {got} vs {entropy}"
    );
}
