//! `memad plot ablation`: a metric against a swept config value, one line per group and
//! configuration, mean ± std over seeds (see the module doc of `plot`).
use super::*;

/// What `memad plot ablation` reads and draws.
#[derive(Debug, Clone)]
pub struct AblationSpec {
    /// Folders searched for complete runs (up to 3 levels down) or globs over run folders
    /// (`runs/quickstart_*/*`, as `memad table` takes); the runs of all of them.
    pub runs: Vec<String>,
    /// Dotted key of the resolved `config.toml` on the x axis (`method.memory.slots`).
    pub param: String,
    /// The `metrics.csv` metric on the y axis, averaged over a run's categories.
    pub metric: String,
    /// One line per value of this `metrics.csv` column (`method`, `name`, `backbone`, ...) or,
    /// when no column has the name, dotted config key; comma-separated keys label a line with
    /// the values of those the run has, each as `<last key segment>=<value>`
    /// (`method,method.memory.init`: `method=rd4ad`, `method=mddnet, init=features`), at
    /// least one.
    pub group: String,
}

/// One point of an ablation line: mean and sample std over seeds at one parameter value.
#[derive(Debug, Clone, PartialEq)]
pub struct AblationPoint {
    /// The parameter value as written in the config.
    pub value: String,
    pub mean: f64,
    /// Sample standard deviation (n - 1); `None` for one seed.
    pub std: Option<f64>,
    /// Distinct seeds averaged.
    pub seeds: usize,
}

/// The lines of an ablation figure, ready to draw.
#[derive(Debug, Clone)]
pub struct Ablation {
    pub spec: AblationSpec,
    /// `(label, points in x order)`, sorted by label. A line is one configuration: runs that
    /// differ only in seed and the parameter. Where a group holds several, each line's label
    /// adds the keys in which its configuration differs from the group's most common values.
    pub lines: Vec<(String, Vec<AblationPoint>)>,
    /// Every parameter value is a number (else the axis is categorical, values in name order).
    pub numeric: bool,
}

/// `memad plot ablation`: reads the runs, writes `ablation_<param>_<metric>.{png,svg}` into
/// `out` (the legend to the right of the plot, the figure widened for it); returns the
/// files written.
pub fn ablation(spec: &AblationSpec, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts();
    let data = read_ablation(spec)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stem = out.join(format!("ablation_{}_{}", spec.param, spec.metric));
    let labels = ablation_labels(&data);
    let (legend_w, _) = legend_size(&labels)?;
    let size = (760 + legend_w as u32 + 10, 520);
    png_and_svg!(&stem, size, |root| draw_ablation(root, &data, &labels))
}

/// The complete runs `pattern` names: a glob (holding `*` or `?`) over run folders, or a
/// folder that is a run or holds runs up to 3 levels down.
fn find_runs(pattern: &str) -> anyhow::Result<Vec<PathBuf>> {
    if pattern.contains(['*', '?']) {
        return crate::run_folders::glob_runs(pattern, Path::new("."));
    }
    fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
        if crate::run_folders::is_complete(dir) {
            found.push(dir.to_path_buf());
            return;
        }
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.filter_map(Result::ok) {
            let hidden = e.file_name().to_string_lossy().starts_with('.');
            if depth > 0 && !hidden && e.path().is_dir() {
                walk(&e.path(), depth - 1, found);
            }
        }
    }
    let root = Path::new(pattern);
    anyhow::ensure!(root.is_dir(), "{pattern}: no such folder");
    let mut found = Vec::new();
    walk(root, 3, &mut found);
    found.sort();
    Ok(found)
}

/// `key=value` for each pair, the key as its last dotted segment unless another key of
/// `pairs` ends alike (then in full).
fn key_values(pairs: &[(String, String)]) -> Vec<String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    (pairs.iter())
        .map(|(k, v)| {
            let short = last(k);
            let clash = (pairs.iter()).any(|(other, _)| other != k && last(other) == short);
            format!("{}={v}", if clash { k.as_str() } else { &short })
        })
        .collect()
}

/// What one run gives an ablation.
struct AblationRun {
    /// `(key, value)` of the group keys the run has.
    group: Vec<(String, String)>,
    /// The rest of its configuration: every config key but `name`, `seed`, the parameter and
    /// the group's keys.
    config: BTreeMap<String, String>,
    value: String,
    seed: String,
    stamp: String,
    /// The metric's mean over the run's categories.
    mean: f64,
}

/// Reads the runs into lines. Per run: the metric's mean over categories. Runs are grouped
/// by `spec.group`; within a group each configuration (the config but seed and parameter)
/// is its own line, so runs of different experiments are never averaged as if they were
/// seeds (a note names the keys that split a group). Per line and parameter value, among
/// runs of one seed the latest counts (a re-run); a point is the mean and sample std over
/// the distinct seeds. Runs without the key or the metric are left out with a note.
///
/// # Errors
/// No complete run; the key holding a table or array; no run with both key and metric; a
/// run with none of the group keys.
pub fn read_ablation(spec: &AblationSpec) -> anyhow::Result<Ablation> {
    let mut folders = Vec::new();
    for pattern in &spec.runs {
        folders.extend(find_runs(pattern)?);
    }
    folders.sort();
    folders.dedup();
    let patterns = spec.runs.join(" ");
    anyhow::ensure!(
        !folders.is_empty(),
        "{patterns}: no complete run folder (`.partial` folders are never read)",
    );
    let mut runs: Vec<AblationRun> = Vec::new();
    let mut raw_values: Vec<toml::Value> = Vec::new();
    let (mut no_key, mut no_metric, mut smoke) = (Vec::new(), Vec::new(), Vec::new());
    let group_keys: Vec<&str> = spec.group.split(',').map(str::trim).collect();
    // Every dotted key of the configs (and metrics.csv column of the runs read), for the
    // did-you-mean of a parameter or group key no run has.
    let mut keys_seen = BTreeMap::new();
    let mut group_keys_found = std::collections::BTreeSet::new();
    // The metrics of the runs that have the key, for the error when none has the metric.
    let mut metrics_seen = std::collections::BTreeSet::new();
    for folder in &folders {
        let config_path = folder.join("config.toml");
        // With the defaults config.toml leaves out, so that their runs are not left out.
        let config = crate::run_folders::read_config(folder)?
            .with_context(|| format!("reading {}: no such file", config_path.display()))?;
        if crate::run_folders::is_smoke_run(&config) {
            smoke.push(folder.display().to_string());
            continue;
        }
        let Some(raw) = lookup(&config, &spec.param) else {
            flatten(&config, "", &mut keys_seen);
            no_key.push(folder.display().to_string());
            continue;
        };
        let value = scalar(raw).with_context(|| {
            format!(
                "{}: `{}` is a {}, not a value; name a key inside it",
                config_path.display(),
                spec.param,
                raw.type_str()
            )
        })?;
        let all = crate::table::read_metrics(&folder.join("metrics.csv"))?;
        metrics_seen.extend(all.iter().filter_map(|r| r.fields.get("metric").cloned()));
        let records: Vec<crate::table::Record> = (all.into_iter())
            .filter(|r| r.fields.get("metric") == Some(&spec.metric))
            .collect();
        let Some(first) = records.first() else {
            no_metric.push(folder.display().to_string());
            continue;
        };
        let field = |c: &str| first.fields.get(c).cloned().unwrap_or_default();
        // Each key of the group: a metrics.csv column, else a config value; a key the run
        // lacks (`method.memory.init` of a run without memory) adds nothing to its label.
        let group: Vec<(String, String)> = (group_keys.iter())
            .filter_map(|&key| {
                let value = (first.fields.get(key).cloned())
                    .or_else(|| lookup(&config, key).and_then(scalar))?;
                Some((key.to_string(), value))
            })
            .collect();
        if group.is_empty() {
            let keys: Vec<String> = group_keys.iter().map(|k| format!("`{k}`")).collect();
            let what = match keys.as_slice() {
                [one] => format!("{one} is neither a metrics.csv column nor"),
                _ => format!(
                    "none of the keys {} is a metrics.csv column or",
                    keys.join(", ")
                ),
            };
            anyhow::bail!("{}: {what} a value in config.toml", folder.display());
        }
        let mut rest = BTreeMap::new();
        flatten(&config, "", &mut rest);
        for (key, _) in &group {
            group_keys_found.insert(key.clone());
        }
        keys_seen.extend(rest.clone());
        keys_seen.extend(first.fields.clone());
        for key in ["name", "seed", spec.param.as_str()]
            .into_iter()
            .chain(group_keys.iter().copied())
        {
            rest.remove(key);
        }
        runs.push(AblationRun {
            group,
            config: rest,
            value,
            seed: field("seed"),
            stamp: field("_stamp"),
            mean: records.iter().map(|r| r.value).sum::<f64>() / records.len() as f64,
        });
        raw_values.push(raw.clone());
    }
    if !smoke.is_empty() {
        let what = crate::run_folders::smoke_runs_note(&smoke);
        anyhow::ensure!(smoke.len() < folders.len(), "{what}; no other run matches");
        eprintln!("note: {what}");
    }
    if no_key.len() + smoke.len() == folders.len() {
        let keys: Vec<String> = keys_seen.into_keys().collect();
        anyhow::bail!(
            "{patterns}: none of the {} run(s) has `{}` in its config.toml{}",
            folders.len(),
            spec.param,
            memad_data::did_you_mean(&spec.param, &keys)
        );
    }
    if !no_key.is_empty() {
        eprintln!(
            "note: {} run(s) without `{}` left out: {}",
            no_key.len(),
            spec.param,
            no_key.join(", ")
        );
    }
    if !no_metric.is_empty() {
        eprintln!(
            "note: {} run(s) without metric `{}` left out: {}",
            no_metric.len(),
            spec.metric,
            no_metric.join(", ")
        );
    }
    // A group key no run has is a typo (`method,method.memory.int`), not a key some runs
    // lack: it would be dropped from every label without a word.
    if !runs.is_empty() {
        let keys: Vec<String> = keys_seen.keys().cloned().collect();
        for key in &group_keys {
            anyhow::ensure!(
                group_keys_found.contains(*key),
                "{patterns}: --group `{key}`: no run has it as a metrics.csv column or a \
                 config.toml value{}",
                memad_data::did_you_mean(key, &keys)
            );
        }
    }
    anyhow::ensure!(!runs.is_empty(), {
        let metrics: Vec<String> = metrics_seen.into_iter().collect();
        format!(
            "{patterns}: no complete run has both `{}` in config.toml and `{}` in \
             metrics.csv{}; the runs with `{}` have the metrics {}",
            spec.param,
            spec.metric,
            memad_data::did_you_mean(&spec.metric, &metrics),
            spec.param,
            metrics.join(", ")
        )
    });
    let numeric = raw_values
        .iter()
        .all(|v| matches!(v, toml::Value::Integer(_) | toml::Value::Float(_)));
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&AblationRun>> = BTreeMap::new();
    for run in &runs {
        groups.entry(run.group.clone()).or_default().push(run);
    }
    // label -> (value, seed) -> (stamp, mean): the latest run of a seed counts.
    type Line = BTreeMap<(String, String), (String, f64)>;
    let mut cells: BTreeMap<String, Line> = BTreeMap::new();
    for (group, members) in &groups {
        let labels = configuration_labels(group, members);
        for (run, label) in members.iter().zip(labels) {
            let line = cells.entry(label).or_default();
            let key = (run.value.clone(), run.seed.clone());
            if line.get(&key).is_none_or(|old| old.0 < run.stamp) {
                line.insert(key, (run.stamp.clone(), run.mean));
            }
        }
    }
    let mut lines: Vec<(String, Vec<AblationPoint>)> = Vec::new();
    for (label, line) in cells {
        let mut by_value: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for ((value, _), (_, mean)) in line {
            by_value.entry(value).or_default().push(mean);
        }
        let mut points: Vec<AblationPoint> = (by_value.into_iter())
            .map(|(value, v)| {
                let n = v.len() as f64;
                let mean = v.iter().sum::<f64>() / n;
                let std = (v.len() > 1).then(|| {
                    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                });
                AblationPoint {
                    value,
                    mean,
                    std,
                    seeds: v.len(),
                }
            })
            .collect();
        if numeric {
            points.sort_by(|a, b| number(&a.value).total_cmp(&number(&b.value)));
        }
        lines.push((label, points));
    }
    Ok(Ablation {
        spec: spec.clone(),
        lines,
        numeric,
    })
}

/// The line label of each of a group's runs: the group's `key=value`s and, where the runs
/// hold several configurations, the keys in which the run's configuration differs from the
/// value most of the group's runs have (ties: the smaller as text; a key a configuration
/// lacks counts as `(unset)`, but for a key only the runs of some values of the parameter
/// have, as SGD's `train.momentum` in an ablation over `train.optimizer`: it belongs to those
/// values, and its absence elsewhere splits nothing). Prints a note naming the keys that
/// split the group.
fn configuration_labels(group: &[(String, String)], members: &[&AblationRun]) -> Vec<String> {
    let mut configs: Vec<&BTreeMap<String, String>> = Vec::new();
    for run in members {
        if !configs.contains(&&run.config) {
            configs.push(&run.config);
        }
    }
    let unset = String::from("(unset)");
    let keys: std::collections::BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    // Keys whose presence the parameter's value decides: runs of one value all have it or
    // all lack it.
    let owned: std::collections::BTreeSet<&String> = (keys.iter().copied())
        .filter(|key| {
            let mut presence: BTreeMap<&String, bool> = BTreeMap::new();
            (members.iter()).all(|r| {
                let has = r.config.contains_key(*key);
                *presence.entry(&r.value).or_insert(has) == has
            })
        })
        .collect();
    let counted =
        |run: &AblationRun, key: &String| !owned.contains(key) || run.config.contains_key(key);
    // (key, most common value among the runs) of the keys whose value differs between
    // configurations.
    let mut common: Vec<(String, String)> = Vec::new();
    for key in keys {
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for run in members.iter().filter(|r| counted(r, key)) {
            *counts
                .entry(run.config.get(key).unwrap_or(&unset))
                .or_default() += 1;
        }
        if counts.len() > 1 {
            let most = counts.values().max().copied().unwrap_or(0);
            let value = counts.iter().find(|(_, &n)| n == most).map(|(v, _)| *v);
            common.push((key.clone(), value.cloned().unwrap_or_default()));
        }
    }
    if !common.is_empty() {
        let keys: Vec<&str> = common.iter().map(|(k, _)| k.as_str()).collect();
        eprintln!(
            "note: {}: runs of {} configurations (they differ in {}): one line each, labelled \
             where it differs from the most common values ({}); add keys to --group to choose \
             the lines",
            key_values(group).join(", "),
            configs.len(),
            keys.join(", "),
            key_values(&common).join(", ")
        );
    }
    members
        .iter()
        .map(|run| {
            let mut pairs = group.to_vec();
            for (key, value) in common.iter().filter(|(key, _)| counted(run, key)) {
                let mine = run.config.get(key).unwrap_or(&unset);
                if mine != value {
                    pairs.push((key.clone(), mine.clone()));
                }
            }
            key_values(&pairs).join(", ")
        })
        .collect()
}

fn number(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

/// The legend label of each line: its label and the seeds its points average.
fn ablation_labels(data: &Ablation) -> Vec<String> {
    (data.lines.iter())
        .map(|(label, points)| {
            let (lo, hi) = points.iter().fold((usize::MAX, 0), |(a, b), p| {
                (a.min(p.seeds), b.max(p.seeds))
            });
            let seeds = if lo == hi {
                format!("{lo} seed{}", if lo == 1 { "" } else { "s" })
            } else {
                format!("{lo}-{hi} seeds")
            };
            format!("{label} ({seeds})")
        })
        .collect()
}

fn draw_ablation<DB: DrawingBackend + Raster>(
    root: &DrawingArea<DB, Shift>,
    data: &Ablation,
    labels: &[String],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    // Every distinct value, in axis order, and its x position: the value (log10 where
    // positive values span 20x or more) or, for text values, its rank.
    let mut values: Vec<String> = Vec::new();
    for (_, points) in &data.lines {
        values.extend(points.iter().map(|p| p.value.clone()));
    }
    values.sort_by(|a, b| {
        if data.numeric {
            number(a).total_cmp(&number(b))
        } else {
            a.cmp(b)
        }
    });
    values.dedup();
    let nums: Vec<f64> = values.iter().map(|v| number(v)).collect();
    let log = data.numeric
        && nums.iter().all(|&v| v > 0.0)
        && nums.last().unwrap_or(&1.0) / nums.first().unwrap_or(&1.0) >= 20.0;
    let xs: Vec<f64> = if !data.numeric {
        (0..values.len()).map(|i| i as f64).collect()
    } else if log {
        nums.iter().map(|v| v.log10()).collect()
    } else {
        nums.clone()
    };
    let x_of = |value: &str| xs[values.iter().position(|v| v == value).unwrap_or(0)];
    // Where two lines have bars at one value, the lines are nudged apart (`step` each,
    // within 60% of the closest gap between values) so their bars do not hide each other;
    // otherwise every point sits on its tick. The x range is padded by 6% of the span plus
    // the widest nudge, so no point sits on the border.
    let (first, last) = (xs[0], xs[xs.len() - 1]);
    let span = if last > first { last - first } else { 1.0 };
    let gap = xs.windows(2).map(|w| w[1] - w[0]).fold(span, f64::min);
    let lines = data.lines.len();
    let with_bar = |value: &String| {
        (data.lines.iter())
            .filter(|(_, points)| points.iter().any(|p| &p.value == value && p.std.is_some()))
            .count()
    };
    let bars_meet = values.iter().any(|v| with_bar(v) > 1);
    let step = match bars_meet {
        true => (0.6 * gap / lines as f64).min(0.012 * span),
        false => 0.0,
    };
    let nudge = |i: usize| (i as f64 - (lines as f64 - 1.0) / 2.0) * step;
    let pad = 0.06 * span + nudge(lines - 1);
    let (x_lo, x_hi) = (first - pad, last + pad);
    let (y_lo, y_hi) = padded_range(data.lines.iter().flat_map(|(_, points)| {
        points.iter().flat_map(|p| {
            let s = p.std.unwrap_or(0.0);
            [p.mean - s, p.mean + s]
        })
    }));
    let spec = &data.spec;
    // The legend goes outside the plot, to its right: lines fill an ablation plot's width.
    let (legend_w, _) = legend_size(labels)?;
    let (main, side) = root.split_horizontally(root.dim_in_pixel().0 as i32 - legend_w - 10);
    let mut chart = ChartBuilder::on(&main)
        .caption(
            format!("{} vs {}", spec.metric, spec.param),
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(65)
        .build_cartesian_2d(
            KeyAxis {
                range: x_lo..x_hi,
                keys: xs.clone(),
                labels: values.clone(),
            },
            y_lo..y_hi,
        )
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc(format!(
            "{}{}",
            spec.param,
            if log { " (log scale)" } else { "" }
        ))
        .y_desc(format!(
            "{} (mean over categories{})",
            spec.metric,
            match (data.lines.iter()).any(|(_, points)| points.iter().any(|p| p.std.is_some())) {
                true => "; bars: ±1 std over seeds",
                false => "",
            }
        ))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(drawing)?;
    // An empty chart beside the plot that holds the legend.
    let mut legend = ChartBuilder::on(&side)
        .margin_top(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(drawing)?;
    for (i, ((_, points), label)) in data.lines.iter().zip(labels).enumerate() {
        let look = look(i);
        let at = |p: &AblationPoint| x_of(&p.value) + nudge(i);
        draw_line(&chart, points.iter().map(|p| (at(p), p.mean)), look, 2)?;
        for p in points {
            let Some(s) = p.std else { continue };
            let x = at(p);
            let (a, b) = (p.mean - s, p.mean + s);
            let bar = look.color.stroke_width(2);
            chart
                .draw_series([PathElement::new(vec![(x, a), (x, b)], bar)])
                .map_err(drawing)?;
            chart
                .draw_series([a, b].map(|y| {
                    EmptyElement::at((x, y)) + PathElement::new(vec![(-6, 0), (6, 0)], bar)
                }))
                .map_err(drawing)?;
        }
        chart
            .draw_series(points.iter().map(|p| {
                EmptyElement::at((at(p), p.mean))
                    + Polygon::new(marker_shape(look.marker), look.color.filled())
            }))
            .map_err(drawing)?;
        legend_entry(&mut legend, label.clone(), look, true)?;
    }
    draw_legend_at(&mut legend, SeriesLabelPosition::Coordinate(0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A complete run folder `<root>/<experiment>/<stamp>` with one metric per category.
    fn fake_run(
        root: &Path,
        experiment: &str,
        stamp: &str,
        config: &str,
        seed: u64,
        values: &[f64],
    ) {
        let dir = root.join(experiment).join(stamp);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        std::fs::write(dir.join("run.toml"), "config_sha256 = \"x\"\n").unwrap();
        let mut csv = String::from(
            "run,commit,method,backbone,dataset,category,setting,seed,epoch,metric,value\n",
        );
        let method = if config.contains("memae") {
            "memae"
        } else {
            "mnad"
        };
        for (c, v) in values.iter().enumerate() {
            csv += &format!(
                "{experiment}/{stamp},abc,{method},lite0,ds,c{c},one_class,{seed},1,image_auroc,{v}\n\
                 {experiment}/{stamp},abc,{method},lite0,ds,c{c},one_class,{seed},1,aupro,0.5\n"
            );
        }
        std::fs::write(dir.join("metrics.csv"), csv).unwrap();
    }

    fn config(method: &str, slots: i64) -> String {
        format!("seed = 0\n[method]\nkind = \"{method}\"\n[method.memory]\nslots = {slots}\n")
    }

    #[test]
    fn ablation_averages_categories_then_seeds() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let t1 = "2026-01-01T00-00-00";
        for (slots, base) in [(10, 0.6), (100, 0.7), (1000, 0.8)] {
            for seed in 0..3u64 {
                let e = format!("ab_slots-{slots}_seed-{seed}");
                let v = base + 0.01 * seed as f64; // mean over seeds: base + 0.01, std 0.01
                fake_run(
                    &runs,
                    &e,
                    t1,
                    &config("memae", slots),
                    seed,
                    &[v - 0.1, v + 0.1],
                );
            }
            let e = format!("mn_slots-{slots}_seed-0");
            fake_run(&runs, &e, t1, &config("mnad", slots), 0, &[base]);
        }
        // A re-run replaces its older run; a partial run and a run without the key are ignored.
        fake_run(
            &runs,
            "ab_slots-10_seed-0",
            "2026-01-02T00-00-00",
            &config("memae", 10),
            0,
            &[0.6],
        );
        fake_run(
            &runs,
            "ab_slots-10_seed-0",
            "2026-01-03T00-00-00.partial",
            &config("memae", 10),
            0,
            &[0.0],
        );
        fake_run(
            &runs,
            "other",
            t1,
            "seed = 0\n[method]\nkind = \"memae\"\n",
            0,
            &[0.0],
        );

        let spec = AblationSpec {
            runs: vec![runs.display().to_string()],
            param: "method.memory.slots".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let a = read_ablation(&spec).unwrap();
        assert!(a.numeric);
        let groups: Vec<&str> = a.lines.iter().map(|(g, _)| g.as_str()).collect();
        assert_eq!(groups, ["method=memae", "method=mnad"]);
        let memae = &a.lines[0].1;
        let values: Vec<&str> = memae.iter().map(|p| p.value.as_str()).collect();
        assert_eq!(values, ["10", "100", "1000"]); // numeric order, not text order
                                                   // slots = 10: seeds 0.6 (re-run), 0.61, 0.62.
        assert_eq!(memae[0].seeds, 3);
        assert!((memae[0].mean - 0.61).abs() < 1e-12);
        assert!((memae[0].std.unwrap() - 0.01).abs() < 1e-12);
        assert!((memae[2].mean - 0.81).abs() < 1e-12);
        assert_eq!(a.lines[1].1[1].std, None);
        assert!((a.lines[1].1[1].mean - 0.7).abs() < 1e-12);

        // Grouped by a config key; written as PNG and SVG with the dotted name kept.
        let by_kind = AblationSpec {
            group: "method.kind".into(),
            ..spec.clone()
        };
        let out = dir.path().join("plots");
        let files = ablation(&by_kind, &out).unwrap();
        assert_eq!(
            files,
            [
                out.join("ablation_method.memory.slots_image_auroc.png"),
                out.join("ablation_method.memory.slots_image_auroc.svg")
            ]
        );
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(
            svg.contains("kind=memae (3 seeds)") && svg.contains("kind=mnad (1 seed)"),
            "{svg}"
        );
        assert!(svg.contains("(log scale)") && svg.contains("\n1000\n</text>"));
        // Widened for the legend beside the plot.
        assert!(image::open(&files[0]).unwrap().width() > 760);

        // Errors: a table as the parameter, an unknown metric.
        let table = AblationSpec {
            param: "method.memory".into(),
            ..spec.clone()
        };
        let e = read_ablation(&table).unwrap_err().to_string();
        assert!(e.contains("`method.memory` is a table"), "{e}");
        let typo = AblationSpec {
            metric: "image_aurco".into(),
            ..spec.clone()
        };
        let e = read_ablation(&typo).unwrap_err().to_string();
        assert!(e.contains("(did you mean `image_auroc`?)"), "{e}");
        let none = AblationSpec {
            metric: "pixel_auroc".into(),
            ..spec
        };
        let e = read_ablation(&none).unwrap_err().to_string();
        assert!(
            e.contains(
                "no complete run has both `method.memory.slots` in config.toml and \
                 `pixel_auroc` in metrics.csv"
            ),
            "{e}"
        );
        assert!(
            e.contains("the runs with `method.memory.slots` have the metrics aupro, image_auroc"),
            "{e}"
        );
    }

    /// A default that config.toml leaves out (PatchCore's `method.memory.start`) is the
    /// baseline arm of its ablation, not a run without the key.
    #[test]
    fn ablation_reads_the_defaults_config_toml_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        let patchcore = "[method]\nkind = \"patchcore\"\n[method.memory]\ncoreset_ratio = 0.1\n";
        let approximate = format!("{patchcore}start = \"approximate\"\n");
        for (name, cfg, v) in [
            ("s_random", patchcore, 0.25),
            ("s_approx", &approximate, 0.5),
        ] {
            fake_run(dir.path(), name, "2026-01-01T00-00-00", cfg, 0, &[v]);
        }
        let spec = AblationSpec {
            runs: vec![format!("{}/s_*/*", dir.path().display())],
            param: "method.memory.start".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let a = read_ablation(&spec).unwrap();
        let values: Vec<&str> = a.lines[0].1.iter().map(|p| p.value.as_str()).collect();
        assert_eq!(values, ["approximate", "random_item"]);
    }

    #[test]
    fn ablation_of_text_values_is_categorical() {
        let dir = tempfile::tempdir().unwrap();
        for (i, opt) in ["sgd", "adam", "adamw"].iter().enumerate() {
            let cfg = format!("[method]\nkind = \"mnad\"\n[train]\noptimizer = \"{opt}\"\n");
            fake_run(
                dir.path(),
                &format!("o_{opt}"),
                "2026-01-01T00-00-00",
                &cfg,
                0,
                &[i as f64 / 4.0],
            );
        }
        let spec = AblationSpec {
            runs: vec![format!("{}/o_*/*", dir.path().display())],
            param: "train.optimizer".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let a = read_ablation(&spec).unwrap();
        assert!(!a.numeric);
        // The sgd run's config gets `train.momentum` (0.9: a run from before the key read
        // it from betas[0]); a key only the SGD runs have does not split the line.
        assert_eq!(a.lines.len(), 1, "{:?}", a.lines);
        let values: Vec<&str> = a.lines[0].1.iter().map(|p| p.value.as_str()).collect();
        assert_eq!(values, ["adam", "adamw", "sgd"]);
        // Several patterns: the union of their runs, a run matched twice counted once.
        let union = AblationSpec {
            runs: ["o_s*/*", "o_a*/*", "o_adam/*"]
                .map(|p| format!("{}/{p}", dir.path().display()))
                .to_vec(),
            ..spec.clone()
        };
        let b = read_ablation(&union).unwrap();
        assert_eq!(b.lines, a.lines);
        // Several group keys: the values a run has, joined; a run with none of them is an error.
        std::fs::write(
            dir.path().join("o_sgd/2026-01-01T00-00-00/config.toml"),
            "[method]\nkind = \"mnad\"\nuse_memory = false\n[train]\noptimizer = \"sgd\"\n",
        )
        .unwrap();
        let two = AblationSpec {
            group: "method, method.use_memory".into(),
            ..spec.clone()
        };
        let groups: Vec<String> = (read_ablation(&two).unwrap().lines.into_iter())
            .map(|(g, _)| g)
            .collect();
        assert_eq!(groups, ["method=mnad", "method=mnad, use_memory=false"]);
        let unknown = AblationSpec {
            group: "method.nothing,nothing".into(),
            ..spec.clone()
        };
        let e = read_ablation(&unknown).unwrap_err().to_string();
        assert!(
            e.contains("none of the keys `method.nothing`, `nothing` is a metrics.csv column"),
            "{e}"
        );
        let one_unknown = AblationSpec {
            group: "nothing".into(),
            ..spec.clone()
        };
        let e = read_ablation(&one_unknown).unwrap_err().to_string();
        assert!(
            e.contains("`nothing` is neither a metrics.csv column nor a value"),
            "{e}"
        );
        let files = ablation(&spec, &dir.path().join("p")).unwrap();
        let svg = std::fs::read_to_string(&files[1]).unwrap();
        assert!(svg.contains("\nadamw\n</text>") && !svg.contains("log scale"));
    }

    #[test]
    fn ablation_splits_configurations_instead_of_pooling_them() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let t1 = "2026-01-01T00-00-00";
        let cfg = |epochs: i64, init: &str, seed: u64| {
            format!(
                "name = \"x\"\nseed = {seed}\n[method]\nkind = \"mddnet\"\n\
                 [method.memory]\ninit = \"{init}\"\n[train]\nepochs = {epochs}\n"
            )
        };
        for seed in 0..3u64 {
            for epochs in [10, 30] {
                let e = format!("syn_epochs-{epochs}_seed-{seed}");
                fake_run(&runs, &e, t1, &cfg(epochs, "random", seed), seed, &[0.9]);
            }
            // A second experiment at 30 epochs with another init; the same config under a
            // second name (a re-run of seed 0, later) replaces the first, not a new seed.
            let e = format!("feat_epochs-30_seed-{seed}");
            fake_run(&runs, &e, t1, &cfg(30, "features", seed), seed, &[0.7]);
        }
        fake_run(
            &runs,
            "feat_again_seed-0",
            "2026-01-02T00-00-00",
            &cfg(30, "features", 0),
            0,
            &[0.5],
        );
        let spec = AblationSpec {
            runs: vec![runs.display().to_string()],
            param: "train.epochs".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let a = read_ablation(&spec).unwrap();
        let labels: Vec<&str> = a.lines.iter().map(|(l, _)| l.as_str()).collect();
        // `random` is the init most runs have (6 of 10).
        assert_eq!(labels, ["method=mnad", "method=mnad, init=features"]);
        let base = &a.lines[0].1;
        assert_eq!(base.len(), 2);
        assert!(base
            .iter()
            .all(|p| p.seeds == 3 && (p.mean - 0.9).abs() < 1e-12));
        let features = &a.lines[1].1;
        assert_eq!(features.len(), 1);
        assert_eq!(features[0].seeds, 3);
        assert!((features[0].mean - (0.5 + 0.7 + 0.7) / 3.0).abs() < 1e-12);
        assert_eq!(
            ablation_labels(&a)[1],
            "method=mnad, init=features (3 seeds)"
        );
    }

    #[test]
    fn a_parameter_no_run_has_and_an_experiment_folder_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let stamp = "2026-01-01T00-00-00";
        fake_run(&runs, "x", stamp, &config("mnad", 10), 0, &[0.9]);
        let spec = AblationSpec {
            runs: vec![runs.display().to_string()],
            param: "method.memory.slot".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let msg = read_ablation(&spec).unwrap_err().to_string();
        assert!(
            msg.contains("none of the 1 run(s) has `method.memory.slot`")
                && msg.contains("did you mean `method.memory.slots`?"),
            "{msg}"
        );
        // A misspelled second group key is an error, not a key every run lacks.
        let spec = AblationSpec {
            param: "method.memory.slots".into(),
            group: "method,method.memory.slot".into(),
            ..spec
        };
        let msg = read_ablation(&spec).unwrap_err().to_string();
        assert!(
            msg.contains("--group `method.memory.slot`: no run has it")
                && msg.contains("did you mean `method.memory.slots`?"),
            "{msg}"
        );
        // An experiment's folder instead of one of its runs: named, and no plots folder.
        let msg = run(&runs.join("x"), None).unwrap_err().to_string();
        assert!(
            msg.contains("is an experiment's folder, not a run")
                && msg.contains(&format!(
                    "memad plot {}",
                    runs.join("x").join(stamp).display()
                )),
            "{msg}"
        );
        assert!(!runs.join("x/plots").exists());
        // An unfinished run: only with --out, so no stale plots move with it when it ends.
        let partial = runs.join("x/2026-01-02T00-00-00.partial");
        std::fs::create_dir_all(&partial).unwrap();
        let msg = run(&partial, None).unwrap_err().to_string();
        assert!(
            msg.contains("is an unfinished run") && msg.contains("--out"),
            "{msg}"
        );
        assert!(!partial.join("plots").exists());
    }

    #[test]
    fn labels_use_the_last_key_segment_unless_two_end_alike() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            key_values(&pairs(&[
                ("method.memory.addressing", "cosine"),
                ("train.epochs", "2")
            ])),
            ["addressing=cosine", "epochs=2"]
        );
        assert_eq!(
            key_values(&pairs(&[("method.frames", "5"), ("data.clip.frames", "5")])),
            ["method.frames=5", "data.clip.frames=5"]
        );
    }
}
