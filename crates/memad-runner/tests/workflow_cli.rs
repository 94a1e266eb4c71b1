//! The research workflow as a user runs it: `memad table` on hand-made run folders (the
//! output format fixed as a snapshot), `memad plot` on a hand-made run, and `memad sweep` over
//! a tiny experiment (run, then skipped, then an interrupted run redone).
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

/// A complete run folder `<root>/runs/<run>` with `run.toml` and a `metrics.csv` of
/// `(category, metric, value)` rows.
fn fake_run(root: &Path, run: &str, method: &str, seed: u64, rows: &[(&str, &str, f64)]) {
    let dir = root.join("runs").join(run);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("run.toml"), "config_sha256 = \"0\"\n").unwrap();
    let run_col = run.trim_end_matches(".partial");
    let mut csv = String::from(
        "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n",
    );
    for (category, metric, value) in rows {
        csv.push_str(&format!(
            "{run_col},abc123,{method},efficientnet_lite0,synthetic-mvtec,{category},one_class,{seed},10,{metric},{value}\n"
        ));
    }
    std::fs::write(dir.join("metrics.csv"), csv).unwrap();
}

/// Two RD4AD seeds (a sweep's `_seed-N` names), PatchCore run twice with seed 0 (the later
/// run counts) and an interrupted PatchCore run (never read).
fn fake_runs(root: &Path) {
    fake_run(
        root,
        "rd4ad_seed-0/2026-01-01T00-00-00",
        "rd4ad",
        0,
        &[
            ("carpet", "image_auroc", 0.95),
            ("grid", "image_auroc", 0.90),
            ("carpet", "pixel_auroc", 0.97),
            ("grid", "pixel_auroc", 0.96),
        ],
    );
    fake_run(
        root,
        "rd4ad_seed-1/2026-01-01T00-10-00",
        "rd4ad",
        1,
        &[
            ("carpet", "image_auroc", 0.97),
            ("grid", "image_auroc", 0.88),
            ("carpet", "pixel_auroc", 0.95),
            ("grid", "pixel_auroc", 0.94),
        ],
    );
    fake_run(
        root,
        "patchcore/2026-01-01T00-00-00",
        "patchcore",
        0,
        &[
            ("carpet", "image_auroc", 0.5),
            ("grid", "image_auroc", 0.5),
            ("carpet", "pixel_auroc", 0.5),
            ("grid", "pixel_auroc", 0.5),
        ],
    );
    fake_run(
        root,
        "patchcore/2026-01-02T00-00-00",
        "patchcore",
        0,
        &[
            ("carpet", "image_auroc", 0.94),
            ("grid", "image_auroc", 0.95),
            ("carpet", "pixel_auroc", 0.99),
            ("grid", "pixel_auroc", 0.98),
        ],
    );
    fake_run(
        root,
        "patchcore/2026-01-03T00-00-00.partial",
        "patchcore",
        0,
        &[("carpet", "image_auroc", 0.0), ("grid", "image_auroc", 0.0)],
    );
}

const CATEGORY_SPEC: &str = r#"
caption = "Image AUROC (%) on synthetic-mvtec"
runs = ["runs/rd4ad_*/*", "runs/patchcore/*"]
rows = "method"
columns = "category"
metric = "image_auroc"
row_order = ["rd4ad"]

[names]
rd4ad = "RD4AD"
patchcore = "PatchCore"
method = "Method"
"#;

const CATEGORY_MARKDOWN: &str = "\
Image AUROC (%) on synthetic-mvtec

| Method | carpet | grid | mean |
|:---|---:|---:|---:|
| RD4AD | **96.0** ± 1.4 | 89.0 ± 1.4 | 92.5 ± 0.0 |
| PatchCore | 94.0 (n=1) | **95.0** (n=1) | **94.5** (n=1) |

(n=k): mean over k seed(s); other cells: mean ± sample std over 2 seeds
";

const CATEGORY_LATEX: &str = r"% Written by `memad table`; needs \usepackage{booktabs}.
\begin{table}[t]
  \centering
  \caption{Image AUROC (\%) on synthetic-mvtec}
  \label{tab:synthetic}
  \begin{tabular}{lrrr}
    \toprule
    Method & carpet & grid & mean \\
    \midrule
    RD4AD & \textbf{96.0} $\pm$ 1.4 & 89.0 $\pm$ 1.4 & 92.5 $\pm$ 0.0 \\
    PatchCore & 94.0 {\footnotesize (n=1)} & \textbf{95.0} {\footnotesize (n=1)} & \textbf{94.5} {\footnotesize (n=1)} \\
    \bottomrule
  \end{tabular}
  \par\smallskip{\footnotesize (n=k): mean over k seed(s); other cells: mean $\pm$ sample std over 2 seeds}
\end{table}
";

#[test]
fn table_snapshot_markdown_csv_latex() {
    let dir = tempfile::tempdir().unwrap();
    fake_runs(dir.path());
    std::fs::write(dir.path().join("synthetic.toml"), CATEGORY_SPEC).unwrap();
    let out = memad(&["table", "synthetic.toml", "--out", "tables"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), CATEGORY_MARKDOWN);
    assert!(
        t.contains(
            "older re-runs of the same config and seed left out: patchcore/2026-01-01T00-00-00"
        ),
        "{t}"
    );
    let tables = dir.path().join("tables");
    assert_eq!(
        std::fs::read_to_string(tables.join("synthetic.md")).unwrap(),
        CATEGORY_MARKDOWN
    );
    assert_eq!(
        std::fs::read_to_string(tables.join("synthetic.tex")).unwrap(),
        CATEGORY_LATEX
    );
    // CSV: one row per cell, values in the metric's units, full precision, and the runs
    // behind the row (the superseded PatchCore run is not among them).
    let csv = std::fs::read_to_string(tables.join("synthetic.csv")).unwrap();
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines[0], "row,column,mean,std,seeds,best,runs");
    assert_eq!(lines.len(), 1 + 6, "{csv}");
    assert!(lines[1].starts_with("RD4AD,carpet,0.96"), "{csv}");
    assert!(
        lines[1].ends_with(",rd4ad_seed-0/2026-01-01T00-00-00;rd4ad_seed-1/2026-01-01T00-10-00"),
        "{csv}"
    );
    assert!(
        lines.contains(&"PatchCore,grid,0.95,,1,true,patchcore/2026-01-02T00-00-00"),
        "{csv}"
    );
    // Nothing but the three files.
    assert_eq!(std::fs::read_dir(&tables).unwrap().count(), 3);
}

#[test]
fn table_by_metric_with_raw_numbers() {
    let dir = tempfile::tempdir().unwrap();
    fake_runs(dir.path());
    let spec = r#"
runs = ["runs/*/*"]
rows = ["method", "setting"]
columns = "metric"
metrics = ["pixel_auroc", "image_auroc"]
format = "raw"
decimals = 3
"#;
    std::fs::write(dir.path().join("by_metric.toml"), spec).unwrap();
    let out = memad(&["table", "by_metric.toml"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    // Each cell: the mean over categories per seed, then mean ± std over seeds.
    // RD4AD pixel: seeds 0.965, 0.945 -> 0.955 ± 0.014; image: 0.925, 0.925.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "\
| method / setting | pixel_auroc | image_auroc |
|:---|---:|---:|
| patchcore/one_class | **0.985** (n=1) | **0.945** (n=1) |
| rd4ad/one_class | 0.955 ± 0.014 | 0.925 ± 0.000 |

(n=k): mean over k seed(s); other cells: mean ± sample std over 2 seeds
"
    );
}

#[test]
fn table_errors_name_the_key_or_the_glob() {
    let dir = tempfile::tempdir().unwrap();
    fake_runs(dir.path());
    let cases = [
        (
            CATEGORY_SPEC.replace("columns = ", "colums = "),
            "bad_key.toml: colums: unknown field `colums`, expected one of",
        ),
        (
            CATEGORY_SPEC.replace("runs/patchcore/*", "runs/patchcroe/*"),
            "runs[1]: `runs/patchcroe/*` matches no complete run folder",
        ),
        (
            CATEGORY_SPEC.replace("\"image_auroc\"", "\"image_aurc\""),
            "metric `image_aurc` is in none of the selected runs; found: image_auroc, pixel_auroc",
        ),
        (
            CATEGORY_SPEC.replace("rows = \"method\"", "rows = \"name\""),
            "",
        ),
    ];
    for (i, (spec, want)) in cases.iter().enumerate() {
        let file = if i == 0 {
            "bad_key.toml".to_string()
        } else {
            format!("spec{i}.toml")
        };
        std::fs::write(dir.path().join(&file), spec).unwrap();
        let out = memad(&["table", &file], dir.path());
        let t = text(&out);
        if want.is_empty() {
            // rows = "name": the sweep's seed suffix is dropped, so both seeds share a row.
            assert!(out.status.success(), "{t}");
            assert!(t.contains("| name | carpet |"), "{t}");
            assert!(t.contains("| RD4AD | **96.0** ± 1.4 |"), "{t}");
        } else {
            assert!(!out.status.success(), "{file} passed:\n{t}");
            assert!(t.contains(want), "{file}: expected `{want}` in:\n{t}");
        }
    }
    // `memad check` validates table specs too.
    let out = memad(&["check", "bad_key.toml"], dir.path());
    assert!(!out.status.success());
    assert!(
        text(&out).contains("colums: unknown field"),
        "{}",
        text(&out)
    );
}

/// A hand-made run: losses of two categories, image scores of one, and a video category.
fn fake_plot_run(dir: &Path) {
    std::fs::create_dir_all(dir.join("scores")).unwrap();
    let mut losses = String::from("category,epoch,term,value\n");
    for category in ["carpet", "grid"] {
        for epoch in 1..=4 {
            let e = epoch as f64;
            losses.push_str(&format!("{category},{epoch},loss,{}\n", 1.0 / e));
            losses.push_str(&format!("{category},{epoch},distill,{}\n", 0.6 / e));
        }
    }
    std::fs::write(dir.join("losses.csv"), losses).unwrap();
    std::fs::write(
        dir.join("scores/grid.csv"),
        "image,video,defect,label,score\n\
         a.png,,good,0,0.1\nb.png,,good,0,0.4\nc.png,,hole,1,0.35\nd.png,,hole,1,0.8\n",
    )
    .unwrap();
    let mut frames = String::from("image,video,defect,label,score,neg_psnr\n");
    for video in ["01", "02", "03"] {
        for f in 0..40 {
            let anomalous = (15..25).contains(&f);
            let score = if anomalous { 2.0 } else { 1.0 } + (f as f64 * 0.7).sin() * 0.2;
            frames.push_str(&format!(
                "{video}/{f:03}.jpg,{video},{},{},{score},{}\n",
                if anomalous { "anomalous" } else { "good" },
                u8::from(anomalous),
                -score
            ));
        }
    }
    std::fs::write(dir.join("scores/ped2.csv"), frames).unwrap();
}

#[test]
fn plot_writes_png_and_svg_with_text() {
    let dir = tempfile::tempdir().unwrap();
    let run = dir.path().join("runs/x/2026-01-01T00-00-00");
    fake_plot_run(&run);
    let out = memad(&["plot", run.to_str().unwrap()], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    let plots = run.join("plots");
    for (stem, size) in [
        ("losses", (960, 340)),
        ("roc", (640, 600)),
        ("frames_ped2", (1120, 500)),
    ] {
        let png = plots.join(format!("{stem}.png"));
        assert!(t.contains(&format!("wrote {}", png.display())), "{t}");
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), size, "{stem}");
        // The title is drawn: dark pixels in the top band, where only text goes.
        let dark = (0..size.0)
            .flat_map(|x| (0..28).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0.iter().all(|&c| c < 100))
            .count();
        assert!(dark > 50, "{stem}: no title text ({dark} dark pixels)");
        let svg = std::fs::read_to_string(plots.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<text"), "{stem}");
    }
    // The legend gives each category's AUROC (grid: 3 of 4 pairs ranked right).
    let roc = std::fs::read_to_string(plots.join("roc.svg")).unwrap();
    assert!(roc.contains("grid (AUROC 0.750)"), "no AUROC legend");
    assert!(roc.contains("ped2 (AUROC 1.000)"), "no AUROC legend");
    let losses = std::fs::read_to_string(plots.join("losses.svg")).unwrap();
    assert!(losses.contains("carpet: training loss") && losses.contains("distill"));
    let frames = std::fs::read_to_string(plots.join("frames_ped2.svg")).unwrap();
    assert!(frames.contains("ped2: frame score per test video"));

    // A folder with nothing to plot is an error.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = memad(&["plot", empty.to_str().unwrap()], dir.path());
    assert!(!out.status.success());
    assert!(text(&out).contains("nothing to plot"), "{}", text(&out));
}

/// A tiny copy of the quickstart (1 category, 64 px, 8 training images), as in
/// `tests/cli.rs::tiny_quickstart_runs_end_to_end`.
fn tiny_experiment(dir: &Path) {
    std::fs::write(
        dir.join("datasets.toml"),
        r#"
[tiny]
format = "mvtec"
root = "data/tiny"
synthetic = { categories = ["grid"], image_size = 64, train_per_category = 8, test_good_per_category = 3, test_per_defect = 1, defects = ["scratch", "hole", "stain", "missing"], seed = 1 }
"#,
    )
    .unwrap();
    let base = std::fs::read_to_string(workspace().join("experiments/quickstart.toml")).unwrap();
    let exp = base
        .replace("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            "categories = [\"grid\"]",
        )
        .replace("image_size = 128", "image_size = 64")
        .replace(
            "metrics = [\"image_auroc\", \"image_ap\", \"pixel_auroc\", \"aupro\"]",
            "metrics = [\"image_auroc\", \"pixel_auroc\"]",
        );
    assert!(exp.contains("dataset = \"tiny\"") && exp.contains("image_size = 64"));
    std::fs::write(dir.join("tiny.toml"), exp).unwrap();
}

/// A sweep finds a combination done under another name when only the name differs: a plain
/// run of the base (seed 0) for `--set seed=0,1`, and the runs of one sweep for another whose
/// extra key only restates the base's value (so its combinations are named otherwise).
#[test]
fn a_sweep_finds_its_configs_done_under_other_names() {
    let dir = tempfile::tempdir().unwrap();
    tiny_experiment(dir.path());
    let runs = dir.path().join("runs");
    let out = memad(&["run", "tiny.toml", "--epochs", "1"], dir.path());
    assert!(out.status.success(), "{}", text(&out));
    let plain = complete_runs(&runs, "quickstart").remove(0);

    let out = memad(
        &["sweep", "tiny.toml", "--set", "seed=0,1", "--epochs", "1"],
        dir.path(),
    );
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "[skip ] quickstart_seed-0 (a complete run has the same config: runs/quickstart/{})",
            plain.file_name().unwrap().to_string_lossy()
        )) && t.contains("2 combinations, 1 already done, 1 to run"),
        "{t}"
    );
    assert!(complete_runs(&runs, "quickstart_seed-0").is_empty());
    assert_eq!(complete_runs(&runs, "quickstart_seed-1").len(), 1);

    // `train.lr` at the base's value: the same two configs, named `quickstart_lr-..._seed-N`.
    let lr = [
        "sweep",
        "tiny.toml",
        "--set",
        "train.lr=0.005",
        "--set",
        "seed=0,1",
        "--epochs",
        "1",
    ];
    let out = memad(&lr, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 combinations, 2 already done, 0 to run")
            && t.contains(
                "[skip ] quickstart_lr-0.005_seed-1 (a complete run has the same config: "
            ),
        "{t}"
    );
}

fn complete_runs(runs: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(runs.join(name)) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".partial"))
        .collect()
}

#[test]
fn sweep_runs_skips_and_redoes_interrupted_runs() {
    let dir = tempfile::tempdir().unwrap();
    tiny_experiment(dir.path());
    let runs = dir.path().join("runs");
    let sweep = ["sweep", "tiny.toml", "--set", "seed=0,1", "--epochs", "1"];

    // An unknown key stops the sweep before anything runs, naming the key.
    let out = memad(
        &[
            "sweep",
            "tiny.toml",
            "--set",
            "train.lrr=0.1,0.2",
            "--epochs",
            "1",
        ],
        dir.path(),
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(t.contains("train.lrr: unknown field `lrr`"), "{t}");
    assert!(!runs.join("quickstart_lrr-0.1").exists(), "a run started");

    let out = memad(&sweep, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 combinations, 0 already done, 2 to run"),
        "{t}"
    );
    assert!(
        t.contains("done 2 | running 0 | queued 0 | failed 0"),
        "{t}"
    );
    for (name, seed) in [("quickstart_seed-0", "0"), ("quickstart_seed-1", "1")] {
        let found = complete_runs(&runs, name);
        assert_eq!(found.len(), 1, "{name}: {found:?}\n{t}");
        let config = std::fs::read_to_string(found[0].join("config.toml")).unwrap();
        assert!(config.contains(&format!("seed = {seed}")), "{config}");
        assert!(config.contains("epochs = 1"), "{config}");
        assert!(config.contains(&format!("name = \"{name}\"")), "{config}");
    }

    // The same sweep again: both configs have a complete run, nothing runs.
    let out = memad(&sweep, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 combinations, 2 already done, 0 to run"),
        "{t}"
    );
    assert!(t.contains("[skip ] quickstart_seed-0") && t.contains("[skip ] quickstart_seed-1"));
    assert_eq!(complete_runs(&runs, "quickstart_seed-0").len(), 1);

    // A run made by another commit counts as done, named; --rerun-other-commits re-makes it.
    let seed0 = complete_runs(&runs, "quickstart_seed-0").remove(0);
    let meta = std::fs::read_to_string(seed0.join("run.toml")).unwrap();
    let commit_line = meta.lines().find(|l| l.starts_with("commit = ")).unwrap();
    let meta = meta.replace(commit_line, "commit = \"0123456789ab\"");
    std::fs::write(seed0.join("run.toml"), meta).unwrap();
    let out = memad(&sweep, dir.path());
    let t = text(&out);
    assert!(
        t.contains("2 already done (1 by another commit), 0 to run"),
        "{t}"
    );
    assert!(
        t.contains("[skip ] quickstart_seed-0 (a complete run has the same config, made by commit 0123456789ab"),
        "{t}"
    );
    let mut rerun = sweep.to_vec();
    rerun.push("--rerun-other-commits");
    let out = memad(&rerun, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("1 already done, 1 to run"), "{t}");
    assert!(t.contains("[start] quickstart_seed-0"), "{t}");
    assert_eq!(complete_runs(&runs, "quickstart_seed-0").len(), 2);

    // An interrupted run (Ctrl-C leaves `.partial`) is ignored and redone.
    let run = complete_runs(&runs, "quickstart_seed-1").remove(0);
    let partial = PathBuf::from(format!("{}.partial", run.display()));
    std::fs::rename(&run, &partial).unwrap();
    let out = memad(&sweep, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 combinations, 1 already done, 1 to run"),
        "{t}"
    );
    assert!(t.contains("[start] quickstart_seed-1"), "{t}");
    assert_eq!(complete_runs(&runs, "quickstart_seed-1").len(), 1);

    // The two seeds as one table row: mean ± std.
    std::fs::write(
        dir.path().join("seeds.toml"),
        "runs = [\"runs/quickstart_seed-*/*\"]\nrows = \"name\"\nmetric = \"image_auroc\"\n",
    )
    .unwrap();
    let out = memad(&["table", "seeds.toml"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("| name | grid |") && t.contains("| quickstart | ") && t.contains(" ± "),
        "{t}"
    );

    // A run of the same config on another copy of the data is not this one's result.
    for run in complete_runs(&runs, "quickstart_seed-1") {
        let meta = std::fs::read_to_string(run.join("run.toml")).unwrap();
        let root_line = meta
            .lines()
            .find(|l| l.starts_with("dataset_root = "))
            .unwrap();
        let meta = meta.replace(root_line, "dataset_root = \"/elsewhere/synthetic\"");
        std::fs::write(run.join("run.toml"), meta).unwrap();
    }
    let out = memad(&sweep, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("read another copy of dataset `tiny`")
            && t.contains("[start] quickstart_seed-1"),
        "{t}"
    );
    assert!(t.contains("[skip ] quickstart_seed-0"), "{t}");

    // `--smoke`: each combination as `memad run --smoke`, in its own run folders, skipped
    // once done; the table of the real runs leaves them out.
    let smoke = ["sweep", "tiny.toml", "--set", "seed=0,1", "--smoke"];
    let out = memad(&smoke, dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("[start] quickstart_seed-1_smoke"), "{t}");
    for name in ["quickstart_seed-0_smoke", "quickstart_seed-1_smoke"] {
        let found = complete_runs(&runs, name);
        assert_eq!(found.len(), 1, "{name}: {t}");
        let config = std::fs::read_to_string(found[0].join("config.toml")).unwrap();
        assert!(config.contains("[data.subset]"), "{config}");
        assert!(runs.join(format!("sweeps/quickstart/{name}.log")).is_file());
    }
    let out = memad(&smoke, dir.path());
    let t = text(&out);
    assert!(
        t.contains("2 combinations, 2 already done, 0 to run"),
        "{t}"
    );
    let out = memad(&["table", "seeds.toml"], dir.path());
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("note: 2 smoke run(s) match"), "{t}");
    let out = memad(&[&smoke[..], &["--epochs", "2"]].concat(), dir.path());
    assert!(!out.status.success(), "{}", text(&out));
}
