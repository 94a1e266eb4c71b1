//! Determinism and resumable runs, through the `memad` binary: same config + seed on the CPU
//! gives the same numbers, and a run interrupted after an epoch (the test hook
//! `MEMAD_STOP_AFTER_EPOCH` ends the process right after the epoch's resume state is saved,
//! as a kill would) finishes with exactly the numbers of an uninterrupted run.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn memad(args: &[&str], cwd: &Path, stop_after: Option<&str>) -> Output {
    memad_on_threads(args, cwd, stop_after, 1)
}

/// `memad` with `threads` libtorch threads (`OMP_NUM_THREADS`).
fn memad_on_threads(args: &[&str], cwd: &Path, stop_after: Option<&str>, threads: u32) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memad"));
    cmd.args(args)
        .current_dir(cwd)
        .env("OMP_NUM_THREADS", threads.to_string());
    match stop_after {
        Some(v) => cmd.env("MEMAD_STOP_AFTER_EPOCH", v),
        None => cmd.env_remove("MEMAD_STOP_AFTER_EPOCH"),
    };
    cmd.output().expect("memad runs")
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

/// A catalog of tiny generated MVTec-layout categories (64 px, 6 training images).
fn tiny_catalog(dir: &Path, cats: &str) {
    std::fs::write(
        dir.join("datasets.toml"),
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
}

/// `experiments/<file>` on the tiny dataset: `cats`, 64 px, batch 2 (3 steps an epoch),
/// the cosine schedule, `epochs` epochs.
fn tiny_experiment(file: &str, cats: &str, epochs: usize) -> String {
    let base = std::fs::read_to_string(workspace().join("experiments").join(file)).unwrap();
    let exp = base
        .replace("dataset = \"synthetic-mvtec\"", "dataset = \"tiny\"")
        .replace(
            "categories = [\"carpet\", \"grid\", \"leather\"]",
            &format!("categories = [{cats}]"),
        )
        .replace("image_size = 128", "image_size = 64")
        .replace("batch_size = 8", "batch_size = 2")
        .replace("embed_channels = 256", "embed_channels = 32")
        .replace("items_per_class = 10", "items_per_class = 3")
        .replace(
            "epochs = 10",
            &format!("epochs = {epochs}\nschedule = \"cosine\"\nmin_lr = 0.0001"),
        );
    assert!(exp.contains("dataset = \"tiny\"") && exp.contains("schedule = \"cosine\""));
    exp
}

/// A folder holding the tiny catalog (category carpet) and `tiny.toml`: the quickstart on
/// it for `epochs` epochs.
fn tiny_carpet_folder(epochs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    tiny_catalog(dir.path(), r#""carpet""#);
    let exp = tiny_experiment("quickstart.toml", r#""carpet""#, epochs);
    std::fs::write(dir.path().join("tiny.toml"), exp).unwrap();
    dir
}

fn folders(runs: &Path, name: &str) -> (Vec<PathBuf>, Vec<PathBuf>) {
    let mut all: Vec<PathBuf> = std::fs::read_dir(runs.join(name))
        .map(|d| d.map(|e| e.unwrap().path()).collect())
        .unwrap_or_default();
    all.sort();
    all.into_iter()
        .partition(|p| !p.to_string_lossy().ends_with(".partial"))
}

/// `metrics.csv` without the `run` column (the folder's time stamp).
fn metrics_without_run(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines()
        .map(|l| l.split_once(',').unwrap().1.to_string())
        .collect()
}

fn losses(run: &Path) -> String {
    std::fs::read_to_string(run.join("losses.csv")).unwrap()
}

#[test]
fn same_seed_same_numbers_and_a_resumed_run_equals_an_uninterrupted_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_catalog(d, r#""grid", "carpet""#);
    let exp = tiny_experiment("quickstart.toml", r#""grid", "carpet""#, 2);
    std::fs::write(d.join("tiny.toml"), &exp).unwrap();
    let run = ["run", "tiny.toml", "--runs", "runs"];
    let runs = d.join("runs");

    // Determinism: the same config and seed twice (`--restart` has nothing to skip here).
    for _ in 0..2 {
        let out = memad(&run, d, None);
        assert!(out.status.success(), "{}", text(&out));
    }
    let (complete, partial) = folders(&runs, "quickstart");
    assert_eq!((complete.len(), partial.len()), (2, 0), "{complete:?}");
    let reference = &complete[0];
    let rows = metrics_without_run(reference);
    assert_eq!(rows.len(), 1 + 2 * 4, "header + 4 metrics x 2 categories");
    assert_eq!(
        rows,
        metrics_without_run(&complete[1]),
        "same seed, same metrics"
    );
    assert_eq!(losses(reference), losses(&complete[1]));
    let meta = std::fs::read_to_string(reference.join("run.toml")).unwrap();
    assert!(meta.contains("resumed = false"), "{meta}");
    let rss: u64 = (meta.lines())
        .find_map(|l| l.strip_prefix("peak_rss_bytes = "))
        .expect("peak memory recorded")
        .parse()
        .unwrap();
    assert!(rss > 50 << 20, "{rss}");
    let config = std::fs::read_to_string(reference.join("config.toml")).unwrap();
    assert!(config.contains("schedule = \"cosine\"") && config.contains("min_lr = 0.0001"));

    // Interrupted in the first category after epoch 1: a .partial folder with that epoch's
    // resume state and no metrics yet.
    let out = memad(&run, d, Some("grid:1"));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let (_, partial) = folders(&runs, "quickstart");
    assert_eq!(partial.len(), 1);
    let p = &partial[0];
    assert!(p
        .join("resume/grid/epoch-00001/model.safetensors")
        .is_file());
    assert!(p
        .join("resume/grid/epoch-00001/optimizer.safetensors")
        .is_file());
    assert!(!p.join("metrics.csv").exists());

    // `--restart` leaves it alone and starts a new run.
    let out = memad(
        &["run", "tiny.toml", "--runs", "runs", "--restart"],
        d,
        None,
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("resuming"), "{}", text(&out));
    let (complete, partial_now) = folders(&runs, "quickstart");
    assert_eq!((complete.len(), &partial_now), (3, &partial));
    // That complete run now supersedes `p` (see
    // `an_unfinished_run_older_than_a_complete_one_is_not_resumed`); removed, so that `p` is
    // again the run of its config to resume.
    std::fs::remove_dir_all(&complete[2]).unwrap();

    // Another copy of the data (or another binary) does not resume it: the run would mix
    // the two.
    std::fs::write(
        d.join("other.toml"),
        std::fs::read_to_string(d.join("datasets.toml"))
            .unwrap()
            .replace("data/tiny", "data/tiny_copy"),
    )
    .unwrap();
    let out = memad(
        &[
            "--datasets",
            "other.toml",
            "run",
            "tiny.toml",
            "--runs",
            "runs",
        ],
        d,
        None,
    );
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("was started with the dataset at") && t.contains("--restart"),
        "{t}"
    );
    assert!(p.is_dir());

    // Resumed, then interrupted again in the second category: grid finishes, its rows
    // are written and its resume state deleted.
    let out = memad(&run, d, Some("carpet:1"));
    let t = text(&out);
    assert_eq!(out.status.code(), Some(75), "{t}");
    assert!(
        t.contains(&format!(
            "resuming runs/quickstart/{} at grid epoch 2",
            p.file_name().unwrap().to_string_lossy()
        )),
        "{t}"
    );
    assert!(!p.join("resume/grid").exists());
    assert!(p.join("checkpoints/grid.safetensors").is_file());
    assert!(p.join("resume/carpet/epoch-00001").is_dir());
    assert_eq!(metrics_without_run(p).len(), 1 + 4);

    // Resumed once more: grid is kept, carpet continues at epoch 2; the numbers are the
    // uninterrupted run's, bit for bit.
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("1 of 2 categories done (grid; their rows are kept)"),
        "{t}"
    );
    assert!(t.contains("at carpet epoch 2"), "{t}");
    assert!(
        !t.contains("[grid] epoch"),
        "grid is not trained again: {t}"
    );
    let finished = PathBuf::from(p.to_string_lossy().trim_end_matches(".partial"));
    assert!(finished.is_dir() && !p.exists());
    assert!(!finished.join("resume").exists(), "resume files deleted");
    assert_eq!(metrics_without_run(&finished), rows);
    assert_eq!(losses(&finished), losses(reference));
    let meta = std::fs::read_to_string(finished.join("run.toml")).unwrap();
    assert!(meta.contains("resumed = true"), "{meta}");
    // Training time counts every session: 2 epochs of 6 images each, for both models.
    let timings = std::fs::read_to_string(finished.join("timings.csv")).unwrap();
    for model in ["grid", "carpet"] {
        assert!(
            timings.contains(&format!("{model},{model},train,12,")),
            "{timings}"
        );
    }
    let log = std::fs::read_to_string(finished.join("log.txt")).unwrap();
    assert_eq!(
        log.matches("resuming ").count(),
        4,
        "two resumed sessions, two lines each: {log}"
    );

    // A complete run is never resumed: the same command starts a new one.
    let out = memad(&run, d, None);
    assert!(out.status.success(), "{}", text(&out));
    assert!(!text(&out).contains("resuming"));
}

/// Sets the modification time of the folder `dir` an hour back.
fn an_hour_old(dir: &Path) {
    let hour_ago = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    std::fs::File::open(dir)
        .and_then(|f| f.set_modified(hour_ago))
        .unwrap();
}

/// What a kill leaves in the rare windows between writes (found by killing runs at every
/// file operation): rows written just before a checkpoint or `metrics.csv` are not counted
/// twice when the work is done again, and a run or an evaluation killed while it started
/// leaves no folder that later runs trip over.
#[test]
fn a_kill_between_writes_neither_doubles_rows_nor_leaves_dead_folders() {
    let dir = tiny_carpet_folder(1);
    let d = dir.path();
    let run = ["run", "tiny.toml", "--runs", "runs"];
    let runs = d.join("runs");
    // Stopped after its only epoch; then the rows a session killed after writing them but
    // before saving the checkpoint and the metrics would have left.
    let out = memad(&run, d, Some("carpet:1"));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let (_, partial) = folders(&runs, "quickstart");
    let p = &partial[0];
    std::fs::write(
        p.join("timings.csv"),
        "model,category,stage,images,seconds\ncarpet,carpet,train,6,1.5\n\
         carpet,carpet,scoring,5,0.5\n",
    )
    .unwrap();
    // A run killed as it started, before its config: nothing to resume.
    let dead = runs.join("quickstart/2020-01-01T00-00-00.partial");
    std::fs::create_dir_all(&dead).unwrap();
    std::fs::write(dead.join("log.txt"), "").unwrap();
    std::fs::write(dead.join("session.toml"), "").unwrap();
    an_hour_old(&dead); // a younger one may be a run starting in another process

    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("all 1 epoch(s) of carpet restored; finishing it"),
        "{t}"
    );
    assert!(
        t.contains("2020-01-01T00-00-00.partial: a run killed while it started"),
        "{t}"
    );
    assert!(!t.contains("unfinished run of another config"), "{t}");
    assert!(!dead.exists());
    let (complete, partial) = folders(&runs, "quickstart");
    assert_eq!((complete.len(), partial.len()), (1, 0));
    let timings = std::fs::read_to_string(complete[0].join("timings.csv")).unwrap();
    for stage in [
        "train",
        "scoring",
        "waiting_for_images",
        "outputs",
        "metrics",
    ] {
        let rows = timings.matches(&format!("carpet,carpet,{stage},")).count();
        assert_eq!(rows, 1, "{stage}: {timings}");
    }

    // An evaluation killed outright leaves its `.partial`: the next one removes it.
    let stale = complete[0].join("evals/quickstart/2020-01-01T00-00-00.partial");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("log.txt"), "").unwrap();
    an_hour_old(&stale);
    let folder = complete[0].to_string_lossy().into_owned();
    let out = memad(&["eval", &folder], d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("an evaluation killed before it finished"), "{t}");
    assert!(!stale.exists());
}

/// An image that only fails when decoded (its header and end marker intact) stops the run
/// after training: the error names the category and says the folder is kept for resuming.
#[test]
fn a_failure_after_training_keeps_the_run_and_says_so() {
    let dir = tiny_carpet_folder(1);
    let d = dir.path();
    let run = ["run", "tiny.toml", "--runs", "runs"];
    // Generates the data and stops after the epoch, before scoring.
    let out = memad(&run, d, Some("carpet:1"));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let hole = d.join("data/tiny/carpet/test/hole");
    let image = std::fs::read_dir(&hole)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let mut bytes = std::fs::read(&image).unwrap();
    let idat = bytes.windows(4).position(|w| w == b"IDAT").unwrap();
    for b in &mut bytes[idat + 4..idat + 40] {
        *b ^= 0x5a;
    }
    std::fs::write(&image, bytes).unwrap();
    // Resumed, then a new run: both fail at scoring, and both folders are kept.
    for args in [&run[..], &[&run[..], &["--restart"]].concat()] {
        let out = memad(args, d, None);
        let t = text(&out);
        assert!(!out.status.success(), "{t}");
        assert!(
            t.contains(".partial is kept (the categories it finished, each model's last saved epoch): once the cause below is fixed, the same command resumes it (a changed experiment starts a new run)"),
            "{t}"
        );
        assert!(t.contains("caused by: scoring category `carpet`"), "{t}");
        assert!(t.contains("corrupt or unreadable image"), "{t}");
    }
    let (complete, partial) = folders(&d.join("runs"), "quickstart");
    assert_eq!((complete.len(), partial.len()), (0, 2), "{partial:?}");
}

/// `--restart` leaves the unfinished run it did not resume; once a run of the config is
/// complete, that older one is not resumed by a later plain run (which starts anew).
#[test]
fn an_unfinished_run_older_than_a_complete_one_is_not_resumed() {
    let dir = tiny_carpet_folder(2);
    let d = dir.path();
    let run = ["run", "tiny.toml", "--runs", "runs"];
    let restart = [&run[..], &["--restart"]].concat();
    // The folder each run works in, from its header (`... | run <folder>`), `.partial` added.
    let mut started = Vec::new();
    for args in [&run[..], &restart] {
        let out = memad(args, d, Some("carpet:1"));
        let t = text(&out);
        assert_eq!(out.status.code(), Some(75), "{t}");
        let folder = t.lines().find_map(|l| l.split(" | run ").nth(1)).unwrap();
        started.push(format!("{folder}.partial"));
    }
    let (older, newer) = (&started[0], &started[1]);
    assert_ne!(older, newer);
    // The plain command resumes the newest and finishes it.
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains(&format!("resuming {newer}")), "{t}");
    // Again: the older one is superseded by that complete run; a new run starts.
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains(&format!(
            "note: {older} is an unfinished run of this config older than its complete run"
        )) && !t.contains("resuming"),
        "{t}"
    );
    let (complete, partial) = folders(&d.join("runs"), "quickstart");
    assert_eq!((complete.len(), partial.len()), (2, 1), "{complete:?}");
}

/// A run whose training images changed since it started is not resumed (it would mix two
/// training sets in one model): the refusal names the category and both training sets.
#[test]
fn a_changed_training_set_is_not_resumed() {
    let dir = tiny_carpet_folder(2);
    let d = dir.path();
    let run = ["run", "tiny.toml", "--runs", "runs"];
    let out = memad(&run, d, Some("carpet:1"));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    std::fs::remove_file(d.join("data/tiny/carpet/train/good/000.png")).unwrap();
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains("was started with category carpet's training set of 6 images, sha256 ")
            && t.contains("this session has 5 images, sha256 ")
            && t.contains("`memad run --restart`"),
        "{t}"
    );
    let out = memad(&[&run[..], &["--restart"]].concat(), d, None);
    assert!(out.status.success(), "{}", text(&out));
}

/// The thread count orders libtorch's float sums: a run started on 2 threads and resumed by
/// a session on 1 (a sweep's `--jobs 2` splits the cores) goes on at 2, and so gives the
/// numbers of an uninterrupted run on 2.
#[test]
fn a_resume_takes_the_thread_count_the_run_started_with() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_catalog(d, r#""grid""#);
    std::fs::write(
        d.join("q.toml"),
        tiny_experiment("quickstart.toml", r#""grid""#, 2),
    )
    .unwrap();
    let run = ["run", "q.toml", "--runs", "runs"];
    let out = memad_on_threads(&run, d, None, 2);
    assert!(out.status.success(), "{}", text(&out));
    let out = memad_on_threads(&run, d, Some("grid:1"), 2);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let out = memad_on_threads(&run, d, None, 1);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("at the 2 torch threads it was started with (this session had 1)"),
        "{t}"
    );
    let (complete, partial) = folders(&d.join("runs"), "quickstart");
    assert_eq!((complete.len(), partial.len()), (2, 0));
    assert_eq!(
        metrics_without_run(&complete[0]),
        metrics_without_run(&complete[1])
    );
    assert_eq!(losses(&complete[0]), losses(&complete[1]));
    let meta = std::fs::read_to_string(complete[1].join("run.toml")).unwrap();
    assert!(
        meta.contains("torch_threads = 2") && meta.contains("resumed = true"),
        "{meta}"
    );
}

#[test]
fn a_multi_class_run_resumes_its_single_model() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_catalog(d, r#""grid", "carpet""#);
    let exp = tiny_experiment("mddnet_synthetic.toml", r#""grid", "carpet""#, 2);
    std::fs::write(d.join("mdd.toml"), &exp).unwrap();
    let run = ["run", "mdd.toml", "--runs", "runs"];
    let runs = d.join("runs");

    let out = memad(&run, d, None);
    assert!(out.status.success(), "{}", text(&out));
    let out = memad(&run, d, Some("all:1"));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let (_, partial) = folders(&runs, "mddnet_synthetic");
    assert!(partial[0].join("resume/all/epoch-00001").is_dir());
    // The model's class indices are fixed when it starts: a session that reads the
    // categories in another order (here: a changed file) refuses to go on.
    let classes = partial[0].join("checkpoints/all.classes");
    assert_eq!(std::fs::read_to_string(&classes).unwrap(), "grid\ncarpet\n");
    std::fs::write(&classes, "carpet\ngrid\n").unwrap();
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(!out.status.success(), "{t}");
    assert!(
        t.contains(
            "was started on the categories carpet, grid and the dataset now gives grid, carpet"
        ),
        "{t}"
    );
    std::fs::write(&classes, "grid\ncarpet\n").unwrap();
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("at all epoch 2"), "{t}");

    let (complete, partial) = folders(&runs, "mddnet_synthetic");
    assert_eq!((complete.len(), partial.len()), (2, 0));
    let rows = metrics_without_run(&complete[0]);
    assert!(rows.iter().any(|r| r.contains("carpet,multi_class")));
    assert_eq!(rows, metrics_without_run(&complete[1]));
    assert_eq!(losses(&complete[0]), losses(&complete[1]));
}

#[test]
fn a_sweep_rerun_resumes_its_interrupted_runs() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_catalog(d, r#""grid""#);
    let exp = tiny_experiment("quickstart.toml", r#""grid""#, 2);
    std::fs::write(d.join("tiny.toml"), &exp).unwrap();
    let sweep = ["sweep", "tiny.toml", "--set", "seed=0,1"];

    // Every child stops after epoch 1: the sweep fails, leaving two .partial runs.
    let out = memad(&sweep, d, Some("1"));
    assert!(!out.status.success(), "{}", text(&out));
    let runs = d.join("runs");
    for name in ["quickstart_seed-0", "quickstart_seed-1"] {
        let (complete, partial) = folders(&runs, name);
        assert_eq!((complete.len(), partial.len()), (0, 1), "{name}");
    }
    let out = memad(&sweep, d, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 combinations, 0 already done, 2 to run"),
        "{t}"
    );
    for name in ["quickstart_seed-0", "quickstart_seed-1"] {
        let (complete, partial) = folders(&runs, name);
        assert_eq!((complete.len(), partial.len()), (1, 0), "{name}");
        let log =
            std::fs::read_to_string(runs.join(format!("sweeps/quickstart/{name}.log"))).unwrap();
        assert!(log.contains("at grid epoch 2"), "{name}: {log}");
    }
}

#[test]
fn a_bf16_channels_last_run_resumes_to_the_numbers_of_an_uninterrupted_one() {
    // Channels-last variables and Adam moments are saved in the standard layout and loaded
    // back into channels-last variables; bf16 autocast is as deterministic on the CPU as fp32.
    // `cudnn_benchmark` and `cuda_graphs` (the CUDA-only speed switches) change nothing off
    // CUDA: every batch is scored eagerly.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tiny_catalog(d, r#""grid""#);
    let exp = tiny_experiment("quickstart.toml", r#""grid""#, 2).replace(
        "device = \"auto\"",
        "device = \"auto\"\nprecision = \"bf16\"\nchannels_last = true\ncudnn_benchmark = true\ncuda_graphs = true",
    );
    assert!(exp.contains("precision = \"bf16\""));
    std::fs::write(d.join("tiny.toml"), &exp).unwrap();
    let run = ["run", "tiny.toml", "--runs", "runs"];
    let out = memad(&run, d, None);
    assert!(out.status.success(), "{}", text(&out));
    let (complete, _) = folders(&d.join("runs"), "quickstart");
    let reference = &complete[0];
    let log = std::fs::read_to_string(reference.join("log.txt")).unwrap();
    assert!(!log.contains("replayed from a CUDA graph"), "{log}");
    assert!(
        log.contains("cudnn_benchmark and cuda_graphs = true: CUDA only, no effect on Cpu"),
        "the switches that do nothing here are named: {log}"
    );
    let meta = std::fs::read_to_string(reference.join("run.toml")).unwrap();
    assert!(
        !meta.contains("device_memory"),
        "no device figures on the CPU: {meta}"
    );
    let config = std::fs::read_to_string(reference.join("config.toml")).unwrap();
    assert!(
        [
            "precision = \"bf16\"",
            "channels_last = true",
            "cudnn_benchmark = true",
            "cuda_graphs = true"
        ]
        .iter()
        .all(|key| config.contains(key)),
        "{config}"
    );

    let out = memad(&run, d, Some("grid:1"));
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    let out = memad(&run, d, None);
    let t = text(&out);
    assert!(out.status.success() && t.contains("at grid epoch 2"), "{t}");
    let (complete, partial) = folders(&d.join("runs"), "quickstart");
    assert_eq!((complete.len(), partial.len()), (2, 0), "{complete:?}");
    assert_eq!(
        metrics_without_run(&complete[1]),
        metrics_without_run(reference)
    );
    assert_eq!(losses(&complete[1]), losses(reference));

    // The switch reaches the run: the same experiment in fp32 (channels-last still) takes
    // other losses.
    let fp32 = exp.replace("precision = \"bf16\"\n", "");
    assert!(!fp32.contains("bf16") && fp32.contains("channels_last = true"));
    std::fs::write(d.join("fp32.toml"), fp32).unwrap();
    let out = memad(&["run", "fp32.toml", "--runs", "fp32_runs"], d, None);
    assert!(out.status.success(), "{}", text(&out));
    let (fp32_runs, _) = folders(&d.join("fp32_runs"), "quickstart");
    assert_ne!(
        losses(&fp32_runs[0]),
        losses(reference),
        "bf16 changed nothing"
    );
}
