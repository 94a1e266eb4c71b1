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
//! `eval.*`, and `method.*` except `method.kind`, `method.memory.kind` and the backbone's
//! `kind`, `weights` and `levels`. A `method.*` override that changes the model's variables fails to
//! load the checkpoint, naming the variable; one that changes only how the model trains (a
//! loss weight) is accepted and then means nothing: leave those to `memad sweep`.
use crate::evaluate::evaluate_category;
use crate::experiment::{self, Loaded};
use crate::output::{csv_text, timestamp, MetricRow, RunDir};
use crate::run::{
    absolute_root, class_indices, classes_file, load_checkpoint, metric_rows, model_groups,
    model_name, prepare, read_trained_classes, results_by_category, say, say_commits,
    say_cuda_only_switches, sha256_hex, RunMeta, RunSummary,
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

/// Keys under `method.` that pick or fill what was trained.
const TRAINED_KEYS: [&str; 5] = [
    "method.kind",
    "method.memory.kind",
    "method.backbone.kind",
    "method.backbone.weights",
    "method.backbone.levels",
];

/// Whether `key` is an evaluation setting; the error says which keys are. A table that
/// holds a trained key (`method.backbone`, set whole) is refused with it.
fn check_key(key: &str) -> anyhow::Result<()> {
    let allowed = EVAL_KEYS.iter().any(|k| match k.ends_with('.') {
        true => key.starts_with(k),
        false => key == *k,
    });
    let trained = (TRAINED_KEYS.iter()).any(|t| *t == key || t.starts_with(&format!("{key}.")));
    let others: Vec<String> = (EVAL_KEYS.iter())
        .filter(|k| **k != "method.")
        .map(|k| match k.ends_with('.') {
            true => format!("{k}*"),
            false => k.to_string(),
        })
        .collect();
    anyhow::ensure!(
        allowed && !trained,
        "--set {key}: not an evaluation setting; an evaluation may change {}, and method.* \
         except {} and the tables holding them (to train with other settings, use `memad \
         sweep`)",
        others.join(", "),
        TRAINED_KEYS.join(", ")
    );
    Ok(())
}

/// Evaluates every combination of `args.set` with the checkpoints of `args.run`.
pub fn run(
    args: &EvalArgs,
    datasets: &Option<PathBuf>,
    registry: &Registry,
) -> anyhow::Result<Vec<RunSummary>> {
    let run = &args.run;
    anyhow::ensure!(
        is_complete(run),
        "{} is not a complete run folder (one that `memad run` finished: it holds run.toml \
         and its name does not end in .partial; an unfinished run is finished by running its \
         experiment again)",
        run.display()
    );
    let config = run.join("config.toml");
    let text = std::fs::read_to_string(&config)
        .with_context(|| format!("reading {}", config.display()))?;
    let base: toml::Table =
        toml::from_str(&text).with_context(|| format!("{}: not valid TOML", config.display()))?;
    let name = (base.get("name").and_then(|n| n.as_str()))
        .with_context(|| format!("{}: no `name`", config.display()))?;
    let axes = (args.set.iter())
        .map(|s| parse_set(s))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for axis in &axes {
        check_key(&axis.key)?;
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
    let (device, categories, splits) = prepare(exp, loaded)?;
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
    let mut dir = RunDir::create(&run.join("evals"), &combo.name, &timestamp())?;
    let partial = dir.partial.clone();
    crate::interrupt::on_interrupt(move || {
        let _ = std::fs::remove_dir_all(&partial);
        format!(
            "the unfinished evaluation {} was removed (an evaluation has nothing to resume)",
            partial.display()
        )
    });
    dir.write("config.toml", resolved.as_bytes())?;
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
            // Nothing to resume in an evaluation: leave no half-written folder behind.
            let _ = std::fs::remove_dir_all(&dir.partial);
            // `evals/<name>/`, then `evals/`, when empty.
            for parent in dir.partial.ancestors().skip(1).take(2) {
                let _ = std::fs::remove_dir(parent);
            }
            Err(e)
        }
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
        let method = load_checkpoint(exp, registry, &ctx, &path).with_context(|| {
            let why = match overridden {
                true => " (an override that changes the model's variables cannot load)",
                false => "",
            };
            format!(
                "loading {} into the model of this config{why}",
                path.display()
            )
        })?;
        say(dir, &format!("[{model}] loaded {}", path.display()));
        for (&class, split) in classes.iter().zip(group) {
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
            assert!(check_key(key).is_ok(), "{key}");
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
            let msg = check_key(key).unwrap_err().to_string();
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
}
