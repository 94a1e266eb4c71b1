//! `memad eval RUN [--set KEY=V1,V2]...`: scores the test sets again with the trained
//! checkpoints of a complete run, under evaluation settings the run did not use, without
//! training again: the memory frozen or updated at test time, other metrics, another
//! anomaly-map weight, bf16 scoring, CUDA graphs.
//!
//! `--set` takes values as `memad sweep` does and each combination is one evaluation, named
//! as a sweep names it, written to `RUN/evals/<name>/<stamp>/` (`.partial` until done) with
//! what a run writes except checkpoints and losses: `config.toml` (the run's resolved config
//! with the overrides), `metrics.csv`, scores, timings, overlays, `log.txt`, and `run.toml`,
//! whose `[evaluates]` names the run and the overrides. Without `--set` it repeats the run's
//! own evaluation: the same numbers, a check that a checkpoint still scores as it did.
//!
//! Only keys that cannot change what was trained may be overridden: `device`, `precision`,
//! `channels_last`, `cudnn_benchmark`, `cuda_graphs`, `data.eval_batch_size`, `data.cache`,
//! `eval.*`, and `method.*` except `method.kind`, the memory's `kind`, loss weights and
//! initialisation, the backbone's `kind`, `weights` and `levels`, and the method's keys that
//! training fixed but a checkpoint would load under ([`trained_keys_of`]: PatchCore's
//! feature extraction and bank, loss forms and weights, augmentations). A `method.*`
//! override that changes the model's variables fails to load the checkpoint, naming the
//! variable; one the fitted state does not allow (a PatchCore bank smaller than
//! `reweight_neighbours`) is that state's refusal. The folder of an evaluation is refused, naming the
//! run it evaluated, and an experiment's folder, naming its runs. An interrupted or failed
//! evaluation leaves no folder behind.
use crate::evaluate::evaluate_category;
use crate::experiment::{self, Loaded};
use crate::output::{csv_text, timestamp, MetricRow, RunDir};
use crate::run::{
    absolute_root, class_indices, classes_file, load_checkpoint, metric_rows, model_groups,
    model_name, prepare, read_trained_classes, results_by_category, say, say_commits,
    say_cuda_only_switches, say_notes, sha256_hex, Prepared, RunMeta, RunSummary,
};
use crate::run_folders::is_complete;
use crate::sweep::{combinations, parse_set, Combination};
use anyhow::Context;
use memad_core::{BuildContext, Registry};
use memad_data::mvtec::CategorySplit;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args)]
pub struct EvalArgs {
    /// A complete run folder (`runs/<name>/<stamp>`).
    pub run: PathBuf,
    /// `KEY=V1,V2,...`: an evaluation setting and its values (repeatable; every combination
    /// is evaluated).
    #[arg(long = "set")]
    pub set: Vec<String>,
    /// Folder of converted weights (default `~/.cache/memad/weights`).
    #[arg(long)]
    pub weights_dir: Option<PathBuf>,
}

/// `[evaluates]` of an evaluation's `run.toml`.
#[derive(serde::Serialize)]
pub struct EvaluatedRun {
    /// The run whose checkpoints were scored.
    pub run: String,
    /// `KEY = VALUE` of each override.
    pub overrides: Vec<String>,
}

/// The keys (and key prefixes, ending in `.`) `--set` may change.
const EVAL_KEYS: [&str; 9] = [
    "device",
    "precision",
    "channels_last",
    "cudnn_benchmark",
    "cuda_graphs",
    "data.eval_batch_size",
    "data.cache",
    "eval.",
    "method.",
];

/// Keys under `method.` (and tables, ending in `.`: every key in them) that pick or fill
/// what was trained, whatever the method. Every key of every memory kind is fixed by
/// training: a size, what the trained items were read with (a temperature, PatchCore's
/// coreset), or a loss weight.
const TRAINED_KEYS: [&str; 14] = [
    "method.kind",
    "method.memory.kind",
    // What only training reads: the memories' loss weights and item initialisation. A
    // memory's read settings (MemAE's `shrink_threshold` and `addressing`, a `temperature`)
    // act at scoring too and stay open; sizes change the variables and fail to load.
    "method.memory.init",
    "method.memory.compactness_weight",
    "method.memory.separateness_weight",
    "method.memory.entropy_weight",
    "method.memory.classification_weight",
    "method.memory.contrast_weight",
    "method.memory.usage_weight",
    "method.memory.anomaly_weight",
    "method.memory.anomaly_margin",
    "method.backbone.kind",
    "method.backbone.weights",
    "method.backbone.levels",
];

/// The keys of method `kind` fixed by training (as [`TRAINED_KEYS`]) whose change the
/// checkpoint still loads under: what the features or the trained variables mean, and what
/// only training reads (a loss, its weights, the augmentations). Keys that change a
/// variable's shape are left out: the checkpoint fails to load, naming the variable.
fn trained_keys_of(kind: &str) -> &'static [&'static str] {
    match kind {
        // The bank holds features of this extraction, selected as `method.memory` says;
        // `patch_distance`, `image_score`, `reweight_neighbours` and `map_sigma` only score.
        "patchcore" => &[
            "method.memory.",
            "method.patch_size",
            "method.pretrain_embed_dim",
            "method.target_embed_dim",
        ],
        "rd4ad" => &["method.loss"],
        "mddnet" => &[
            "method.loss",
            "method.restoration_weight",
            "method.identity_weight",
            "method.discrepancy_weight",
        ],
        // Must match `[data.clip] frames`, which an evaluation cannot change.
        "mnad" | "memae" => &["method.frames"],
        // Nothing of these only scores (MSCM's score reads its memories' nearest items, not
        // their softmax: the memory's temperature only trains); a key that changes a
        // variable's shape fails to load anyway, but `scales` and `detector.deviation` are
        // listed to say why.
        "mscm" | "contrastive" => &[
            "method.memory.temperature",
            "method.stage1_epochs",
            "method.scales",
            "method.ntxent_temperature",
            "method.ntxent_weight",
            "method.sample_contrast_weight",
            "method.encoder.stem_stride",
            "method.augment.",
            "method.detector.deviation",
            "method.detector.pseudo_anomalies",
            "method.detector.noise_std",
        ],
        _ => &[],
    }
}

/// Whether `key` is the trained key (or table, ending in `.`) `trained`, a key in that
/// table, or a table holding it.
fn is_trained(key: &str, trained: &str) -> bool {
    let in_it = match trained.strip_suffix('.') {
        Some(table) => key == table || key.starts_with(trained),
        None => key == trained,
    };
    in_it || trained.starts_with(&format!("{key}."))
}

/// `key`, or `table.*` for a table (ending in `.`).
fn shown(key: &str) -> String {
    match key.ends_with('.') {
        true => format!("{key}*"),
        false => key.to_string(),
    }
}

/// Whether `key` is an evaluation setting of a run of method `kind`; the error says which
/// keys are. A table that holds a trained key (`method.backbone`, set whole) is refused
/// with it.
fn check_key(key: &str, kind: &str) -> anyhow::Result<()> {
    let allowed = EVAL_KEYS.iter().any(|k| match k.ends_with('.') {
        true => key.starts_with(k),
        false => key == *k,
    });
    let fixed: Vec<&str> = (TRAINED_KEYS.iter().copied())
        .chain(trained_keys_of(kind).iter().copied())
        .collect();
    let trained = fixed.iter().any(|t| is_trained(key, t));
    let others: Vec<String> = (EVAL_KEYS.iter())
        .filter(|k| **k != "method.")
        .map(|k| shown(k))
        .collect();
    let except: Vec<String> = fixed.iter().map(|k| shown(k)).collect();
    anyhow::ensure!(
        allowed && !trained,
        "--set {key}: not an evaluation setting{}; an evaluation may change {}, and method.* \
         except {} and the tables holding them (to train with other settings, use `memad \
         sweep`)",
        match trained {
            true => format!(" (fixed when the {kind} model was trained)"),
            false => String::new(),
        },
        others.join(", "),
        except.join(", ")
    );
    Ok(())
}

/// Refuses a folder `memad eval` wrote (`RUN/evals/<name>/<stamp>`: its `run.toml` has
/// `[evaluates]`), naming the run it evaluated: it has no checkpoints of its own.
fn check_not_an_evaluation(folder: &Path) -> anyhow::Result<()> {
    let meta: Option<toml::Table> = std::fs::read_to_string(folder.join("run.toml"))
        .ok()
        .and_then(|t| toml::from_str(&t).ok());
    let evaluates = meta.as_ref().and_then(|m| m.get("evaluates"));
    // `RUN/evals/<name>/<stamp>`, when the folder sits where `memad eval` put it.
    let parent_run = (folder.ancestors().nth(2))
        .filter(|evals| evals.file_name().is_some_and(|n| n == "evals"))
        .and_then(|evals| evals.parent())
        .map(Path::to_path_buf);
    if evaluates.is_none() && (parent_run.is_none() || folder.join("checkpoints").exists()) {
        return Ok(());
    }
    let recorded = evaluates
        .and_then(|e| e.get("run"))
        .and_then(|r| r.as_str());
    let run = match (parent_run.filter(|r| is_complete(r)), recorded) {
        (Some(run), _) => run.display().to_string(),
        (None, Some(recorded)) => recorded.to_string(),
        (None, None) => anyhow::bail!(
            "{} is an evaluation folder: this is the output of `memad eval`; pass the run \
             folder it evaluated",
            folder.display()
        ),
    };
    anyhow::bail!(
        "{} is an evaluation folder (the output of `memad eval`), not a run: it evaluated \
         the run {run}; pass that run folder (`memad eval {run}`)",
        folder.display()
    )
}

/// Refuses a folder that is not a complete run: one that does not exist; an experiment's
/// folder (`runs/<name>`), naming its complete runs, newest first; any other.
fn check_run_folder(folder: &Path) -> anyhow::Result<()> {
    if is_complete(folder) {
        return Ok(());
    }
    anyhow::ensure!(
        folder.exists(),
        "{} does not exist: pass a complete run folder (`runs/<name>/<stamp>`)",
        folder.display()
    );
    let mut runs = crate::run_folders::complete_runs_in(folder);
    runs.retain(|r| check_not_an_evaluation(r).is_ok());
    if let Some(newest) = runs.first() {
        const SHOWN: usize = 5;
        let mut named: Vec<String> = (runs.iter().take(SHOWN))
            .map(|r| r.display().to_string())
            .collect();
        if runs.len() > SHOWN {
            named.push("...".into());
        }
        anyhow::bail!(
            "{} is not a complete run folder but an experiment's folder: it holds {} complete \
             run(s), newest first: {}; evaluate one, e.g. `memad eval {}`",
            folder.display(),
            runs.len(),
            named.join(", "),
            newest.display()
        );
    }
    anyhow::bail!(
        "{} is not a complete run folder (one that `memad run` finished: it holds run.toml \
         and its name does not end in .partial; an unfinished run is finished by running its \
         experiment again)",
        folder.display()
    )
}

/// Evaluates every combination of `args.set` with the checkpoints of `args.run`.
pub fn run(
    args: &EvalArgs,
    datasets: &Option<PathBuf>,
    registry: &Registry,
) -> anyhow::Result<Vec<RunSummary>> {
    let run = &args.run;
    check_run_folder(run)?;
    check_not_an_evaluation(run)?;
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let mut base: toml::Value =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", config.display()))?;
    // An SGD run from before `train.momentum` is evaluated with the momentum it trained with.
    crate::run_folders::fill_sgd_momentum(&mut base);
    let toml::Value::Table(base) = base else {
        anyhow::bail!("{}: not a TOML table", config.display());
    };
    let name = (base.get("name").and_then(|n| n.as_str()))
        .with_context(|| format!("{}: no `name`", config.display()))?;
    let axes = (args.set.iter())
        .map(|s| parse_set(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let kind = (base.get("method").and_then(|m| m.get("kind")))
        .and_then(|k| k.as_str())
        .unwrap_or_default();
    for axis in &axes {
        check_key(&axis.key, kind)?;
    }
    let catalog = crate::catalog_for(datasets, run)?;
    let weights_dir =
        (args.weights_dir.clone()).unwrap_or_else(memad_backbones::weights::default_weights_dir);
    // Resolve every combination before anything is scored: a bad value fails early.
    let mut planned = Vec::new();
    for combo in combinations(name, &axes)? {
        let mut exp = combo.apply(&base)?;
        exp.insert("name".into(), toml::Value::String(combo.name.clone()));
        let loaded = experiment::load_text(&toml::to_string(&exp)?, &config, registry, &catalog)
            .with_context(|| match combo.overrides.is_empty() {
                true => "the run's config.toml".to_string(),
                false => format!("the run's config.toml with --set {}", describe(&combo)),
            })?;
        planned.push((combo, loaded));
    }
    // Overrides cannot change the dataset: one check serves every combination.
    if let Some((_, loaded)) = planned.first() {
        check_dataset_root(run, loaded, datasets.is_some())?;
    }
    let mut summaries = Vec::new();
    for (combo, loaded) in &planned {
        summaries.push(evaluate_run(run, combo, loaded, registry, &weights_dir)?);
    }
    Ok(summaries)
}

/// Refuses to score `run` on another copy of its data than the one it read (`run.toml`'s
/// `dataset_root`; runs made before it was recorded are not checked), before anything is
/// read or generated; with a catalog named by `--datasets` it only warns.
fn check_dataset_root(run: &Path, loaded: &Loaded, explicit: bool) -> anyhow::Result<()> {
    let path = run.join("run.toml");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let meta: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", path.display()))?;
    let Some(recorded) = meta.get("dataset_root").and_then(|v| v.as_str()) else {
        return Ok(());
    };
    let found = absolute_root(&loaded.dataset.root);
    if found == recorded {
        return Ok(());
    }
    let what = format!(
        "the run read dataset `{}` at {recorded}, the datasets.toml found now puts it at {found}",
        loaded.dataset.name
    );
    anyhow::ensure!(
        explicit,
        "{what}; pass --datasets with the catalog the run used (or with this one, to score \
         the run on this copy)"
    );
    eprintln!("warning: {what}; scoring on the copy --datasets names");
    Ok(())
}

/// How the test images of `split` (under the dataset root `root` now) differ from those the
/// run scored (`scores/<category>.csv`, under the `dataset_root` of its `run.toml`), by
/// their paths below each root; `None` when they are the same or the run has no scores
/// for the category.
fn test_set_change(
    run: &Path,
    split: &CategorySplit,
    root: &str,
) -> anyhow::Result<Option<String>> {
    let scores = run.join(format!("scores/{}.csv", split.category));
    if !scores.is_file() {
        return Ok(None);
    }
    let recorded = crate::run_folders::run_dataset_root(run);
    let recorded = recorded.as_deref().unwrap_or(root);
    let below = |path: &str, root: &str| -> String {
        let p = Path::new(path);
        p.strip_prefix(root).unwrap_or(p).display().to_string()
    };
    let mut reader =
        csv::Reader::from_path(&scores).with_context(|| format!("reading {}", scores.display()))?;
    let column = (reader.headers()?.iter())
        .position(|h| h == "image")
        .with_context(|| format!("{}: no `image` column", scores.display()))?;
    let mut scored = std::collections::BTreeSet::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("reading {}", scores.display()))?;
        scored.insert(below(&record[column], recorded));
    }
    let now: std::collections::BTreeSet<String> = (split.test.iter())
        .map(|s| below(&s.image.display().to_string(), root))
        .collect();
    if scored == now {
        return Ok(None);
    }
    let gone: Vec<&String> = scored.difference(&now).collect();
    let new: Vec<&String> = now.difference(&scored).collect();
    let first = gone
        .first()
        .or(new.first())
        .map_or(String::new(), |p| format!("; e.g. {p}"));
    Ok(Some(format!(
        "the test set is not the one the run scored: {} of its {} images are gone, {} are new{first}; \
         these numbers are not the run's",
        gone.len(),
        scored.len(),
        new.len()
    )))
}

/// `KEY = VALUE, ...` of a combination, or `no overrides`.
fn describe(combo: &Combination) -> String {
    if combo.overrides.is_empty() {
        return "no overrides".into();
    }
    combo.overrides_text()
}

/// One evaluation: every model of `run` loaded under `loaded`'s config, every category
/// scored, written to `run/evals/<combination>/<stamp>/`.
fn evaluate_run(
    run: &Path,
    combo: &Combination,
    loaded: &Loaded,
    registry: &Registry,
    weights_dir: &Path,
) -> anyhow::Result<RunSummary> {
    let exp = &loaded.experiment;
    // Until its folder exists (reading the data may take a while); an evaluation finished
    // before it said so when it finished.
    let name = combo.name.clone();
    crate::interrupt::on_interrupt(move || {
        format!(
            "the evaluation {name} (and any after it) had not started: nothing of it was written"
        )
    });
    let Prepared {
        device,
        categories,
        splits,
        notes,
    } = prepare(exp, loaded)?;
    let groups = model_groups(exp, &splits);
    for group in &groups {
        let path = checkpoint_of(run, &model_name(exp, group));
        anyhow::ensure!(
            path.is_file(),
            "{} is missing: the run has no trained model for {}",
            path.display(),
            group
                .iter()
                .map(|s| s.category.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let resolved = exp.to_toml();
    // An evaluation killed outright (no Ctrl-C handler ran) left its folder: nothing in it
    // can be resumed.
    for stale in crate::run_folders::partial_runs_of(&run.join("evals"), &combo.name) {
        crate::run_folders::remove_abandoned(&stale, "an evaluation killed before it finished")?;
    }
    let create = || {
        let dir = RunDir::create(&run.join("evals"), &combo.name, &timestamp())?;
        dir.write("config.toml", resolved.as_bytes())?;
        Ok(dir)
    };
    let mut dir = crate::interrupt::after_creating(create, |dir: &RunDir| {
        let partial = dir.partial.clone();
        move || {
            remove_unfinished(&partial);
            format!(
                "the unfinished evaluation {} was removed (an evaluation has nothing to resume)",
                partial.display()
            )
        }
    })?;
    let started = Instant::now();
    let header = format!(
        "memad {} eval | {} on {} | device {device:?} | checkpoints of {} | {}",
        env!("CARGO_PKG_VERSION"),
        exp.method_kind(),
        loaded.dataset.name,
        run.display(),
        describe(combo)
    );
    say(&mut dir, &header);
    say_notes(&mut dir, &notes);
    let checkout = say_commits(&mut dir);
    say_cuda_only_switches(exp, device, &mut dir);
    match score_models(
        run,
        loaded,
        registry,
        device,
        weights_dir,
        &groups,
        !combo.overrides.is_empty(),
        &mut dir,
    ) {
        Ok(rows) => {
            let _ = std::fs::remove_dir(dir.path("checkpoints")); // an evaluation trains nothing
            let mut meta = RunMeta::new(
                crate::run::Session::now(loaded, device),
                loaded.experiment.seed,
                device,
                started,
                sha256_hex(resolved.as_bytes()),
                checkout,
                &mut dir,
            );
            meta.evaluates = Some(EvaluatedRun {
                run: run.display().to_string(),
                overrides: (combo.overrides.iter())
                    .map(|(k, v)| format!("{k} = {v}"))
                    .collect(),
            });
            dir.write("run.toml", toml::to_string(&meta)?.as_bytes())?;
            say(
                &mut dir,
                &format!("finished in {:.1} s", started.elapsed().as_secs_f64()),
            );
            Ok(RunSummary {
                folder: crate::interrupt::finishing(|| dir.finish())?,
                results: results_by_category(&categories, &rows),
            })
        }
        Err(e) => {
            remove_unfinished(&dir.partial);
            Err(e)
        }
    }
}

/// Removes an unfinished evaluation's folder `RUN/evals/<name>/<stamp>.partial` (nothing in
/// it can be resumed), then `evals/<name>/` and `evals/` when left empty.
fn remove_unfinished(partial: &Path) {
    let _ = std::fs::remove_dir_all(partial);
    for parent in partial.ancestors().skip(1).take(2) {
        let _ = std::fs::remove_dir(parent); // only when empty
    }
}

/// Loads each group's model from `run`'s checkpoint and scores its categories into `dir`;
/// returns the metric rows. `overridden`: the config has `--set` overrides (which a
/// checkpoint that fails to load may be the fault of).
#[allow(clippy::too_many_arguments)]
fn score_models(
    run: &Path,
    loaded: &Loaded,
    registry: &Registry,
    device: tch::Device,
    weights_dir: &Path,
    groups: &[Vec<&CategorySplit>],
    overridden: bool,
    dir: &mut RunDir,
) -> anyhow::Result<Vec<MetricRow>> {
    let exp = &loaded.experiment;
    let run_label = format!("{}/{}", exp.name, dir.stamp());
    let mut rows: Vec<MetricRow> = Vec::new();
    for group in groups {
        let model = model_name(exp, group);
        let trained = read_trained_classes(&run.join(classes_file(&model)))?;
        let classes = class_indices(group, trained.as_deref(), &model)?;
        let ctx = BuildContext {
            device,
            weights_dir: weights_dir.to_path_buf(),
            image_size: exp.data.image_size as i64,
            classes: trained.as_ref().map_or(group.len(), Vec::len),
        };
        let path = checkpoint_of(run, &model);
        let method = load_model(exp, registry, &ctx, &path, overridden)?;
        say(dir, &format!("[{model}] loaded {}", path.display()));
        for (&class, split) in classes.iter().zip(group) {
            if let Some(change) = test_set_change(run, split, &absolute_root(&loaded.dataset.root))?
            {
                say(dir, &format!("[{}] warning: {change}", split.category));
            }
            let values = evaluate_category(
                exp,
                loaded.dataset.format,
                &ctx,
                &model,
                split,
                class,
                method.as_ref(),
                dir,
            )?;
            rows.extend(metric_rows(exp, loaded, &run_label, split, values));
            dir.write("metrics.csv", &csv_text(&rows)?)?;
        }
    }
    Ok(rows)
}

/// The model of `exp` with the trained state of `checkpoint` (`run::load_checkpoint`, whose
/// errors say which part failed). `overridden`: the config has `--set` overrides, which the
/// error of variables that do not load names as the likely cause. A config that cannot build
/// the model (`precision = "bf16"` off CUDA, backbone weights missing) is that error, as it
/// is: not one of loading the checkpoint, which was never read. A fitted state the config
/// refuses (a PatchCore bank smaller than an overridden `reweight_neighbours`) is that
/// refusal, not a variable that does not load.
fn load_model(
    exp: &crate::experiment::Experiment,
    registry: &Registry,
    ctx: &BuildContext,
    checkpoint: &Path,
    overridden: bool,
) -> anyhow::Result<Box<dyn memad_core::Method>> {
    let hint = match overridden {
        true => " (an override that changes the model's variables cannot load)",
        false => "",
    };
    load_checkpoint(exp, registry, ctx, checkpoint, hint)
}

/// `run/checkpoints/<model>.safetensors`.
fn checkpoint_of(run: &Path, model: &str) -> PathBuf {
    run.join(format!("checkpoints/{model}.safetensors"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_evaluation_settings_may_be_overridden() {
        for key in [
            "device",
            "precision",
            "cuda_graphs",
            "data.eval_batch_size",
            "eval.metrics",
            "eval.overlays",
            "method.test_time_update",
            "method.update_threshold",
            "method.backbone.channels_last",
        ] {
            assert!(check_key(key, "mnad").is_ok(), "{key}");
        }
        for key in [
            "train.lr",
            "seed",
            "name",
            "data.image_size",
            "data.dataset",
            "data.setting",
            "data.synthesis.kind",
            "evaluation",
            "method",
            "methods.x",
            "method.kind",
            "method.memory.kind",
            "method.backbone.weights",
            // Whole tables holding a trained key.
            "method.backbone",
            "method.memory",
        ] {
            let msg = check_key(key, "mnad").unwrap_err().to_string();
            assert!(
                msg.contains(&format!("--set {key}: not an evaluation setting")),
                "{msg}"
            );
            assert!(
                msg.contains("eval.*") && msg.contains("memad sweep"),
                "{msg}"
            );
            assert_eq!(msg.matches("method.*").count(), 1, "{msg}");
        }
    }

    /// `check_key`'s refusal of a key training fixed, as the other trained keys'.
    fn refused_as_trained(key: &str, kind: &str) {
        let msg = check_key(key, kind).unwrap_err().to_string();
        let says = format!(
            "--set {key}: not an evaluation setting (fixed when the {kind} model was trained)"
        );
        assert!(msg.contains(&says), "{msg}");
        assert!(msg.contains("memad sweep"), "{msg}");
        assert_eq!(msg.matches("method.*").count(), 1, "{msg}");
    }

    #[test]
    fn patchcore_keys_fixed_when_the_bank_was_fitted_are_refused() {
        for key in [
            "method.patch_size",
            "method.pretrain_embed_dim",
            "method.target_embed_dim",
            "method.memory.coreset_ratio",
            "method.memory.projection_dim",
            "method.memory.start",
        ] {
            refused_as_trained(key, "patchcore");
        }
        let msg = check_key("method.patch_size", "patchcore")
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("method.memory.*") && msg.contains("method.target_embed_dim"),
            "{msg}"
        );
        // What only scores stays an evaluation setting.
        for key in [
            "method.patch_distance",
            "method.image_score",
            "method.reweight_neighbours",
            "method.map_sigma",
            "method.backbone.precision",
            "method.backbone.channels_last",
        ] {
            assert!(check_key(key, "patchcore").is_ok(), "{key}");
        }
    }

    #[test]
    fn other_methods_keys_fixed_by_training_are_refused() {
        for (kind, key) in [
            ("rd4ad", "method.loss"),
            ("mddnet", "method.loss"),
            ("mddnet", "method.restoration_weight"),
            ("mddnet", "method.identity_weight"),
            ("mddnet", "method.discrepancy_weight"),
            ("mddnet", "method.memory.init"),
            ("mnad", "method.frames"),
            ("mnad", "method.memory.compactness_weight"),
            ("memae", "method.frames"),
            ("memae", "method.memory.entropy_weight"),
            ("mscm", "method.stage1_epochs"),
            ("mscm", "method.scales"),
            ("mscm", "method.encoder.stem_stride"),
            ("mscm", "method.encoder"),
            ("mscm", "method.augment"),
            ("mscm", "method.augment.flip"),
            ("mscm", "method.detector.deviation"),
            ("mscm", "method.memory.anomaly_margin"),
            ("mscm", "method.memory.temperature"),
            ("contrastive", "method.ntxent_temperature"),
        ] {
            refused_as_trained(key, kind);
        }
        for (kind, key) in [
            ("rd4ad", "method.map_sigma"),
            ("mddnet", "method.discrepancy_map_weight"),
            ("mddnet", "method.class_source"),
            ("mnad", "method.psnr_weight"),
            ("mnad", "method.test_time_update"),
            ("memae", "method.score"),
            // A memory's read settings act at scoring too.
            ("mddnet", "method.memory.temperature"),
            ("memae", "method.memory.shrink_threshold"),
            ("memae", "method.memory.addressing"),
            // Shape keys fail to load, naming the variable.
            ("rd4ad", "method.embed_channels"),
            // Another method's key is not refused as this one's.
            ("rd4ad", "method.patch_size"),
        ] {
            assert!(check_key(key, kind).is_ok(), "{kind} {key}");
        }
    }

    #[test]
    fn a_changed_test_set_is_named_by_paths_below_each_root() {
        use memad_data::mvtec::{Label, Sample};
        let dir = tempfile::tempdir().unwrap();
        let run = dir.path();
        std::fs::write(run.join("run.toml"), "dataset_root = \"/old/data\"\n").unwrap();
        std::fs::create_dir_all(run.join("scores")).unwrap();
        std::fs::write(
            run.join("scores/c.csv"),
            "image,video,defect,label,score\n/old/data/c/test/good/0.png,,good,0,1\n\
             /old/data/c/test/hole/1.png,,hole,1,2\n",
        )
        .unwrap();
        let sample = |p: &str, label| Sample::still(p.into(), label, "x", None);
        let mut split = CategorySplit {
            category: "c".into(),
            train: Vec::new(),
            test: vec![
                sample("/new/data/c/test/good/0.png", Label::Normal),
                sample("/new/data/c/test/hole/1.png", Label::Anomalous),
            ],
        };
        // The same images under another root: the same test set.
        assert_eq!(test_set_change(run, &split, "/new/data").unwrap(), None);
        split.test.pop();
        split
            .test
            .push(sample("/new/data/c/test/hole/2.png", Label::Anomalous));
        let change = test_set_change(run, &split, "/new/data").unwrap().unwrap();
        assert!(
            change.contains("1 of its 2 images are gone, 1 are new; e.g. c/test/hole/1.png"),
            "{change}"
        );
        // No scores for the category: nothing to compare.
        split.category = "d".into();
        assert_eq!(test_set_change(run, &split, "/new/data").unwrap(), None);
    }

    /// A complete run folder `dir/runs/<name>/<stamp>` of `config` (its `config.toml`).
    fn fake_run(dir: &Path, config: &str) -> PathBuf {
        let run = dir.join("runs/patchcore_synthetic/2026-01-01T00-00-00");
        std::fs::create_dir_all(run.join("checkpoints")).unwrap();
        std::fs::write(run.join("config.toml"), config).unwrap();
        std::fs::write(run.join("run.toml"), "seed = 0\n").unwrap();
        run
    }

    fn eval_error(run: &Path, set: &[&str]) -> String {
        let args = EvalArgs {
            run: run.to_path_buf(),
            set: set.iter().map(|s| s.to_string()).collect(),
            weights_dir: None,
        };
        let e = run_eval(&args).err().expect("refused");
        format!("{e:#}")
    }

    fn run_eval(args: &EvalArgs) -> anyhow::Result<Vec<RunSummary>> {
        run(args, &None, &crate::registry())
    }

    const PATCHCORE: &str = "name = \"patchcore_synthetic\"\n[method]\nkind = \"patchcore\"\n";

    #[test]
    fn a_patchcore_run_refuses_fit_time_overrides() {
        let dir = tempfile::tempdir().unwrap();
        let run = fake_run(dir.path(), PATCHCORE);
        for set in ["method.patch_size=1", "method.memory.coreset_ratio=0.5"] {
            let msg = eval_error(&run, &[set]);
            let key = set.split('=').next().unwrap();
            assert!(
                msg.starts_with(&format!(
                    "--set {key}: not an evaluation setting (fixed when the patchcore model \
                     was trained)"
                )),
                "{msg}"
            );
        }
    }

    #[test]
    fn an_evaluation_folder_is_refused_naming_the_run_it_evaluated() {
        let dir = tempfile::tempdir().unwrap();
        let run = fake_run(dir.path(), PATCHCORE);
        let eval = run.join("evals/patchcore_synthetic_image_score-reweighted/stamp");
        std::fs::create_dir_all(&eval).unwrap();
        std::fs::write(eval.join("config.toml"), PATCHCORE).unwrap();
        let evaluates = format!(
            "seed = 0\n[evaluates]\nrun = \"{}\"\noverrides = [\"method.image_score = \\\"reweighted\\\"\"]\n",
            run.display()
        );
        std::fs::write(eval.join("run.toml"), &evaluates).unwrap();
        let msg = eval_error(&eval, &[]);
        assert_eq!(
            msg,
            format!(
                "{} is an evaluation folder (the output of `memad eval`), not a run: it \
                 evaluated the run {run}; pass that run folder (`memad eval {run}`)",
                eval.display(),
                run = run.display()
            )
        );
        assert!(!msg.contains("is missing"), "{msg}");

        // Moved away from its run: the run its run.toml records.
        let moved = dir.path().join("moved");
        std::fs::rename(&eval, &moved).unwrap();
        let msg = eval_error(&moved, &[]);
        assert!(
            msg.contains("is an evaluation folder")
                && msg.contains(&format!("it evaluated the run {}", run.display())),
            "{msg}"
        );

        // Nothing records the run: an evaluation by where it is, without checkpoints.
        std::fs::rename(&moved, &eval).unwrap();
        std::fs::write(eval.join("run.toml"), "seed = 0\n").unwrap();
        std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
        std::fs::remove_file(run.join("run.toml")).unwrap();
        let msg = eval_error(&eval, &[]);
        assert!(
            msg.contains(
                "is an evaluation folder: this is the output of `memad eval`; pass the run \
                 folder it evaluated"
            ),
            "{msg}"
        );
        // A run is not taken for one.
        assert!(check_not_an_evaluation(&fake_run(dir.path(), PATCHCORE)).is_ok());
    }

    #[test]
    fn a_missing_folder_or_an_experiment_s_folder_is_refused_naming_the_runs() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("runs/quickstart/2026-01-01T00-00-00");
        assert_eq!(
            eval_error(&missing, &[]),
            format!(
                "{} does not exist: pass a complete run folder (`runs/<name>/<stamp>`)",
                missing.display()
            )
        );
        // An experiment's folder: its complete runs, newest first (not `.partial` ones, not
        // evaluations).
        let older = fake_run(dir.path(), PATCHCORE);
        let experiment = older.parent().unwrap().to_path_buf();
        let newer = experiment.join("2026-01-02T00-00-00");
        std::fs::create_dir_all(&newer).unwrap();
        std::fs::write(newer.join("run.toml"), "").unwrap();
        std::fs::create_dir_all(experiment.join("2026-01-03T00-00-00.partial")).unwrap();
        assert_eq!(
            eval_error(&experiment, &[]),
            format!(
                "{} is not a complete run folder but an experiment's folder: it holds 2 \
                 complete run(s), newest first: {}, {}; evaluate one, e.g. `memad eval {}`",
                experiment.display(),
                newer.display(),
                older.display(),
                newer.display()
            )
        );
        let eval = older.join("evals/e");
        std::fs::create_dir_all(eval.join("2026-01-04T00-00-00")).unwrap();
        std::fs::write(eval.join("2026-01-04T00-00-00/run.toml"), "").unwrap();
        for folder in [eval, experiment.join("2026-01-03T00-00-00.partial")] {
            assert_eq!(
                eval_error(&folder, &[]),
                format!(
                    "{} is not a complete run folder (one that `memad run` finished: it holds \
                     run.toml and its name does not end in .partial; an unfinished run is \
                     finished by running its experiment again)",
                    folder.display()
                )
            );
        }
    }

    #[test]
    fn an_unfinished_evaluation_leaves_no_empty_folder() {
        let dir = tempfile::tempdir().unwrap();
        let run = fake_run(dir.path(), PATCHCORE);
        let partial = |name: &str| {
            let p = run.join(format!("evals/{name}/2026-01-02T00-00-00.partial"));
            std::fs::create_dir_all(p.join("checkpoints")).unwrap();
            std::fs::write(p.join("log.txt"), "x").unwrap();
            p
        };
        remove_unfinished(&partial("a"));
        assert!(!run.join("evals").exists());
        // Only empty folders go: another evaluation's stays, and `evals/` with it.
        let (a, b) = (partial("a"), partial("b"));
        let kept = run.join("evals/a/2026-01-01T00-00-00");
        std::fs::create_dir_all(&kept).unwrap();
        remove_unfinished(&a);
        assert!(!a.exists() && kept.exists());
        remove_unfinished(&b);
        assert!(!run.join("evals/b").exists() && kept.exists());
    }

    /// The resolved PatchCore experiment of a random-weights backbone, `precision` given.
    /// A PatchCore experiment; `method`: more lines of its `[method]` table.
    fn patchcore_experiment(precision: &str, method: &str) -> crate::experiment::Experiment {
        let text = format!(
            "name = \"p\"\nseed = 0\ndevice = \"cpu\"\n[data]\ndataset = \"d\"\n\
             categories = [\"carpet\"]\nimage_size = 64\nbatch_size = 2\n[method]\n\
             kind = \"patchcore\"\n{method}\n[method.backbone]\nkind = \"efficientnet_lite0\"\n\
             weights = \"random\"\nlevels = [\"stride8\", \"stride16\"]\n\
             precision = \"{precision}\"\n[train]\nepochs = 1\noptimizer = \"adam\"\n\
             lr = 0.001\n"
        );
        crate::experiment::resolve(&text, Path::new("config.toml"), &crate::registry()).unwrap()
    }

    #[test]
    fn a_config_that_cannot_build_the_model_is_that_error_not_a_load_error() {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = dir.path().join("checkpoints/carpet.safetensors");
        let ctx = BuildContext {
            device: tch::Device::Cpu,
            weights_dir: dir.path().to_path_buf(),
            image_size: 64,
            classes: 1,
        };
        let registry = crate::registry();
        let exp = patchcore_experiment("bf16", "");
        let e = load_model(&exp, &registry, &ctx, &checkpoint, true)
            .err()
            .unwrap();
        let (top, all) = (e.to_string(), format!("{e:#}"));
        assert!(
            top.contains("precision = \"bf16\" runs on CUDA only"),
            "{all}"
        );
        assert!(
            !all.contains("cannot load") && !all.contains("carpet.safetensors"),
            "{all}"
        );
        // A model that builds and a checkpoint that does not load: the load error.
        let exp = patchcore_experiment("fp32", "");
        let e = load_model(&exp, &registry, &ctx, &checkpoint, true)
            .err()
            .unwrap();
        assert!(
            e.to_string().starts_with(&format!(
                "loading {} into the model of this config (an override that changes the \
                 model's variables cannot load)",
                checkpoint.display()
            )),
            "{e:#}"
        );
        // Variables that load and a bank the config refuses (3 items, fewer than the 9
        // neighbours of `reweight_neighbours`): that refusal, no word of variables.
        let exp = patchcore_experiment("fp32", "image_score = \"reweighted\"");
        let model = crate::run::build_method(&exp, &registry, &ctx).unwrap();
        let bank = tch::Tensor::zeros([3, 4], (tch::Kind::Float, tch::Device::Cpu));
        std::fs::create_dir_all(checkpoint.parent().unwrap()).unwrap();
        crate::run::save_checkpoint(
            model.trainable(),
            &[("memory.bank".into(), bank)],
            &checkpoint,
        )
        .unwrap();
        let e = load_model(&exp, &registry, &ctx, &checkpoint, true)
            .err()
            .unwrap();
        let all = format!("{e:#}");
        assert!(
            e.to_string().starts_with("loading the fitted state"),
            "{all}"
        );
        assert!(
            all.contains("fewer than method.reweight_neighbours") && !all.contains("variables"),
            "{all}"
        );
    }
}
