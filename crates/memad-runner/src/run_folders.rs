//! Finding run folders: complete runs only, by glob (`memad table`) or by name (`memad sweep`).
//!
//! A run folder is complete when its name does not end in `.partial` and it holds `run.toml`
//! (the last file `memad run` writes before renaming the folder): an interrupted run is
//! never read.
use anyhow::Context;
use std::path::{Path, PathBuf};

/// Whether `dir` is a complete run folder.
pub fn is_complete(dir: &Path) -> bool {
    let partial = dir
        .file_name()
        .is_some_and(|n| n.to_string_lossy().ends_with(".partial"));
    !partial && dir.join("run.toml").is_file()
}

/// The complete run folders matching `pattern` (relative to `base` unless absolute), sorted.
///
/// Each `/`-separated part of the pattern may hold `*` (any characters) and `?` (one
/// character); a part starting with neither matches hidden names only when it starts with
/// `.` itself. Folders that are not complete runs are left out.
pub fn glob_runs(pattern: &str, base: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut runs: Vec<PathBuf> = glob(pattern, base)?
        .into_iter()
        .filter(|p| is_complete(p))
        .collect();
    runs.sort();
    Ok(runs)
}

/// The unfinished run folders (`.partial`) matching `pattern`, as [`glob_runs`] matches.
pub fn glob_unfinished(pattern: &str, base: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut runs: Vec<PathBuf> = glob(pattern, base)?
        .into_iter()
        .filter(|p| p.to_string_lossy().ends_with(".partial") && p.is_dir())
        .collect();
    runs.sort();
    Ok(runs)
}

/// Every path matching `pattern` (see [`glob_runs`]).
fn glob(pattern: &str, base: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let absolute = pattern.starts_with('/');
    let mut current = vec![if absolute {
        PathBuf::from("/")
    } else {
        base.to_path_buf()
    }];
    for part in pattern.split('/').filter(|p| !p.is_empty() && *p != ".") {
        let mut next = Vec::new();
        for dir in &current {
            if !part.contains(['*', '?']) {
                let p = dir.join(part);
                if p.exists() {
                    next.push(p);
                }
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries {
                let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.starts_with('.') && !part.starts_with('.') {
                    continue;
                }
                if wildcard_match(part, &name) {
                    next.push(entry.path());
                }
            }
        }
        current = next;
    }
    Ok(current)
}

/// The order in which run folders were created: their time stamp, then the `-<k>` a second
/// folder of the same second gets (`<stamp>`, `<stamp>-2`, ...), `.partial` left out. Plain
/// name order would put `<stamp>-2.partial` before `<stamp>.partial`.
pub fn creation_order(run: &Path) -> (String, u64) {
    let name = run
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let stem = name.strip_suffix(".partial").unwrap_or(&name);
    // `YYYY-MM-DDTHH-MM-SS` ([`crate::output::timestamp`]), then `-<k>` when taken.
    match stem.get(..19).zip(stem.get(19..)) {
        Some((stamp, rest)) => {
            let k = rest.strip_prefix('-').and_then(|k| k.parse().ok());
            (stamp.to_string(), k.unwrap_or(1))
        }
        None => (stem.to_string(), 1),
    }
}

/// The complete runs of experiment `name` in `runs_dir` (`<runs_dir>/<name>/<stamp>/`), oldest
/// first ([`creation_order`]).
pub fn complete_runs_of(runs_dir: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(runs_dir.join(name)) else {
        return Vec::new();
    };
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| is_complete(p))
        .collect();
    runs.sort_by_cached_key(|r| creation_order(r));
    runs
}

/// The complete runs directly in `folder` (an experiment's folder, `runs/<name>`, given where
/// one run was expected), newest first.
pub fn complete_runs_in(folder: &Path) -> Vec<PathBuf> {
    let mut runs = complete_runs_of(folder, "");
    runs.reverse();
    runs
}

/// The unfinished runs of experiment `name` (`<runs_dir>/<name>/<stamp>.partial/`), newest
/// first.
pub fn partial_runs_of(runs_dir: &Path, name: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(runs_dir.join(name)) else {
        return Vec::new();
    };
    let mut runs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && p.to_string_lossy().ends_with(".partial"))
        .collect();
    runs.sort_by_cached_key(|r| std::cmp::Reverse(creation_order(r)));
    runs
}

/// Removes the `.partial` folder `partial` of a process that was killed (`why` says how it
/// got there, for the note), unless it was modified in the last minute or another process
/// holds it: a younger one may be a run or an evaluation another process is creating, its
/// lock not yet taken.
pub fn remove_abandoned(partial: &Path, why: &str) -> anyhow::Result<()> {
    let age = std::fs::metadata(partial)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if age.is_none_or(|age| age.as_secs() <= 60) {
        return Ok(());
    }
    if let Some(_held) = crate::output::RunDir::reopen(partial)? {
        let _ = std::fs::remove_dir_all(partial);
        eprintln!("note: removed {}: {why}", partial.display());
    }
    Ok(())
}

/// `config_sha256` of a run's `run.toml`, if present.
pub fn config_sha256(run: &Path) -> Option<String> {
    run_toml_text(run, "config_sha256")
}

/// The commit of the binary that finished a complete run (`commit` in its `run.toml`).
pub fn run_commit(run: &Path) -> Option<String> {
    run_toml_text(run, "commit")
}

/// The absolute dataset root a complete run read (`dataset_root` in its `run.toml`; runs
/// from before it was recorded have none).
pub fn run_dataset_root(run: &Path) -> Option<String> {
    run_toml_text(run, "dataset_root")
}

/// A run's `config.toml` with the defaults it leaves out filled in
/// ([`fill_omitted_defaults`]), so that configs compare key by key; `None` without one.
pub fn read_config(run: &Path) -> anyhow::Result<Option<toml::Value>> {
    let path = run.join("config.toml");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let mut config: toml::Value =
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    fill_omitted_defaults(&mut config);
    Ok(Some(config))
}

/// Whether a run's config is a smoke run's (`data.subset`, `memad run --smoke`): it scored a
/// part of each category, so tables and ablation plots leave it out.
pub fn is_smoke_run(config: &toml::Value) -> bool {
    config.get("data").and_then(|d| d.get("subset")).is_some()
}

/// The note on the smoke runs a glob matched and a table or plot left out.
pub fn smoke_runs_note(smoke: &[String]) -> String {
    format!(
        "{} smoke run(s) match (`data.subset`, `memad run --smoke`: a part of each category) \
         and are not read: {}",
        smoke.len(),
        smoke.join(", ")
    )
}

/// Fills in the defaults that `config.toml` is written without (keys added after runs had
/// been made, written only when set so that those runs keep their config hash):
/// `data.mask_resize = "nearest"`, `data.resize_filter = "antialiased_bilinear"`,
/// `data.resize_shape = "square"` where `data.resize` is
/// set; for PatchCore, `method.patch_distance = "euclidean"` and
/// `method.memory.start = "random_item"`; for MSCM and its ablation,
/// `method.sample_contrast_weight = 0`.
pub fn fill_omitted_defaults(config: &mut toml::Value) {
    fill_sgd_momentum(config);
    fn set_default(table: Option<&mut toml::Value>, key: &str, value: toml::Value) {
        if let Some(toml::Value::Table(t)) = table {
            t.entry(key).or_insert(value);
        }
    }
    let text = |s: &str| toml::Value::String(s.into());
    set_default(config.get_mut("data"), "mask_resize", text("nearest"));
    set_default(
        config.get_mut("data"),
        "resize_filter",
        text("antialiased_bilinear"),
    );
    if config
        .get("data")
        .is_some_and(|d| d.get("resize").is_some())
    {
        set_default(config.get_mut("data"), "resize_shape", text("square"));
    }
    let Some(method) = config.get_mut("method") else {
        return;
    };
    match method.get("kind").and_then(toml::Value::as_str) {
        Some("patchcore") => {
            set_default(method.get_mut("memory"), "start", text("random_item"));
            set_default(Some(method), "patch_distance", text("euclidean"));
        }
        Some("mscm" | "contrastive") => {
            set_default(
                Some(method),
                "sample_contrast_weight",
                toml::Value::Float(0.0),
            );
        }
        _ => {}
    }
}

/// An SGD run's `train.momentum` as it trained, where its config has none: runs from before
/// the key read SGD's momentum from `betas[0]` (0.9 without `betas`).
pub fn fill_sgd_momentum(config: &mut toml::Value) {
    let Some(toml::Value::Table(train)) = config.get_mut("train") else {
        return;
    };
    if train.get("optimizer").and_then(toml::Value::as_str) != Some("sgd")
        || train.contains_key("momentum")
    {
        return;
    }
    let beta1 = (train.get("betas").and_then(|b| b.get(0)))
        .and_then(toml::Value::as_float)
        .unwrap_or(0.9);
    train.insert("momentum".into(), toml::Value::Float(beta1));
}

/// The text value of `key` in a run's `run.toml`.
fn run_toml_text(run: &Path, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(run.join("run.toml")).ok()?;
    let value: toml::Value = toml::from_str(&text).ok()?;
    value.get(key)?.as_str().map(str::to_string)
}

/// The SHA-256 of an unfinished run's `config.toml` (its resolved config): what `memad run`
/// compares to resume it.
pub fn partial_config_sha256(partial: &Path) -> Option<String> {
    let bytes = std::fs::read(partial.join("config.toml")).ok()?;
    Some(crate::run::sha256_hex(&bytes))
}

/// `*` and `?` wildcards over a whole name.
fn wildcard_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Greedy match with backtracking to the last `*`.
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < n.len() {
        if i < p.len() && (p[i] == '?' || p[i] == n[j]) {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == '*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    #[test]
    fn run_folders_sort_in_creation_order() {
        let mut folders: Vec<std::path::PathBuf> = [
            "2026-12-07T19-44-38-2.partial",
            "2026-12-07T19-44-38.partial",
            "2026-12-07T19-44-38-10",
            "2026-12-07T19-44-39",
        ]
        .iter()
        .map(|n| std::path::Path::new("runs/x").join(n))
        .collect();
        folders.sort_by_cached_key(|f| super::creation_order(f));
        let names: Vec<_> = (folders.iter()).map(|f| f.file_name().unwrap()).collect();
        assert_eq!(
            names,
            [
                "2026-12-07T19-44-38.partial",
                "2026-12-07T19-44-38-2.partial",
                "2026-12-07T19-44-38-10",
                "2026-12-07T19-44-39"
            ]
        );
    }

    use super::*;

    #[test]
    fn omitted_defaults_are_filled_in_and_set_values_kept() {
        let mut patchcore: toml::Value = toml::from_str(
            "[data]\nimage_size = 64\n[method]\nkind = \"patchcore\"\n[method.memory]\n\
             coreset_ratio = 0.1\nstart = \"approximate\"\n",
        )
        .unwrap();
        fill_omitted_defaults(&mut patchcore);
        assert_eq!(patchcore["data"]["mask_resize"].as_str(), Some("nearest"));
        assert_eq!(
            patchcore["data"]["resize_filter"].as_str(),
            Some("antialiased_bilinear")
        );
        assert!(
            patchcore["data"].get("resize_shape").is_none(),
            "only with resize"
        );
        let mut resized: toml::Value = toml::from_str("[data]\nresize = 256\n").unwrap();
        fill_omitted_defaults(&mut resized);
        assert_eq!(resized["data"]["resize_shape"].as_str(), Some("square"));
        // An SGD run from before `train.momentum` trained with betas[0]; Adam runs get none.
        for (train, want) in [
            ("optimizer = \"sgd\"\nbetas = [0.5, 0.0]", Some(0.5)),
            ("optimizer = \"sgd\"", Some(0.9)),
            ("optimizer = \"sgd\"\nmomentum = 0.0", Some(0.0)),
            ("optimizer = \"adam\"", None),
        ] {
            let mut config: toml::Value = toml::from_str(&format!("[train]\n{train}\n")).unwrap();
            fill_omitted_defaults(&mut config);
            assert_eq!(
                config["train"]
                    .get("momentum")
                    .and_then(toml::Value::as_float),
                want,
                "{train}"
            );
        }
        assert_eq!(
            patchcore["method"]["patch_distance"].as_str(),
            Some("euclidean")
        );
        assert_eq!(
            patchcore["method"]["memory"]["start"].as_str(),
            Some("approximate")
        );
        let mut rd4ad: toml::Value =
            toml::from_str("[data]\nmask_resize = \"bilinear_half\"\n[method]\nkind = \"rd4ad\"\n")
                .unwrap();
        fill_omitted_defaults(&mut rd4ad);
        assert_eq!(rd4ad["data"]["mask_resize"].as_str(), Some("bilinear_half"));
        assert!(rd4ad["method"].get("patch_distance").is_none());
        let mut mscm: toml::Value = toml::from_str("[method]\nkind = \"mscm\"\n").unwrap();
        fill_omitted_defaults(&mut mscm);
        assert_eq!(
            mscm["method"]["sample_contrast_weight"].as_float(),
            Some(0.0)
        );
    }

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*", "anything"));
        assert!(wildcard_match("rd4ad_*", "rd4ad_fashion_mnist"));
        assert!(wildcard_match("*_fashion_mnist", "memae_fashion_mnist"));
        assert!(!wildcard_match(
            "*_fashion_mnist",
            "mscm_fashion_mnist_unbalanced"
        ));
        assert!(wildcard_match("a?c*d", "abcxxd"));
        assert!(!wildcard_match("a?c", "ac"));
        assert!(wildcard_match("*a*b", "xaxab"));
        assert!(!wildcard_match("quickstart", "quickstart2"));
    }

    #[test]
    fn globs_keep_complete_runs_only() {
        let dir = tempfile::tempdir().unwrap();
        let make = |rel: &str, complete: bool| {
            let p = dir.path().join(rel);
            std::fs::create_dir_all(&p).unwrap();
            if complete {
                std::fs::write(p.join("run.toml"), "config_sha256 = \"abc\"\n").unwrap();
            }
        };
        make("runs/a/2026-01-01T00-00-00", true);
        make("runs/a/2026-01-02T00-00-00.partial", true);
        make("runs/a/2026-01-03T00-00-00", false); // no run.toml: not a run
        make("runs/b_x/2026-01-01T00-00-00", true);
        make("runs/sweeps/a", false);
        let rel = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
                .collect()
        };
        assert_eq!(
            rel(glob_runs("runs/*/*", dir.path()).unwrap()),
            ["runs/a/2026-01-01T00-00-00", "runs/b_x/2026-01-01T00-00-00"]
        );
        assert_eq!(
            rel(glob_runs("runs/b_*/*", dir.path()).unwrap()),
            ["runs/b_x/2026-01-01T00-00-00"]
        );
        assert!(glob_runs("runs/c/*", dir.path()).unwrap().is_empty());
        assert_eq!(
            rel(glob_unfinished("runs/*/*", dir.path()).unwrap()),
            ["runs/a/2026-01-02T00-00-00.partial"]
        );
        assert_eq!(
            rel(complete_runs_of(&dir.path().join("runs"), "a")),
            ["runs/a/2026-01-01T00-00-00"]
        );
        assert_eq!(
            rel(partial_runs_of(&dir.path().join("runs"), "a")),
            ["runs/a/2026-01-02T00-00-00.partial"]
        );
        let run = dir.path().join("runs/a/2026-01-01T00-00-00");
        assert_eq!(config_sha256(&run).as_deref(), Some("abc"));
    }
}
