//! `memad table SPEC.toml`: the tidy `metrics.csv` rows of complete runs pivoted into a paper
//! table, written as Markdown, CSV (with the runs behind each row) and LaTeX.
//!
//! A spec (`experiments/tables/*.toml`) names the runs (globs, relative to the current
//! folder), the rows (one or more `metrics.csv` columns, or `name`), the columns (`category`
//! with a `mean` column, or `metric`) and the metric. A cell is the mean over seeds, with the
//! sample standard deviation when several seeds exist; the mean column (and every cell of a
//! `metric` table) averages the categories of one seed first. Among re-runs of one experiment
//! and seed the latest run counts. The best value of each column is bold; where cells differ
//! in their number of seeds, those with fewer are marked `(n=k)`. A `[filter]` value, a
//! `row_order` entry or a `categories` entry that matches no run, and a `[names]` key that
//! is no row, category, metric or column name of the table, are errors naming the key and
//! listing what the runs hold; an entry listed twice in `rows`, `metrics`, `categories` or
//! `row_order` is an error too.
use crate::output::write_atomic;
use crate::run_folders::glob_runs;
use anyhow::{bail, Context};
use memad_core::{parse_section, ConfigError};
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The most `decimals` a spec may ask for.
const MAX_DECIMALS: usize = 6;

/// The `metrics.csv` columns a spec may name, and `name`: the experiment name without a
/// sweep's `_seed-N` suffix (so the seeds of one sweep configuration share a row).
const COLUMNS: [&str; 12] = [
    "run", "name", "commit", "method", "memory", "backbone", "dataset", "category", "setting",
    "seed", "epoch", "metric",
];

/// A table spec, parsed strictly.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableSpec {
    /// A line above the Markdown table and `\caption{...}` in LaTeX.
    #[serde(default)]
    pub caption: Option<String>,
    /// Globs over run folders, e.g. `runs/rd4ad_*/*`; each must match a complete run.
    pub runs: Vec<String>,
    /// A column name or a list of them (`["method", "setting"]`); default `method`.
    #[serde(default = "d_rows")]
    pub rows: toml::Value,
    /// `category` (one column per category, then `mean`) or `metric` (one per metric).
    #[serde(default)]
    pub columns: ColumnKind,
    /// The metric shown by a `category` table.
    #[serde(default)]
    pub metric: Option<String>,
    /// The metrics of a `metric` table, in column order (each a mean over categories).
    #[serde(default)]
    pub metrics: Option<Vec<String>>,
    /// A `category` table's `mean` column (shown with two or more categories).
    #[serde(default = "d_true")]
    pub mean: bool,
    /// The categories, in column order; default: all, in order of first appearance.
    #[serde(default)]
    pub categories: Option<Vec<String>>,
    /// Row keys listed first, in this order (a key joins the row columns' values with `/`).
    #[serde(default)]
    pub row_order: Vec<String>,
    /// Keep only rows whose column has this value (or one of these values).
    #[serde(default)]
    pub filter: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub format: NumberFormat,
    /// Decimals shown (at most [`MAX_DECIMALS`]); default 1 for `percent`, 3 for `raw`.
    #[serde(default)]
    pub decimals: Option<usize>,
    /// Which value of a column is bold.
    #[serde(default)]
    pub best: Best,
    /// Display names of row keys, categories, metrics and column names; a key that is none
    /// of the table's is an error.
    #[serde(default)]
    pub names: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    #[default]
    Category,
    Metric,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NumberFormat {
    /// `value * 100` (papers' AUROC in %).
    #[default]
    Percent,
    Raw,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Best {
    #[default]
    Max,
    Min,
    None,
}

fn d_rows() -> toml::Value {
    toml::Value::String("method".into())
}
fn d_true() -> bool {
    true
}

/// A spec with its rows and filters checked.
#[derive(Debug, Clone)]
pub struct Spec {
    pub raw: TableSpec,
    pub row_columns: Vec<String>,
    pub filter: Vec<(String, Vec<String>)>,
}

/// Whether `path` is a table spec (a TOML file with a top-level `runs`), which `memad check`
/// validates as a spec rather than as an experiment.
pub fn is_spec_file(path: &Path) -> bool {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|t| toml::from_str::<toml::Table>(&t).ok())
        .is_some_and(|t| t.contains_key("runs"))
}

/// Reads and checks a spec as `memad check` does: errors name the file and the key. What
/// depends on the runs, read from the current folder, is printed as warnings (the runs may
/// be elsewhere): each glob that matches no complete run, else whatever stops `memad table`
/// from building the table (an unknown metric, a `[filter]` value in no run, ...).
pub fn load_spec(path: &Path) -> anyhow::Result<Spec> {
    let spec = read_spec(path)?;
    for warning in run_problems(&spec, Path::new(".")) {
        eprintln!("warning: {}: {warning}", path.display());
    }
    Ok(spec)
}

/// Reads and checks a spec; errors name the file and the key.
fn read_spec(path: &Path) -> anyhow::Result<Spec> {
    let text =
        std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    parse_spec(&text).map_err(|e| e.in_file(path).into())
}

/// What stops `spec`'s table on the runs under `base`: each glob that matches no complete
/// run; when every glob matches, the error of reading the runs and building the table.
fn run_problems(spec: &Spec, base: &Path) -> Vec<String> {
    let empty: Vec<String> = (spec.raw.runs.iter().enumerate())
        .filter_map(|(i, pattern)| match glob_runs(pattern, base) {
            Ok(found) if found.is_empty() => Some(format!(
                "runs[{i}]: `{pattern}` matches no complete run folder here"
            )),
            Ok(_) => None,
            Err(e) => Some(format!("runs[{i}]: {e:#}")),
        })
        .collect();
    if !empty.is_empty() {
        return empty;
    }
    match read_records(spec, base).and_then(|records| build(spec, &records)) {
        Ok(_) => Vec::new(),
        Err(e) => vec![format!("{e:#}")],
    }
}

/// Parses a spec from TOML text.
pub fn parse_spec(text: &str) -> Result<Spec, ConfigError> {
    let value: toml::Value = toml::from_str(text)
        .map_err(|e| ConfigError::new("", memad_core::toml_syntax_error(text, &e)))?;
    let raw: TableSpec = parse_section(&value, "")?;
    if raw.runs.is_empty() {
        return Err(ConfigError::new("runs", "name at least one glob"));
    }
    let row_columns = strings(&raw.rows, "rows")?;
    if row_columns.is_empty() {
        return Err(ConfigError::new("rows", "name at least one column"));
    }
    // A category listed twice would be a column twice, counted twice in the mean.
    use crate::experiment::no_repeats;
    no_repeats(&row_columns, "rows")?;
    no_repeats(raw.metrics.as_deref().unwrap_or_default(), "metrics")?;
    no_repeats(raw.categories.as_deref().unwrap_or_default(), "categories")?;
    no_repeats(&raw.row_order, "row_order")?;
    for (i, c) in row_columns.iter().enumerate() {
        known_column(c, &format!("rows[{i}]"))?;
        let taken = match raw.columns {
            ColumnKind::Category => c == "category",
            ColumnKind::Metric => c == "metric",
        };
        if taken || c == "metric" {
            return Err(ConfigError::new(
                format!("rows[{i}]"),
                format!("`{c}` is not a row: it is what the columns or `metric` show"),
            ));
        }
    }
    match (raw.columns, &raw.metric, &raw.metrics) {
        (ColumnKind::Category, Some(_), None) => {}
        (ColumnKind::Category, _, _) => {
            return Err(ConfigError::new(
                "metric",
                "a `category` table shows one `metric = \"...\"` (not `metrics`)",
            ))
        }
        (ColumnKind::Metric, None, Some(m)) if !m.is_empty() => {}
        (ColumnKind::Metric, None, Some(_)) => {
            return Err(ConfigError::new(
                "metrics",
                "lists no metric: name at least one column",
            ))
        }
        (ColumnKind::Metric, _, _) => {
            return Err(ConfigError::new(
                "metrics",
                "a `metric` table lists its columns in `metrics = [...]` (not `metric`)",
            ))
        }
    }
    if let Some(d) = raw.decimals.filter(|&d| d > MAX_DECIMALS) {
        return Err(ConfigError::new(
            "decimals",
            format!("{d} decimals; at most {MAX_DECIMALS}"),
        ));
    }
    let mut filter = Vec::new();
    for (column, value) in &raw.filter {
        let key = format!("filter.{column}");
        known_column(column, &key)?;
        filter.push((column.clone(), strings(value, &key)?));
    }
    Ok(Spec {
        raw,
        row_columns,
        filter,
    })
}

fn known_column(c: &str, key: &str) -> Result<(), ConfigError> {
    if COLUMNS.contains(&c) {
        Ok(())
    } else {
        Err(ConfigError::new(
            key,
            format!("unknown column `{c}`; known: {}", COLUMNS.join(", ")),
        ))
    }
}

/// A string, integer or array of them, as strings.
fn strings(value: &toml::Value, key: &str) -> Result<Vec<String>, ConfigError> {
    let one = |v: &toml::Value| match v {
        toml::Value::String(s) => Ok(s.clone()),
        toml::Value::Integer(i) => Ok(i.to_string()),
        other => Err(ConfigError::new(
            key,
            format!(
                "expected a string or a list of strings, found {}",
                other.type_str()
            ),
        )),
    };
    match value {
        toml::Value::Array(items) => items.iter().map(one).collect(),
        v => one(v).map(|s| vec![s]),
    }
}

/// One `metrics.csv` row: every column as text, the value as a number.
#[derive(Debug, Clone)]
pub struct Record {
    pub fields: BTreeMap<String, String>,
    pub value: f64,
}

impl Record {
    fn get(&self, column: &str) -> &str {
        self.fields.get(column).map_or("", String::as_str)
    }
}

/// The rows of the `metrics.csv` of every run the spec's globs match, in run-folder order.
///
/// # Errors
/// A glob matching no complete run (naming the glob); a run without a readable
/// `metrics.csv`; no run with a row (runs without rows are otherwise noted and skipped).
pub fn read_records(spec: &Spec, base: &Path) -> anyhow::Result<Vec<Record>> {
    let mut folders: Vec<PathBuf> = Vec::new();
    for (i, pattern) in spec.raw.runs.iter().enumerate() {
        let found = glob_runs(pattern, base)?;
        if found.is_empty() {
            bail!(
                "runs[{i}]: `{pattern}` matches no complete run folder (relative to {}; \
                 `.partial` folders are never read)",
                base.canonicalize()
                    .unwrap_or_else(|_| base.to_path_buf())
                    .display()
            );
        }
        folders.extend(found);
    }
    folders.sort();
    folders.dedup();
    let mut unfinished = Vec::new();
    for pattern in &spec.raw.runs {
        unfinished.extend(crate::run_folders::glob_unfinished(pattern, base)?);
    }
    unfinished.sort();
    unfinished.dedup();
    if !unfinished.is_empty() {
        let names: Vec<String> = unfinished.iter().map(|p| p.display().to_string()).collect();
        eprintln!(
            "note: {} unfinished run(s) match and are not read: {}",
            names.len(),
            names.join(", ")
        );
    }
    let mut records = Vec::new();
    let (mut smoke, mut no_rows) = (Vec::new(), Vec::new());
    for folder in &folders {
        let config = crate::run_folders::read_config(folder)?;
        if (config.as_ref()).is_some_and(crate::run_folders::is_smoke_run) {
            smoke.push(folder.display().to_string());
            continue;
        }
        let config = config.map_or(String::new(), |c| config_identity(&c));
        let device = training_device(folder).unwrap_or_default();
        let path = folder.join("metrics.csv");
        let rows = read_metrics(&path)?;
        if rows.is_empty() {
            no_rows.push(path.display().to_string());
        }
        for mut r in rows {
            r.fields.insert("_config".into(), config.clone());
            r.fields.insert("_device".into(), device.clone());
            records.push(r);
        }
    }
    if !no_rows.is_empty() {
        let what = format!("no metric rows in {}", no_rows.join(", "));
        anyhow::ensure!(!records.is_empty(), "{what}; no other selected run has any");
        eprintln!("note: {what}");
    }
    if !smoke.is_empty() {
        let what = crate::run_folders::smoke_runs_note(&smoke);
        anyhow::ensure!(!records.is_empty(), "{what}; no other run matches");
        eprintln!("note: {what}");
    }
    Ok(records)
}

/// Where a run was trained (`run.toml`; for a `memad eval` folder, the run it scored), as
/// `cuda`, or `cpu|<instruction set>|<threads>` with `?` for what an older `run.toml` does
/// not record: on the CPU libtorch's thread count orders float sums and the instruction set
/// picks its kernels, so runs trained on others differ slightly ([`devices_differ`]).
/// `None` without a `run.toml`.
fn training_device(folder: &Path) -> Option<String> {
    let trained = match folder.ancestors().nth(2) {
        Some(evals) if evals.file_name().is_some_and(|n| n == "evals") => evals.parent()?,
        _ => folder,
    };
    let text = std::fs::read_to_string(trained.join("run.toml")).ok()?;
    let meta: toml::Table = toml::from_str(&text).ok()?;
    if meta.get("device")?.as_str()? != "Cpu" {
        return Some("cuda".into());
    }
    // `cpu = "AMD EPYC (avx2)"` or `"... (avx2, ATEN_CPU_CAPABILITY=default)"`: the
    // instruction set opens the last parentheses.
    let isa = (meta.get("cpu").and_then(|c| c.as_str()))
        .and_then(|c| c.rsplit_once('(')?.1.strip_suffix(')').map(str::to_string))
        .map(|inside| {
            inside
                .split(',')
                .next()
                .unwrap_or_default()
                .trim()
                .to_string()
        })
        .unwrap_or_else(|| "?".into());
    let threads = (meta.get("torch_threads").and_then(|t| t.as_integer()))
        .map_or("?".into(), |t| t.to_string());
    Some(format!("cpu|{isa}|{threads}"))
}

/// Whether two [`training_device`]s differ in a part both record (an unknown part matches).
fn devices_differ(a: &str, b: &str) -> bool {
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('|').collect(), b.split('|').collect());
    a.len() != b.len()
        || a.iter()
            .zip(&b)
            .any(|(x, y)| x != y && *x != "?" && *y != "?")
}

/// A [`training_device`] for a note: `CUDA`, `CPU avx2, 2 threads`, `CPU (instruction set
/// not recorded), 1 thread`.
fn describe_device(device: &str) -> String {
    let parts: Vec<&str> = device.split('|').collect();
    let ["cpu", isa, threads] = parts.as_slice() else {
        return device.to_uppercase();
    };
    let isa = match *isa {
        "?" => "(instruction set not recorded)".to_string(),
        isa => isa.to_string(),
    };
    let threads = match *threads {
        "?" => "threads not recorded".to_string(),
        "1" => "1 thread".to_string(),
        n => format!("{n} threads"),
    };
    format!("CPU {isa}, {threads}")
}

/// A run's config as `key = value` lines without `name` and `seed`: equal for the seeds of one
/// configuration.
fn config_identity(config: &toml::Value) -> String {
    let mut flat = BTreeMap::new();
    crate::plot::flatten(config, "", &mut flat);
    (flat.iter())
        .filter(|(k, _)| *k != "name" && *k != "seed")
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

/// `config` ([`config_identity`]) as the model of one category sees it: without
/// `data.categories` unless the setting is multi-class (a one-class model does not depend on
/// the other categories of its run), so runs splitting a category list are one config.
fn config_of_a_category(config: &str) -> String {
    if config.lines().any(|l| l == "data.setting = multi_class") {
        return config.to_string();
    }
    (config.lines())
        .filter(|l| !l.starts_with("data.categories = "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The keys whose values differ between configs written by [`config_identity`].
fn differing_keys(configs: &BTreeSet<&str>) -> BTreeSet<String> {
    let parsed: Vec<BTreeMap<&str, &str>> = (configs.iter())
        .map(|c| c.lines().filter_map(|l| l.split_once(" = ")).collect())
        .collect();
    let keys: BTreeSet<&str> = parsed.iter().flat_map(|p| p.keys().copied()).collect();
    (keys.into_iter())
        .filter(|k| parsed.iter().any(|p| p.get(k) != parsed[0].get(k)))
        .map(str::to_string)
        .collect()
}

/// Parses one `metrics.csv`; an empty file has no rows (a run whose metrics were all
/// undefined writes no row, and no header).
///
/// # Errors
/// A missing column; a value that is not a finite number (runs write no row for an
/// undefined metric, never NaN), or one of a memad metric outside [0, 1].
pub fn read_metrics(path: &Path) -> anyhow::Result<Vec<Record>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header: Vec<String> = reader.headers()?.iter().map(str::to_string).collect();
    if header.is_empty() {
        return Ok(Vec::new());
    }
    for needed in ["run", "category", "seed", "metric", "value"] {
        anyhow::ensure!(
            header.iter().any(|h| h == needed),
            "{}: no `{needed}` column",
            path.display()
        );
    }
    let memory = if header.iter().any(|h| h == "memory") {
        None
    } else {
        Some(memory_from_config(&path.with_file_name("config.toml"))?)
    };
    let evaluation = evaluation_of(path);
    let mut out = Vec::new();
    for (line, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("reading {}", path.display()))?;
        let mut fields: BTreeMap<String, String> = header
            .iter()
            .cloned()
            .zip(row.iter().map(str::to_string))
            .collect();
        let value: f64 = fields["value"].parse().with_context(|| {
            format!(
                "{} row {}: value `{}`",
                path.display(),
                line + 2,
                fields["value"]
            )
        })?;
        anyhow::ensure!(
            value.is_finite(),
            "{} row {}: value `{}` of {} is not a finite number (a run writes no row for an \
             undefined metric)",
            path.display(),
            line + 2,
            fields["value"],
            fields["metric"]
        );
        // Every metric a run writes is a rate, an area under a normalised curve or an
        // accuracy: a value outside [0, 1] is a damaged or hand-edited file. The areas are
        // sums of trapezoids: a perfect one may round to 1 + a few ulps.
        anyhow::ensure!(
            !crate::experiment::METRICS.contains(&fields["metric"].as_str())
                || (-1e-9..=1.0 + 1e-9).contains(&value),
            "{} row {}: value `{}` of {} is outside [0, 1], where every memad metric lies",
            path.display(),
            line + 2,
            fields["value"],
            fields["metric"]
        );
        let run = fields["run"].clone();
        let (name, stamp) = run.rsplit_once('/').unwrap_or((run.as_str(), ""));
        fields.insert("name".into(), without_seed_suffix(name));
        if let Some(memory) = &memory {
            fields.insert("memory".into(), memory.clone());
        }
        fields.insert("_experiment".into(), name.to_string());
        // An evaluation (`memad eval`) ranks with the run it scored, after it: re-scoring an
        // older run does not supersede a newer one. Its source is its folder.
        let (order, source) = match &evaluation {
            Some((run_stamp, folder)) => (
                format!(
                    "{} eval {}",
                    sortable_stamp(run_stamp),
                    sortable_stamp(stamp)
                ),
                folder.clone(),
            ),
            None => (sortable_stamp(stamp), run.clone()),
        };
        fields.insert("_stamp".into(), order);
        fields.insert("_source".into(), source);
        out.push(Record { fields, value });
    }
    Ok(out)
}

/// A run folder's name as a string that sorts in creation order
/// ([`crate::run_folders::creation_order`]): `<stamp>-10` after `<stamp>-9`.
fn sortable_stamp(folder_name: &str) -> String {
    let (stamp, k) = crate::run_folders::creation_order(Path::new(folder_name));
    format!("{stamp} {k:020}")
}

/// For the `metrics.csv` of an evaluation (`<experiment>/<run stamp>/evals/<name>/<stamp>/`):
/// the time stamp of the run it scored and its folder from `<experiment>` on.
fn evaluation_of(metrics: &Path) -> Option<(String, String)> {
    let names: Vec<String> = (metrics.parent()?.ancestors().take(5))
        .map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect::<Option<_>>()?;
    let [stamp, name, evals, run_stamp, experiment] = names.as_slice() else {
        return None;
    };
    (evals == "evals").then(|| {
        let folder = format!("{experiment}/{run_stamp}/evals/{name}/{stamp}");
        (run_stamp.clone(), folder)
    })
}

/// The `memory` column of a run whose `metrics.csv` predates it, from the run's resolved
/// `config.toml`, as runs now write it: `none` where `[method] use_memory = false`; else
/// `[method.memory] kind`, or, in a `[method.memory]` without `kind` (written before memories
/// were registered), the method's own memory, which the runner fills in as the default
/// (MNAD: `memad_methods::mnad::DEFAULT_MEMORY`, MemAE: `memad_methods::memae::DEFAULT_MEMORY`);
/// `-` for other methods, without a memory section and without a `config.toml`.
fn memory_from_config(path: &Path) -> anyhow::Result<String> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok("-".into());
    };
    let config: toml::Table =
        toml::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
    let method = |key: &str| config.get("method").and_then(|m| m.get(key));
    if method("use_memory").and_then(toml::Value::as_bool) == Some(false) {
        return Ok("none".into());
    }
    let Some(memory) = method("memory") else {
        return Ok("-".into());
    };
    if let Some(kind) = memory.get("kind").and_then(toml::Value::as_str) {
        return Ok(kind.into());
    }
    let own = match method("kind").and_then(toml::Value::as_str) {
        Some("mnad") => memad_methods::mnad::DEFAULT_MEMORY,
        Some("memae") => memad_methods::memae::DEFAULT_MEMORY,
        _ => "-",
    };
    Ok(own.into())
}

/// `quickstart_lr-0.001_seed-2` -> `quickstart_lr-0.001` (the suffix `memad sweep` writes).
fn without_seed_suffix(name: &str) -> String {
    let mut out = String::new();
    let mut rest = name;
    while let Some(i) = rest.find("_seed-") {
        let after = &rest[i + 6..];
        let digits = after.chars().take_while(char::is_ascii_digit).count();
        let ends = after[digits..].is_empty() || after[digits..].starts_with('_');
        out.push_str(&rest[..i]);
        if digits > 0 && ends {
            rest = &after[digits..];
        } else {
            out.push_str("_seed-");
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// One cell: statistics over seeds, in the metric's own units (not scaled).
#[derive(Debug, Clone, PartialEq)]
pub struct Cell {
    pub mean: f64,
    /// Sample standard deviation (n - 1), when two or more seeds exist.
    pub std: Option<f64>,
    pub seeds: usize,
    pub best: bool,
}

/// A pivoted table, ready to render.
#[derive(Debug, Clone)]
pub struct Table {
    pub caption: Option<String>,
    /// The header of the row-label column.
    pub row_header: String,
    /// Column labels.
    pub columns: Vec<String>,
    /// `(row label, one cell per column)`.
    pub rows: Vec<(String, Vec<Option<Cell>>)>,
    /// Per row, the runs its values come from (`experiment/time stamp`, sorted).
    pub row_runs: Vec<Vec<String>>,
    pub format: NumberFormat,
    pub decimals: usize,
    /// What a reader of the table must know (configs mixed in a row, runs of another config
    /// left out, cells without a value): printed on stderr, below the Markdown table and as
    /// LaTeX comments.
    pub notes: Vec<String>,
    /// Older re-runs of one config and seed left out (`experiment/time stamp`, or an
    /// evaluation's folder): printed on stderr only.
    pub superseded: Vec<String>,
}

/// Where one value came from: the run (`experiment/time stamp`, or an evaluation's folder)
/// and its config without name and seed ([`config_identity`]).
struct Source {
    value: f64,
    run: String,
    config: String,
    /// [`training_device`], empty when unknown.
    device: String,
    /// The run's `_stamp` (what orders re-runs).
    stamp: String,
}

/// Pivots `records` as the spec says.
///
/// # Errors
/// A `[filter]` value in no record, or a filter that leaves no record; the metric(s) not in
/// the records kept; a `categories` or `row_order` entry that is no category or row of the
/// table; a `[names]` key that is no row, category, metric or column name
/// ([`check_names`]); two experiments giving the same row and seed; one run giving two
/// values of one category, seed and metric.
pub fn build(spec: &Spec, records: &[Record]) -> anyhow::Result<Table> {
    let raw = &spec.raw;
    check_filter_values(spec, records)?;
    let kept: Vec<&Record> = records
        .iter()
        .filter(|r| {
            spec.filter
                .iter()
                .all(|(c, allowed)| allowed.iter().any(|a| a == r.get(c)))
        })
        .collect();
    if kept.is_empty() {
        let runs: BTreeSet<&str> = records.iter().map(|r| r.get("run")).collect();
        let wanted: Vec<String> = (spec.filter.iter())
            .map(|(c, allowed)| format!("{c} = {}", allowed.join(" or ")))
            .collect();
        bail!(
            "`[filter]` removed every row: none of the {} selected run(s) has {} together",
            runs.len(),
            wanted.join(", ")
        );
    }
    let wanted: Vec<String> = match raw.columns {
        ColumnKind::Category => raw.metric.iter().cloned().collect(),
        ColumnKind::Metric => raw.metrics.clone().unwrap_or_default(),
    };
    let present: BTreeSet<&str> = kept.iter().map(|r| r.get("metric")).collect();
    for m in &wanted {
        if !present.contains(m.as_str()) {
            let found: Vec<&str> = present.iter().copied().collect();
            bail!(
                "metric `{m}` is in none of the selected runs; found: {}",
                found.join(", ")
            );
        }
    }

    // Among re-runs of one experiment and seed only the latest run counts, as a whole: a newer
    // run without some category or metric must not leave an older run's values in its row.
    let relevant: Vec<&Record> = (kept.iter().copied())
        .filter(|r| wanted.iter().any(|m| m == r.get("metric")))
        .collect();
    let mut latest: BTreeMap<(&str, &str), &str> = BTreeMap::new();
    for r in &relevant {
        let slot = (latest.entry((r.get("_experiment"), r.get("seed")))).or_insert("");
        *slot = (*slot).max(r.get("_stamp"));
    }
    let latest_config: BTreeMap<(&str, &str), &str> = (relevant.iter())
        .filter(|r| latest[&(r.get("_experiment"), r.get("seed"))] == r.get("_stamp"))
        .map(|r| ((r.get("_experiment"), r.get("seed")), r.get("_config")))
        .collect();
    // Runs replaced by a newer run of another config (`memad run --epochs 1` after the full
    // run), with the keys that differ: a note in the table's files.
    let mut replaced: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    // (row, seed, category, metric) -> the value of the latest run of one experiment.
    let mut values: BTreeMap<(String, String, String, String), Source> = BTreeMap::new();
    let mut row_keys: Vec<String> = Vec::new();
    let mut categories: Vec<String> = Vec::new();
    let mut superseded = BTreeSet::new();
    for r in relevant {
        let experiment_seed = (r.get("_experiment"), r.get("seed"));
        if latest[&experiment_seed] != r.get("_stamp") {
            let (older, newer) = (r.get("_config"), latest_config[&experiment_seed]);
            // A run without `config.toml` has no config to compare: a plain re-run.
            if older == newer || older.is_empty() || newer.is_empty() {
                superseded.insert(r.get("_source").to_string());
            } else {
                let keys = (replaced.entry(r.get("_source").to_string())).or_default();
                keys.extend(differing_keys(&BTreeSet::from([older, newer])));
            }
            continue;
        }
        let row: Vec<&str> = spec.row_columns.iter().map(|c| r.get(c)).collect();
        let row = row.join("/");
        if !row_keys.contains(&row) {
            row_keys.push(row.clone());
        }
        let category = r.get("category").to_string();
        if !categories.contains(&category) {
            categories.push(category.clone());
        }
        let key = (
            row.clone(),
            r.get("seed").to_string(),
            category,
            r.get("metric").to_string(),
        );
        let source = Source {
            value: r.value,
            run: r.get("_source").to_string(),
            config: r.get("_config").to_string(),
            device: r.get("_device").to_string(),
            stamp: r.get("_stamp").to_string(),
        };
        match values.get(&key) {
            None => {
                values.insert(key, source);
            }
            // One run giving a value twice: a repeated row is harmless, two values are not.
            Some(old) if old.run == source.run => anyhow::ensure!(
                old.value == source.value,
                "run {}: metrics.csv gives {} of `{}` (seed {}) twice, as {} and {}",
                source.run,
                key.3,
                key.2,
                key.1,
                old.value,
                source.value
            ),
            // Two experiments of one config (a plain run and its sweep's `_seed-0`): re-runs.
            Some(old) if old.config == source.config && !old.config.is_empty() => {
                let (older, newer) = match old.stamp < source.stamp {
                    true => (old.run.clone(), source),
                    false => (source.run, values.remove(&key).expect("present")),
                };
                superseded.insert(older);
                values.insert(key, newer);
            }
            Some(old) => {
                let apart = match spec.row_columns.iter().any(|c| c == "name") {
                    true => {
                        "narrow `runs` or `filter` (their names share a row once `_seed-N` \
                             is stripped)"
                    }
                    false => {
                        "tell them apart with `rows` (e.g. rows = \"name\"), or narrow \
                              `runs` or `filter`"
                    }
                };
                bail!(
                    "row `{row}` seed {}: runs {} and {} of different configs both give {} of \
                     `{}`; {apart}",
                    key.1,
                    old.run,
                    source.run,
                    key.3,
                    key.2
                )
            }
        }
    }
    let superseded: BTreeSet<String> = (superseded.into_iter())
        .filter(|s| !values.values().any(|v| &v.run == s))
        .collect();
    // Every category of the selected runs, before `categories` picks and orders them.
    let all_categories = categories.clone();
    if let Some(order) = &raw.categories {
        let metric = wanted.join(", ");
        for (i, c) in order.iter().enumerate() {
            if !categories.contains(c) {
                bail!(
                    "categories[{i}]: `{c}` has no {metric} in the selected runs; their \
                     categories: {}{}",
                    listing(&categories),
                    memad_data::did_you_mean(c, &categories)
                );
            }
        }
        categories = order.clone();
    }
    // A row shows one configuration: runs whose configs differ beyond the seed (across its
    // seeds, or across the categories shown) are named with the keys.
    let mut configs_by_row: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let shown = values.iter().filter(|(k, _)| categories.contains(&k.2));
    for ((row, _, _, _), source) in shown {
        (configs_by_row.entry(row).or_default()).insert(config_of_a_category(&source.config));
    }
    let mut mixed: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (row, configs) in configs_by_row.iter().filter(|(_, c)| c.len() > 1) {
        let configs: BTreeSet<&str> = configs.iter().map(String::as_str).collect();
        (mixed.entry(row.to_string()).or_default()).extend(differing_keys(&configs));
    }
    // Likewise runs trained on other devices, CPU thread counts or instruction sets.
    let mut devices_by_row: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let shown = values.iter().filter(|(k, _)| categories.contains(&k.2));
    for ((row, _, _, _), source) in shown.filter(|(_, s)| !s.device.is_empty()) {
        (devices_by_row.entry(row).or_default()).insert(&source.device);
    }
    devices_by_row.retain(|_, d| d.iter().any(|a| d.iter().any(|b| devices_differ(a, b))));
    for (i, key) in raw.row_order.iter().enumerate() {
        if !row_keys.contains(key) {
            bail!(
                "row_order[{i}]: `{key}` is no row of the table; its rows: {}{}",
                listing(&row_keys),
                memad_data::did_you_mean(key, &row_keys)
            );
        }
    }
    check_names(&raw.names, &row_keys, &all_categories, &wanted)?;
    let mut ordered: Vec<String> = raw.row_order.clone();
    ordered.extend(
        row_keys
            .iter()
            .filter(|k| !raw.row_order.contains(k))
            .cloned(),
    );

    // Each column: a label and, per (row, seed), the value it shows.
    let value = |row: &str, seed: &str, category: &str, metric: &str| {
        let key = (row.into(), seed.into(), category.into(), metric.into());
        values.get(&key).map(|s| s.value)
    };
    let mean_over = |row: &str, seed: &str, metric: &str| -> Option<f64> {
        let v: Option<Vec<f64>> = categories
            .iter()
            .map(|c| value(row, seed, c, metric))
            .collect();
        v.filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
    };
    type PerSeed<'a> = Box<dyn Fn(&str, &str) -> Option<f64> + 'a>;
    let mut columns: Vec<(String, PerSeed)> = Vec::new();
    match raw.columns {
        ColumnKind::Category => {
            let metric = wanted[0].clone();
            for c in &categories {
                let (c2, m) = (c.clone(), metric.clone());
                columns.push((
                    c.clone(),
                    Box::new(move |row, seed| value(row, seed, &c2, &m)),
                ));
            }
            if raw.mean && categories.len() > 1 {
                columns.push((
                    "mean".into(),
                    Box::new(move |row, seed| mean_over(row, seed, &metric)),
                ));
            }
        }
        ColumnKind::Metric => {
            for m in &wanted {
                let m2 = m.clone();
                columns.push((
                    m.clone(),
                    Box::new(move |row, seed| mean_over(row, seed, &m2)),
                ));
            }
        }
    }

    let seeds_of = |row: &str| -> BTreeSet<String> {
        values
            .keys()
            .filter(|k| k.0 == row)
            .map(|k| k.1.clone())
            .collect()
    };
    let runs_of = |row: &str| -> Vec<String> {
        let runs: BTreeSet<String> = (values.iter())
            .filter(|(k, _)| k.0 == row)
            .map(|(_, s)| s.run.clone())
            .collect();
        runs.into_iter().collect()
    };
    let mut notes = Vec::new();
    for (run, keys) in &replaced {
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        notes.push(format!(
            "{run} left out: a newer run of its experiment and seed has another config, in {}",
            keys.join(", ")
        ));
    }
    for (row, keys) in &mixed {
        let hint = if keys.contains("train.epochs") {
            "; `memad run --epochs` keeps the experiment's name"
        } else if !spec.row_columns.iter().any(|c| c == "name") {
            "; `rows = \"name\"` keeps configs apart"
        } else {
            ""
        };
        let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
        notes.push(format!(
            "row `{}` combines runs whose configs differ beyond the seed, in {} (the CSV's \
             runs column lists them{hint})",
            display(&raw.names, row),
            keys.join(", ")
        ));
    }
    for (row, devices) in &devices_by_row {
        let hint = match devices.iter().all(|d| d.starts_with("cpu")) {
            true => {
                "on the CPU the thread count and instruction set change the numbers slightly; \
                 a sweep's `--jobs N` trains each run on cores / N threads, `OMP_NUM_THREADS` \
                 sets one count for all"
            }
            false => "CUDA and the CPU give slightly different numbers",
        };
        let devices: Vec<String> = devices.iter().map(|d| describe_device(d)).collect();
        notes.push(format!(
            "row `{}` combines runs trained on {} (the CSV's runs column lists them): {hint}",
            display(&raw.names, row),
            devices.join(" and ")
        ));
    }
    let mut row_runs = Vec::new();
    let mut rows: Vec<(String, Vec<Option<Cell>>)> = Vec::new();
    let mut empty_rows = Vec::new();
    for row in &ordered {
        let seeds = seeds_of(row);
        let cells: Vec<Option<Cell>> = columns
            .iter()
            .map(|(_, per_seed)| {
                let v: Vec<f64> = seeds.iter().filter_map(|s| per_seed(row, s)).collect();
                stats(&v)
            })
            .collect();
        let label = display(&raw.names, row);
        if !values
            .keys()
            .any(|k| &k.0 == row && categories.contains(&k.2))
        {
            empty_rows.push(label);
            continue;
        }
        let missing: Vec<&str> = (categories.iter())
            .filter(|c| !values.keys().any(|k| &k.0 == row && &k.2 == *c))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() && categories.len() > 1 {
            let means = match raw.columns {
                ColumnKind::Category if raw.mean => ", so its mean is left out",
                ColumnKind::Category => "",
                ColumnKind::Metric => ", so its means over categories are left out",
            };
            notes.push(format!(
                "row `{label}`: no selected run has {}{means}",
                missing.join(", ")
            ));
        }
        row_runs.push(runs_of(row));
        rows.push((label, cells));
    }
    if !empty_rows.is_empty() {
        notes.push(format!(
            "rows without a value in the categories shown left out: {}",
            empty_rows.join(", ")
        ));
    }
    let decimals = raw.decimals.unwrap_or(match raw.format {
        NumberFormat::Percent => 1,
        NumberFormat::Raw => 3,
    });
    let mut table = Table {
        caption: raw.caption.clone(),
        row_header: spec
            .row_columns
            .iter()
            .map(|c| display(&raw.names, c))
            .collect::<Vec<_>>()
            .join(" / "),
        columns: columns
            .iter()
            .map(|(c, _)| display(&raw.names, c))
            .collect(),
        rows,
        row_runs,
        format: raw.format,
        decimals,
        notes,
        superseded: superseded.into_iter().collect(),
    };
    mark_best(&mut table, raw.best);
    Ok(table)
}

/// Each `[filter]` value must be a value of its column in `records` (the selected runs).
fn check_filter_values(spec: &Spec, records: &[Record]) -> anyhow::Result<()> {
    for (column, allowed) in &spec.filter {
        let present: BTreeSet<&str> = records.iter().map(|r| r.get(column)).collect();
        let present: Vec<String> = present.into_iter().map(str::to_string).collect();
        for value in allowed {
            if !present.contains(value) {
                bail!(
                    "filter.{column}: `{value}` is in none of the selected runs; their \
                     `{column}` values: {}{}",
                    listing(&present),
                    memad_data::did_you_mean(value, &present)
                );
            }
        }
    }
    Ok(())
}

/// Each `[names]` key must be a row key of the table (`rows`), a category of the selected
/// runs, a metric of the table, or a column name (a `metrics.csv` column or `mean`): a key
/// that is none of them names nothing, a typo most likely.
fn check_names(
    names: &BTreeMap<String, String>,
    rows: &[String],
    categories: &[String],
    metrics: &[String],
) -> anyhow::Result<()> {
    let columns = COLUMNS.iter().chain(&["mean"]).map(|c| c.to_string());
    let known: Vec<String> = (rows.iter().chain(categories).chain(metrics).cloned())
        .chain(columns)
        .collect();
    if let Some(key) = names.keys().find(|k| !known.contains(k)) {
        bail!(
            "names.{key}: `{key}` is no row, category, metric or column name of the table; its \
             rows: {}; its categories: {}; its metrics: {}{}",
            listing(rows),
            listing(categories),
            listing(metrics),
            memad_data::did_you_mean(key, &known)
        );
    }
    Ok(())
}

/// `values` joined by `, `; past 20, the first 20 and how many there are.
fn listing(values: &[String]) -> String {
    const SHOWN: usize = 20;
    if values.len() <= SHOWN {
        return values.join(", ");
    }
    format!(
        "{}, ... ({} in all)",
        values[..SHOWN].join(", "),
        values.len()
    )
}

fn display(names: &BTreeMap<String, String>, key: &str) -> String {
    names.get(key).cloned().unwrap_or_else(|| key.to_string())
}

/// Mean and sample standard deviation; `None` for no values.
fn stats(v: &[f64]) -> Option<Cell> {
    if v.is_empty() {
        return None;
    }
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.len() > 1)
        .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
    Some(Cell {
        mean,
        std,
        seeds: v.len(),
        best: false,
    })
}

/// Marks the best shown mean of each column (ties all bold); only where two or more rows
/// have a value.
fn mark_best(table: &mut Table, best: Best) {
    if best == Best::None {
        return;
    }
    // The mean as shown (rounded to the table's decimals), read back as a number.
    let rounded = |table: &Table, c: &Cell| -> f64 {
        shown(table, c)
            .0
            .parse()
            .expect("a formatted number parses")
    };
    for col in 0..table.columns.len() {
        let present: Vec<f64> = table
            .rows
            .iter()
            .filter_map(|(_, cells)| cells[col].as_ref().map(|c| rounded(table, c)))
            .collect();
        if present.len() < 2 {
            continue;
        }
        let target = match best {
            Best::Max => present.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            _ => present.iter().copied().fold(f64::INFINITY, f64::min),
        };
        let marks: Vec<Option<bool>> = (table.rows.iter())
            .map(|(_, cells)| cells[col].as_ref().map(|c| rounded(table, c) == target))
            .collect();
        for ((_, cells), mark) in table.rows.iter_mut().zip(marks) {
            if let (Some(cell), Some(mark)) = (cells[col].as_mut(), mark) {
                cell.best = mark;
            }
        }
    }
}

fn scale(format: NumberFormat) -> f64 {
    match format {
        NumberFormat::Percent => 100.0,
        NumberFormat::Raw => 1.0,
    }
}

/// `(mean, Some(std))` as shown, e.g. `("97.7", Some("0.3"))`.
fn shown(table: &Table, cell: &Cell) -> (String, Option<String>) {
    let (s, d) = (scale(table.format), table.decimals);
    (
        format!("{:.d$}", cell.mean * s),
        cell.std.map(|x| format!("{:.d$}", x * s)),
    )
}

/// The most seeds behind any cell of the table (0 for no cell).
fn most_seeds(table: &Table) -> usize {
    (table.rows.iter())
        .flat_map(|(_, cells)| cells.iter().flatten())
        .map(|c| c.seeds)
        .max()
        .unwrap_or(0)
}

/// A cell's number of seeds where it is below `most` (the table mixes seed counts), to mark
/// it `(n=k)`; `None` otherwise.
fn fewer_seeds(cell: &Cell, most: usize) -> Option<usize> {
    (cell.seeds < most).then_some(cell.seeds)
}

/// The note under a table that marks cells with fewer seeds: what `(n=k)` and `±` mean.
fn seeds_note(most: usize) -> String {
    format!("(n=k): mean over k seed(s); other cells: mean ± sample std over {most} seeds")
}

/// The Markdown table (with the caption line above it, if any, and the note on seeds below
/// it where cells differ in their number of seeds).
pub fn markdown(table: &Table) -> String {
    let esc = |s: &str| s.replace('|', "\\|");
    let most = most_seeds(table);
    let mut marked = false;
    let mut out = String::new();
    if let Some(c) = &table.caption {
        out.push_str(&format!("{c}\n\n"));
    }
    let mut header = vec![esc(&table.row_header)];
    header.extend(table.columns.iter().map(|c| esc(c)));
    out.push_str(&format!("| {} |\n", header.join(" | ")));
    let mut rule = vec![":---".to_string()];
    rule.extend(table.columns.iter().map(|_| "---:".to_string()));
    out.push_str(&format!("|{}|\n", rule.join("|")));
    for (label, cells) in &table.rows {
        let mut line = vec![esc(label)];
        for cell in cells {
            line.push(match cell {
                None => "-".into(),
                Some(cell) => {
                    let (mean, std) = shown(table, cell);
                    let mut text = if cell.best {
                        format!("**{mean}**")
                    } else {
                        mean
                    };
                    if let Some(s) = std {
                        text.push_str(&format!(" ± {s}"));
                    }
                    if let Some(n) = fewer_seeds(cell, most) {
                        text.push_str(&format!(" (n={n})"));
                        marked = true;
                    }
                    text
                }
            });
        }
        out.push_str(&format!("| {} |\n", line.join(" | ")));
    }
    if marked {
        out.push_str(&format!("\n{}\n", seeds_note(most)));
    }
    for note in &table.notes {
        out.push_str(&format!("\nNote: {note}\n"));
    }
    out
}

/// A LaTeX `table` with a booktabs `tabular`, `\label{tab:<name>}` (characters other than
/// letters, digits, `_`, `.`, `:` and `-` of `name` become `-`) and, where cells differ in
/// their number of seeds, the note on seeds below the tabular.
pub fn latex(table: &Table, name: &str) -> String {
    let most = most_seeds(table);
    let mut marked = false;
    let label: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "_.:-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .collect();
    let mut out = String::new();
    out.push_str("% Written by `memad table`; needs \\usepackage{booktabs}.\n");
    for note in &table.notes {
        out.push_str(&format!("% Note: {note}\n"));
    }
    out.push_str("\\begin{table}[t]\n  \\centering\n");
    if let Some(c) = &table.caption {
        out.push_str(&format!("  \\caption{{{}}}\n", latex_escape(c)));
    }
    out.push_str(&format!("  \\label{{tab:{label}}}\n"));
    out.push_str(&format!(
        "  \\begin{{tabular}}{{l{}}}\n    \\toprule\n",
        "r".repeat(table.columns.len())
    ));
    let mut header = vec![latex_escape(&table.row_header)];
    header.extend(table.columns.iter().map(|c| latex_escape(c)));
    out.push_str(&format!("    {} \\\\\n    \\midrule\n", header.join(" & ")));
    for (label, cells) in &table.rows {
        let mut line = vec![latex_escape(label)];
        for cell in cells {
            line.push(match cell {
                None => "--".into(),
                Some(cell) => {
                    let (mean, std) = shown(table, cell);
                    let mut text = if cell.best {
                        format!("\\textbf{{{mean}}}")
                    } else {
                        mean
                    };
                    if let Some(s) = std {
                        text.push_str(&format!(" $\\pm$ {s}"));
                    }
                    if let Some(n) = fewer_seeds(cell, most) {
                        text.push_str(&format!(" {{\\footnotesize (n={n})}}"));
                        marked = true;
                    }
                    text
                }
            });
        }
        out.push_str(&format!("    {} \\\\\n", line.join(" & ")));
    }
    out.push_str("    \\bottomrule\n  \\end{tabular}\n");
    if marked {
        out.push_str(&format!(
            "  \\par\\smallskip{{\\footnotesize {}}}\n",
            latex_escape(&seeds_note(most))
        ));
    }
    out.push_str("\\end{table}\n");
    out
}

fn latex_escape(s: &str) -> String {
    let mut out = String::new();
    let s = s.replace("<=", "≤").replace(">=", "≥");
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\textbackslash{}"),
            '&' | '%' | '$' | '#' | '_' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            '~' => out.push_str("\\textasciitilde{}"),
            '^' => out.push_str("\\textasciicircum{}"),
            '±' => out.push_str("$\\pm$"),
            '≤' => out.push_str("$\\le$"),
            '≥' => out.push_str("$\\ge$"),
            '<' => out.push_str("\\textless{}"),
            '>' => out.push_str("\\textgreater{}"),
            c => out.push(c),
        }
    }
    out
}

/// Long-form CSV: `row, column, mean, std, seeds, best, runs`, values in the metric's own
/// units (not scaled), full precision; `std` is empty for one seed, missing cells are left
/// out; `runs` lists the runs behind the cell's row (`experiment/time stamp`, `;`-separated).
pub fn csv_long(table: &Table) -> anyhow::Result<Vec<u8>> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(["row", "column", "mean", "std", "seeds", "best", "runs"])?;
    for ((label, cells), runs) in table.rows.iter().zip(&table.row_runs) {
        for (column, cell) in table.columns.iter().zip(cells) {
            if let Some(c) = cell {
                w.write_record([
                    label.clone(),
                    column.clone(),
                    c.mean.to_string(),
                    c.std.map(|s| s.to_string()).unwrap_or_default(),
                    c.seeds.to_string(),
                    c.best.to_string(),
                    runs.join(";"),
                ])?;
            }
        }
    }
    Ok(w.into_inner()?)
}

/// `memad table`: reads the runs, prints the Markdown and, with `out`, writes
/// `<out>/<spec stem>.{md,csv,tex}` (atomically).
pub fn run(spec_path: &Path, out: Option<&Path>) -> anyhow::Result<()> {
    let spec = read_spec(spec_path)?;
    let stem = spec_path
        .file_stem()
        .map_or("table".into(), |s| s.to_string_lossy().into_owned());
    if let Some(dir) = out {
        check_out_folder(dir, &stem)?;
    }
    let table = table_in(spec_path, &spec, Path::new("."))?;
    if !table.superseded.is_empty() {
        eprintln!(
            "note: older re-runs of the same config and seed left out: {}",
            table.superseded.join(", ")
        );
    }
    for note in &table.notes {
        eprintln!("note: {note}");
    }
    let md = markdown(&table);
    print!("{md}");
    if let Some(dir) = out {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (ext, bytes) in [
            ("md", md.into_bytes()),
            ("csv", csv_long(&table)?),
            ("tex", latex(&table, &stem).into_bytes()),
        ] {
            let path = dir.join(format!("{stem}.{ext}"));
            write_atomic(&path, &bytes)?;
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(())
}

/// The table of `spec` (read from `spec_path`) on the runs under `base`; errors name the
/// spec file.
fn table_in(spec_path: &Path, spec: &Spec, base: &Path) -> anyhow::Result<Table> {
    read_records(spec, base)
        .and_then(|records| build(spec, &records))
        .with_context(|| format!("{}", spec_path.display()))
}

/// `--out` names a folder: one that exists, or a new one whose name has no extension (a
/// name such as `table.tex` is refused: the outputs are three files named after the spec).
fn check_out_folder(dir: &Path, stem: &str) -> anyhow::Result<()> {
    let files = format!("{stem}.md, {stem}.csv and {stem}.tex");
    if dir.is_dir() {
        return Ok(());
    }
    if dir.exists() {
        bail!(
            "--out {}: is a file, not a folder; --out names the folder to write {files} into",
            dir.display()
        );
    }
    if let Some(ext) = dir.extension() {
        bail!(
            "--out {}: a new folder named like a file (`.{}`); --out names the folder to write \
             {files} into (make the folder first to use this name)",
            dir.display(),
            ext.to_string_lossy()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(run: &str, method: &str, category: &str, seed: u64, metric: &str, v: f64) -> Record {
        let csv = format!(
            "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n\
             {run},abc,{method},lite0,ds,{category},one_class,{seed},1,{metric},{v}\n"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        std::fs::write(&p, csv).unwrap();
        read_metrics(&p).unwrap().remove(0)
    }

    /// An image AUROC of `pc` on grid from `run`, whose `config.toml` reads as `config`.
    fn grid_run(run: &str, seed: u64, config: &str, v: f64) -> Record {
        let mut r = rec(run, "pc", "grid", seed, "image_auroc", v);
        r.fields.insert("_config".into(), config.into());
        r
    }

    #[test]
    fn rows_from_before_the_memory_column_read_as_dash() {
        assert_eq!(
            rec("p/t", "rd4ad", "grid", 0, "m", 0.5).fields["memory"],
            "-"
        );
        let csv =
            "run,commit,method,memory,backbone,dataset,category,setting,seed,epoch,metric,value\n\
                   p/t,abc,mnad,memae,-,ped2,ped2,one_class,0,2,frame_auroc_micro,0.9\n";
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        std::fs::write(&p, csv).unwrap();
        assert_eq!(read_metrics(&p).unwrap()[0].fields["memory"], "memae");
    }

    #[test]
    fn smoke_runs_are_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let csv =
            "run,commit,method,memory,backbone,dataset,category,setting,seed,epoch,metric,value\n";
        for (name, subset) in [
            ("q", ""),
            ("q_smoke", "[data.subset]\ntrain = 2\ntest_per_type = 2\n"),
        ] {
            let run = dir.path().join(format!("runs/{name}/2026-01-01T00-00-00"));
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(
                run.join("config.toml"),
                format!("name = \"{name}\"\n{subset}"),
            )
            .unwrap();
            let row = format!(
                "{name}/2026-01-01T00-00-00,abc,rd4ad,-,-,d,grid,one_class,0,1,image_auroc,0.5\n"
            );
            std::fs::write(run.join("metrics.csv"), format!("{csv}{row}")).unwrap();
            std::fs::write(run.join("run.toml"), "").unwrap();
        }
        let spec = parse_spec("runs = [\"runs/q*/*\"]\nmetric = \"image_auroc\"\n").unwrap();
        let records = read_records(&spec, dir.path()).unwrap();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].get("_experiment"), "q");
        let only = parse_spec("runs = [\"runs/q_smoke/*\"]\nmetric = \"image_auroc\"\n").unwrap();
        let err = read_records(&only, dir.path()).unwrap_err().to_string();
        assert!(
            err.contains("1 smoke run(s) match") && err.contains("no other run matches"),
            "{err}"
        );
    }

    #[test]
    fn runs_without_rows_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let header =
            "run,commit,method,memory,backbone,dataset,category,setting,seed,epoch,metric,value\n";
        for (name, csv) in [
            ("a", header.to_string()),
            ("b", String::new()),
            (
                "c",
                format!("{header}c/t,abc,pc,-,-,d,grid,one_class,0,1,image_auroc,0.5\n"),
            ),
        ] {
            let run = dir.path().join(format!("runs/{name}/2026-01-01T00-00-00"));
            std::fs::create_dir_all(&run).unwrap();
            std::fs::write(run.join("metrics.csv"), csv).unwrap();
            std::fs::write(run.join("run.toml"), "").unwrap();
        }
        let read = |globs: &str| {
            let spec = parse_spec(&format!("runs = [{globs}]\nmetric = \"m\"\n")).unwrap();
            read_records(&spec, dir.path())
        };
        // Header only, or empty as a run writes it when it has no row.
        let err = read("\"runs/a/*\", \"runs/b/*\"").unwrap_err().to_string();
        let path = |name: &str| {
            let p = Path::new("runs")
                .join(name)
                .join("2026-01-01T00-00-00/metrics.csv");
            dir.path().join(p).display().to_string()
        };
        assert_eq!(
            err,
            format!(
                "no metric rows in {}, {}; no other selected run has any",
                path("a"),
                path("b")
            )
        );
        // Beside a run with rows: noted and skipped.
        assert_eq!(read("\"runs/*/*\"").unwrap().len(), 1);
    }

    #[test]
    fn non_finite_and_out_of_range_values_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("metrics.csv");
        let out_of_range = "is outside [0, 1], where every memad metric lies";
        let not_finite = "is not a finite number (a run writes no row for an undefined metric)";
        for (value, why) in [
            ("1.5", out_of_range),
            ("1.000001", out_of_range),
            ("-0.01", out_of_range),
            ("NaN", not_finite),
            ("inf", not_finite),
            ("-inf", not_finite),
        ] {
            let csv = format!(
                "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n\
                 p/t,abc,pc,lite0,ds,grid,one_class,0,1,image_auroc,0.5\n\
                 p/t,abc,pc,lite0,ds,grid,one_class,0,1,image_ap,{value}\n"
            );
            std::fs::write(&p, csv).unwrap();
            let err = read_metrics(&p).unwrap_err().to_string();
            assert_eq!(
                err,
                format!("{} row 3: value `{value}` of image_ap {why}", p.display())
            );
        }
        // A perfect area summed from trapezoids (`aupro_rd4ad`) may exceed 1 by a few ulps.
        let csv = "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n\
                   p/t,abc,pc,lite0,ds,grid,one_class,0,1,aupro_rd4ad,1.0000000000000007\n";
        std::fs::write(&p, csv).unwrap();
        assert_eq!(read_metrics(&p).unwrap().len(), 1);
    }

    #[test]
    fn one_run_giving_two_values_of_a_cell_is_an_error() {
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let records = [
            rec("p/t", "pc", "grid", 0, "image_auroc", 1.0),
            rec("p/t", "pc", "grid", 0, "image_auroc", 0.5),
        ];
        let err = format!("{:#}", build(&spec, &records).unwrap_err());
        assert_eq!(
            err,
            "run p/t: metrics.csv gives image_auroc of `grid` (seed 0) twice, as 1 and 0.5"
        );
        // A repeated row is harmless.
        let records = [records[0].clone(), records[0].clone()];
        assert_eq!(
            build(&spec, &records).unwrap().rows[0].1[0]
                .as_ref()
                .unwrap()
                .mean,
            1.0
        );
        // Other seeds of one run are other cells.
        let records = [
            records[0].clone(),
            rec("p/t", "pc", "grid", 1, "image_auroc", 0.5),
        ];
        assert_eq!(
            build(&spec, &records).unwrap().rows[0].1[0]
                .as_ref()
                .unwrap()
                .seeds,
            2
        );
    }

    #[test]
    fn runs_trained_on_other_thread_counts_are_noted() {
        let dir = tempfile::tempdir().unwrap();
        let header = "run,commit,method,memory,backbone,dataset,category,setting,seed,epoch,\
                      metric,value\n";
        // `meta`: run.toml's lines.
        let write_run = |folder: &Path, run: &str, seed: u64, meta: &str| {
            std::fs::create_dir_all(folder).unwrap();
            std::fs::write(folder.join("config.toml"), "a = 1\n").unwrap();
            std::fs::write(folder.join("run.toml"), meta).unwrap();
            let row = format!("{run},abc,rd4ad,-,-,d,grid,one_class,{seed},1,image_auroc,0.5\n");
            std::fs::write(folder.join("metrics.csv"), format!("{header}{row}")).unwrap();
        };
        let cpu = |threads: u32| {
            format!("device = \"Cpu\"\ntorch_threads = {threads}\ncpu = \"AMD EPYC (avx2)\"\n")
        };
        let run = |name: &str, stamp: &str| dir.path().join(format!("runs/{name}/{stamp}"));
        let (t1, t2) = ("2026-01-01T00-00-00", "2026-01-02T00-00-00");
        let table = |pattern: &str| {
            let spec = format!("runs = [\"{pattern}\"]\nmetric = \"image_auroc\"\n");
            let spec = parse_spec(&spec).unwrap();
            build(&spec, &read_records(&spec, dir.path()).unwrap()).unwrap()
        };
        // A plain run on 2 threads, then a sweep (`--jobs 2`: 1 thread) of seeds 0 and 1:
        // seed 0 is a re-run of the plain one (the latest counts), seed 1 is noted.
        write_run(&run("q", t1), &format!("q/{t1}"), 0, &cpu(2));
        write_run(&run("q_seed-1", t2), &format!("q_seed-1/{t2}"), 1, &cpu(1));
        let note = "row `rd4ad` combines runs trained on CPU avx2, 1 thread and CPU avx2, 2 \
                    threads (the CSV's runs column lists them): on the CPU the thread count and \
                    instruction set change the numbers slightly; a sweep's `--jobs N` trains \
                    each run on cores / N threads, `OMP_NUM_THREADS` sets one count for all";
        assert_eq!(table("runs/q*/*").notes, [note]);
        write_run(&run("q_seed-0", t2), &format!("q_seed-0/{t2}"), 0, &cpu(1));
        let t = table("runs/q*/*");
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        assert_eq!(t.superseded, [format!("q/{t1}")]);
        // An evaluation counts its run's threads, not its own.
        let eval = run("q_seed-1", t2).join(format!("evals/e/{t2}"));
        write_run(&eval, &format!("q_seed-1/{t2}"), 1, &cpu(2));
        assert_eq!(training_device(&eval).unwrap(), "cpu|avx2|1");
        // What an older run.toml does not record matches anything.
        assert_eq!(training_device(&run("q_seed-0", t2)).unwrap(), "cpu|avx2|1");
        std::fs::write(run("q_seed-0", t2).join("run.toml"), "device = \"Cpu\"\n").unwrap();
        assert_eq!(training_device(&run("q_seed-0", t2)).unwrap(), "cpu|?|?");
        let aten = "device = \"Cpu\"\ntorch_threads = 1\ncpu = \"EPYC (avx2, ATEN_CPU_CAPABILITY=avx2)\"\n";
        std::fs::write(run("q_seed-0", t2).join("run.toml"), aten).unwrap();
        assert_eq!(training_device(&run("q_seed-0", t2)).unwrap(), "cpu|avx2|1");
        std::fs::write(run("q_seed-0", t2).join("run.toml"), "device = \"Cpu\"\n").unwrap();
        assert!(!devices_differ("cpu|?|?", "cpu|avx2|1"));
        assert!(devices_differ("cpu|avx512|1", "cpu|avx2|1") && devices_differ("cuda", "cpu|?|?"));
        assert_eq!(
            ["cuda", "cpu|?|1", "cpu|avx2|?"].map(describe_device),
            [
                "CUDA",
                "CPU (instruction set not recorded), 1 thread",
                "CPU avx2, threads not recorded"
            ]
        );
        assert!(table("runs/q_seed-*/*").notes.is_empty());
        // On CUDA the CPU thread count does not enter the numbers.
        for name in ["q_seed-0", "q_seed-1"] {
            std::fs::write(run(name, t2).join("run.toml"), "device = \"Cuda(0)\"\n").unwrap();
        }
        assert!(table("runs/q_seed-*/*").notes.is_empty());
    }

    /// The records of a `metrics.csv` without the `memory` column, in a run folder with
    /// `config` as its `config.toml`.
    fn old_run(run: &str, config: &str, value: f64) -> Vec<Record> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("config.toml"), config).unwrap();
        let csv = format!(
            "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n\
             {run},abc,mnad,-,ped2,ped2,one_class,0,2,pixel_auroc,{value}\n"
        );
        let p = dir.path().join("metrics.csv");
        std::fs::write(&p, csv).unwrap();
        read_metrics(&p).unwrap()
    }

    #[test]
    fn old_runs_take_the_memory_from_their_config() {
        let own = "[method]\nkind = \"mnad\"\n[method.memory]\ndim = 512\n";
        let swapped = "[method]\nkind = \"mnad\"\n[method.memory]\nkind = \"memae\"\n";
        let ablation = "[method]\nkind = \"memae\"\nuse_memory = false\n[method.memory]\n";
        let fixed = "[method]\nkind = \"mddnet\"\n[method.memory]\nitems = 5\n";
        let memae = "[method]\nkind = \"memae\"\n[method.memory]\ndim = 256\n";
        for (config, want) in [
            (own, "mnad"),
            (swapped, "memae"),
            (ablation, "none"),
            (fixed, "-"),
            (memae, "memae"),
            ("[method]\nkind = \"rd4ad\"\n", "-"),
        ] {
            let r = old_run("m/t", config, 0.5);
            assert_eq!(r[0].fields["memory"], want, "{config}");
        }
        // Two runs told apart by their memory share no row: no collision.
        let spec = parse_spec(
            "runs = [\"x\"]\nrows = [\"method\", \"memory\"]\nmetric = \"pixel_auroc\"\n",
        )
        .unwrap();
        let mut records = old_run("mnad_pred/2026-01-01T00-00-00", own, 0.9);
        records.extend(old_run("mnad_memae/2026-01-01T00-00-00", swapped, 0.8));
        let t = build(&spec, &records).unwrap();
        let labels: Vec<&str> = t.rows.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(labels, ["mnad/mnad", "mnad/memae"]);
    }

    #[test]
    fn seed_suffixes_are_stripped_from_names() {
        assert_eq!(without_seed_suffix("q_lr-0.1_seed-2"), "q_lr-0.1");
        assert_eq!(without_seed_suffix("q_seed-2_lr-0.1"), "q_lr-0.1");
        assert_eq!(without_seed_suffix("q_seed-x"), "q_seed-x");
        assert_eq!(without_seed_suffix("q_seed-12a"), "q_seed-12a");
        assert_eq!(
            without_seed_suffix("rd4ad_fashion_mnist"),
            "rd4ad_fashion_mnist"
        );
    }

    #[test]
    fn mean_and_sample_std_over_seeds() {
        let c = stats(&[0.9, 0.8, 1.0]).unwrap();
        assert!((c.mean - 0.9).abs() < 1e-12);
        assert!((c.std.unwrap() - 0.1).abs() < 1e-12);
        assert_eq!(stats(&[0.5]).unwrap().std, None);
        assert_eq!(stats(&[]), None);
    }

    #[test]
    fn latest_rerun_wins_and_other_experiments_collide() {
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let a = rec("p/2026-01-01T00-00-00", "pc", "grid", 0, "image_auroc", 0.5);
        let b = rec(
            "p/2026-01-02T00-00-00",
            "pc",
            "grid",
            0,
            "image_auroc",
            0.75,
        );
        let t = build(&spec, &[b.clone(), a]).unwrap();
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.75);
        let other = rec(
            "p2/2026-01-03T00-00-00",
            "pc",
            "grid",
            0,
            "image_auroc",
            0.1,
        );
        let err = build(&spec, &[b, other]).unwrap_err().to_string();
        assert!(err.contains("rows = \"name\""), "{err}");
    }

    /// The tenth run of one second (`<stamp>-10`) is newer than the ninth, though its name
    /// sorts before it.
    #[test]
    fn re_runs_of_one_second_rank_in_creation_order() {
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let ninth = grid_run("p/2026-01-01T00-00-00-9", 0, "a = 1\n", 0.5);
        let tenth = grid_run("p/2026-01-01T00-00-00-10", 0, "a = 1\n", 0.75);
        let first = grid_run("p/2026-01-01T00-00-00", 0, "a = 1\n", 0.25);
        let t = build(&spec, &[tenth, first, ninth]).unwrap();
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.75);
        assert_eq!(
            t.superseded,
            ["p/2026-01-01T00-00-00", "p/2026-01-01T00-00-00-9"]
        );
    }

    /// A newer run of another config (a smoke run with `--epochs 1` after the full run)
    /// replaces the older one, and the table's files say so.
    #[test]
    fn a_run_replaced_by_another_config_is_noted() {
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let full = grid_run("p/2026-01-01T00-00-00", 0, "train.epochs = 200\n", 0.99);
        let smoke = grid_run("p/2026-01-02T00-00-00", 0, "train.epochs = 1\n", 0.6);
        let t = build(&spec, &[full, smoke]).unwrap();
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.6);
        assert!(t.superseded.is_empty());
        assert_eq!(
            t.notes,
            [
                "p/2026-01-01T00-00-00 left out: a newer run of its experiment and seed has \
              another config, in train.epochs"
            ]
        );
    }

    #[test]
    fn the_latest_run_counts_as_a_whole() {
        // The newer run has no grid: grid stays empty rather than taking the older run's.
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let old_grid = rec("p/2026-01-01T00-00-00", "pc", "grid", 0, "image_auroc", 0.5);
        let old_carpet = rec(
            "p/2026-01-01T00-00-00",
            "pc",
            "carpet",
            0,
            "image_auroc",
            0.5,
        );
        let new_carpet = rec(
            "p/2026-01-02T00-00-00",
            "pc",
            "carpet",
            0,
            "image_auroc",
            0.9,
        );
        let t = build(&spec, &[old_grid, old_carpet, new_carpet]).unwrap();
        assert_eq!(t.columns, ["carpet"]);
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.9);
        assert_eq!(t.superseded, ["p/2026-01-01T00-00-00"]);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    #[test]
    fn an_evaluation_ranks_with_the_run_it_scored() {
        let dir = tempfile::tempdir().unwrap();
        let write = |folder: &str, run: &str, v: f64| {
            let folder = dir.path().join(folder);
            std::fs::create_dir_all(&folder).unwrap();
            let csv = format!(
                "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n\
                 {run},abc,pc,lite0,ds,grid,one_class,0,1,image_auroc,{v}\n"
            );
            std::fs::write(folder.join("metrics.csv"), csv).unwrap();
            read_metrics(&folder.join("metrics.csv")).unwrap().remove(0)
        };
        let older = "p/2026-01-01T00-00-00";
        let newer = write("p/2026-01-02T00-00-00", "p/2026-01-02T00-00-00", 0.9);
        // Scored today, but of yesterday's run: the newer run still counts.
        let eval = write(
            &format!("{older}/evals/p/2026-01-03T00-00-00"),
            "p/2026-01-03T00-00-00",
            0.5,
        );
        assert_eq!(
            eval.get("_source"),
            "p/2026-01-01T00-00-00/evals/p/2026-01-03T00-00-00"
        );
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let t = build(&spec, &[eval.clone(), newer]).unwrap();
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.9);
        assert_eq!(t.superseded, [eval.get("_source")]);
        // Of the newer run, it counts (its numbers are that run's, or its overrides').
        let eval_of_newer = write(
            "p/2026-01-02T00-00-00/evals/p/2026-01-03T00-00-00",
            "p/2026-01-03T00-00-00",
            0.8,
        );
        let newer = write("p/2026-01-02T00-00-00", "p/2026-01-02T00-00-00", 0.9);
        let t = build(&spec, &[newer, eval_of_newer]).unwrap();
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.8);
    }

    #[test]
    fn a_row_of_runs_whose_configs_differ_beyond_the_seed_is_named() {
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let with_config = |run: &str, seed: u64, config: &str| grid_run(run, seed, config, 0.5);
        let same = [
            with_config("p_seed-0/t", 0, "a = 1\nb = 2\n"),
            with_config("p_seed-1/t", 1, "a = 1\nb = 2\n"),
        ];
        assert!(build(&spec, &same).unwrap().notes.is_empty());
        let mixed = [
            with_config("p_seed-0/t", 0, "a = 1\nb = 2\n"),
            with_config("q_seed-1/t", 1, "a = 1\nb = 3\nc = 4\n"),
        ];
        let t = build(&spec, &mixed).unwrap();
        let note = "row `pc` combines runs whose configs differ beyond the seed, in b, c (the \
                    CSV's runs column lists them; `rows = \"name\"` keeps configs apart)";
        assert_eq!(t.notes, [note]);
        // In the Markdown and, as a comment, in the LaTeX.
        assert!(markdown(&t).ends_with(&format!("\nNote: {note}\n")));
        assert!(latex(&t, "x").contains(&format!("% Note: {note}\n")));
        // Across categories too: the mean of a row mixes its categories' runs.
        let mut grid = with_config("p/t1", 0, "train.epochs = 1\n");
        grid.fields.insert("category".into(), "grid".into());
        let mut wood = with_config("q/t2", 0, "train.epochs = 3\n");
        wood.fields.insert("category".into(), "wood".into());
        let t = build(&spec, &[grid.clone(), wood.clone()]).unwrap();
        assert_eq!(t.columns, ["grid", "wood", "mean"]);
        assert_eq!(
            t.notes,
            [
                "row `pc` combines runs whose configs differ beyond the seed, in train.epochs \
              (the CSV's runs column lists them; `memad run --epochs` keeps the experiment's \
              name)"
            ]
        );
        // Only the categories shown count.
        let grid_only =
            parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\ncategories = [\"grid\"]\n")
                .unwrap();
        let t = build(&grid_only, &[grid, wood]).unwrap();
        assert!(t.notes.is_empty(), "{:?}", t.notes);
    }

    /// A plain run and its sweep's `_seed-0` run (one config, two names) share a row and a
    /// seed: re-runs, the latest counts. Of two configs, the error does not suggest the
    /// `rows = "name"` the spec has.
    #[test]
    fn runs_of_one_config_under_two_names_are_re_runs() {
        let spec =
            parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\nrows = \"name\"\n").unwrap();
        let plain = grid_run("p/2026-01-01T00-00-00", 0, "a = 1\n", 0.5);
        let swept = grid_run("p_seed-0/2026-01-02T00-00-00", 0, "a = 1\n", 0.7);
        let t = build(&spec, &[swept.clone(), plain.clone()]).unwrap();
        assert_eq!(t.rows[0].1[0].as_ref().unwrap().mean, 0.7);
        assert_eq!(t.superseded, ["p/2026-01-01T00-00-00"]);
        assert!(t.notes.is_empty(), "{:?}", t.notes);
        let other = grid_run("p_seed-0/2026-01-02T00-00-00", 0, "a = 2\n", 0.7);
        let err = format!("{:#}", build(&spec, &[plain, other]).unwrap_err());
        assert!(
            err.contains("of different configs both give image_auroc of `grid`; narrow `runs`")
                && !err.contains("rows = \"name\""),
            "{err}"
        );
    }

    /// A row without some category says so (its mean is left out); a row with no value in
    /// the categories shown is left out, with a note.
    #[test]
    fn missing_cells_and_empty_rows_are_noted() {
        let spec = parse_spec(
            "runs = [\"x\"]\nmetric = \"image_auroc\"\ncategories = [\"grid\", \"wood\"]\n",
        )
        .unwrap();
        let records = [
            rec("p/t", "pc", "grid", 0, "image_auroc", 0.5),
            rec("p/t", "pc", "wood", 0, "image_auroc", 0.7),
            rec("q/t", "rd", "grid", 0, "image_auroc", 0.6),
            rec("r/t", "mm", "tile", 0, "image_auroc", 0.9),
        ];
        let t = build(&spec, &records).unwrap();
        let labels: Vec<&str> = t.rows.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["pc", "rd"]);
        assert_eq!(
            t.notes,
            [
                "row `rd`: no selected run has wood, so its mean is left out",
                "rows without a value in the categories shown left out: mm"
            ]
        );
        // Metric columns average the categories: `rd` stays, its cells empty, with a note.
        let spec = parse_spec(
            "runs = [\"x\"]\ncolumns = \"metric\"\nmetrics = [\"image_auroc\"]\n\
             categories = [\"grid\", \"wood\"]\n",
        )
        .unwrap();
        let t = build(&spec, &records).unwrap();
        let labels: Vec<&str> = t.rows.iter().map(|(l, _)| l.as_str()).collect();
        assert_eq!(labels, ["pc", "rd"]);
        assert!(t.rows[1].1[0].is_none());
        assert_eq!(
            t.notes[0],
            "row `rd`: no selected run has wood, so its means over categories are left out"
        );
    }

    #[test]
    fn a_category_s_config_ignores_the_categories_of_one_class_runs() {
        let config = |setting: &str, categories: &str| -> String {
            let text = format!(
                "name = \"x\"\nseed = 1\n[data]\nsetting = \"{setting}\"\ncategories = {categories}\n"
            );
            config_identity(&toml::from_str(&text).unwrap())
        };
        let one = |c| config_of_a_category(&config("one_class", c));
        assert_eq!(one("[\"a\"]"), one("[\"b\", \"c\"]"));
        assert_eq!(one("[\"a\"]"), "data.setting = one_class\n");
        assert_ne!(
            config("one_class", "[\"a\"]"),
            config("one_class", "[\"b\"]")
        );
        let multi = |c| config_of_a_category(&config("multi_class", c));
        assert_ne!(multi("[\"a\"]"), multi("[\"b\", \"c\"]"));
    }

    #[test]
    fn spec_errors_name_the_key() {
        let cases = [
            (
                "runs = [\"a\"]\nmetric = \"m\"\nrowz = \"method\"\n",
                "rowz: unknown field",
            ),
            (
                "runs = [\"a\"]\nmetric = \"m\"\nrows = \"methd\"\n",
                "rows[0]: unknown column `methd`",
            ),
            ("runs = [\"a\"]\n", "metric: a `category` table"),
            (
                "runs = [\"a\"]\ncolumns = \"metric\"\nmetric = \"m\"\n",
                "metrics: a `metric` table",
            ),
            (
                "runs = [\"a\"]\ncolumns = \"metric\"\nmetrics = []\n",
                "metrics: lists no metric",
            ),
            (
                "runs = [\"a\"]\nmetric = \"m\"\nformat = \"pct\"\n",
                "format: unknown variant `pct`",
            ),
            (
                "runs = [\"a\"]\nmetric = \"m\"\n[filter]\nsetings = \"x\"\n",
                "filter.setings: unknown column",
            ),
            (
                "runs = []\nmetric = \"m\"\n",
                "runs: name at least one glob",
            ),
            (
                "runs = [\"a\"]\nmetric = \"m\"\ncategories = [\"grid\", \"grid\", \"carpet\"]\n",
                "categories[1]: `grid` is listed twice (also categories[0])",
            ),
            (
                "runs = [\"a\"]\ncolumns = \"metric\"\nmetrics = [\"x\", \"y\", \"x\"]\n",
                "metrics[2]: `x` is listed twice (also metrics[0])",
            ),
            (
                "runs = [\"a\"]\nmetric = \"m\"\nrow_order = [\"pc\", \"pc\"]\n",
                "row_order[1]: `pc` is listed twice (also row_order[0])",
            ),
            (
                "runs = [\"a\"]\nmetric = \"m\"\nrows = [\"method\", \"method\"]\n",
                "rows[1]: `method` is listed twice (also rows[0])",
            ),
        ];
        for (text, want) in cases {
            let err = parse_spec(text).unwrap_err().to_string();
            assert!(err.contains(want), "{text}: `{err}` lacks `{want}`");
        }
    }

    /// Two methods on two categories, `rd4ad` with seeds 0 and 1, `patchcore` with seed 0.
    fn two_methods() -> Vec<Record> {
        let mut records = Vec::new();
        for (run, method, seed, values) in [
            ("rd4ad_seed-0/t", "rd4ad", 0, [0.9, 0.8]),
            ("rd4ad_seed-1/t", "rd4ad", 1, [0.7, 0.8]),
            ("patchcore/t", "patchcore", 0, [0.95, 0.85]),
        ] {
            for (category, v) in ["leather", "grid"].into_iter().zip(values) {
                records.push(rec(run, method, category, seed, "image_auroc", v));
            }
        }
        records
    }

    fn build_err(spec: &str, records: &[Record]) -> String {
        let spec =
            parse_spec(&format!("runs = [\"x\"]\nmetric = \"image_auroc\"\n{spec}")).unwrap();
        format!("{:#}", build(&spec, records).unwrap_err())
    }

    #[test]
    fn filter_row_order_and_category_typos_are_errors() {
        let records = two_methods();
        let err = build_err("[filter]\nmethod = \"rd4d\"\n", &records);
        assert_eq!(
            err,
            "filter.method: `rd4d` is in none of the selected runs; their `method` values: \
             patchcore, rd4ad (did you mean `rd4ad`?)"
        );
        let err = build_err("[filter]\nmethod = \"rd4ad\"\nseed = 2\n", &records);
        assert!(err.starts_with("filter.seed: `2` is in none"), "{err}");
        // Each value exists, but no run has both.
        let err = build_err("[filter]\nmethod = \"patchcore\"\nseed = 1\n", &records);
        assert_eq!(
            err,
            "`[filter]` removed every row: none of the 3 selected run(s) has method = \
             patchcore, seed = 1 together"
        );
        let err = build_err("categories = [\"grid\", \"leathr\"]\n", &records);
        assert_eq!(
            err,
            "categories[1]: `leathr` has no image_auroc in the selected runs; their \
             categories: leather, grid (did you mean `leather`?)"
        );
        let err = build_err("row_order = [\"patchcore\", \"RD4AD\"]\n", &records);
        assert_eq!(
            err,
            "row_order[1]: `RD4AD` is no row of the table; its rows: rd4ad, patchcore (did \
             you mean `rd4ad`?)"
        );
    }

    #[test]
    fn names_that_name_nothing_in_the_table_are_errors() {
        let records = two_methods();
        let err = build_err("[names]\nrd4adx = \"RD\"\n", &records);
        assert_eq!(
            err,
            "names.rd4adx: `rd4adx` is no row, category, metric or column name of the table; \
             its rows: rd4ad, patchcore; its categories: leather, grid; its metrics: \
             image_auroc (did you mean `rd4ad`?)"
        );
        // A row key, a category, the metric, a column name and `mean` each name something,
        // shown or not (`name`, `seed` and `image_auroc` are not in this table's labels).
        let names = "[names]\nrd4ad = \"RD\"\nleather = \"Leather\"\nimage_auroc = \"AUROC\"\n\
                     method = \"Method\"\nname = \"Name\"\nseed = \"Seed\"\nmean = \"Mean\"\n";
        let spec = parse_spec(&format!(
            "runs = [\"x\"]\nmetric = \"image_auroc\"\n{names}"
        ))
        .unwrap();
        let t = build(&spec, &records).unwrap();
        assert_eq!(t.row_header, "Method");
        assert_eq!(t.columns, ["Leather", "grid", "Mean"]);
        assert_eq!(t.rows[0].0, "RD");
        // A category the spec's `categories` leaves out is still one of the selected runs.
        let spec = "runs = [\"x\"]\nmetric = \"image_auroc\"\ncategories = [\"grid\"]\n\
                    [names]\nleather = \"L\"\n";
        assert!(build(&parse_spec(spec).unwrap(), &records).is_ok());
        // Rows of two columns join their values: one column's value names no row.
        let err = build_err(
            "rows = [\"method\", \"seed\"]\n[names]\nrd4ad = \"RD\"\n",
            &records,
        );
        assert_eq!(
            err,
            "names.rd4ad: `rd4ad` is no row, category, metric or column name of the table; \
             its rows: rd4ad/0, rd4ad/1, patchcore/0; its categories: leather, grid; its \
             metrics: image_auroc"
        );
    }

    #[test]
    fn decimals_are_capped_and_best_compares_the_shown_values() {
        let err = parse_spec("runs = [\"a\"]\nmetric = \"m\"\ndecimals = 20\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("decimals: 20 decimals; at most 6"), "{err}");
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\ndecimals = 6\n").unwrap();
        let t = build(&spec, &two_methods()).unwrap();
        let bold: Vec<Vec<bool>> = (t.rows.iter())
            .map(|(_, cells)| cells.iter().map(|c| c.as_ref().unwrap().best).collect())
            .collect();
        // rd4ad: leather 0.8, grid 0.8, mean 0.8; patchcore: 0.95, 0.85, 0.9.
        assert_eq!(bold, [[false, false, false], [true, true, true]]);
    }

    #[test]
    fn cells_with_fewer_seeds_are_marked_and_latex_has_a_label() {
        let spec = parse_spec("runs = [\"x\"]\nmetric = \"image_auroc\"\n").unwrap();
        let t = build(&spec, &two_methods()).unwrap();
        let md = markdown(&t);
        assert!(
            md.contains("| rd4ad | 80.0 ± 14.1 | 80.0 ± 0.0 | 80.0 ± 7.1 |"),
            "{md}"
        );
        assert!(
            md.contains("| patchcore | **95.0** (n=1) | **85.0** (n=1) | **90.0** (n=1) |"),
            "{md}"
        );
        assert!(
            md.ends_with(
                "\n(n=k): mean over k seed(s); other cells: mean ± sample std over 2 seeds\n"
            ),
            "{md}"
        );
        let tex = latex(&t, "my table_1");
        assert!(tex.contains("  \\label{tab:my-table_1}\n"), "{tex}");
        assert!(
            tex.contains("\\textbf{95.0} {\\footnotesize (n=1)}"),
            "{tex}"
        );
        let note = "\\par\\smallskip{\\footnotesize (n=k): mean over k seed(s); other cells: \
                    mean $\\pm$ sample std over 2 seeds}";
        assert!(tex.contains(note), "{tex}");
        // One seed count everywhere: nothing marked.
        let one: Vec<Record> = two_methods()
            .into_iter()
            .filter(|r| r.get("seed") == "0")
            .collect();
        let md = markdown(&build(&spec, &one).unwrap());
        assert!(!md.contains("(n=") && !md.contains("seeds"), "{md}");
    }

    #[test]
    fn out_must_name_a_folder() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("existing");
        std::fs::write(&file, "x").unwrap();
        let err = check_out_folder(&file, "s").unwrap_err().to_string();
        let want = "is a file, not a folder; --out names the folder to write s.md, s.csv and \
                    s.tex into";
        assert!(err.ends_with(want), "{err}");
        let err = check_out_folder(&dir.path().join("t/table.tex"), "s")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a new folder named like a file (`.tex`)"),
            "{err}"
        );
        let dotted = dir.path().join("tables.v2");
        let err = check_out_folder(&dotted, "s").unwrap_err().to_string();
        assert!(
            err.contains(&format!("--out {}", dotted.display()))
                && err.contains("a new folder named like a file (`.v2`)")
                && err.contains("make the folder first to use this name"),
            "{err}"
        );
        std::fs::create_dir(&dotted).unwrap();
        assert!(check_out_folder(&dotted, "s").is_ok());
        assert!(check_out_folder(&dir.path().join("new/tables"), "s").is_ok());
    }

    #[test]
    fn check_reports_what_stops_the_table_here() {
        let dir = tempfile::tempdir().unwrap();
        let spec =
            parse_spec("runs = [\"runs/a/*\", \"runs/b/*\"]\nmetric = \"image_auroc\"\n").unwrap();
        let run = dir.path().join("runs/a/t");
        std::fs::create_dir_all(&run).unwrap();
        std::fs::write(run.join("run.toml"), "").unwrap();
        std::fs::write(
            run.join("metrics.csv"),
            "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n\
             a/t,abc,rd4ad,-,ds,grid,one_class,0,1,pixel_auroc,0.5\n",
        )
        .unwrap();
        assert_eq!(
            run_problems(&spec, dir.path()),
            ["runs[1]: `runs/b/*` matches no complete run folder here"]
        );
        let spec = parse_spec("runs = [\"runs/a/*\"]\nmetric = \"image_auroc\"\n").unwrap();
        assert_eq!(
            run_problems(&spec, dir.path()),
            ["metric `image_auroc` is in none of the selected runs; found: pixel_auroc"]
        );
    }

    #[test]
    fn a_glob_matching_nothing_names_the_spec_file() {
        let dir = tempfile::tempdir().unwrap();
        let spec = parse_spec("runs = [\"runs_nothing/*\"]\nmetric = \"image_auroc\"\n").unwrap();
        let err = table_in(Path::new("specs/x.toml"), &spec, dir.path()).unwrap_err();
        assert_eq!(
            format!("{err:#}"),
            format!(
                "specs/x.toml: runs[0]: `runs_nothing/*` matches no complete run folder \
                 (relative to {}; `.partial` folders are never read)",
                dir.path().canonicalize().unwrap().display()
            )
        );
    }

    #[test]
    fn latex_escapes_specials() {
        assert_eq!(latex_escape("a_b & 5% ±"), "a\\_b \\& 5\\% $\\pm$");
        assert_eq!(
            latex_escape("FPR <= 0.3, a < b"),
            "FPR $\\le$ 0.3, a \\textless{} b"
        );
    }
}
