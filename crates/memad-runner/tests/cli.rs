//! The `memad` binary as a user runs it: check, list, info, and a tiny quickstart.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn memad(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_memad"))
        .args(args)
        .current_dir(cwd)
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

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Every experiment file in `experiments/`, recursively.
fn experiment_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            experiment_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "toml") {
            out.push(p);
        }
    }
}

#[test]
fn check_accepts_every_experiment_file() {
    let root = workspace();
    let mut files = Vec::new();
    experiment_files(&root.join("experiments"), &mut files);
    assert!(!files.is_empty());
    let mut args = vec!["check".to_string()];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = memad(&args, &root);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        text(&out).matches("ok   ").count(),
        files.len(),
        "{}",
        text(&out)
    );
}

/// The quickstart with one line replaced.
fn broken(replace: &str, with: &str) -> String {
    let base = std::fs::read_to_string(workspace().join("experiments/quickstart.toml")).unwrap();
    assert!(
        base.contains(replace),
        "fixture line `{replace}` not in quickstart.toml"
    );
    base.replacen(replace, with, 1)
}

/// Fewer epochs than the method takes (MSCM: its stage-1 epochs and one for stage 2) is a
/// config error of `memad check` and `memad run --epochs`, not a failure at the first epoch
/// of a run.
#[test]
fn check_refuses_stages_longer_than_the_training() {
    let root = workspace();
    let file = "experiments/paper/mscm_fashion_mnist.toml";
    let out = memad(&["check", file, "--set", "train.epochs=4,5"], &root);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "train.epochs: must be at least 5 for method `mscm` (method.stage1_epochs = 4, then \
             one epoch of stage 2 (the detector): lower it or raise train.epochs), got 4"
        ) && t.contains("ok   experiments/paper/mscm_fashion_mnist.toml [train.epochs = 5]"),
        "{t}"
    );
    // `memad run --epochs` too, before any data is read.
    let runs = tempfile::tempdir().unwrap();
    let runs = runs.path().to_str().unwrap();
    let out = memad(&["run", file, "--epochs", "3", "--runs", runs], &root);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("--epochs 3")
            && t.contains("train.epochs: must be at least 5 for method `mscm`"),
        "{t}"
    );
}

#[test]
fn check_with_set_checks_every_combination() {
    let root = workspace();
    let out = memad(
        &[
            "check",
            "experiments/quickstart.toml",
            "--set",
            "train.lr=0.001,0.005",
            "--set",
            "data.batch_size=4",
        ],
        &root,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("ok   experiments/quickstart.toml [train.lr = 0.001, data.batch_size = 4]")
            && t.contains(
                "ok   experiments/quickstart.toml [train.lr = 0.005, data.batch_size = 4]"
            ),
        "{t}"
    );
    let out = memad(
        &[
            "check",
            "experiments/quickstart.toml",
            "--set",
            "data.batch_sise=4,8",
        ],
        &root,
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("data.batch_sise: unknown field `batch_sise`"),
        "{t}"
    );
    assert!(
        t.contains("2 of 2 checked (experiment files, --set combinations, table specs) failed"),
        "{t}"
    );
}

/// A sweep file (`base` and a `[grid]`) is checked as `memad sweep` would run it: its base
/// with every combination of the grid and of `--set`.
#[test]
fn check_of_a_sweep_file_checks_its_combinations() {
    let dir = tempfile::tempdir().unwrap();
    let base = workspace().join("experiments/quickstart.toml");
    let sweep = dir.path().join("s.toml");
    let write = |grid: &str| {
        let text = format!("base = {:?}\n[grid]\n{grid}\n", base.display().to_string());
        std::fs::write(&sweep, text).unwrap();
    };
    let check = |extra: &[&str]| {
        let mut args = vec!["check", sweep.to_str().unwrap()];
        args.extend(extra);
        let out = memad(&args, &workspace());
        (out.status.success(), text(&out))
    };
    write("seed = [0, 1]");
    let (ok, t) = check(&["--set", "train.lr=0.001,0.005"]);
    assert!(ok, "{t}");
    assert_eq!(t.matches("ok   ").count(), 4, "{t}");
    assert!(t.contains("s.toml [seed = 1, train.lr = 0.005]"), "{t}");
    let (ok, t) = check(&["--set", "seed=2"]);
    assert!(!ok && t.contains("`seed` is swept twice"), "{t}");
    write("\"data.batch_sise\" = [4]");
    let (ok, t) = check(&[]);
    assert!(
        !ok && t.contains("data.batch_sise: unknown field `batch_sise`"),
        "{t}"
    );
}

/// Swapping a memory through a dotted `kind` keeps the old kind's keys: the error says to
/// replace the whole table, and an inline table does.
#[test]
fn a_kind_set_alone_points_to_replacing_the_table() {
    let root = workspace();
    let file = "experiments/mnad_pred_ped2_cpu.toml";
    let out = memad(&["check", file, "--set", "method.memory.kind=memae"], &root);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "`--set method.memory.kind=\"memae\"` keeps the other keys of `[method.memory]`"
        ) && t.contains("--set 'method.memory={kind = \"memae\", <its keys>}'")
            && t.contains("unknown field"),
        "{t}"
    );
    let table = "method.memory={kind = \"memae\", slots = 10, dim = 512, shrink_threshold = 0.0025, addressing = \"dot\", entropy_weight = 0.0002}";
    let out = memad(
        &[
            "check",
            file,
            "--set",
            table,
            "--set",
            "method.test_time_update=false",
        ],
        &root,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
}

/// What the method cannot do is refused by `check` (and so before a run), naming the key:
/// a metric its scores cannot give (a run would write no row for it), a centred clip for
/// MNAD's prediction (scores of another frame), one image per batch for NT-Xent (no
/// gradient). Without `eval.metrics` a method without maps gets the image metrics.
#[test]
fn check_refuses_what_the_method_cannot_do() {
    let root = workspace();
    let mscm = "experiments/paper/mscm_fashion_mnist.toml";
    let contrastive = "experiments/paper/contrastive_fashion_mnist.toml";
    let mnad = "experiments/mnad_pred_ped2_cpu.toml";
    let cases: [(&str, &[&str], &str); 7] = [
        (
            mscm,
            &["data.dataset=synthetic-mvtec", "eval.metrics=[\"aupro\", \"pixel_ap\"]"],
            "eval.metrics[0]: `aupro` cannot be computed for method `mscm`: it gives no anomaly maps",
        ),
        (
            contrastive,
            &["data.dataset=synthetic-mvtec", "eval.metrics=[\"image_auroc\", \"pixel_auroc\"]"],
            "eval.metrics[1]: `pixel_auroc` cannot be computed for method `contrastive`: it gives no anomaly maps",
        ),
        (
            "experiments/quickstart.toml",
            &["eval.metrics=[\"class_accuracy\"]"],
            "eval.metrics[0]: `class_accuracy` cannot be computed for method `rd4ad`: it predicts no classes",
        ),
        (
            mnad,
            &["data.clip.mode=centred"],
            "data.clip.mode: MNAD's task = \"predict\" predicts the last frame of each clip and scores it: it needs mode = \"predict\"",
        ),
        (
            mnad,
            &["data.clip.mode=centred_valid"],
            "data.clip.mode: MNAD's task = \"predict\" predicts the last frame of each clip and scores it: it needs mode = \"predict\" (past frames, then the scored frame); mode = \"centred_valid\" labels each clip by its middle frame",
        ),
        (
            contrastive,
            &["data.batch_size=1"],
            "data.batch_size: must be at least 2 for method `contrastive`: its stage-1 NT-Xent",
        ),
        (
            mscm,
            &["data.batch_size=1"],
            "data.batch_size: must be at least 2 for method `mscm`",
        ),
    ];
    for (file, sets, expected) in cases {
        let mut args = vec!["check", file];
        for set in sets {
            args.extend(["--set", set]);
        }
        let out = memad(&args, &root);
        let t = text(&out);
        assert!(!out.status.success(), "{args:?} passed the check:\n{t}");
        assert!(
            t.contains(&format!("FAIL {file}: {expected}")),
            "{args:?}: expected `{expected}` in:\n{t}"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let text_of = std::fs::read_to_string(root.join(mscm)).unwrap();
    let no_metrics = text_of
        .replace("metrics = [\"image_auroc\"]", "")
        .replace("\"fashion-mnist\"", "\"synthetic-mvtec\"");
    let path = dir.path().join("mscm_default_metrics.toml");
    std::fs::write(&path, no_metrics).unwrap();
    let catalog = root.join("datasets.toml");
    let args = [
        "--datasets",
        catalog.to_str().unwrap(),
        "check",
        "--resolved",
        path.to_str().unwrap(),
    ];
    let out = memad(&args, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let resolved: toml::Value = toml::from_str(&t[t.find("name = ").unwrap()..]).unwrap();
    assert_eq!(
        resolved["eval"]["metrics"],
        toml::Value::try_from(["image_auroc", "image_ap", "image_f1_max"]).unwrap(),
        "{t}"
    );
}

#[test]
fn check_rejects_broken_files_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "typo_key.toml",
            broken("batch_size = 8", "batch_sise = 8"),
            "data.batch_sise: unknown field `batch_sise`, expected one of",
        ),
        (
            "unknown_kind.toml",
            broken("kind = \"rd4ad\"", "kind = \"rd5ad\""),
            "method.kind: unknown method kind `rd5ad`; known: ",
        ),
        (
            "crop_larger_than_resize.toml",
            broken("image_size = 128", "image_size = 128\nresize = 100"),
            "data.resize: must be at least data.image_size (128)",
        ),
        (
            "one_frame_to_predict_from.toml",
            broken(
                "eval_batch_size = 16",
                "eval_batch_size = 16\n[data.clip]\nframes = 1\nmode = \"predict\"",
            ),
            "data.clip.frames: must be at least 2 for mode \"predict\"",
        ),
        (
            "wrong_type.toml",
            broken("epochs = 10", "epochs = \"ten\""),
            "train.epochs: invalid type: string \"ten\", expected usize",
        ),
        (
            "fp16.toml",
            broken(
                "device = \"auto\"",
                "device = \"auto\"\nprecision = \"fp16\"",
            ),
            "precision: unknown variant `fp16`, expected `fp32` or `bf16`",
        ),
        (
            "cudnn_benchmark_string.toml",
            broken(
                "device = \"auto\"",
                "device = \"auto\"\ncudnn_benchmark = \"yes\"",
            ),
            "cudnn_benchmark: invalid type: string \"yes\", expected a boolean",
        ),
        (
            "no_dataset.toml",
            broken("dataset = \"synthetic-mvtec\"", "dataset = \"mvtec-typo\""),
            "data.dataset: unknown dataset `mvtec-typo`",
        ),
        (
            "bad_backbone.toml",
            broken("kind = \"efficientnet_lite0\"", "kind = \"resnet1000\""),
            "method.backbone.kind: unknown backbone kind `resnet1000`; known: efficientnet_lite0",
        ),
        (
            "bad_level.toml",
            broken("\"stride16\"]", "\"stride17\"]"),
            "method.backbone.levels[2]: unknown level `stride17`",
        ),
        (
            "bad_toml.toml",
            broken("seed = 0", "seed = = 0"),
            "not valid TOML at line 6, column 8",
        ),
        (
            "empty.toml",
            String::new(),
            "empty.toml: missing field `data`",
        ),
        (
            "twice.toml",
            broken("\"grid\", \"leather\"]", "\"grid\", \"grid\"]"),
            "data.categories[2]: `grid` is listed twice",
        ),
        (
            "category_typo.toml",
            broken("\"grid\", \"leather\"]", "\"grid\", \"lether\"]"),
            "data.categories[2]: unknown category `lether` of dataset `synthetic-mvtec` (did \
             you mean `leather`?); known: carpet, grid, leather",
        ),
        (
            "no_metrics.toml",
            broken(
                "metrics = [\"image_auroc\", \"image_ap\", \"pixel_auroc\", \"aupro\"]",
                "metrics = []",
            ),
            "eval.metrics: name at least one metric",
        ),
        (
            "betas.toml",
            broken("betas = [0.5, 0.999]", "betas = [1.5, 0.999]"),
            "train.betas[0]: must be in [0, 1), got 1.5",
        ),
        (
            "width.toml",
            broken("width_ratio = 1.0", "width_ratio = 0.0"),
            "method.width_ratio: must be positive",
        ),
        (
            "parent_folder_name.toml",
            broken("name = \"quickstart\"", "name = \"..\""),
            "name: start with a letter or digit",
        ),
        (
            "infinite_lr.toml",
            broken("lr = 0.005", "lr = inf"),
            "train.lr: must be positive and finite",
        ),
    ];
    let count = cases.len();
    for (name, body, expected) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let catalog = workspace().join("datasets.toml");
        let out = memad(
            &[
                "--datasets",
                catalog.to_str().unwrap(),
                "check",
                path.to_str().unwrap(),
            ],
            dir.path(),
        );
        let t = text(&out);
        assert!(!out.status.success(), "{name} passed the check:\n{t}");
        assert!(
            t.contains(&format!("{}: ", path.display())),
            "{name}: the file is not named:\n{t}"
        );
        assert!(
            t.contains(expected),
            "{name}: expected `{expected}` in:\n{t}"
        );
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        count,
        "check wrote nothing"
    );
}

/// `datasets list` aligns long names and says which roots are not there.
#[test]
fn datasets_list_marks_missing_and_ungenerated_roots() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("here")).unwrap();
    let catalog = dir.path().join("datasets.toml");
    let toml = "[a-rather-long-dataset-name]\nformat = \"mvtec\"\nroot = \"here\"\n\
                [gone]\nformat = \"mvtec_loco\"\nroot = \"elsewhere\"\n\
                [synth]\nformat = \"mvtec\"\nroot = \"synth\"\n[synth.synthetic]\n";
    std::fs::write(&catalog, toml).unwrap();
    let out = memad(&["datasets", "list"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let lines: Vec<&str> = t.lines().collect();
    assert_eq!(lines.len(), 3, "{t}");
    assert!(
        lines[0].starts_with("a-rather-long-dataset-name  mvtec       "),
        "{t}"
    );
    assert!(!lines[0].contains('('), "{t}");
    assert!(
        lines[1].starts_with("gone                        mvtec_loco  "),
        "{t}"
    );
    assert!(
        lines[1].ends_with("elsewhere  (not on this machine)"),
        "{t}"
    );
    assert!(lines[2].ends_with("synth  (generated on first use)"), "{t}");
}

#[test]
fn list_and_info() {
    let out = memad(&["list"], &workspace());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("rd4ad") && t.contains("efficientnet_lite0"),
        "{t}"
    );
    // The memories MNAD and MemAE take by `kind`, registered by the runner.
    let memories = t.split("\nmemory:\n").nth(1).unwrap_or_default();
    assert!(
        memories.contains("memae") && memories.contains("mnad"),
        "{t}"
    );
    let out = memad(&["info"], &workspace());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("torch          2.11.0"), "{t}");
    assert!(t.contains("cuda available"), "{t}");
    assert!(
        t.contains("host allocator freed tensors kept in the heap"),
        "{t}"
    );
    // The user's own malloc tunables are left alone.
    let out = Command::new(env!("CARGO_BIN_EXE_memad"))
        .arg("info")
        .env("GLIBC_TUNABLES", "glibc.malloc.trim_threshold=1048576")
        .output()
        .unwrap();
    let t = text(&out);
    assert!(
        t.contains("host allocator glibc defaults or the user's"),
        "{t}"
    );
}

#[test]
fn tiny_quickstart_runs_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let catalog = dir.path().join("datasets.toml");
    std::fs::write(
        &catalog,
        r#"
[tiny]
format = "mvtec"
root = "data/tiny"
synthetic = { categories = ["grid"], image_size = 64, train_per_category = 8, test_good_per_category = 3, test_per_defect = 1, defects = ["scratch", "hole", "stain", "missing"], seed = 1 }
"#,
    )
    .unwrap();
    let exp = broken("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = [\"grid\"]",
        )
        // Decoded at 72 px, centre-cropped to the model's 64 (PatchCore's protocol).
        .replace(
            "image_size = 128",
            "image_size = 64\nresize = 72\ncache = \"imgcache\"",
        )
        .replace("epochs = 10", "epochs = 2")
        .replace(
            "metrics = [\"image_auroc\", \"image_ap\", \"pixel_auroc\", \"aupro\"]",
            "metrics = [\"image_auroc\", \"pixel_auroc\", \"aupro\"]",
        );
    std::fs::write(dir.path().join("tiny.toml"), exp).unwrap();
    let out = memad(&["datasets", "check", "tiny"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("synthetic, not generated yet"), "{t}");

    let out = memad(&["run", "tiny.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("generating dataset `tiny` (15 images) into"),
        "{t}"
    );
    assert!(t.contains("[grid] epoch 2/2"), "{t}");

    // `[data] cache`: decoded images kept for the next epochs and runs.
    let cached = std::fs::read_dir(dir.path().join("imgcache")).map_or(0, |d| d.count());
    assert!(cached > 0, "the image cache was not filled");

    let runs: Vec<PathBuf> = std::fs::read_dir(dir.path().join("runs/quickstart"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(
        runs.len(),
        1,
        "one finished run folder, no .partial: {runs:?}"
    );
    let run = &runs[0];
    for file in [
        "config.toml",
        "metrics.csv",
        "losses.csv",
        "log.txt",
        "run.toml",
        "scores/grid.csv",
        "checkpoints/grid.safetensors",
        "overlays/grid.png",
    ] {
        assert!(
            run.join(file).is_file(),
            "{file} missing in {}",
            run.display()
        );
    }
    // The resolved config has every default filled in.
    let resolved = std::fs::read_to_string(run.join("config.toml")).unwrap();
    assert!(
        resolved.contains("eval_batch_size = 16") && resolved.contains("weight_decay = 0.0"),
        "{resolved}"
    );
    // Tidy rows: one per metric, values in [0, 1].
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let headers = reader.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "run", "commit", "method", "memory", "backbone", "dataset", "category", "setting",
            "seed", "epoch", "metric", "value"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert!(
        rows.iter().all(|r| &r[3] == "-"),
        "RD4AD has no memory: {rows:?}"
    );
    let metrics: Vec<&str> = rows.iter().map(|r| &r[10]).collect();
    assert_eq!(metrics, ["image_auroc", "pixel_auroc", "aupro"]);
    // The commit recorded is the one the binary was built from, as `memad info` says.
    let info = text(&memad(&["info"], &workspace()));
    let built = (info.lines())
        .find_map(|l| l.strip_prefix("built from     commit "))
        .unwrap_or_else(|| panic!("no build commit in `memad info`: {info}"));
    assert!(rows.iter().all(|r| &r[1] == built), "{rows:?} vs {built}");
    let meta = std::fs::read_to_string(run.join("run.toml")).unwrap();
    assert!(meta.contains(&format!("commit = \"{built}\"")), "{meta}");
    // So is the CPU, whose vector instruction set changes the results slightly.
    let cpu = (info.lines())
        .find_map(|l| l.strip_prefix("cpu            "))
        .unwrap_or_else(|| panic!("no cpu in `memad info`: {info}"));
    assert!(meta.contains(&format!("cpu = \"{cpu}\"")), "{meta}");
    for r in &rows {
        let v: f64 = r[11].parse().unwrap();
        assert!((0.0..=1.0).contains(&v), "{r:?}");
        assert_eq!(
            (&r[2], &r[4], &r[6], &r[9]),
            ("rd4ad", "efficientnet_lite0", "grid", "2")
        );
    }
    // Where the time went: training, then each stage of the evaluation, on how many images.
    let timings = std::fs::read_to_string(run.join("timings.csv")).unwrap();
    let stages: Vec<(&str, &str)> = (timings.lines().skip(1))
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert!(f[4].parse::<f64>().unwrap() >= 0.0, "{l}");
            (f[2], f[3])
        })
        .collect();
    assert_eq!(
        stages,
        [
            ("train", "16"), // 8 images, 2 epochs
            ("waiting_for_images", "7"),
            ("scoring", "7"),
            ("outputs", "7"),
            ("metrics", "7"),
        ],
        "{timings}"
    );
    assert!(t.contains("[grid] scored 7 images in "), "{t}");
    // The generated dataset passes `memad datasets check`.
    let out = memad(
        &[
            "--datasets",
            catalog.to_str().unwrap(),
            "datasets",
            "check",
            "tiny",
        ],
        dir.path(),
    );
    let t = text(&out);
    assert!(
        out.status.success()
            && t.contains("grid: train 8 (good 8)")
            && t.contains("no problems found"),
        "{t}"
    );
    // Scores: one row per test image (3 good + 4 defects).
    assert_eq!(
        std::fs::read_to_string(run.join("scores/grid.csv"))
            .unwrap()
            .lines()
            .count(),
        1 + 7
    );
    eval_rescores_the_checkpoints(dir.path(), run);

    // `memad run --set`: one value per key; the run is named as `memad sweep` names the
    // combination, and a sweep of the same values finds it done.
    let set = [
        "--runs",
        "runs",
        "--set",
        "train.epochs=1",
        "--set",
        "seed=3",
    ];
    let out = memad(&[&["run", "tiny.toml"], &set[..]].concat(), dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let set_run = complete_folders(&dir.path().join("runs/quickstart_epochs-1_seed-3")).remove(0);
    let config = std::fs::read_to_string(set_run.join("config.toml")).unwrap();
    assert!(
        config.contains("seed = 3") && config.contains("epochs = 1"),
        "{config}"
    );
    let out = memad(&[&["sweep", "tiny.toml"], &set[..]].concat(), dir.path());
    let t = text(&out);
    assert!(out.status.success() && t.contains("1 already done"), "{t}");
    let out = memad(&["run", "tiny.toml", "--set", "seed=1,2"], dir.path());
    assert!(!out.status.success(), "{}", text(&out));
}

/// `metrics.csv` of a run folder without its `run` and `commit` columns, as `metric,value`
/// lines after the other columns.
fn metric_lines(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines()
        .map(|l| l.splitn(3, ',').nth(2).unwrap().to_string())
        .collect()
}

/// The complete folders under `dir`, sorted.
fn complete_folders(dir: &Path) -> Vec<PathBuf> {
    let mut all: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    all.retain(|p| !p.to_string_lossy().ends_with(".partial"));
    all.sort();
    all
}

/// `memad eval` on the tiny quickstart's run (RD4AD, checkpoint `grid`).
fn eval_rescores_the_checkpoints(dir: &Path, run: &Path) {
    let run_arg = run.to_str().unwrap();
    // Without overrides: the run's own numbers, from its checkpoint.
    let out = memad(&["eval", run_arg], dir);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let evals = run.join("evals");
    let plain = complete_folders(&evals.join("quickstart"));
    assert_eq!(plain.len(), 1, "{t}");
    assert_eq!(metric_lines(&plain[0]), metric_lines(run));
    for file in ["config.toml", "log.txt", "scores/grid.csv", "timings.csv"] {
        assert!(plain[0].join(file).is_file(), "{file}");
    }
    assert!(!plain[0].join("checkpoints").exists(), "nothing trained");
    let meta = std::fs::read_to_string(plain[0].join("run.toml")).unwrap();
    assert!(
        meta.contains("[evaluates]") && meta.contains(run_arg),
        "{meta}"
    );

    // Each value of `--set` is one evaluation, named as a sweep names it.
    let out = memad(
        &[
            "eval",
            run_arg,
            "--set",
            r#"eval.metrics=["aupro"],["image_auroc"]"#,
        ],
        dir,
    );
    assert!(out.status.success(), "{}", text(&out));
    let own: Vec<String> = metric_lines(run);
    for metric in ["aupro", "image_auroc"] {
        let folder = complete_folders(&evals.join(format!("quickstart_metrics-{metric}")));
        let lines = metric_lines(&folder[0]);
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(own.contains(&lines[1]), "{metric}: {lines:?} vs {own:?}");
        let config = std::fs::read_to_string(folder[0].join("config.toml")).unwrap();
        assert!(
            config.contains(&format!("metrics = [\"{metric}\"]")),
            "{config}"
        );
    }

    // Refused: a training setting; an override the checkpoint cannot load (and no folder
    // is left behind); a folder that is not a complete run.
    let refused = |args: &[&str], says: &[&str]| {
        let out = memad(args, dir);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(says.iter().all(|s| t.contains(s)), "{says:?}: {t}");
    };
    let train_key = ["--set train.lr: not an evaluation setting", "memad sweep"];
    refused(&["eval", run_arg, "--set", "train.lr=0.1"], &train_key);
    let shape = ["checkpoints/grid.safetensors", "saved"];
    refused(
        &["eval", run_arg, "--set", "method.embed_channels=64"],
        &shape,
    );
    assert!(!evals.join("quickstart_embed_channels-64").exists());
    refused(
        &["eval", "runs/quickstart"],
        &["is not a complete run folder"],
    );

    // Another copy of the data than the run read: refused before anything is read or
    // generated, unless `--datasets` names that catalog, which only warns.
    let catalog = dir.join("datasets.toml");
    let original = std::fs::read_to_string(&catalog).unwrap();
    std::fs::write(&catalog, original.replace("data/tiny", "data/elsewhere")).unwrap();
    refused(
        &["eval", run_arg],
        &[
            "the run read dataset `tiny` at",
            "data/elsewhere",
            "--datasets",
        ],
    );
    assert!(!dir.join("data/elsewhere").exists());
    let out = memad(&["--datasets", "datasets.toml", "eval", run_arg], dir);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("warning: the run read dataset `tiny`"), "{t}");
    std::fs::write(&catalog, original).unwrap();
}

/// A tiny catalog with the MVTec-layout generator: `cats` categories of 64 px images.
fn tiny_catalog(dir: &Path, cats: &str) -> PathBuf {
    let catalog = dir.join("datasets.toml");
    std::fs::write(
        &catalog,
        format!(
            r#"
[tiny]
format = "mvtec"
root = "data/tiny"
synthetic = {{ categories = [{cats}], image_size = 64, train_per_category = 6, test_good_per_category = 3, test_per_defect = 1, defects = ["scratch", "hole"], seed = 1 }}
"#
        ),
    )
    .unwrap();
    catalog
}

/// `experiments/mddnet_synthetic.toml` on the tiny dataset with its `categories` line
/// replaced by `categories`, a small model and 1 epoch.
fn tiny_mddnet(categories: &str) -> String {
    std::fs::read_to_string(workspace().join("experiments/mddnet_synthetic.toml"))
        .unwrap()
        .replace("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            categories,
        )
        .replace("image_size = 128", "image_size = 64")
        .replace("embed_channels = 256", "embed_channels = 32")
        .replace("items_per_class = 10", "items_per_class = 3")
        .replace("epochs = 10", "epochs = 1")
}

#[test]
fn a_multi_class_model_keeps_its_class_indices_when_a_category_folder_goes() {
    // Trained on every category of the dataset (`categories = []`: grid and carpet, class 0
    // and 1), then evaluated after grid's folder is gone: carpet keeps class 1, so the
    // class-aware memory reads carpet's prototypes and the figures are the run's own.
    let dir = tempfile::tempdir().unwrap();
    tiny_catalog(dir.path(), r#""grid", "carpet""#);
    let exp = tiny_mddnet("categories = []");
    std::fs::write(dir.path().join("mdd.toml"), &exp).unwrap();
    let out = memad(&["run", "mdd.toml", "--runs", "runs"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let run = complete_folders(&dir.path().join("runs/mddnet_synthetic")).remove(0);
    let classes = std::fs::read_to_string(run.join("checkpoints/all.classes")).unwrap();
    assert_eq!(classes, "grid\ncarpet\n");

    // The same images without grid, as a plain MVTec folder (nothing regenerates it).
    let left = dir.path().join("data/tiny");
    std::fs::remove_dir_all(left.join("grid")).unwrap();
    std::fs::write(
        dir.path().join("datasets.toml"),
        "[tiny]\nformat = \"mvtec\"\nroot = \"data/tiny\"\n",
    )
    .unwrap();
    let out = memad(&["eval", run.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let evals = complete_folders(&run.join("evals/mddnet_synthetic"));
    let carpet = |lines: Vec<String>| -> Vec<String> {
        (lines.into_iter())
            .filter(|l| l.contains(",carpet,"))
            .collect()
    };
    let (own, again) = (carpet(metric_lines(&run)), carpet(metric_lines(&evals[0])));
    assert_eq!(own.len(), 5);
    assert_eq!(again, own);

    // A category the model never saw is named, not scored with another's class.
    std::fs::rename(left.join("carpet"), left.join("leather")).unwrap();
    let out = memad(&["eval", run.to_str().unwrap()], dir.path());
    let t = text(&out);
    assert!(!out.status.success());
    assert!(
        t.contains(
            "category `leather` was not among those the model `all` was trained on (grid, carpet)"
        ),
        "{t}"
    );
}

#[test]
fn mddnet_trains_one_multi_class_model_on_synthetic_anomalies() {
    let dir = tempfile::tempdir().unwrap();
    tiny_catalog(dir.path(), r#""grid", "carpet""#);
    let base = tiny_mddnet(r#"categories = ["grid", "carpet"]"#);
    std::fs::write(dir.path().join("mdd.toml"), &base).unwrap();

    let out = memad(&["run", "mdd.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("(2 categories, one model)"), "{t}");
    let run = std::fs::read_dir(dir.path().join("runs/mddnet_synthetic"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(run.join("checkpoints/all.safetensors").is_file());
    assert!(!run.join("checkpoints/grid.safetensors").exists());
    // The class indices, in the order of `categories`.
    let classes = std::fs::read_to_string(run.join("checkpoints/all.classes")).unwrap();
    assert_eq!(classes, "grid\ncarpet\n");
    // Every loss term of the paper is logged.
    let losses = std::fs::read_to_string(run.join("losses.csv")).unwrap();
    for term in [
        "restoration",
        "identity",
        "discrepancy",
        "classification",
        "compactness",
    ] {
        assert!(
            losses.contains(&format!("all,1,{term},")),
            "{term}: {losses}"
        );
    }
    // Rows per category, setting multi_class, the class accuracy of the memory reported.
    let mut reader = csv::Reader::from_path(run.join("metrics.csv")).unwrap();
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    for cat in ["grid", "carpet"] {
        let of_cat: Vec<&csv::StringRecord> = rows.iter().filter(|r| &r[6] == cat).collect();
        let metrics: Vec<&str> = of_cat.iter().map(|r| &r[10]).collect();
        assert_eq!(
            metrics,
            [
                "image_auroc",
                "image_ap",
                "pixel_auroc",
                "aupro",
                "class_accuracy"
            ],
            "{cat}"
        );
        for r in of_cat {
            assert_eq!((&r[2], &r[7]), ("mddnet", "multi_class"));
            let v: f64 = r[11].parse().unwrap();
            assert!((0.0..=1.0).contains(&v), "{r:?}");
        }
    }

    // The class-aware memory's usage per category: 2 classes x 3 items, the share of the
    // addressing weight over the normal and over the anomalous test images, each column
    // summing to 1; `memad plot` draws it as a heat map per category.
    for cat in ["grid", "carpet"] {
        let mut reader = csv::Reader::from_path(run.join(format!("memory/{cat}.csv"))).unwrap();
        assert_eq!(
            reader.headers().unwrap(),
            vec!["memory", "item", "normal", "anomalous"]
        );
        let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 6, "{cat}: {rows:?}");
        for (i, r) in rows.iter().enumerate() {
            assert_eq!((&r[0], r[1].parse::<usize>().unwrap()), ("memory", i));
        }
        for column in [2, 3] {
            let shares: Vec<f64> = rows.iter().map(|r| r[column].parse().unwrap()).collect();
            assert!(shares.iter().all(|s| (0.0..=1.0).contains(s)), "{shares:?}");
            let total: f64 = shares.iter().sum();
            assert!((total - 1.0).abs() < 1e-6, "{cat} column {column}: {total}");
        }
    }
    let out = memad(&["plot", run.to_str().unwrap()], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    for file in ["memory_grid.png", "memory_carpet.svg", "memory_all.png"] {
        assert!(run.join("plots").join(file).is_file(), "{file}");
    }

    // Scored with the class given, the model predicts none: class_accuracy is said to be
    // not applicable, not silently missing.
    let out = memad(
        &[
            "eval",
            run.to_str().unwrap(),
            "--set",
            "method.class_source=given",
        ],
        dir.path(),
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("[grid] class_accuracy is not applicable: this model predicts no classes"),
        "{t}"
    );
    let given = complete_folders(&run.join("evals/mddnet_synthetic_class_source-given"));
    let lines = metric_lines(&given[0]);
    assert!(
        lines.iter().any(|l| l.contains(",image_auroc,")),
        "{lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains(",class_accuracy,")),
        "{lines:?}"
    );

    // Without [data.synthesis] the run stops before training, saying what to add.
    let start = base.find("[data.synthesis]").unwrap();
    let end = base[start..].find("[method]").unwrap() + start;
    let mut no_synthesis = base.clone();
    no_synthesis.replace_range(start..end, "");
    std::fs::write(dir.path().join("no_synth.toml"), no_synthesis).unwrap();
    let out = memad(&["run", "no_synth.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("add a [data.synthesis] section"), "{t}");
    assert!(
        !dir.path()
            .join("runs/mddnet_synthetic")
            .read_dir()
            .unwrap()
            .any(|e| e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".partial")),
        "the error comes before a run folder is made"
    );
}

#[test]
fn synthesis_for_a_method_that_ignores_it_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    tiny_catalog(dir.path(), r#""grid""#);
    let exp = broken("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = [\"grid\"]",
        )
        .replace("image_size = 128", "image_size = 64")
        .replace(
            "[method]\n",
            "[data.synthesis]\nkind = \"cutpaste\"\n\n[method]\n",
        );
    std::fs::write(dir.path().join("e.toml"), exp).unwrap();
    let out = memad(&["run", "e.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(!out.status.success());
    assert!(t.contains("does not train on synthesized anomalies"), "{t}");
    assert!(t.contains("data.synthesis"), "{t}");
}

/// `dir/e.toml`: the quickstart on category `grid` at 64 px of dataset `name`, registered
/// in `dir/datasets.toml` with `format` at `data/<name>`.
fn quickstart_on_grid_of(dir: &Path, name: &str, format: &str) {
    std::fs::write(
        dir.join("datasets.toml"),
        format!("[{name}]\nformat = \"{format}\"\nroot = \"data/{name}\"\n"),
    )
    .unwrap();
    let exp = broken(
        "dataset = \"synthetic-mvtec\"",
        &format!("dataset = \"{name}\""),
    )
    .replace(
        "categories = [\"carpet\", \"grid\", \"leather\"]",
        "categories = [\"grid\"]",
    )
    .replace("image_size = 128", "image_size = 64");
    std::fs::write(dir.join("e.toml"), exp).unwrap();
}

/// A category of one training image cannot train BatchNorm (one value per channel at the
/// bottleneck): the run stops at the epoch's NaN saying so, and not to change the batch size.
#[test]
fn a_single_training_image_is_named_as_the_cause_of_nan() {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let dir = tempfile::tempdir().unwrap();
    let grid = dir.path().join("data/one/grid");
    let save = |path: PathBuf, shade: u8| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, shade]))
            .save(path)
            .unwrap();
    };
    save(grid.join("train/good/000.png"), 9);
    save(grid.join("test/good/000.png"), 9);
    save(grid.join("test/hole/000.png"), 200);
    let mask = grid.join("ground_truth/hole/000_mask.png");
    std::fs::create_dir_all(mask.parent().unwrap()).unwrap();
    GrayImage::from_fn(64, 64, |x, _| Luma([if x < 16 { 255 } else { 0 }]))
        .save(mask)
        .unwrap();
    quickstart_on_grid_of(dir.path(), "one", "mvtec");
    let e = dir.path().join("e.toml");
    let exp = std::fs::read_to_string(&e).unwrap();
    std::fs::write(&e, exp.replace("image_size = 64", "image_size = 32")).unwrap();
    let out = memad(
        &["run", "e.toml", "--runs", "runs", "--epochs", "1"],
        dir.path(),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("hold NaN or inf after the epoch")
            && t.contains("The category has 1 training image")
            && !t.contains("Choose another data.batch_size"),
        "{t}"
    );
}

/// Layout problems in several categories are all named by one refused run, not one
/// category per attempt.
#[test]
fn layout_problems_of_every_category_are_named_before_training() {
    use image::{Rgb, RgbImage};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data/hand");
    let save = |path: PathBuf| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_pixel(64, 64, Rgb([9, 9, 9]))
            .save(path)
            .unwrap();
    };
    // grid: no training image; wood: no test folder.
    std::fs::create_dir_all(data.join("grid/train/good")).unwrap();
    save(data.join("grid/test/good/000.png"));
    save(data.join("wood/train/good/000.png"));
    quickstart_on_grid_of(dir.path(), "hand", "mvtec");
    let exp = std::fs::read_to_string(dir.path().join("e.toml")).unwrap();
    let exp = exp.replace(
        "categories = [\"grid\"]",
        "categories = [\"grid\", \"wood\"]",
    );
    std::fs::write(dir.path().join("e.toml"), exp).unwrap();
    let out = memad(&["run", "e.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    for part in [
        "2 categories of dataset `hand` cannot be read, nothing run",
        "grid/train/good holds no images",
        "wood/test: missing: a category keeps its test images",
    ] {
        assert!(t.contains(part), "{part}: {t}");
    }
    assert!(!dir.path().join("runs").exists(), "no run folder is made");
    // A category named as the tables' mean row.
    save(data.join("mean/train/good/000.png"));
    let exp = std::fs::read_to_string(dir.path().join("e.toml")).unwrap();
    let exp = exp.replace("[\"grid\", \"wood\"]", "[\"mean\"]");
    std::fs::write(dir.path().join("e.toml"), exp).unwrap();
    let out = memad(&["run", "e.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("dataset `hand` has a category named `mean`, the name of the mean row"),
        "{t}"
    );
    assert!(!dir.path().join("runs").exists(), "no run folder is made");
    let out = memad(&["check", "e.toml"], dir.path());
    let t = text(&out);
    assert!(
        !out.status.success() && t.contains("a category named `mean`"),
        "{t}"
    );
}

#[test]
fn broken_files_stop_a_run_before_training_and_a_failed_build_leaves_no_folder() {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data/hand/grid");
    let save = |path: PathBuf| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * 4) as u8, 9]))
            .save(path)
            .unwrap();
    };
    for i in 0..4 {
        save(root.join(format!("train/good/{i:03}.png")));
    }
    save(root.join("test/good/000.png"));
    save(root.join("test/hole/000.png"));
    save(root.join("test/hole/001.png"));
    std::fs::write(root.join("test/hole/001.png"), b"not a png").unwrap();
    std::fs::create_dir_all(root.join("ground_truth/hole")).unwrap();
    GrayImage::from_pixel(32, 32, Luma([255]))
        .save(root.join("ground_truth/hole/000_mask.png"))
        .unwrap();
    GrayImage::from_pixel(64, 64, Luma([255]))
        .save(root.join("ground_truth/hole/001_mask.png"))
        .unwrap();
    quickstart_on_grid_of(dir.path(), "hand", "mvtec");
    let out = memad(&["run", "e.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("2 problem(s) in dataset `hand`, nothing trained"),
        "{t}"
    );
    assert!(
        t.contains("test/hole/001.png: corrupt or unreadable image"),
        "{t}"
    );
    assert!(
        t.contains("000_mask.png: mask is 32x32 but its image"),
        "{t}"
    );
    assert!(!t.contains("epoch 1"), "nothing is trained: {t}");
    assert!(!dir.path().join("runs").exists(), "no run folder is made");

    // With the files repaired, a model that cannot be built fails in a folder that is then
    // removed: nothing to resume, nothing left behind.
    save(root.join("test/hole/001.png"));
    GrayImage::from_pixel(64, 64, Luma([255]))
        .save(root.join("ground_truth/hole/000_mask.png"))
        .unwrap();
    let exp = std::fs::read_to_string(dir.path().join("e.toml"))
        .unwrap()
        .replace(
            "weights = \"imagenet\"",
            "weights = \"missing/teacher.safetensors\"",
        );
    std::fs::write(dir.path().join("e.toml"), &exp).unwrap();
    let out = memad(&["run", "e.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("missing/teacher.safetensors"), "{t}");
    assert!(
        !dir.path().join("runs/quickstart").exists(),
        "the failed run's folder is removed"
    );

    // An image size the model cannot take is a config error: `memad check` names it.
    let out = memad(
        &["check", "e.toml", "--set", "data.image_size=48,64"],
        dir.path(),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("data.image_size: must be a multiple of 32 for method `rd4ad`"),
        "{t}"
    );
    assert!(t.contains("ok   e.toml [data.image_size = 64]"), "{t}");
}

#[test]
fn folder_images_without_a_mask_are_left_out_of_the_pixel_metrics_and_no_mask_is_refused() {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("data/own/grid");
    let save = |path: PathBuf, shade: u32| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(64, 64, |x, y| Rgb([(x * 4) as u8, (y * shade) as u8, 9]))
            .save(path)
            .unwrap();
    };
    for i in 0..4 {
        save(root.join(format!("train/good/{i:03}.png")), 4);
    }
    for (defect, shade) in [("good", 4), ("hole", 2), ("stain", 3)] {
        for i in 0..2 {
            save(root.join(format!("test/{defect}/{i:03}.png")), shade);
        }
    }
    // Masks for the holes only: the stains have none (the folder format allows it) but a
    // misnamed one, which the run points out.
    for name in ["hole/000_mask", "hole/001_mask", "stain/000_msk"] {
        let mask = GrayImage::from_fn(64, 64, |x, _| Luma([if x < 16 { 255 } else { 0 }]));
        let path = root.join(format!("ground_truth/{name}.png"));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        mask.save(path).unwrap();
    }
    // A second category whose anomalies have no mask at all.
    let wood = dir.path().join("data/own/wood");
    for i in 0..4 {
        save(wood.join(format!("train/good/{i:03}.png")), 4);
    }
    save(wood.join("test/good/000.png"), 4);
    save(wood.join("test/hole/000.png"), 2);
    save(wood.join("test/hole/001.png"), 2);
    quickstart_on_grid_of(dir.path(), "own", "folder");
    let exp = std::fs::read_to_string(dir.path().join("e.toml")).unwrap();
    let exp = exp.replace(
        "categories = [\"grid\"]",
        "categories = [\"grid\", \"wood\"]",
    );
    std::fs::write(dir.path().join("e.toml"), exp).unwrap();
    let args = ["run", "e.toml", "--runs", "runs", "--epochs", "1"];
    let out = memad(&args, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(
            "[wood] pixel_auroc, aupro undefined: no anomalous test image has a mask (2 \
             without: hole; no row written)"
        ),
        "{t}"
    );
    // The table leaves wood's pixel AUROC and its mean empty.
    let stdout = String::from_utf8_lossy(&out.stdout);
    let pixel_auroc: Vec<&str> = (stdout.lines())
        .filter(|l| l.starts_with("wood") || l.starts_with("mean"))
        .map(|l| l.split_whitespace().nth(3).unwrap_or(""))
        .collect();
    assert_eq!(pixel_auroc, ["-", "-"], "{t}");
    assert!(
        t.contains(
            "[grid] 2 anomalous test image(s) without a mask (stain) left out of pixel_auroc, \
             aupro: their defect pixels are unknown"
        ),
        "{t}"
    );
    assert!(
        t.contains(
            "ground_truth/stain: 1 unused mask(s) that match no test image (first: 000_msk.png"
        ),
        "{t}"
    );
    let run = complete_folders(&dir.path().join("runs/quickstart")).remove(0);
    // The note is in the run's log too, not only on the console.
    let log = std::fs::read_to_string(run.join("log.txt")).unwrap();
    assert!(
        log.contains("note: ") && log.contains("1 unused mask(s) that match no test image"),
        "{log}"
    );
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert!(
        metrics.contains("grid,one_class,0,1,pixel_auroc,")
            && metrics.contains("grid,one_class,0,1,aupro,")
            && !metrics.contains("wood,one_class,0,1,pixel_auroc,"),
        "{metrics}"
    );

    // Without any mask the pixel metrics cannot be computed: refused before training, with
    // the masks the run did not match (all misnamed here), which explain the refusal.
    let hole = root.join("ground_truth/hole");
    for i in 0..2 {
        let (from, to) = (format!("{i:03}_mask.png"), format!("{i:03}_msk.png"));
        std::fs::rename(hole.join(from), hole.join(to)).unwrap();
    }
    let out = memad(&args, dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("none of the 6 anomalous test images of dataset `own` has one")
            && t.contains("ground_truth/hole: 2 unused mask(s) that match no test image"),
        "{t}"
    );
    std::fs::remove_dir_all(root.join("ground_truth")).unwrap();
    let out = memad(&args, dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "pixel_auroc, aupro need pixel masks, and none of the 6 anomalous test images of \
             dataset `own` has one, so nothing was trained"
        ),
        "{t}"
    );
    assert!(!t.contains("epoch 1"), "nothing is trained: {t}");
    assert_eq!(
        complete_folders(&dir.path().join("runs/quickstart")).len(),
        1,
        "no second run"
    );
}

/// A tiny MVTec LOCO AD tree (`breakfast_box`, 64 px): striped normal images, a bright
/// square as the structural anomaly (one region, absolute saturation) and a dark bar as the
/// logical one (two region files, relative saturation), with `defects_config.json`.
fn tiny_loco(root: &Path) {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let c = root.join("breakfast_box");
    let save_rgb = |path: PathBuf, defect: Option<(u32, u32, u32, u32, u8)>| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(64, 64, |x, y| {
            if let Some((x0, x1, y0, y1, v)) = defect {
                if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                    return Rgb([v, v, v]);
                }
            }
            let s = if (x / 4 + y / 8) % 2 == 0 { 90 } else { 150 };
            Rgb([s, s / 2, 40])
        })
        .save(path)
        .unwrap();
    };
    let save_region = |path: PathBuf, (x0, x1, y0, y1): (u32, u32, u32, u32), v: u8| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        GrayImage::from_fn(64, 64, |x, y| {
            Luma([if (x0..x1).contains(&x) && (y0..y1).contains(&y) {
                v
            } else {
                0
            }])
        })
        .save(path)
        .unwrap();
    };
    for i in 0..6 {
        save_rgb(c.join(format!("train/good/{i:03}.png")), None);
    }
    for i in 0..2 {
        save_rgb(c.join(format!("validation/good/{i:03}.png")), None);
        save_rgb(c.join(format!("test/good/{i:03}.png")), None);
    }
    save_rgb(
        c.join("test/structural_anomalies/000.png"),
        Some((20, 36, 20, 36, 255)),
    );
    save_region(
        c.join("ground_truth/structural_anomalies/000/000.png"),
        (20, 36, 20, 36),
        255,
    );
    save_rgb(
        c.join("test/logical_anomalies/000.png"),
        Some((8, 56, 44, 52, 0)),
    );
    save_region(
        c.join("ground_truth/logical_anomalies/000/000.png"),
        (8, 32, 44, 52),
        100,
    );
    save_region(
        c.join("ground_truth/logical_anomalies/000/001.png"),
        (32, 56, 44, 52),
        100,
    );
    std::fs::write(
        c.join("defects_config.json"),
        r#"[{"defect_name": "contamination", "pixel_value": 255, "saturation_threshold": 64, "relative_saturation": false},
            {"defect_name": "misplaced_bar", "pixel_value": 100, "saturation_threshold": 0.5, "relative_saturation": true}]"#,
    )
    .unwrap();
}

#[test]
fn patchcore_scores_mvtec_loco_with_saturated_pro() {
    let dir = tempfile::tempdir().unwrap();
    tiny_loco(&dir.path().join("data/loco"));
    std::fs::write(
        dir.path().join("datasets.toml"),
        "[loco]\nformat = \"mvtec_loco\"\nroot = \"data/loco\"\n",
    )
    .unwrap();
    let exp = std::fs::read_to_string(workspace().join("experiments/patchcore_synthetic.toml"))
        .unwrap()
        .replace("dataset = \"synthetic-mvtec\"", "dataset = \"loco\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = [\"breakfast_box\"]",
        )
        .replace("image_size = 128", "image_size = 64")
        .replace(
            "metrics = [\"image_auroc\", \"image_ap\", \"pixel_auroc\", \"aupro\"]",
            "metrics = [\"image_auroc\", \"pixel_auroc\", \"aupro\", \"auspro\"]",
        );
    std::fs::write(dir.path().join("loco.toml"), &exp).unwrap();
    let out = memad(&["run", "loco.toml", "--runs", "runs"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let run = std::fs::read_dir(dir.path().join("runs/patchcore_synthetic"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    let value = |name: &str| -> f64 {
        let row = (metrics.lines())
            .map(|l| l.split(',').collect::<Vec<_>>())
            .find(|cols| cols[10] == name)
            .unwrap_or_else(|| panic!("{name} missing in {metrics}"));
        row[11].parse().unwrap()
    };
    // The bright square and the dark bar stand out of the stripes: found at a low FPR.
    // (The good test images are copies of the training ones, and each defect is a uniform
    // block far from the stripes' colours: most of every region is found well below the
    // 0.3 FPR limit; 0.96 and 1.00 with the ImageNet weights.)
    for name in ["aupro", "auspro"] {
        let v = value(name);
        assert!(v > 0.8 && v <= 1.0, "{name} {v}: {metrics}");
    }
    // Image AUROC as LOCO's official evaluation: the mean of good-against-logical and
    // good-against-structural, from the scores the run wrote.
    let scores = std::fs::read_to_string(run.join("scores/breakfast_box.csv")).unwrap();
    let rows: Vec<(String, f64)> = (scores.lines().skip(1))
        .map(|l| {
            let cols: Vec<&str> = l.split(',').collect();
            (cols[2].to_string(), cols[4].parse().unwrap())
        })
        .collect();
    let good: Vec<f64> = (rows.iter().filter(|(d, _)| d == "good"))
        .map(|r| r.1)
        .collect();
    let auroc_against = |defect: &str| {
        let bad: Vec<f64> = (rows.iter().filter(|(d, _)| d == defect))
            .map(|r| r.1)
            .collect();
        let pairs = (good.iter()).flat_map(|g| bad.iter().map(move |b| (g, b)));
        let wins: f64 = pairs
            .map(|(g, b)| match b.partial_cmp(g).unwrap() {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            })
            .sum();
        wins / (good.len() * bad.len()) as f64
    };
    let official =
        (auroc_against("logical_anomalies") + auroc_against("structural_anomalies")) / 2.0;
    assert!(
        (value("image_auroc") - official).abs() < 1e-9,
        "{official}: {metrics}"
    );
    // Each type's figure is reported too (LOCO tables have logical and structural columns).
    for t in ["logical_anomalies", "structural_anomalies"] {
        let v = value(&format!("image_auroc_{t}"));
        assert!((v - auroc_against(t)).abs() < 1e-9, "{t}: {metrics}");
    }
    let spro_types = value("auspro_logical_anomalies") + value("auspro_structural_anomalies");
    assert!(
        (value("auspro") - spro_types / 2.0).abs() < 1e-12,
        "{metrics}"
    );

    // The fitted bank is restored from the checkpoint: `memad eval` gives the same numbers,
    // and scores with the paper's reweighting without fitting again.
    let run_arg = run.to_str().unwrap();
    let out = memad(
        &[
            "eval",
            run_arg,
            "--set",
            "method.image_score=max,reweighted",
        ],
        dir.path(),
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(!t.contains("fitted on"), "{t}");
    let evals = run.join("evals");
    let max = complete_folders(&evals.join("patchcore_synthetic_image_score-max"));
    assert_eq!(metric_lines(&max[0]), metric_lines(&run));
    let reweighted = complete_folders(&evals.join("patchcore_synthetic_image_score-reweighted"));
    // The header; image_auroc and auspro with their two types each, pixel_auroc, aupro.
    assert_eq!(metric_lines(&reweighted[0]).len(), 9);
    // The same images in the same order, scored otherwise: the reweighting changes the
    // image scores of the max run.
    let image_scores = |folder: &Path| -> Vec<(String, f64)> {
        let text = std::fs::read_to_string(folder.join("scores/breakfast_box.csv")).unwrap();
        (text.lines().skip(1))
            .map(|l| {
                let cols: Vec<&str> = l.split(',').collect();
                (cols[..4].join(","), cols[4].parse().unwrap())
            })
            .collect()
    };
    let (by_max, by_reweighted) = (image_scores(&max[0]), image_scores(&reweighted[0]));
    assert_eq!(
        by_max.len(),
        4,
        "two good images, a logical and a structural one"
    );
    let images = |s: &[(String, f64)]| s.iter().map(|r| r.0.clone()).collect::<Vec<_>>();
    assert_eq!(images(&by_max), images(&by_reweighted));
    assert!(
        by_max.iter().zip(&by_reweighted).any(|(m, r)| m.1 != r.1),
        "{by_max:?} {by_reweighted:?}"
    );

    // auspro needs LOCO's saturation thresholds: refused on an MVTec-format dataset.
    tiny_catalog(dir.path(), r#""grid""#);
    let mvtec = exp
        .replace("dataset = \"loco\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"breakfast_box\"]",
            "categories = [\"grid\"]",
        );
    std::fs::write(dir.path().join("mvtec.toml"), mvtec).unwrap();
    let out = memad(&["check", "mvtec.toml"], dir.path());
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("eval.metrics[3]") && t.contains("mvtec_loco"),
        "{t}"
    );
}

/// `memad check` looks at the dataset's folder: a category the folder lacks fails (with a
/// did-you-mean), named by the experiment or, when it names none, listed in `datasets.toml`;
/// a root, weights or textures missing here are notes.
#[test]
fn check_finds_a_category_the_dataset_folder_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for c in ["carpet", "grid", "leather"] {
        std::fs::create_dir_all(d.join(format!("hand/{c}/train/good"))).unwrap();
    }
    std::fs::write(
        d.join("datasets.toml"),
        "[hand]\nformat = \"mvtec\"\nroot = \"hand\"\n\
         [gone]\nformat = \"mvtec\"\nroot = \"not_here\"\n\
         [listed]\nformat = \"mvtec\"\nroot = \"hand\"\ncategories = [\"carpet\", \"gird\"]\n",
    )
    .unwrap();
    let exp = broken("dataset = \"synthetic-mvtec\"", "dataset = \"hand\"");
    std::fs::write(d.join("ok.toml"), &exp).unwrap();
    let typo = exp.replacen("\"grid\"", "\"gird\"", 1);
    std::fs::write(d.join("typo.toml"), typo).unwrap();
    let gone = exp.replacen("dataset = \"hand\"", "dataset = \"gone\"", 1);
    std::fs::write(d.join("gone.toml"), gone).unwrap();

    // Weights and textures a run here would not find: notes too.
    let weights = exp.replacen(
        "weights = \"imagenet\"",
        "weights = \"elsewhere/lite0.safetensors\"",
        1,
    );
    std::fs::write(d.join("weights.toml"), weights).unwrap();
    let mddnet = std::fs::read_to_string(workspace().join("experiments/mddnet_synthetic.toml"))
        .unwrap()
        .replacen(
            "kind = \"draem\"",
            "kind = \"draem\"\ntexture_dir = \"dtd/images\"",
            1,
        )
        .replacen("dataset = \"synthetic-mvtec\"", "dataset = \"hand\"", 1);
    std::fs::write(d.join("textures.toml"), mddnet).unwrap();

    let out = memad(
        &[
            "check",
            "ok.toml",
            "gone.toml",
            "weights.toml",
            "textures.toml",
        ],
        d,
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("note: dataset `gone`: its root")
            && t.contains("does not exist on this machine"),
        "{t}"
    );
    assert!(
        t.contains("note: method.backbone.weights:") && t.contains("elsewhere/lite0.safetensors"),
        "{t}"
    );
    assert!(
        t.contains("note: data.synthesis:") && t.contains("texture_dir dtd/images does not exist"),
        "{t}"
    );
    let out = memad(&["check", "typo.toml"], d);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("typo.toml")
            && t.contains("data.categories[1]: dataset `hand`")
            && t.contains("has no category `gird` (did you mean `grid`?)"),
        "{t}"
    );
    // With `categories = []`, the categories `datasets.toml` lists are checked.
    let listed = exp
        .replacen("dataset = \"hand\"", "dataset = \"listed\"", 1)
        .replacen(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = []",
            1,
        );
    std::fs::write(d.join("listed.toml"), listed).unwrap();
    let out = memad(&["check", "listed.toml"], d);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("datasets.toml: listed.categories[1]: dataset `listed`")
            && t.contains("has no category `gird` (did you mean `grid`?)"),
        "{t}"
    );

    // `--resolved` says what an empty `data.categories` stands for, as a TOML comment.
    let all = exp.replacen("categories = [\"carpet\", \"grid\", \"leather\"]", "", 1);
    assert_ne!(all, exp);
    std::fs::write(d.join("all.toml"), all).unwrap();
    let out = memad(&["check", "--resolved", "all.toml"], d);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("categories = []")
            && t.contains(
                "# data.categories = [] runs every category of dataset `hand`; \
                 its 3: carpet, grid, leather"
            ),
        "{t}"
    );
}

/// `memad run --smoke`: one epoch on a part of each category, under its own name, with the
/// part in the resolved config (so `memad eval` scores the same images again).
#[test]
fn smoke_run_takes_a_part_of_each_category_under_its_own_name() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // grid: 6 training images; test: 3 good, 1 scratch, 1 hole.
    tiny_catalog(d, r#""grid""#);
    let exp = broken("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = [\"grid\"]",
        )
        .replace("image_size = 128", "image_size = 64")
        .replace("batch_size = 8", "batch_size = 2");
    std::fs::write(d.join("e.toml"), exp).unwrap();
    let out = memad(&["run", "e.toml", "--runs", "runs", "--smoke"], d);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(
            "data.subset: about 4 training and 2 test samples of each type per category, 1 epoch:"
        ) && t.contains("[grid] train 4 images, test 4 images")
            && t.contains("[grid] epoch 1/1"),
        "{t}"
    );
    let runs = complete_folders(&d.join("runs/quickstart_smoke"));
    assert_eq!(runs.len(), 1, "{t}");
    assert!(!d.join("runs/quickstart").exists(), "{t}");
    let config = std::fs::read_to_string(runs[0].join("config.toml")).unwrap();
    assert!(
        config.contains("name = \"quickstart_smoke\"")
            && config.contains("[data.subset]\ntrain = 4\ntest_per_type = 2")
            && config.contains("epochs = 1\n"),
        "{config}"
    );
    let out = memad(&["eval", runs[0].to_str().unwrap()], d);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let evals = runs[0].join("evals");
    let eval = std::fs::read_dir(&evals)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        metric_lines(&complete_folders(&eval)[0]),
        metric_lines(&runs[0])
    );
    // A subset of nothing is refused.
    let zero = std::fs::read_to_string(runs[0].join("config.toml"))
        .unwrap()
        .replace("test_per_type = 2", "test_per_type = 0");
    std::fs::write(d.join("zero.toml"), zero).unwrap();
    let out = memad(&["check", "zero.toml"], d);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("data.subset.test_per_type: must be at least 1"),
        "{t}"
    );
}

/// A CUDA device this machine lacks is a note of `memad check`; a CUDA-only backbone
/// precision with `device = "cpu"` fails on every machine, so it is an error.
#[test]
fn check_notes_a_missing_cuda_device_and_refuses_bf16_backbones_on_cpu() {
    let root = workspace();
    let file = "experiments/quickstart.toml";
    let out = memad(&["check", file, "--set", "device=cuda:99"], &root);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("note: device: device `cuda:99` requested but"),
        "{t}"
    );
    let out = memad(
        &[
            "check",
            file,
            "--set",
            "device=cpu",
            "--set",
            "method.backbone.precision=bf16",
        ],
        &root,
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("method.backbone.precision = \"bf16\" runs on CUDA only and device = \"cpu\""),
        "{t}"
    );
}

#[test]
fn test_masks_are_resized_as_the_config_says() {
    // PatchCore (nothing to train) on the tiny data at 32 px (masks shrink from 64 px): the
    // official PatchCore masks (bilinear, wholly covered pixels only) lose the defects' edges,
    // so the pixel metrics change; the choice is written to config.toml, the default is not.
    let dir = tempfile::tempdir().unwrap();
    tiny_catalog(dir.path(), r#""grid""#);
    let exp = std::fs::read_to_string(workspace().join("experiments/patchcore_synthetic.toml"))
        .unwrap()
        .replace("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = [\"grid\"]",
        )
        .replace("image_size = 128", "image_size = 32");
    let full = exp
        .replace("name = \"patchcore_synthetic\"", "name = \"full\"")
        .replace(
            "batch_size = 8",
            "mask_resize = \"bilinear_full\"\nbatch_size = 8",
        );
    std::fs::write(dir.path().join("nearest.toml"), &exp).unwrap();
    std::fs::write(dir.path().join("full.toml"), &full).unwrap();
    let mut pixel_auroc = Vec::new();
    for (file, name) in [
        ("nearest.toml", "patchcore_synthetic"),
        ("full.toml", "full"),
    ] {
        let out = memad(&["run", file, "--runs", "runs"], dir.path());
        assert!(out.status.success(), "{}", text(&out));
        let run = complete_folders(&dir.path().join("runs").join(name)).remove(0);
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert_eq!(
            config.contains("mask_resize = \"bilinear_full\""),
            name == "full",
            "{config}"
        );
        assert!(
            name == "full" || !config.contains("mask_resize"),
            "{config}"
        );
        let line = (metric_lines(&run).into_iter())
            .find(|l| l.contains("pixel_auroc"))
            .unwrap();
        pixel_auroc.push(line.rsplit(',').next().unwrap().to_string());
    }
    assert_ne!(pixel_auroc[0], pixel_auroc[1]);
}

/// Runs `experiments/paper/<file>.toml` in `dir` with each `(from, to)` of `changes` made
/// (each must apply: the test would otherwise run the paper's sizes) and returns its run
/// folder (`runs/<file>/<stamp>`: the paper files are named after themselves).
fn run_paper_file(dir: &Path, file: &str, changes: &[(&str, &str)]) -> PathBuf {
    let mut exp =
        std::fs::read_to_string(workspace().join(format!("experiments/paper/{file}.toml")))
            .unwrap();
    for (from, to) in changes {
        assert!(exp.contains(from), "{file} has no `{from}`");
        exp = exp.replace(from, to);
    }
    let toml = format!("{file}.toml");
    std::fs::write(dir.join(&toml), &exp).unwrap();
    let out = memad(&["run", &toml, "--runs", "runs"], dir);
    assert!(out.status.success(), "{file}: {}", text(&out));
    complete_folders(&dir.join("runs").join(file)).remove(0)
}

/// The value of `metric` in `lines` ([`metric_lines`]) for the category `category` (any when
/// empty), checked to be in [0, 1].
fn metric_in_unit_range(lines: &[String], category: &str, metric: &str) -> f64 {
    let of_category = |l: &&String| category.is_empty() || l.contains(&format!(",{category},"));
    let line = (lines.iter().filter(of_category))
        .find(|l| l.contains(&format!(",{metric},")))
        .unwrap_or_else(|| panic!("{category} {metric}: {lines:?}"));
    let v: f64 = line.rsplit(',').next().unwrap().parse().unwrap();
    assert!((0.0..=1.0).contains(&v), "{line}");
    v
}

/// A VisA tree as downloaded (`<object>/Data/Images/{Normal,Anomaly}`, label-map masks,
/// `split_csv/1cls.csv`) with two objects of 48 x 32 images: stripes, and on the anomalous
/// ones a bright square the mask marks with label 1.
fn tiny_visa(root: &Path) {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let mut csv = String::from("object,split,label,image,mask\n");
    let square = |x: u32, y: u32| (20..30).contains(&x) && (10..20).contains(&y);
    for object in ["candle", "pcb1"] {
        let save = |rel: &str, anomalous: bool| {
            let path = root.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            RgbImage::from_fn(48, 32, |x, y| match anomalous && square(x, y) {
                true => Rgb([250, 250, 250]),
                false if (x / 3 + y / 5) % 2 == 0 => Rgb([80, 60, 40]),
                false => Rgb([140, 110, 70]),
            })
            .save(path)
            .unwrap();
        };
        for i in 0..6 {
            let rel = format!("{object}/Data/Images/Normal/{i:04}.JPG");
            save(&rel, false);
            let split = if i < 4 { "train" } else { "test" };
            csv += &format!("{object},{split},normal,{rel},\n");
        }
        for i in 0..2 {
            let rel = format!("{object}/Data/Images/Anomaly/{i:03}.JPG");
            let m = format!("{object}/Data/Masks/Anomaly/{i:03}.png");
            save(&rel, true);
            let path = root.join(&m);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            GrayImage::from_fn(48, 32, |x, y| Luma([square(x, y) as u8]))
                .save(path)
                .unwrap();
            csv += &format!("{object},test,anomaly,{rel},{m}\n");
        }
    }
    std::fs::create_dir_all(root.join("split_csv")).unwrap();
    std::fs::write(root.join("split_csv/1cls.csv"), csv).unwrap();
}

#[test]
fn the_patchcore_visa_paper_file_runs_on_visa_as_downloaded() {
    // The paper file as it is (resize then centre crop, the official masks and squared
    // distances, WRN-50-2 layer2 + layer3) but for the weights (random: ImageNet's cannot be
    // had here) and the sizes, on non-square images with label-map masks.
    let dir = tempfile::tempdir().unwrap();
    tiny_visa(&dir.path().join("data/visa"));
    std::fs::write(
        dir.path().join("datasets.toml"),
        "[visa]\nformat = \"visa\"\nroot = \"data/visa\"\n",
    )
    .unwrap();
    let run = run_paper_file(
        dir.path(),
        "patchcore_visa",
        &[
            (
                "weights = \"torchvision:wide_resnet50_2\"",
                "weights = \"random\"",
            ),
            ("image_size = 224", "image_size = 32"),
            ("resize = 256", "resize = 40"),
        ],
    );
    let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
    for line in [
        "mask_resize = \"bilinear_full\"",
        "patch_distance = \"squared\"",
        "start = \"approximate\"",
        "resize = 40",
        "resize_shape = \"shorter_side\"",
    ] {
        assert!(config.contains(line), "{line}: {config}");
    }
    // Both objects scored, every metric defined (the masks' label 1 read as anomalous and
    // still covering pixels after the resize and crop).
    let lines = metric_lines(&run);
    for object in ["candle", "pcb1"] {
        for metric in ["image_auroc", "image_ap", "pixel_auroc", "aupro"] {
            metric_in_unit_range(&lines, object, metric);
        }
    }
}

#[test]
fn the_rd4ad_and_mddnet_mvtec_paper_files_run_end_to_end() {
    // The paper files as they are (WRN-50-2 teacher, OCBE 2048 with 3 blocks, decoders
    // 3/4/6, the official masks; MDD-Net multi-class with DRAEM pairs and the CMM) but for
    // the weights (random: ImageNet's cannot be had here), 64 px and 1 epoch, on two
    // categories of generated MVTec-layout data under the paper files' dataset name.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("datasets.toml"),
        r#"[mvtec]
format = "mvtec"
root = "data/mvtec"
synthetic = { categories = ["grid", "carpet"], image_size = 64, train_per_category = 4, test_good_per_category = 2, test_per_defect = 1, defects = ["scratch", "hole"], seed = 1 }
"#,
    )
    .unwrap();
    for (file, predicts_classes) in [("rd4ad_mvtec", false), ("mddnet_mvtec", true)] {
        let run = run_paper_file(
            dir.path(),
            file,
            &[
                (
                    "weights = \"torchvision:wide_resnet50_2\"",
                    "weights = \"random\"",
                ),
                ("image_size = 256", "image_size = 64"),
                ("epochs = 200", "epochs = 1"),
            ],
        );
        let config = std::fs::read_to_string(run.join("config.toml")).unwrap();
        assert!(
            config.contains("mask_resize = \"bilinear_half\""),
            "{config}"
        );
        let lines = metric_lines(&run);
        for cat in ["carpet", "grid"] {
            let of_cat: Vec<&String> = lines
                .iter()
                .filter(|l| l.contains(&format!(",{cat},")))
                .collect();
            assert!(
                of_cat
                    .iter()
                    .any(|l| l.contains(",aupro_rd4ad,") || l.contains(",aupro,")),
                "{file} {cat}: {lines:?}"
            );
            // MDD-Net predicts each image's class from its memory: the accuracy is reported.
            let accuracy = of_cat.iter().any(|l| l.contains(",class_accuracy,"));
            assert_eq!(accuracy, predicts_classes, "{file} {cat}: {lines:?}");
        }
    }
}

/// A video dataset in the MNAD frame layout (`training/frames/NN`, `testing/frames/NN`,
/// `testing/masks/NN`, ranges in `UCSDped2.m`): 2 training and 2 test videos of 20 frames of
/// 48 x 32 px, a grey bar moving right; in test video 02 frames 11-18 (1-based) also hold a
/// bright square, which its masks mark.
fn tiny_video(root: &Path) {
    use image::{GrayImage, Luma, Rgb, RgbImage};
    let square = |x: u32, y: u32| (30..40).contains(&x) && (8..18).contains(&y);
    let frame = |path: PathBuf, t: u32, anomalous: bool| {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        RgbImage::from_fn(48, 32, |x, y| {
            let v = match (anomalous && square(x, y), (x + 48 - 2 * t) % 48 < 6) {
                (true, _) => 250,
                (false, true) => 160,
                (false, false) => 60 + (y % 4) as u8 * 5,
            };
            Rgb([v, v, v])
        })
        .save(path)
        .unwrap();
    };
    for (split, video) in [
        ("training", "01"),
        ("training", "02"),
        ("testing", "01"),
        ("testing", "02"),
    ] {
        for t in 0..20u32 {
            let anomalous = split == "testing" && video == "02" && (10..18).contains(&t);
            frame(
                root.join(format!("{split}/frames/{video}/{t:03}.jpg")),
                t,
                anomalous,
            );
            if split == "testing" {
                let path = root.join(format!("testing/masks/{video}/{t:03}.png"));
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                GrayImage::from_fn(48, 32, |x, y| {
                    Luma([if anomalous && square(x, y) { 255 } else { 0 }])
                })
                .save(path)
                .unwrap();
            }
        }
    }
    std::fs::write(
        root.join("UCSDped2.m"),
        "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [];\n\
         TestVideoFile{end+1}.gt_frame = [11:18];\n",
    )
    .unwrap();
}

#[test]
fn the_video_paper_files_run_end_to_end() {
    // MNAD prediction and reconstruction and MemAE as their paper files say (clips, memory
    // sizes, test-time update, per-video normalisation, frame metrics) but at 32 px and one
    // epoch, on a tiny video dataset under the files' dataset name.
    let dir = tempfile::tempdir().unwrap();
    tiny_video(&dir.path().join("data/ped2"));
    std::fs::write(
        dir.path().join("datasets.toml"),
        "[ped2]\nformat = \"video_frames\"\nroot = \"data/ped2\"\n",
    )
    .unwrap();
    for (file, scored_frames) in [
        ("mnad_pred_ped2", 2 * 16), // the first 4 frames of a video are never targets
        ("mnad_recon_ped2", 2 * 20), // every frame
        ("memae_ped2", 2 * 5),      // full 16-frame windows: frames 9..13 of each video
    ] {
        let epochs = match file {
            "memae_ped2" => ("epochs = 100", "epochs = 1"),
            _ => ("epochs = 60", "epochs = 1"),
        };
        let run = run_paper_file(
            dir.path(),
            file,
            &[("image_size = 256", "image_size = 32"), epochs],
        );
        let scores = std::fs::read_to_string(run.join("scores/ped2.csv")).unwrap();
        assert_eq!(
            scores.lines().count() - 1,
            scored_frames,
            "{file}: {scores}"
        );
        let lines = metric_lines(&run);
        for metric in ["frame_auroc_micro", "frame_auroc_macro"] {
            metric_in_unit_range(&lines, "", metric);
        }
    }
}

/// A 10-class MNIST-format dataset (IDX files as downloaded, not compressed): 8 training and
/// 4 test images of 28 x 28 per class, class `c` a bright bar at row `2c + 4` over faint
/// seeded noise.
fn tiny_idx(root: &Path) {
    std::fs::create_dir_all(root).unwrap();
    let mut state = 7u32;
    let mut noise = move || {
        state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        (state >> 27) as u8
    };
    for (part, per_class) in [("train", 8), ("t10k", 4)] {
        let n = 10 * per_class;
        let mut images = vec![0, 0, 8, 3];
        let mut labels = vec![0, 0, 8, 1];
        for header in [&mut images, &mut labels] {
            header.extend_from_slice(&(n as u32).to_be_bytes());
        }
        images.extend_from_slice(&28u32.to_be_bytes());
        images.extend_from_slice(&28u32.to_be_bytes());
        for i in 0..n {
            let class = (i % 10) as u8;
            labels.push(class);
            for y in 0..28u8 {
                for _ in 0..28 {
                    let bar = (y / 2) == class + 2;
                    images.push(if bar { 220 } else { noise() });
                }
            }
        }
        std::fs::write(root.join(format!("{part}-images-idx3-ubyte")), images).unwrap();
        std::fs::write(root.join(format!("{part}-labels-idx1-ubyte")), labels).unwrap();
    }
}

#[test]
fn the_fashion_mnist_paper_files_run_end_to_end() {
    // MSCM, its no-memory ablation (one-class and with 5% labelled anomalies) and MemAE's
    // image variant as their paper files say, for every class, but with 2 epochs (MSCM: 1 of
    // stage 1), on a tiny dataset in the IDX format under the files' dataset name.
    let dir = tempfile::tempdir().unwrap();
    tiny_idx(&dir.path().join("data/fashion"));
    std::fs::write(
        dir.path().join("datasets.toml"),
        "[fashion-mnist]\nformat = \"mnist_idx\"\nroot = \"data/fashion\"\n",
    )
    .unwrap();
    for file in [
        "mscm_fashion_mnist",
        "contrastive_fashion_mnist",
        "mscm_fashion_mnist_unbalanced",
        "memae_fashion_mnist",
    ] {
        let epochs = match file {
            "memae_fashion_mnist" => ("epochs = 10", "epochs = 2"),
            _ => ("epochs = 7", "epochs = 2"),
        };
        let stage1 = ("stage1_epochs = 4", "stage1_epochs = 1");
        let changes = match file {
            "memae_fashion_mnist" => vec![epochs],
            _ => vec![epochs, stage1],
        };
        let run = run_paper_file(dir.path(), file, &changes);
        let lines = metric_lines(&run);
        // One image AUROC per class, each model tested on all 40 test images.
        let aurocs: Vec<&String> = lines
            .iter()
            .filter(|l| l.contains(",image_auroc,"))
            .collect();
        assert_eq!(aurocs.len(), 10, "{file}: {lines:?}");
        let scores = std::fs::read_to_string(run.join("scores/3.csv")).unwrap();
        assert_eq!(scores.lines().count() - 1, 40, "{file}");
    }
    // `--smoke` on the unbalanced file as it is: the 4 epochs of stage 1 and one of stage 2
    // (`MethodEntry::min_epochs`) on a few batches, and labelled anomalies
    // kept in the training part (stage 2 refuses batches without any).
    let paper = workspace().join("experiments/paper/mscm_fashion_mnist_unbalanced.toml");
    let file = dir.path().join("mscm_fashion_mnist_unbalanced.toml");
    std::fs::copy(paper, &file).unwrap();
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .contains("stage1_epochs = 4"));
    let out = memad(
        &[
            "run",
            "mscm_fashion_mnist_unbalanced.toml",
            "--runs",
            "runs",
            "--smoke",
        ],
        dir.path(),
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("per category, 5 epochs:") && t.contains("[3] epoch 5/5"),
        "{t}"
    );
    let smoke = complete_folders(&dir.path().join("runs/mscm_fashion_mnist_unbalanced_smoke"));
    let scores = std::fs::read_to_string(smoke[0].join("scores/3.csv")).unwrap();
    // Two test images of each class: the normal one and the nine others.
    assert_eq!(scores.lines().count() - 1, 20, "{t}");
}
