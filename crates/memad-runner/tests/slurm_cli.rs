//! `memad sweep --launcher slurm`: the array script and list it writes, its submission through
//! a stand-in `sbatch`, and (ignored by default) a real sweep through a Slurm cluster:
//!
//! ```text
//! sudo tools/slurm_single_node.sh      # a single-node cluster on this machine
//! cargo test -p memad-runner --test slurm_cli -- --ignored --nocapture
//! ```
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn memad(args: &[&str], cwd: &Path, path_prefix: Option<&Path>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_memad"));
    cmd.args(args).current_dir(cwd).env("OMP_NUM_THREADS", "1");
    if let Some(p) = path_prefix {
        let old = std::env::var("PATH").unwrap_or_default();
        cmd.env("PATH", format!("{}:{old}", p.display()));
    }
    cmd.output().expect("memad runs")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A tiny copy of the quickstart (1 category, 64 px, 8 training images) in `dir`.
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
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let base = std::fs::read_to_string(workspace.join("experiments/quickstart.toml")).unwrap();
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

/// The one list file the sweep wrote, and its lines.
fn list_lines(sweep: &Path) -> Vec<String> {
    let lists: Vec<PathBuf> = std::fs::read_dir(sweep)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "list"))
        .collect();
    assert_eq!(lists.len(), 1, "{lists:?}");
    let script = std::fs::read_to_string(sweep.join("array.sbatch")).unwrap();
    assert!(
        script.contains(&format!("list='{}'", lists[0].display())),
        "{script}"
    );
    let text = std::fs::read_to_string(&lists[0]).unwrap();
    text.lines().map(str::to_string).collect()
}

#[test]
fn slurm_script_from_a_sweep_file_and_flags_then_submitted() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    tiny_experiment(&root);
    std::fs::write(
        root.join("seeds.toml"),
        "base = \"tiny.toml\"\n[grid]\nseed = [0, 1, 2]\n\
         [slurm]\npartition = \"long\"\ntime = \"00:20:00\"\nmem = \"2G\"\n",
    )
    .unwrap();

    // Slurm flags without the Slurm launcher are a mistake, not silently ignored.
    let out = memad(
        &["sweep", "seeds.toml", "--partition", "debug"],
        &root,
        None,
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains("need --launcher slurm"),
        "{}",
        text(&out)
    );

    let sweep = [
        "sweep",
        "seeds.toml",
        "--epochs",
        "1",
        "--launcher",
        "slurm",
        "--partition",
        "debug",
        "--cpus-per-task",
        "2",
    ];
    let mut no_submit = sweep.to_vec();
    no_submit.push("--no-submit");
    let out = memad(&no_submit, &root, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("3 combinations, 0 already done, 3 to run, as a Slurm job array"),
        "{t}"
    );
    let folder = root.join("runs/sweeps/quickstart");
    assert!(t.contains(&format!("sbatch {}/array.sbatch", folder.display())));
    let script = std::fs::read_to_string(folder.join("array.sbatch")).unwrap();
    for line in [
        "#SBATCH --job-name=memad-quickstart",
        "#SBATCH --array=0-2",
        "#SBATCH --partition=debug", // the flag over the sweep file's `long`
        "#SBATCH --time=00:20:00",
        "#SBATCH --mem=2G",
        "#SBATCH --cpus-per-task=2",
    ] {
        assert!(
            script.lines().any(|l| l == line),
            "no `{line}` in\n{script}"
        );
    }
    assert!(script.contains(&format!("#SBATCH --chdir={}\n", root.display())));
    assert!(script.contains(&format!("'{}'", env!("CARGO_BIN_EXE_memad"))));
    assert!(script.contains(&format!(
        "--datasets '{}' run \"$file\" --runs '{}'",
        root.join("datasets.toml").display(),
        root.join("runs").display()
    )));
    let lines = list_lines(&folder);
    let expected: Vec<String> = (0..3)
        .map(|s| format!("{}/quickstart_seed-{s}.toml", folder.display()))
        .collect();
    assert_eq!(lines, expected);
    let combo = std::fs::read_to_string(&lines[2]).unwrap();
    assert!(
        combo.contains("seed = 2") && combo.contains("epochs = 1"),
        "{combo}"
    );
    assert!(
        !root.join("runs/quickstart_seed-0").exists(),
        "nothing runs"
    );

    // A stand-in sbatch that records its arguments and prints a job id.
    let bin = root.join("bin");
    std::fs::create_dir(&bin).unwrap();
    let fake = bin.join("sbatch");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"$@\" > '{}'\necho '4242;cluster'\n",
            root.join("sbatch.args").display()
        ),
    )
    .unwrap();
    Command::new("chmod").arg("+x").arg(&fake).status().unwrap();
    let out = memad(&sweep, &root, Some(&bin));
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("submitted job array 4242 (3 tasks)"), "{t}");
    assert!(t.contains("squeue -j 4242"), "{t}");
    let args = std::fs::read_to_string(root.join("sbatch.args")).unwrap();
    assert_eq!(
        args.trim(),
        format!("--parsable {}/array.sbatch", folder.display())
    );

    // A failing sbatch fails the sweep with its message.
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'sbatch: error: invalid partition specified: debug' >&2\nexit 1\n",
    )
    .unwrap();
    let out = memad(&sweep, &root, Some(&bin));
    assert!(!out.status.success());
    assert!(text(&out).contains("invalid partition"), "{}", text(&out));
}

/// Complete run folders of `name` under `runs`.
fn complete_runs(runs: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(runs.join(name)) else {
        return Vec::new();
    };
    entries
        .map(|e| e.unwrap().path())
        .filter(|p| !p.to_string_lossy().ends_with(".partial") && p.join("run.toml").exists())
        .collect()
}

/// A real two-seed sweep through Slurm: `sbatch --wait`, both runs complete in the shared
/// runs folder, a second sweep submits nothing, `memad table` reads the runs.
#[test]
#[ignore = "needs Slurm: sudo tools/slurm_single_node.sh, then --ignored"]
fn real_slurm_sweep_runs_and_tables() {
    // Asked for by name (`--ignored`): no Slurm is a failure, not a pass.
    assert!(
        Command::new("sbatch").arg("--version").output().is_ok(),
        "sbatch is not on PATH: run sudo tools/slurm_single_node.sh first"
    );
    // Slurm runs the tasks as this user: a folder it can write, on this (the only) node.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    tiny_experiment(&root);
    let sweep = [
        "sweep",
        "tiny.toml",
        "--set",
        "seed=0,1",
        "--epochs",
        "1",
        "--launcher",
        "slurm",
        "--time",
        "10",
        "--cpus-per-task",
        "1",
        "--wait",
    ];
    let out = memad(&sweep, &root, None);
    let t = text(&out);
    let folder = root.join("runs/sweeps/quickstart");
    let logs: String = ["quickstart_seed-0.log", "quickstart_seed-1.log"]
        .iter()
        .map(|l| std::fs::read_to_string(folder.join(l)).unwrap_or_default())
        .collect();
    assert!(out.status.success(), "{t}\n{logs}");
    assert!(t.contains("every task ended well"), "{t}");
    let runs = root.join("runs");
    for (name, seed) in [("quickstart_seed-0", 0), ("quickstart_seed-1", 1)] {
        let found = complete_runs(&runs, name);
        assert_eq!(found.len(), 1, "{name}: {found:?}\n{t}\n{logs}");
        let config = std::fs::read_to_string(found[0].join("config.toml")).unwrap();
        assert!(config.contains(&format!("seed = {seed}")), "{config}");
    }
    // Each task's output went to its combination's log.
    let log0 = std::fs::read_to_string(folder.join("quickstart_seed-0.log")).unwrap();
    assert!(log0.contains("metrics.csv"), "{log0}");

    let out = memad(&sweep, &root, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(
        t.contains("2 already done, 0 to run") && t.contains("nothing to submit"),
        "{t}"
    );

    std::fs::write(
        root.join("seeds.toml"),
        "runs = [\"runs/quickstart_seed-*/*\"]\nrows = \"name\"\nmetric = \"image_auroc\"\n",
    )
    .unwrap();
    let out = memad(&["table", "seeds.toml"], &root, None);
    let t = text(&out);
    assert!(out.status.success(), "{t}");
    assert!(t.contains("| quickstart | ") && t.contains(" ± "), "{t}");
}
