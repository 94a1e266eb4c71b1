//! `memad sweep`: the Cartesian product of overrides on a base experiment, each combination
//! run by `memad run` in its own process.
//!
//! `memad sweep BASE.toml --set train.lr=0.001,0.01 --set seed=0,1,2 [--jobs N]`, or a sweep
//! file: `base = "../quickstart.toml"` and a `[grid]` of dotted paths to arrays
//! (`"method.embed_channels" = [128, 256]`, `seed = [0, 1, 2]`). Each combination is the
//! base with its overrides and the name `<base name>_<key>-<value>...` (the last part of the
//! dotted path, or the whole path where two keys of the sweep end alike), written to
//! `<runs>/sweeps/<base name>/<combination>.toml`. Every combination is parsed and resolved
//! before anything runs, so an unknown key stops the sweep with the key path. A combination
//! is skipped when a complete run of its name has the same resolved-config hash
//! (`config_sha256` in `run.toml`), or a run of another name of the base differs from it only
//! in `name` ([`same_config_runs`]), naming the run's commit when another binary made it
//! (`--rerun-other-commits` runs those anew). Ctrl-C reaches the `memad run` children too:
//! they leave `.partial` folders, which are never complete, so a re-run resumes exactly
//! those (`memad run` continues an unfinished run of the same config from its last saved
//! epoch).
use crate::experiment;
use crate::output::BUILD_COMMIT;
use crate::run_folders::{complete_runs_of, config_sha256, run_commit, run_dataset_root};
use anyhow::{bail, Context};
use memad_core::{parse_section, ConfigError, Registry};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Arguments of `memad sweep`.
#[derive(clap::Args, Debug, Clone)]
pub struct SweepArgs {
    /// An experiment (the base) or a sweep file (`base = "..."` and a `[grid]`).
    pub file: PathBuf,
    /// `KEY=V1,V2,...`: a dotted path of the experiment and its values (TOML values; a bare
    /// word is a string). Repeat for more keys; added to a sweep file's grid.
    #[arg(long = "set", value_name = "KEY=V1,V2")]
    pub set: Vec<String>,
    /// Combinations run at the same time (each a `memad run` process).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
    /// Folder holding the runs.
    #[arg(long, default_value = "runs")]
    pub runs: PathBuf,
    /// Set `train.epochs` in every combination (part of its config and its hash).
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Run every combination as `memad run --smoke` (a part of the data, the fewest epochs the
    /// method takes; runs named `<combination>_smoke`): checks that each combination runs end
    /// to end before the real sweep. Here only (not with `--launcher slurm`).
    #[arg(long, conflicts_with = "epochs")]
    pub smoke: bool,
    /// Run anew the combinations whose complete runs were all made by a binary of another
    /// commit (by default they count as done, and are named): after a fix that changes
    /// results, the same command re-makes them.
    #[arg(long)]
    pub rerun_other_commits: bool,
    /// Folder of converted weights, passed to `memad run`.
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
    /// `local`: run here, `--jobs` at a time; `slurm`: submit one job array (`slurm.rs`).
    #[arg(long, value_enum, default_value_t = Launcher::Local)]
    pub launcher: Launcher,
    #[command(flatten)]
    pub slurm: crate::slurm::SlurmArgs,
}

/// Where the combinations run.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Launcher {
    Local,
    Slurm,
}

/// A sweep file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SweepFile {
    /// The base experiment, relative to the sweep file.
    base: PathBuf,
    /// Dotted paths to arrays of values (nested tables are read as dotted paths).
    #[serde(default)]
    grid: toml::Table,
    /// Resources for `--launcher slurm`.
    #[serde(default)]
    slurm: crate::slurm::SlurmConfig,
}

/// One axis of the grid: a dotted path and its values.
#[derive(Debug, Clone, PartialEq)]
pub struct Axis {
    pub key: String,
    pub values: Vec<toml::Value>,
}

/// One combination: its experiment name and `(dotted path, value)` overrides.
#[derive(Debug, Clone, PartialEq)]
pub struct Combination {
    pub name: String,
    pub overrides: Vec<(String, toml::Value)>,
}

impl Combination {
    /// `base` with this combination's overrides set ([`set_path`]).
    pub fn apply(&self, base: &toml::Table) -> anyhow::Result<toml::Table> {
        let mut exp = base.clone();
        for (key, value) in &self.overrides {
            set_path(&mut exp, key, value.clone())?;
        }
        Ok(exp)
    }

    /// The overrides as `key = value, ...` (empty when there are none).
    pub fn overrides_text(&self) -> String {
        (self.overrides.iter())
            .map(|(k, v)| format!("{k} = {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// `result` with a hint on top when it failed on an unknown key while `overrides` set a
/// table's `kind`: a dotted override keeps the table's other keys, which belong to the kind
/// it had (`--set method.memory.kind=memae` on an MNAD memory leaves `compactness_weight`).
pub fn with_kind_swap_hint<T>(
    result: anyhow::Result<T>,
    overrides: &[(String, toml::Value)],
) -> anyhow::Result<T> {
    let Err(e) = result else {
        return result;
    };
    let message = format!("{e:#}");
    // The swapped table, when the unknown key is one of its own (`method.memory.<key>:`).
    let swap = (overrides.iter())
        .filter_map(|(key, value)| Some((key.strip_suffix(".kind")?, value)))
        .find(|(table, _)| {
            message.contains("unknown field") && message.contains(&format!("{table}."))
        });
    match swap {
        Some((table, kind)) => Err(e.context(format!(
            "`--set {table}.kind={kind}` keeps the other keys of `[{table}]`, which belong to \
             its previous kind; to swap kinds, replace the whole table: \
             --set '{table}={{kind = {kind}, <its keys>}}'"
        ))),
        None => Err(e),
    }
}

/// Parses `KEY=V1,V2,...` (commas inside `[]`, `{}` or quotes do not split).
pub fn parse_set(arg: &str) -> anyhow::Result<Axis> {
    let (key, values) = arg
        .split_once('=')
        .with_context(|| format!("--set `{arg}`: expected KEY=V1,V2,..."))?;
    let key = key.trim();
    anyhow::ensure!(
        !key.is_empty() && key.split('.').all(|p| !p.is_empty()),
        "--set `{arg}`: `{key}` is not a dotted key path"
    );
    let values = split_top_level(values)
        .iter()
        .map(|v| parse_value(v).with_context(|| format!("--set `{arg}`")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok(Axis {
        key: key.to_string(),
        values,
    })
}

fn split_top_level(s: &str) -> Vec<String> {
    let (mut parts, mut current, mut depth, mut quote) = (Vec::new(), String::new(), 0i32, None);
    for c in s.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '[' | '{') => depth += 1,
            (None, ']' | '}') => depth -= 1,
            (None, ',') if depth == 0 => {
                parts.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    parts.push(current);
    parts
}

/// A TOML value, or the text as a string when it is not one (`adam`, `cuda:0`).
fn parse_value(text: &str) -> anyhow::Result<toml::Value> {
    let text = text.trim();
    anyhow::ensure!(!text.is_empty(), "an empty value");
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut t) => Ok(t.remove("v").expect("parsed key")),
        Err(_) => Ok(toml::Value::String(text.to_string())),
    }
}

/// The axes of a sweep file's `[grid]`, nested tables flattened to dotted paths.
fn grid_axes(grid: &toml::Table, prefix: &str, out: &mut Vec<Axis>) -> Result<(), ConfigError> {
    for (k, v) in grid {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(t) => grid_axes(t, &key, out)?,
            toml::Value::Array(values) if !values.is_empty() => out.push(Axis {
                key,
                values: values.clone(),
            }),
            other => {
                return Err(ConfigError::new(
                    format!("grid.{key}"),
                    format!("expected a non-empty array of values, found {}", other),
                ))
            }
        }
    }
    Ok(())
}

/// The Cartesian product of `axes` (the last axis varies fastest), named after `base`. A key
/// given twice is an error: the later value would win under a name that lists both.
pub fn combinations(base: &str, axes: &[Axis]) -> anyhow::Result<Vec<Combination>> {
    for (i, a) in axes.iter().enumerate() {
        anyhow::ensure!(
            !axes[..i].iter().any(|b| b.key == a.key),
            "`{}` is set twice (--set takes each key once)",
            a.key
        );
    }
    let labels: Vec<String> = axes
        .iter()
        .map(|a| {
            let last = a.key.rsplit('.').next().unwrap_or(&a.key);
            let clash = axes
                .iter()
                .filter(|b| b.key.rsplit('.').next() == Some(last))
                .count()
                > 1;
            if clash {
                a.key.clone()
            } else {
                last.to_string()
            }
        })
        .collect();
    let mut out = vec![Combination {
        name: base.to_string(),
        overrides: Vec::new(),
    }];
    for (axis, label) in axes.iter().zip(&labels) {
        let mut next = Vec::new();
        for c in &out {
            for v in &axis.values {
                let mut c = c.clone();
                c.name = format!("{}_{label}-{}", c.name, name_part(v));
                c.overrides.push((axis.key.clone(), v.clone()));
                next.push(c);
            }
        }
        out = next;
    }
    let mut names: Vec<&str> = out.iter().map(|c| c.name.as_str()).collect();
    names.sort_unstable();
    if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
        bail!(
            "two combinations are both named `{}`; make the values differ in letters or digits",
            w[0]
        );
    }
    Ok(out)
}

/// A value as part of a folder name: letters, digits, `.`, `-` and `_`; a run of other
/// characters becomes one `-`. An array is its items and an inline table its `key-value` pairs
/// (keys sorted), joined by `-`: `{train = 640, test_per_type = 20}` is
/// `test_per_type-20-train-640`.
fn name_part(v: &toml::Value) -> String {
    let text = match v {
        toml::Value::String(s) => s.clone(),
        toml::Value::Array(items) => items.iter().map(name_part).collect::<Vec<_>>().join("-"),
        toml::Value::Table(t) => (t.iter())
            .map(|(k, v)| format!("{k}-{}", name_part(v)))
            .collect::<Vec<_>>()
            .join("-"),
        other => other.to_string(),
    };
    let mut name = String::with_capacity(text.len());
    let mut replacing = false;
    for c in text.chars() {
        let kept = c.is_ascii_alphanumeric() || "-_.".contains(c);
        match kept {
            true => name.push(c),
            false if !replacing => name.push('-'),
            false => {}
        }
        replacing = !kept;
    }
    name
}

/// Sets `path` (dotted) in `root`, creating missing tables.
pub fn set_path(root: &mut toml::Table, path: &str, value: toml::Value) -> anyhow::Result<()> {
    let parts: Vec<&str> = path.split('.').collect();
    let mut table = root;
    for (i, part) in parts[..parts.len() - 1].iter().enumerate() {
        let entry = table
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table = match entry {
            toml::Value::Table(t) => t,
            other => bail!(
                "`{path}`: `{}` is not a table (found {})",
                parts[..=i].join("."),
                other.type_str()
            ),
        };
    }
    table.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// An experiment file as a TOML table, to set overrides in; errors name the file.
pub fn read_table(file: &Path) -> anyhow::Result<toml::Table> {
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    toml::from_str(&text).map_err(|e| {
        let what = memad_core::toml_syntax_error(&text, &e);
        anyhow::anyhow!("{}: {what}", file.display())
    })
}

/// A sweep file (`base = "..."` and a `[grid]`): its base experiment, grid and `[slurm]`;
/// `None` for any other TOML file.
fn read_sweep_file(
    file: &Path,
) -> anyhow::Result<Option<(PathBuf, Vec<Axis>, crate::slurm::SlurmConfig)>> {
    let value = toml::Value::Table(read_table(file)?);
    if value.get("base").is_none() {
        return Ok(None);
    }
    let sweep: SweepFile = parse_section(&value, "").map_err(|e| e.in_file(file))?;
    let mut axes = Vec::new();
    grid_axes(&sweep.grid, "", &mut axes).map_err(|e| e.in_file(file))?;
    let base = crate::folder_of(file).join(sweep.base);
    Ok(Some((base, axes, sweep.slurm)))
}

/// The base experiment of `file` (itself, or a sweep file's `base`), its axes (a sweep
/// file's grid, then `extra`, the `--set` ones) and a sweep file's `[slurm]`.
pub fn base_and_axes(
    file: &Path,
    extra: &[Axis],
) -> anyhow::Result<(PathBuf, Vec<Axis>, crate::slurm::SlurmConfig)> {
    let (base, mut axes, slurm) = read_sweep_file(file)?
        .unwrap_or_else(|| (file.to_path_buf(), Vec::new(), Default::default()));
    for axis in extra {
        if axes.iter().any(|a| a.key == axis.key) {
            bail!("`{}` is swept twice", axis.key);
        }
        axes.push(axis.clone());
    }
    Ok((base, axes, slurm))
}

/// The base experiment file and the grid, from an experiment or a sweep file plus `--set`.
fn read_sweep(args: &SweepArgs) -> anyhow::Result<(PathBuf, Vec<Axis>, crate::slurm::SlurmConfig)> {
    let extra = (args.set.iter())
        .map(|s| parse_set(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let (base, axes, slurm) = base_and_axes(&args.file, &extra)?;
    anyhow::ensure!(
        !axes.is_empty(),
        "nothing to sweep: add --set KEY=V1,V2 or a sweep file's [grid]"
    );
    Ok((base, axes, slurm))
}

/// A combination ready to run.
struct Job {
    name: String,
    file: PathBuf,
    /// What this sweep wrote to `file`: another sweep of the same base may rewrite it.
    body: String,
    log: PathBuf,
}

/// The experiment's `name`, else its file's stem: what a sweep's combinations are named after.
fn base_name(base: &toml::Table, base_path: &Path) -> String {
    match base.get("name").and_then(|n| n.as_str()) {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => base_path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default(),
    }
}

/// `memad run BASE.toml --set KEY=VALUE ...`: the text of the base experiment with one value
/// set per key and the name `memad sweep` gives that combination (`<name>_<key>-<value>...`),
/// so that the run is named apart from the base's runs and a sweep over the same values counts
/// it as done; and that combination.
pub fn single_combination_text(
    base_path: &Path,
    sets: &[String],
) -> anyhow::Result<(String, Combination)> {
    let axes = (sets.iter())
        .map(|a| parse_set(a))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for axis in &axes {
        anyhow::ensure!(
            axis.values.len() == 1,
            "--set `{}`: `memad run` takes one value per key, got {}; `memad sweep` runs several",
            axis.key,
            axis.values.len()
        );
    }
    let base = read_table(base_path)?;
    let combo = combinations(&base_name(&base, base_path), &axes)?.remove(0);
    let mut exp = combo.apply(&base)?;
    exp.insert("name".into(), toml::Value::String(combo.name.clone()));
    Ok((toml::to_string(&exp)?, combo))
}

/// Runs `memad sweep`.
pub fn run(
    args: &SweepArgs,
    datasets: &Option<PathBuf>,
    registry: &Registry,
) -> anyhow::Result<()> {
    anyhow::ensure!(args.jobs >= 1, "--jobs must be at least 1");
    anyhow::ensure!(
        args.launcher == Launcher::Slurm || !args.slurm.any_given(),
        "Slurm options (--partition, --time, --wait, ...) need --launcher slurm"
    );
    anyhow::ensure!(
        !(args.smoke && args.launcher == Launcher::Slurm),
        "--smoke runs the combinations here, in minutes: drop --launcher slurm"
    );
    let (base_path, axes, slurm) = read_sweep(args)?;
    let base = read_table(&base_path)?;
    let base_name = base_name(&base, &base_path);
    let catalog_path = match datasets {
        Some(p) => p.clone(),
        None => crate::find_catalog(crate::folder_of(&base_path))
            .or_else(|| crate::find_catalog(Path::new(".")))
            .context("no datasets.toml found above the base experiment or the current folder; pass --datasets")?,
    };
    let catalog = memad_data::catalog::DatasetCatalog::load(&catalog_path)?;

    // Write and resolve every combination before anything runs.
    let folder = args.runs.join("sweeps").join(&base_name);
    std::fs::create_dir_all(&folder).with_context(|| format!("creating {}", folder.display()))?;
    let combos = combinations(&base_name, &axes)?;
    let mut jobs = Vec::new();
    let (mut skipped, mut by_other_commits, mut resuming) = (0, 0, 0);
    for combo in &combos {
        let mut exp = combo.apply(&base)?;
        exp.insert("name".into(), toml::Value::String(combo.name.clone()));
        if let Some(e) = args.epochs {
            set_path(&mut exp, "train.epochs", toml::Value::Integer(e as i64))?;
        }
        let file = folder.join(format!("{}.toml", combo.name));
        let header = format!(
            "# Written by `memad sweep` from {}: {}\n",
            base_path.display(),
            combo.overrides_text()
        );
        let body = header + &toml::to_string(&exp)?;
        crate::output::write_atomic(&file, body.as_bytes())?;
        // As the child `memad run [--smoke]` loads it (its smoke version with --smoke).
        let overrides = experiment::RunOverrides {
            smoke: args.smoke,
            epochs: None,
        };
        let loaded = experiment::load_with(&file, registry, &catalog, overrides);
        let loaded = match with_kind_swap_hint(loaded, &combo.overrides) {
            Ok(loaded) => loaded,
            Err(e) => {
                // A combination that fails leaves no file behind (nor an empty folder).
                let _ = std::fs::remove_file(&file);
                for dir in folder.ancestors().take(2) {
                    let _ = std::fs::remove_dir(dir);
                }
                return Err(e.context(format!("combination `{}`", combo.name)));
            }
        };
        // What the child `memad run` resolves and names its run folder after.
        let experiment = loaded.experiment.clone();
        let hash = crate::run::sha256_hex(experiment.to_toml().as_bytes());
        // The same config on another copy of the data is another result, as `run` refuses to
        // resume one (runs from before `dataset_root` was recorded count as the same copy).
        let root = crate::run::absolute_root(&loaded.dataset.root);
        let (same_config, other_data): (Vec<PathBuf>, Vec<PathBuf>) =
            same_config_runs(&args.runs, &base_name, &experiment)
                .into_iter()
                .partition(|r| run_dataset_root(r).is_none_or(|d| d == root));
        if same_config.is_empty() && !other_data.is_empty() {
            println!(
                "note: {}: its complete run {} read another copy of dataset `{}` (this \
                 catalog's is {root}); running it on this one",
                experiment.name,
                other_data[0].display(),
                loaded.dataset.name
            );
        }
        if !same_config.is_empty() {
            let commits: BTreeSet<String> = (same_config.iter())
                .map(|r| run_commit(r).unwrap_or_else(|| "unknown".into()))
                .collect();
            let by_this = commits.contains(BUILD_COMMIT);
            if by_this || !args.rerun_other_commits {
                let note = match by_this {
                    true => String::new(),
                    false => format!(
                        ", made by commit {} (this binary: {BUILD_COMMIT}; \
                         --rerun-other-commits runs it anew)",
                        commits.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                };
                // Found under another name: the plain run of the base, or a sweep whose keys
                // came in another order.
                let under = match same_config[0].parent().and_then(Path::file_name) {
                    Some(name) if name != experiment.name.as_str() => {
                        format!(": {}", same_config[0].display())
                    }
                    _ => String::new(),
                };
                println!(
                    "[skip ] {} (a complete run has the same config{under}{note})",
                    experiment.name
                );
                skipped += 1;
                by_other_commits += usize::from(!by_this);
                continue;
            }
        }
        resuming += usize::from(
            (crate::run_folders::partial_runs_of(&args.runs, &experiment.name).iter()).any(|r| {
                crate::run_folders::partial_config_sha256(r).as_deref() == Some(hash.as_str())
            }),
        );
        // Generate a synthetic dataset here, once: parallel runs would each generate it.
        crate::run::prepare_dataset(&loaded.dataset)
            .with_context(|| format!("preparing the data of `{}`", combo.name))?;
        jobs.push(Job {
            log: folder.join(format!("{}.log", experiment.name)),
            name: experiment.name,
            file,
            body,
        });
    }
    let pace = match args.launcher {
        Launcher::Local => format!("{} at a time", args.jobs),
        Launcher::Slurm => "as a Slurm job array".to_string(),
    };
    let resume_note = match resuming {
        0 => String::new(),
        n => format!(" ({n} of them resume an unfinished run)"),
    };
    let other_note = match by_other_commits {
        0 => String::new(),
        n => format!(" ({n} by another commit)"),
    };
    println!(
        "sweep {base_name}: {} combinations, {skipped} already done{other_note}, {} to \
         run{resume_note}, {pace}",
        combos.len(),
        jobs.len(),
    );
    if args.launcher == Launcher::Slurm {
        let files: Vec<PathBuf> = jobs.into_iter().map(|j| j.file).collect();
        return crate::slurm::launch(
            &args.slurm,
            &slurm,
            &base_name,
            &folder,
            &files,
            &catalog_path,
            &args.runs,
            args.weights_dir.as_deref(),
        );
    }
    crate::interrupt::on_interrupt(|| {
        "the unfinished runs of the sweep are kept (each says so in its log); the same \
         `memad sweep` command resumes them and skips the finished ones"
            .into()
    });
    let failed = run_queue(args, &catalog_path, jobs, skipped)?;
    if !failed.is_empty() {
        bail!(
            "{} of {} combinations failed: {}",
            failed.len(),
            combos.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

/// The complete runs of `experiment`'s resolved config: under its own name, or under another
/// name of the base's (`<base name>` or `<base name>_...`: the base run plainly, or a sweep
/// whose keys came in another order) when its config differs only in `name`, so that
/// `--set seed=0,1,2` after a plain run of seed 0 does not train it again. Each candidate's
/// `config_sha256` is compared with the hash of `experiment` under the candidate's name.
fn same_config_runs(
    runs: &Path,
    base_name: &str,
    experiment: &experiment::Experiment,
) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(runs) else {
        return Vec::new();
    };
    let mut names: Vec<String> = (entries.filter_map(|e| e.ok()?.file_name().into_string().ok()))
        .filter(|n| n == base_name || n.starts_with(&format!("{base_name}_")))
        .filter(|n| *n != experiment.name)
        .collect();
    names.sort();
    names.insert(0, experiment.name.clone());
    let mut found = Vec::new();
    for name in names {
        let renamed = experiment::Experiment {
            name: name.clone(),
            ..experiment.clone()
        };
        let hash = crate::run::sha256_hex(renamed.to_toml().as_bytes());
        found.extend(
            complete_runs_of(runs, &name)
                .into_iter()
                .filter(|r| config_sha256(r).as_deref() == Some(hash.as_str())),
        );
    }
    found
}

/// Runs the jobs, `args.jobs` at a time; returns the names of those that failed.
fn run_queue(
    args: &SweepArgs,
    catalog: &Path,
    jobs: Vec<Job>,
    skipped: usize,
) -> anyhow::Result<Vec<String>> {
    let exe = std::env::current_exe().context("finding the memad executable")?;
    let threads = (args.jobs > 1 && std::env::var_os("OMP_NUM_THREADS").is_none()).then(|| {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        (cores / args.jobs).max(1)
    });
    let mut queue: std::collections::VecDeque<Job> = jobs.into();
    let mut running: Vec<(Job, Child, Instant)> = Vec::new();
    let (mut done, mut failed) = (skipped, Vec::new());
    while !queue.is_empty() || !running.is_empty() {
        while running.len() < args.jobs {
            let Some(job) = queue.pop_front() else { break };
            // Another sweep of the same base (other values, `--epochs`) may have rewritten
            // the file since: running it would report another config as this one.
            if std::fs::read_to_string(&job.file).ok().as_ref() != Some(&job.body) {
                println!(
                    "[FAIL ] {}: {} changed after this sweep wrote it (another sweep of the \
                     same experiment?); not run. Run this sweep again once the other ends",
                    job.name,
                    job.file.display()
                );
                failed.push(job.name);
                continue;
            }
            // Appended: a log keeps every session of its combination.
            let log = (std::fs::OpenOptions::new().create(true).append(true))
                .open(&job.log)
                .with_context(|| format!("opening {}", job.log.display()))?;
            let mut cmd = Command::new(&exe);
            cmd.arg("--datasets")
                .arg(catalog)
                .arg("run")
                .arg(&job.file)
                .arg("--runs")
                .arg(&args.runs)
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log);
            if let Some(w) = &args.weights_dir {
                cmd.arg("--weights-dir").arg(w);
            }
            if args.smoke {
                cmd.arg("--smoke");
            }
            if let Some(t) = threads {
                cmd.env("OMP_NUM_THREADS", t.to_string());
            }
            end_with_parent(&mut cmd);
            let child = cmd
                .spawn()
                .with_context(|| format!("starting {}", exe.display()))?;
            println!("[start] {} (log: {})", job.name, job.log.display());
            running.push((job, child, Instant::now()));
            status(done, running.len(), queue.len(), failed.len());
        }
        std::thread::sleep(Duration::from_millis(100));
        let mut i = 0;
        while i < running.len() {
            let Some(exit) = running[i].1.try_wait()? else {
                i += 1;
                continue;
            };
            let (job, _, started) = running.swap_remove(i);
            let secs = started.elapsed().as_secs_f64();
            if exit.success() {
                done += 1;
                println!("[done ] {} in {secs:.1} s", job.name);
            } else {
                println!(
                    "[FAIL ] {} ({exit}); last lines of {}:",
                    job.name,
                    job.log.display()
                );
                let text = std::fs::read_to_string(&job.log).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                for line in &lines[lines.len().saturating_sub(5)..] {
                    println!("        {line}");
                }
                failed.push(job.name);
            }
            status(done, running.len(), queue.len(), failed.len());
        }
    }
    Ok(failed)
}

/// Makes the child get SIGTERM when the sweep dies (Linux `PR_SET_PDEATHSIG`), however it
/// dies: a killed sweep leaves no run behind that a new sweep would start a second time.
/// The child's run keeps what it saved and is resumed by the next sweep.
fn end_with_parent(cmd: &mut Command) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: prctl and getppid are async-signal-safe; nothing is allocated.
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The sweep died before the call: end now.
                if libc::getppid() != parent {
                    libc::_exit(143);
                }
                Ok(())
            });
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = cmd;
}

fn status(done: usize, running: usize, queued: usize, failed: usize) {
    println!("        done {done} | running {running} | queued {queued} | failed {failed}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_combination_file_rewritten_by_another_sweep_is_not_run() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            sweep: SweepArgs,
        }
        let dir = tempfile::tempdir().unwrap();
        let args = <Cli as clap::Parser>::parse_from(["memad", "base.toml"]).sweep;
        let file = dir.path().join("x_seed-1.toml");
        std::fs::write(&file, "# another sweep's epochs\n").unwrap();
        let job = Job {
            name: "x_seed-1".into(),
            file,
            body: "# this sweep's\n".into(),
            log: dir.path().join("x_seed-1.log"),
        };
        let failed = run_queue(&args, Path::new("datasets.toml"), vec![job], 0).unwrap();
        assert_eq!(failed, ["x_seed-1"]);
        assert!(!dir.path().join("x_seed-1.log").exists(), "nothing started");
    }

    #[test]
    fn set_values_are_toml_or_words() {
        let a = parse_set("train.lr=0.001,0.01").unwrap();
        assert_eq!(a.key, "train.lr");
        assert_eq!(
            a.values,
            [toml::Value::Float(0.001), toml::Value::Float(0.01)]
        );
        let a = parse_set("train.optimizer=adam,\"sgd\"").unwrap();
        assert_eq!(
            a.values,
            [
                toml::Value::String("adam".into()),
                toml::Value::String("sgd".into())
            ]
        );
        let a = parse_set("method.decoder_blocks=[1, 1, 1],[2,2,2]").unwrap();
        assert_eq!(a.values.len(), 2);
        assert_eq!(a.values[0].as_array().unwrap().len(), 3);
        let e = parse_set("seed").unwrap_err().to_string();
        assert!(e.contains("--set `seed`: expected KEY=V1,V2,..."), "{e}");
        let e = parse_set("train..lr=1").unwrap_err().to_string();
        assert!(
            e.contains("--set `train..lr=1`: `train..lr` is not a dotted key path"),
            "{e}"
        );
        let e = format!("{:#}", parse_set("seed=1,").unwrap_err());
        assert!(e.contains("--set `seed=1,`: an empty value"), "{e}");
    }

    /// The hint is for an unknown key of the table whose kind was set, not of another.
    #[test]
    fn the_kind_swap_hint_names_only_its_own_table() {
        let overrides = [(
            "method.memory.kind".to_string(),
            toml::Value::String("memae".into()),
        )];
        let fail = |key: &str| -> anyhow::Result<()> {
            Err(anyhow::anyhow!("x.toml: {key}: unknown field `k`"))
        };
        let own = with_kind_swap_hint(fail("method.memory.compactness_weight"), &overrides);
        assert!(format!("{:#}", own.unwrap_err()).contains("keeps the other keys"));
        let other = with_kind_swap_hint(fail("train.lrr"), &overrides);
        assert!(!format!("{:#}", other.unwrap_err()).contains("keeps the other keys"));
    }

    #[test]
    fn a_run_with_set_is_the_sweep_combination_of_its_values() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.toml");
        std::fs::write(&base, "name = \"x\"\nseed = 0\n[train]\nlr = 0.1\n").unwrap();
        let sets = ["train.lr=0.01".to_string(), "seed=2".to_string()];
        let (text, _) = single_combination_text(&base, &sets).unwrap();
        let exp: toml::Table = toml::from_str(&text).unwrap();
        assert_eq!(exp["name"].as_str(), Some("x_lr-0.01_seed-2"));
        assert_eq!(exp["seed"].as_integer(), Some(2));
        assert_eq!(exp["train"]["lr"].as_float(), Some(0.01));
        let axes: Vec<Axis> = sets.iter().map(|a| parse_set(a).unwrap()).collect();
        assert_eq!(
            combinations("x", &axes).unwrap()[0].name,
            "x_lr-0.01_seed-2"
        );

        let twice = ["seed=1".to_string(), "seed=2".to_string()];
        let twice = single_combination_text(&base, &twice).unwrap_err();
        assert!(
            twice.to_string().contains("`seed` is set twice"),
            "{twice:#}"
        );
        let two = single_combination_text(&base, &["seed=1,2".to_string()]).unwrap_err();
        assert!(
            format!("{two:#}").contains("one value per key, got 2"),
            "{two:#}"
        );
    }

    #[test]
    fn product_and_names() {
        let axes = [
            parse_set("method.embed_channels=128,256").unwrap(),
            parse_set("seed=0,1,2").unwrap(),
        ];
        let c = combinations("q", &axes).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "q_embed_channels-128_seed-0",
                "q_embed_channels-128_seed-1",
                "q_embed_channels-128_seed-2",
                "q_embed_channels-256_seed-0",
                "q_embed_channels-256_seed-1",
                "q_embed_channels-256_seed-2",
            ]
        );
        assert_eq!(
            c[4].overrides,
            [
                (
                    "method.embed_channels".to_string(),
                    toml::Value::Integer(256)
                ),
                ("seed".to_string(), toml::Value::Integer(1)),
            ]
        );
        // Inline tables, arrays and strings with spaces read as words.
        let odd = [
            parse_set("data.subset={train=640,test_per_type=20}").unwrap(),
            parse_set("method.channels=[-1, -2]").unwrap(),
            parse_set("method.memory.kind=\"a, b\"").unwrap(),
        ];
        let c = combinations("q", &odd).unwrap();
        assert_eq!(
            c[0].name,
            "q_subset-test_per_type-20-train-640_channels--1--2_kind-a-b"
        );
        // Keys ending alike are named by their whole path.
        let axes = [
            parse_set("method.kind=rd4ad").unwrap(),
            parse_set("method.backbone.kind=resnet18").unwrap(),
        ];
        let c = combinations("q", &axes).unwrap();
        assert_eq!(
            c[0].name,
            "q_method.kind-rd4ad_method.backbone.kind-resnet18"
        );
        // Values that differ only in punctuation would share a folder.
        let axes = [parse_set("device=\"a b\",\"a:b\"").unwrap()];
        let e = combinations("q", &axes).unwrap_err().to_string();
        assert!(
            e.contains("two combinations are both named `q_device-a-b`"),
            "{e}"
        );
    }

    /// Keys of the schema that end alike (a run's `channels_last` and `precision`, and those of
    /// `[method.backbone]`) set in one command: each combination gets a name of its own, the
    /// clashing keys named by their whole path, any other key as before by its last part.
    #[test]
    fn keys_ending_alike_in_one_command_name_their_combinations_apart() {
        let axes = [
            parse_set("channels_last=true,false").unwrap(),
            parse_set("method.backbone.channels_last=true,false").unwrap(),
            parse_set("train.lr=0.01").unwrap(),
        ];
        let c = combinations("x", &axes).unwrap();
        let names: Vec<&str> = c.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "x_channels_last-true_method.backbone.channels_last-true_lr-0.01",
                "x_channels_last-true_method.backbone.channels_last-false_lr-0.01",
                "x_channels_last-false_method.backbone.channels_last-true_lr-0.01",
                "x_channels_last-false_method.backbone.channels_last-false_lr-0.01",
            ]
        );
        let axes = [
            parse_set("method.backbone.precision=bf16").unwrap(),
            parse_set("precision=fp32").unwrap(),
            parse_set("seed=2").unwrap(),
        ];
        assert_eq!(
            combinations("x", &axes).unwrap()[0].name,
            "x_method.backbone.precision-bf16_precision-fp32_seed-2"
        );
        // Alone in its command a key keeps its short name: existing run folders stay valid.
        let axes = [parse_set("method.backbone.channels_last=true").unwrap()];
        assert_eq!(
            combinations("x", &axes).unwrap()[0].name,
            "x_channels_last-true"
        );
    }

    /// `memad run --set` with two keys ending alike names its run (the folder
    /// `<runs>/<name>/<stamp>`) as `memad sweep` names that combination, and the name is one
    /// the strict experiment parser takes (both keys exist in the schema).
    #[test]
    fn a_run_with_keys_ending_alike_is_named_as_its_sweep_combination() {
        let quickstart =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../experiments/quickstart.toml");
        let sets = [
            "channels_last=true".to_string(),
            "method.backbone.channels_last=false".to_string(),
        ];
        let (text, combo) = single_combination_text(&quickstart, &sets).unwrap();
        let expected = "quickstart_channels_last-true_method.backbone.channels_last-false";
        assert_eq!(combo.name, expected);
        let axes: Vec<Axis> = sets.iter().map(|a| parse_set(a).unwrap()).collect();
        assert_eq!(combinations("quickstart", &axes).unwrap()[0].name, expected);
        let experiment = experiment::resolve(&text, &quickstart, &crate::registry()).unwrap();
        assert_eq!(experiment.name, expected);
        let resolved: toml::Table = toml::from_str(&experiment.to_toml()).unwrap();
        assert_eq!(resolved["channels_last"].as_bool(), Some(true));
        let backbone = &resolved["method"]["backbone"];
        assert_eq!(backbone["channels_last"].as_bool(), Some(false));
    }

    #[test]
    fn set_path_creates_tables_and_refuses_non_tables() {
        let mut t: toml::Table = toml::from_str("seed = 0\n[train]\nlr = 0.1\n").unwrap();
        set_path(&mut t, "train.lr", toml::Value::Float(0.5)).unwrap();
        set_path(&mut t, "method.memory.slots", toml::Value::Integer(10)).unwrap();
        assert_eq!(t["train"]["lr"].as_float(), Some(0.5));
        assert_eq!(t["method"]["memory"]["slots"].as_integer(), Some(10));
        let err = set_path(&mut t, "seed.x", toml::Value::Integer(1)).unwrap_err();
        assert!(
            err.to_string()
                .contains("`seed` is not a table (found integer)"),
            "{err}"
        );
    }

    #[test]
    fn grid_tables_flatten_to_dotted_paths() {
        let grid: toml::Table = toml::from_str(
            "seed = [0, 1]\n\"train.lr\" = [0.1]\n[method.memory]\nslots = [10, 50]\n",
        )
        .unwrap();
        let mut axes = Vec::new();
        grid_axes(&grid, "", &mut axes).unwrap();
        let keys: Vec<&str> = axes.iter().map(|a| a.key.as_str()).collect();
        assert_eq!(keys, ["method.memory.slots", "seed", "train.lr"]);
        let bad: toml::Table = toml::from_str("seed = 3\n").unwrap();
        let err = grid_axes(&bad, "", &mut Vec::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("grid.seed: expected a non-empty array"),
            "{err}"
        );
    }
}
