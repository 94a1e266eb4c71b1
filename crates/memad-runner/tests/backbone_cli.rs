//! `memad weights import` and `memad backbone features` as a user runs them: a torchvision
//! ResNet-18 checkpoint (random init, made by the torch venv's python) imported and run,
//! its features compared with torchvision's; wrong archs and wrong inputs refused.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tch::{Device, Kind, Tensor};

/// `memad ARGS` with the weights cache pointed into `dir` (the user's is never touched).
fn memad(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memad"))
        .args(args)
        .current_dir(dir)
        .env("MEMAD_WEIGHTS_DIR", dir.join("weights"))
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

/// The torch venv's python, as `./dev` and `memad weights import` find it.
fn python() -> PathBuf {
    std::env::var_os("MEMAD_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            memad_backbones::weights::memad_cache_dir().join("torch-2.11.0/venv/bin/python")
        })
}

/// A torchvision resnet18 (random init, BN statistics randomised) as a zip `.pth`, an input
/// batch, and torchvision's layer1..layer4 of it.
const MAKE_RESNET18: &str = r#"
import sys, numpy as np, torch, torchvision
d = sys.argv[1]
torch.manual_seed(0)
m = torchvision.models.resnet18()
for mod in m.modules():
    if isinstance(mod, torch.nn.BatchNorm2d):
        mod.running_mean.uniform_(-0.2, 0.2)
        mod.running_var.uniform_(0.5, 1.5)
m.eval()
torch.save(m.state_dict(), d + "/r18.pth")
torch.save(m, d + "/whole.pth")
x = torch.rand(2, 3, 64, 48)
np.save(d + "/x.npy", x.numpy())
with torch.no_grad():
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    h = m.maxpool(m.relu(m.bn1(m.conv1((x - mean) / std))))
    ref = {}
    for name in ["layer1", "layer2", "layer3", "layer4"]:
        h = getattr(m, name)(h)
        ref[name] = h.numpy()
np.savez(d + "/ref.npz", **ref)
"#;

#[test]
fn import_then_features_match_torchvision_and_a_wrong_arch_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let status = Command::new(python())
        .arg("-c")
        .arg(MAKE_RESNET18)
        .arg(d)
        .status()
        .expect("the torch venv python (./dev setup)");
    assert!(status.success());

    let out = memad(&["weights", "import", "r18.pth", "--arch", "resnet18"], d);
    assert!(out.status.success(), "{}", text(&out));
    let cached = d.join("weights/resnet18.safetensors");
    assert!(cached.is_file(), "{}", text(&out));
    // Again: the same tensors, said so, nothing replaced.
    let out = memad(&["weights", "import", "r18.pth", "--arch", "resnet18"], d);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("already holds these tensors, left unchanged"),
        "{}",
        text(&out)
    );

    // The .pth itself as the weights: what it is and the command converting it.
    let out = memad(
        &[
            "backbone",
            "features",
            "--arch",
            "resnet18",
            "--weights",
            "r18.pth",
            "--input",
            "x.npy",
            "--out",
            "f.npz",
        ],
        d,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(
            "weights r18.pth: a PyTorch checkpoint, not a safetensors file: convert it once with \
             `memad weights import r18.pth --arch resnet18 --out r18.safetensors` and use \
             r18.safetensors as the weights"
        ),
        "{}",
        text(&out)
    );

    let out = memad(
        &[
            "backbone",
            "features",
            "--arch",
            "resnet18",
            "--weights",
            cached.to_str().unwrap(),
            "--input",
            "x.npy",
            "--out",
            "f.npz",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));
    let got = Tensor::read_npz(d.join("f.npz")).unwrap();
    let reference = Tensor::read_npz(d.join("ref.npz")).unwrap();
    assert_eq!(got.len(), 4);
    for (name, expected) in &reference {
        let (_, actual) = got.iter().find(|(n, _)| n == name).unwrap();
        assert_eq!(actual.size(), expected.size(), "{name}");
        let diff = (actual - expected).abs().max().double_value(&[]);
        assert!(diff < 1e-4, "{name}: max |diff| {diff}");
    }

    // The same checkpoint as resnet34: the missing tensors named, nothing written.
    let out = memad(
        &[
            "weights",
            "import",
            "r18.pth",
            "--arch",
            "resnet34",
            "--out",
            "r34.safetensors",
        ],
        d,
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("missing"), "{message}");
    assert!(message.contains("missing (80)"), "{message}");
    // Nor its temporary `r34.safetensors.<pid>.importing.safetensors`.
    let left: Vec<_> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("r34.safetensors"))
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // A file that is no checkpoint: one line saying so, not a Python traceback.
    std::fs::write(d.join("notes.pth"), "hello\n").unwrap();
    let out = memad(
        &[
            "weights",
            "import",
            "notes.pth",
            "--arch",
            "resnet18",
            "--out",
            "notes.safetensors",
        ],
        d,
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("notes.pth")
            && message.contains(
                "not a PyTorch checkpoint: neither torch.save's zip archive nor a pickle"
            ),
        "{message}"
    );
    assert!(!message.contains("File \""), "{message}");
    assert!(!message.contains("weights_only"), "{message}");

    // A whole pickled model: said so, without torch's ANSI codes; never unpickled.
    let out = memad(
        &[
            "weights",
            "import",
            "whole.pth",
            "--arch",
            "resnet18",
            "--out",
            "whole.safetensors",
        ],
        d,
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains(
            "holds a whole model (torchvision.models.resnet.ResNet), not a state_dict: load it \
             where its code is and save `model.state_dict()` instead"
        ),
        "{message}"
    );
    assert!(!message.contains('\x1b'), "{message}");

    // A destination that is no readable safetensors file: refused saying so, replaced with
    // --force.
    std::fs::write(d.join("garbage.safetensors"), "garbage").unwrap();
    let import_to_garbage = |force: bool| {
        let mut args = vec![
            "weights",
            "import",
            "r18.pth",
            "--arch",
            "resnet18",
            "--out",
            "garbage.safetensors",
        ];
        if force {
            args.push("--force");
        }
        memad(&args, d)
    };
    let out = import_to_garbage(false);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("holds other tensors (it is no readable safetensors file)"),
        "{}",
        text(&out)
    );
    let out = import_to_garbage(true);
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("(replaced: it held other tensors)"),
        "{}",
        text(&out)
    );

    // A safetensors file named .pth is copied, as `weights = PATH` reads it.
    std::fs::copy(&cached, d.join("st.pth")).unwrap();
    let out = memad(
        &[
            "weights",
            "import",
            "st.pth",
            "--arch",
            "resnet18",
            "--out",
            "st.safetensors",
        ],
        d,
    );
    assert!(out.status.success(), "{}", text(&out));

    // A converter that fails for its own reasons (here: no torch) does not blame the file
    // in an import; torchvision's hub file is checked against the SHA-256 prefix in its
    // name before any conversion (a seeded resnet18 under the official name is refused).
    let fake = d.join("fake_python");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'torch'\" >&2\nexit 1\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let hub = d.join("torch_home/hub/checkpoints");
    std::fs::create_dir_all(&hub).unwrap();
    std::fs::copy(d.join("r18.pth"), hub.join("resnet18-f37072fd.pth")).unwrap();
    let with_fake = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_memad"))
            .args(args)
            .current_dir(d)
            .env("MEMAD_WEIGHTS_DIR", d.join("fresh_weights"))
            .env("MEMAD_PYTHON", &fake)
            .env("TORCH_HOME", d.join("torch_home"))
            .env("MEMAD_OFFLINE", "1")
            .output()
            .unwrap()
    };
    let out = with_fake(&[
        "weights",
        "import",
        "r18.pth",
        "--arch",
        "resnet18",
        "--out",
        "f.safetensors",
    ]);
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("not because of the file") && message.contains("No module named"),
        "{message}"
    );
    assert!(!message.contains("delete it"), "{message}");
    let out = with_fake(&["weights", "download", "torchvision:resnet18"]);
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("not starting with f37072fd as its name says")
            && !message.contains("No module named"),
        "{message}"
    );
    assert!(!d.join("fresh_weights/resnet18.safetensors").exists());
}

#[test]
fn unknown_arch_lists_the_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let out = memad(
        &["weights", "import", "x.pth", "--arch", "resnet19"],
        dir.path(),
    );
    assert!(!out.status.success());
    let message = text(&out);
    assert!(
        message.contains("unknown backbone arch `resnet19`"),
        "{message}"
    );
    assert!(message.contains("wide_resnet50_2"), "{message}");
    let out = memad(
        &["weights", "import", "x.pth", "--arch", "resnet-18"],
        dir.path(),
    );
    let message = text(&out);
    assert!(
        message.contains("unknown backbone arch `resnet-18` (did you mean `resnet18`?)"),
        "{message}"
    );
}

#[test]
fn features_levels_shapes_and_a_bad_input_shape() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu))
        .write_npy(d.join("x.npy"))
        .unwrap();
    let features = |input: &str, levels: &str| {
        memad(
            &[
                "backbone",
                "features",
                "--arch",
                "resnet18",
                "--weights",
                "random",
                "--input",
                input,
                "--out",
                "f.npz",
                "--levels",
                levels,
            ],
            d,
        )
    };
    let out = features("x.npy", "layer2,layer3");
    assert!(out.status.success(), "{}", text(&out));
    let shapes: Vec<_> = Tensor::read_npz(d.join("f.npz"))
        .unwrap()
        .into_iter()
        .map(|(n, t)| (n, t.size()))
        .collect();
    assert_eq!(
        shapes,
        [
            ("layer2".to_string(), vec![1, 128, 4, 4]),
            ("layer3".to_string(), vec![1, 256, 2, 2])
        ]
    );

    Tensor::rand([3, 32, 32], (Kind::Float, Device::Cpu))
        .write_npy(d.join("bad.npy"))
        .unwrap();
    let out = features("bad.npy", "layer1");
    assert!(!out.status.success());
    let message = text(&out);
    assert!(message.contains("expected a [B, 3, H, W]"), "{message}");
    assert!(message.contains("[3, 32, 32]"), "{message}");
    Tensor::zeros([0, 3, 32, 32], (Kind::Float, Device::Cpu))
        .write_npy(d.join("empty.npy"))
        .unwrap();
    let out = features("empty.npy", "layer1");
    let message = text(&out);
    assert_eq!(
        out.status.code(),
        Some(1),
        "an error, not a panic: {message}"
    );
    assert!(
        message.contains("the batch [0, 3, 32, 32] holds no image"),
        "{message}"
    );

    // A truncated file: tch would read past its end and write NaN features.
    let whole = std::fs::read(d.join("x.npy")).unwrap();
    std::fs::write(d.join("short.npy"), &whole[..1000]).unwrap();
    let out = features("short.npy", "layer1");
    let message = text(&out);
    assert!(!out.status.success(), "{message}");
    assert!(
        message.contains("1000 bytes, but its header's shape [1, 3, 32, 32] needs"),
        "{message}"
    );

    // An infinite value: refused naming where, nothing written (all levels would be NaN).
    std::fs::remove_file(d.join("f.npz")).unwrap();
    let x = Tensor::rand([1, 3, 32, 32], (Kind::Float, Device::Cpu));
    let _ = x.get(0).get(2).get(5).get(7).fill_(f64::INFINITY);
    x.write_npy(d.join("inf.npy")).unwrap();
    let out = features("inf.npy", "layer1");
    let message = text(&out);
    assert_eq!(out.status.code(), Some(1), "{message}");
    assert!(
        message.contains(
            "error: inf.npy: holds NaN or infinite values, e.g. inf at [0, 2, 5, 7]; expected \
             values in [0, 1]"
        ) && !message.contains("warning"),
        "{message}"
    );
    assert!(!d.join("f.npz").exists());

    let help = text(&memad(&["backbone", "features", "--help"], d));
    assert!(help.contains("[0, 1]"), "{help}");
}

/// `memad weights download` offline (`MEMAD_OFFLINE=1`, an empty `TORCH_HOME`): it fails
/// saying which file to put where; an unknown name lists the known ones.
#[test]
fn weights_download_offline_says_which_file_to_put_where() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |spec: &str| {
        Command::new(env!("CARGO_BIN_EXE_memad"))
            .args(["weights", "download", spec])
            .current_dir(d)
            .env("MEMAD_WEIGHTS_DIR", d.join("weights"))
            .env("TORCH_HOME", d.join("torch"))
            .env("MEMAD_OFFLINE", "1")
            .output()
            .expect("memad runs")
    };
    let out = run("torchvision:wide_resnet50_2");
    assert!(!out.status.success());
    let pth = d.join("torch/hub/checkpoints/wide_resnet50_2-95faca4d.pth");
    let message = text(&out);
    for part in [
        "downloading is off: MEMAD_OFFLINE is set".to_string(),
        format!(
            "put torchvision's file wide_resnet50_2-95faca4d.pth at {} (from \
             https://download.pytorch.org/models/wide_resnet50_2-95faca4d.pth",
            pth.display()
        ),
        "memad converts it on next use".to_string(),
        "`memad weights import FILE --arch wide_resnet50_2`".to_string(),
    ] {
        assert!(message.contains(&part), "{part} not in {message}");
    }
    assert!(!message.contains("./dev"), "{message}");
    assert!(!d.join("torch").exists() || !pth.exists());

    let out = run("torchvision:resnet50:IMAGENET1K_V3");
    assert!(!out.status.success());
    assert!(
        text(&out).contains("known for resnet50: torchvision:resnet50:IMAGENET1K_V1"),
        "{}",
        text(&out)
    );
}

/// `memad check` of an experiment whose torchvision weights are nowhere on this machine:
/// offline, where to put torchvision's file (as a run would say); online, that a run
/// downloads it, and to where.
#[test]
fn check_says_where_torchvision_weights_come_from() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    std::fs::copy(root.join("datasets.toml"), d.join("datasets.toml")).unwrap();
    let quickstart = std::fs::read_to_string(root.join("experiments/quickstart.toml")).unwrap();
    let experiment = quickstart
        .replacen("kind = \"efficientnet_lite0\"", "kind = \"resnet18\"", 1)
        .replacen(
            "levels = [\"stride4\", \"stride8\", \"stride16\"]",
            "levels = [\"layer1\", \"layer2\", \"layer3\"]",
            1,
        );
    assert_ne!(experiment, quickstart);
    std::fs::write(d.join("r18.toml"), experiment).unwrap();
    let check = |offline: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_memad"))
            .args(["check", "r18.toml"])
            .current_dir(d)
            .env("MEMAD_WEIGHTS_DIR", d.join("weights"))
            .env("TORCH_HOME", d.join("torch"))
            .env("MEMAD_OFFLINE", offline)
            .output()
            .expect("memad runs");
        assert!(out.status.success(), "{}", text(&out));
        text(&out)
    };
    let pth = d.join("torch/hub/checkpoints/resnet18-f37072fd.pth");
    let url = "https://download.pytorch.org/models/resnet18-f37072fd.pth";
    let offline = check("1");
    for part in [
        "note: method.backbone.weights: torchvision's resnet18 IMAGENET1K_V1 weights are not on \
         this machine (downloading is off: MEMAD_OFFLINE is set)"
            .to_string(),
        format!(
            "put torchvision's file resnet18-f37072fd.pth at {} (from {url}",
            pth.display()
        ),
    ] {
        assert!(offline.contains(&part), "{part} not in {offline}");
    }
    assert!(!offline.contains("downloading it unless"), "{offline}");
    let online = check("0");
    let part = format!(
        "note: method.backbone.weights: `imagenet` is not on this machine yet: `memad run` \
         downloads {url} to {} and converts it (or now: `memad weights download torchvision:resnet18:IMAGENET1K_V1`)",
        pth.display()
    );
    assert!(online.contains(&part), "{part} not in {online}");
}
