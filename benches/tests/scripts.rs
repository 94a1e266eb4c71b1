//! The shell scripts of the GPU checks run on a machine lent for a few minutes, with no Rust
//! and no second try: every script must parse, and `tools/gpu_all.sh` must reach its tables
//! (from whatever step rows its parts wrote) even when its budget is spent before any part.
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

#[test]
fn every_script_parses() {
    let root = root();
    let mut scripts = vec![root.join("dev"), root.join(".ci/run")];
    for dir in ["tools", "benches/reference"] {
        for entry in std::fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    assert!(scripts.len() >= 8, "{scripts:?}");
    for script in &scripts {
        let out = Command::new("bash").arg("-n").arg(script).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {err}", script.display());
    }
}

#[test]
fn gpu_all_with_its_budget_spent_still_prints_the_tables() {
    let out = tempfile::tempdir().unwrap();
    let header = "implementation,method,phase,device,batch,size,threads,images_per_s,\
                  ms_per_batch,peak_mem_mib,date,commit";
    let row = |implementation: &str, method: &str, images_per_s: f64| {
        format!("{implementation},{method},train,cuda,16,256,1,{images_per_s},1,1,2026-11-28,x")
    };
    let fp32 = [row("memad", "rd4ad", 10.5), row("pytorch", "rd4ad", 10.0)];
    let fast_label = "rd4ad_bf16_cl_cudnn_benchmark";
    let fast = [
        row("memad", fast_label, 20.0),
        row("pytorch", fast_label, 19.0),
    ];
    for (name, rows) in [("steps_cuda.csv", fp32), ("steps_cuda_fast.csv", fast)] {
        let text = format!("{header}\n{}\n", rows.join("\n"));
        std::fs::write(out.path().join(name), text).unwrap();
    }
    // The GPU machine's python3 has torch: here the project venv's stands in for it.
    let python = memad_backbones::fetch::venv_python().unwrap();
    let path = format!(
        "{}:{}",
        python.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let gpu_all = |parts: &str| {
        Command::new("bash")
            .arg(root().join("tools/gpu_all.sh"))
            .env("OUT", out.path())
            .env("RESULTS", out.path())
            .env("BUDGET", "0")
            .env("PARTS", parts)
            .env("PATH", &path)
            .output()
            .unwrap()
    };
    let only = gpu_all("teachers eval_patchcore");
    let skipped = String::from_utf8_lossy(&only.stdout);
    assert!(
        skipped.contains("=== teachers skipped") && skipped.contains("=== eval_patchcore skipped")
    );
    assert!(
        !skipped.contains("=== proof"),
        "PARTS leaves the other parts out: {skipped}"
    );
    let run = gpu_all("");
    let stdout = String::from_utf8_lossy(&run.stdout);
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stdout}\n{stderr}");
    for part in [
        "proof",
        "steps_fp32",
        "steps_bf16_cl",
        "teachers",
        "eval_rd4ad",
    ] {
        assert!(
            stdout.contains(&format!("=== {part} skipped: the budget of 0s is spent")),
            "{part}: {stdout}"
        );
    }
    // Each CSV's table (memad / reference), then memad's fast rows over the fp32 reference.
    assert!(
        stdout.contains("| rd4ad | train | cuda | 16 x 256 | 10.50 | 10.00 | 1.05 |"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!(
            "| {fast_label} | train | cuda | 16 x 256 | 20.00 | 19.00 | 1.05 |"
        )),
        "{stdout}"
    );
    let ratio = std::fs::read_to_string(out.path().join("bf16_over_fp32_reference.md")).unwrap();
    assert!(
        ratio.contains("| rd4ad | train | 10.0 | 20.0 | 2.00 |"),
        "{ratio}"
    );
}

/// `compare_steps.sh --quick` times both sides and prints their table, each row naming the
/// commit `step_bench --version` gives (a `--version` that exited 2 once ended the script
/// silently before it ran anything, under `set -o pipefail`).
#[test]
fn compare_steps_quick_times_both_sides_under_step_bench_commit() {
    let bin = env!("CARGO_BIN_EXE_step_bench");
    let version = Command::new(bin).arg("--version").output().unwrap();
    assert!(version.status.success(), "{version:?}");
    let commit = String::from_utf8_lossy(&version.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_string();
    let out = tempfile::tempdir().unwrap();
    let csv = out.path().join("steps.csv");
    let python = memad_backbones::fetch::venv_python().unwrap();
    let script = root().join("benches/reference/compare_steps.sh");
    let compare = |methods: &str| {
        Command::new("bash")
            .arg(&script)
            .args(["--quick", "--threads", "1", "--rounds", "1"])
            .args(["--methods", methods, "--out"])
            .arg(&csv)
            .env("MEMAD_BENCH_BIN", bin)
            .env("PYTHON", &python)
            .env("OMP_NUM_THREADS", "1")
            .output()
            .unwrap()
    };
    let typo = compare("rd4ad_quickstartt");
    assert_eq!(typo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&typo.stderr)
        .contains("--methods: no configuration 'rd4ad_quickstartt' (choices: rd4ad mnad"));

    let run = compare("rd4ad_quickstart");
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let rows = std::fs::read_to_string(&csv).unwrap();
    for side in ["memad", "pytorch"] {
        for phase in ["train", "score"] {
            let prefix = format!("{side},rd4ad_quickstart,{phase},cpu,2,64,1,");
            let row = rows.lines().find(|l| l.starts_with(&prefix));
            assert!(
                row.is_some_and(|r| r.ends_with(&format!(",{commit}"))),
                "{prefix} ... ,{commit} in\n{rows}"
            );
        }
    }
    assert!(
        stdout.contains("| rd4ad_quickstart | train | cpu | 2 x 64 |"),
        "{stdout}"
    );
}
