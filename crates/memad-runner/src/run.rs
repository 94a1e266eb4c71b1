//! `memad run`: trains and evaluates an experiment: one model per category (`one_class`) or
//! one model for all its categories (`multi_class`), evaluated per category.
//!
//! The runner owns the loop: seed, data order, optimizer, progress, checkpoints, results.
//! Results are last-epoch numbers; nothing is selected on the test set.
//!
//! Resuming: after every epoch of gradient training the model's VarStore, `Method::state()`,
//! the optimizer's state and the loss rows so far are saved in
//! `<run>.partial/resume/<model>/epoch-NNNNN/` (written as `epoch-NNNNN.tmp/` and renamed;
//! older epochs deleted after), and deleted when the model's final checkpoint is written.
//! `memad run` continues the newest `.partial` run of the experiment whose `config.toml` is
//! byte-identical to the new resolved config (same hash) and that no other process holds
//! (`--restart` starts a new folder instead): categories with rows in its `metrics.csv` are
//! kept, a model with a final checkpoint is loaded (trained again if its method cannot
//! restore its state), an interrupted model continues after its last saved epoch. Data
//! order, synthesis and libtorch's generator are seeded per epoch from `(seed, epoch)` and
//! the learning rate is a function of the step, so a resumed run gives the metrics of an
//! uninterrupted one (tch's SGD is the exception: its momentum buffers are not exposed and
//! restart from zero).
use crate::evaluate::{evaluate_category, is_masked_pixel_metric};
use crate::experiment::{Loaded, OptimizerKind, Setting};
use crate::output::{
    checkout_commit, csv_text, peak_rss_bytes, timestamp, MetricRow, RunDir, BUILD_COMMIT,
};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memad_core::device::{seed_everything, select};
use memad_core::optim::{Adam, AdamConfig, LrSchedule, Optimizer};
use memad_core::precision::{autocast, make_channels_last};
use memad_core::{BuildContext, Method, Registry, Training};
use memad_data::arrays::TrainAnomalies;
use memad_data::loader::{shuffled, BatchLoader, LoadOptions};
use memad_data::mvtec::{CategorySplit, Sample};
use memad_data::synthesis::{AnomalySynthesizer, DraemConfig, SynthesisConfig};
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Options of `memad run` beyond the experiment file.
pub struct RunOptions {
    pub runs_dir: PathBuf,
    pub weights_dir: PathBuf,
    /// Start a new run folder even when an unfinished run of the same config exists.
    pub restart: bool,
}

/// What a finished run reports.
pub struct RunSummary {
    pub folder: PathBuf,
    /// `(category, [(metric, value)])`.
    pub results: Vec<(String, Vec<(String, f64)>)>,
}

pub fn run(loaded: &Loaded, registry: &Registry, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    // `--smoke` and `--epochs` were applied by the load ([`crate::experiment::RunOverrides`]).
    let exp = loaded.experiment.clone();
    // Read every split before creating the run folder: a bad layout fails early.
    let Prepared {
        device,
        categories,
        splits,
        notes,
    } = prepare(&exp, loaded)?;

    let resolved = exp.to_toml();
    let config_sha256 = sha256_hex(resolved.as_bytes());
    let unfinished = match opts.restart {
        true => None,
        false => {
            let root = absolute_root(&loaded.dataset.root);
            find_unfinished(&opts.runs_dir, &exp.name, &config_sha256, &root)?
        }
    };
    let resumed = unfinished.is_some();
    let mut session =
        Session::now(loaded, device).with_training_sets(&splits, &loaded.dataset.root);
    let create = || match unfinished {
        Some(dir) => {
            session.check_resume(&dir)?;
            Ok(dir)
        }
        None => {
            let dir = RunDir::create(&opts.runs_dir, &exp.name, &timestamp())?;
            // session.toml first: a folder with its config always has the session a resume
            // checks (one killed before its config is removed by the next run).
            dir.write("session.toml", toml::to_string(&session)?.as_bytes())?;
            dir.write("config.toml", resolved.as_bytes())?;
            Ok(dir)
        }
    };
    let mut dir = crate::interrupt::after_creating(create, |dir: &RunDir| {
        let partial = dir.partial.clone();
        move || match resumed || has_resumable_state(&partial) {
            true => format!(
                "{} is kept ({KEPT}); running the same experiment again resumes it \
                 (`--restart` starts over)",
                partial.display()
            ),
            false => {
                discard_run_folder(&partial);
                format!("{} was removed: nothing was saved yet", partial.display())
            }
        }
    })?;
    // A new run that fails before it has anything to resume leaves no folder behind.
    let mut cleanup = DiscardIfNothingToResume(Some(dir.partial.clone()).filter(|_| !resumed));
    let stamp = dir.stamp();
    // Rows of the categories an earlier session of this folder finished.
    let mut rows: Vec<MetricRow> = match dir.path("metrics.csv") {
        p if resumed && p.is_file() => csv::Reader::from_path(&p)
            .and_then(|mut r| r.deserialize().collect())
            .with_context(|| format!("reading {}", p.display()))?,
        _ => Vec::new(),
    };
    let run_label = format!("{}/{stamp}", exp.name);
    let synthesizer: Option<Arc<dyn AnomalySynthesizer>> = match &exp.data.synthesis {
        Some(c) => Some(Arc::from(
            memad_data::synthesis::build(c).context("building data.synthesis")?,
        )),
        None => None,
    };
    let groups = model_groups(&exp, &splits);
    let started = Instant::now();
    let header = format!(
        "memad {} | {} on {} | device {device:?} | run {}",
        env!("CARGO_PKG_VERSION"),
        exp.method_kind(),
        loaded.dataset.name,
        dir.final_path.display()
    );
    say(&mut dir, &header);
    say_notes(&mut dir, &notes);
    if let Some(keep) = exp.data.subset {
        let line = format!(
            "data.subset: about {} training and {} test samples of each type per category, \
             {} epoch{}: a check that the configuration runs end to end, not the dataset's \
             numbers",
            keep.train,
            keep.test_per_type,
            exp.train.epochs,
            if exp.train.epochs == 1 { "" } else { "s" }
        );
        say(&mut dir, &line);
    }
    if let Some(SynthesisConfig::Draem(DraemConfig {
        texture_dir: None, ..
    })) = &exp.data.synthesis
    {
        let line = "data.synthesis: DRAEM's anomaly sources are the built-in ones (the image's \
                    shuffled tiles, procedural textures); DRAEM and MDD-Net draw them from DTD: \
                    set texture_dir to DTD's images/ folder to train as the papers do";
        say(&mut dir, line);
    }
    let checkout = say_commits(&mut dir);
    say_cuda_only_switches(&exp, device, &mut dir);
    if resumed {
        let done: Vec<&str> = categories
            .iter()
            .filter(|c| rows.iter().any(|r| &r.category == *c))
            .map(String::as_str)
            .collect();
        let line = format!(
            "resuming {}: {} of {} categories done{}",
            dir.partial.display(),
            done.len(),
            categories.len(),
            if done.is_empty() {
                String::new()
            } else {
                format!(" ({}; their rows are kept)", done.join(", "))
            }
        );
        say(&mut dir, &line);
    }

    let scored = train_and_score(
        &exp,
        device,
        loaded,
        registry,
        opts,
        &groups,
        &synthesizer,
        &run_label,
        &mut rows,
        &mut dir,
    );
    if let Err(e) = scored {
        return Err(match resumed || has_resumable_state(&dir.partial) {
            true => e.context(format!(
                "{} is kept ({KEPT}): once the cause below is fixed, the same command resumes it \
                 (a changed experiment starts a new run)",
                dir.partial.display()
            )),
            false => e,
        });
    }
    let results = results_by_category(&categories, &rows);
    let _ = std::fs::remove_dir(dir.path("resume")); // empty once every model is trained
    let meta = RunMeta::new(
        session,
        exp.seed,
        device,
        started,
        config_sha256,
        checkout,
        &mut dir,
    );
    let meta = RunMeta { resumed, ..meta };
    dir.write("run.toml", toml::to_string(&meta)?.as_bytes())?;
    say(
        &mut dir,
        &format!("finished in {:.1} s", started.elapsed().as_secs_f64()),
    );
    cleanup.disarm();
    let folder = crate::interrupt::finishing(|| dir.finish())?;
    Ok(RunSummary { folder, results })
}

/// What a kept `.partial` run folder holds, for the messages that name it.
const KEPT: &str = "the categories it finished, each model's last saved epoch";

/// Trains (or loads, or resumes) the model of each group and scores its categories,
/// appending their metric rows to `rows` and rewriting `metrics.csv` after each category.
#[allow(clippy::too_many_arguments)]
fn train_and_score(
    exp: &crate::experiment::Experiment,
    device: Device,
    loaded: &Loaded,
    registry: &Registry,
    opts: &RunOptions,
    groups: &[Vec<&CategorySplit>],
    synthesizer: &Option<Arc<dyn AnomalySynthesizer>>,
    run_label: &str,
    rows: &mut Vec<MetricRow>,
    dir: &mut RunDir,
) -> anyhow::Result<()> {
    for group in groups {
        let pending: Vec<(usize, &CategorySplit)> = (group.iter().copied().enumerate())
            .filter(|(_, s)| !rows.iter().any(|r| r.category == s.category))
            .collect();
        if pending.is_empty() {
            continue;
        }
        let ctx = BuildContext {
            device,
            weights_dir: opts.weights_dir.clone(),
            image_size: exp.data.image_size as i64,
            classes: group.len(),
        };
        let model = model_name(exp, group);
        let names: Vec<String> = group.iter().map(|s| s.category.clone()).collect();
        match read_trained_classes(&dir.path(&classes_file(&model)))? {
            Some(trained) => anyhow::ensure!(
                trained == names,
                "{} was started on the categories {} and the dataset now gives {}: the model's \
                 class indices would change; run with --restart to start over",
                dir.partial.display(),
                trained.join(", "),
                names.join(", ")
            ),
            None => dir.write(&classes_file(&model), (names.join("\n") + "\n").as_bytes())?,
        }
        let method = match load_trained(exp, registry, &ctx, &model, dir)? {
            Some(method) => method,
            None => train_model(exp, registry, &ctx, group, &model, synthesizer, dir)
                .with_context(|| format!("training `{model}`"))?,
        };
        for (class, split) in pending {
            let values = evaluate_category(
                exp,
                loaded.dataset.format,
                &ctx,
                &model,
                split,
                class,
                method.as_ref(),
                dir,
            )
            .with_context(|| format!("scoring category `{}`", split.category))?;
            rows.extend(metric_rows(exp, loaded, run_label, split, values));
            // Rewritten after every category: an interrupted run keeps what it finished.
            dir.write("metrics.csv", &csv_text(rows)?)?;
        }
    }
    Ok(())
}

/// On drop, unless disarmed, removes a new run's `.partial` folder (and its experiment's
/// folder, when left empty) if it holds nothing to resume: no epoch saved, no checkpoint, no
/// metrics. A run that fails (or panics) while building its model (an image size the model
/// cannot take, weights that do not load) or in its first epoch leaves no folder behind;
/// the error says why.
struct DiscardIfNothingToResume(Option<PathBuf>);

impl DiscardIfNothingToResume {
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for DiscardIfNothingToResume {
    fn drop(&mut self) {
        if let Some(partial) = &self.0 {
            if !has_resumable_state(partial) {
                discard_run_folder(partial);
            }
        }
    }
}

/// Whether a run's `.partial` folder holds something to resume: a saved epoch, a
/// checkpoint or metrics of a finished category.
fn has_resumable_state(partial: &Path) -> bool {
    let has_entries = |p: PathBuf| std::fs::read_dir(p).is_ok_and(|mut d| d.next().is_some());
    // A model's `.classes` file is written before training: alone it is nothing to resume.
    let has_checkpoint = std::fs::read_dir(partial.join("checkpoints")).is_ok_and(|d| {
        d.flatten()
            .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
    });
    has_entries(partial.join("resume")) || has_checkpoint || partial.join("metrics.csv").exists()
}

/// Removes a run's `.partial` folder, and its experiment's folder when left empty.
fn discard_run_folder(partial: &Path) {
    let _ = std::fs::remove_dir_all(partial);
    if let Some(parent) = partial.parent() {
        let _ = std::fs::remove_dir(parent); // only when empty
    }
}

/// What [`prepare`] found: the device, the categories, their splits and the notes the run
/// log starts with ([`say_notes`]).
pub(crate) struct Prepared {
    pub device: Device,
    pub categories: Vec<String>,
    pub splits: Vec<CategorySplit>,
    /// Files of the dataset the run does not use (misnamed masks, unread image formats).
    pub notes: Vec<String>,
}

/// `notes` ([`Prepared::notes`]) as `note: ...` lines on stderr and in the run log.
pub(crate) fn say_notes(dir: &mut RunDir, notes: &[String]) {
    for note in notes {
        say(dir, &format!("note: {note}"));
    }
}

/// The device (cuDNN's algorithm search set as the experiment says), the dataset prepared
/// (a synthetic one generated on first use) and [`read_splits`], checked whole, then cut to
/// `data.subset` where set.
pub(crate) fn prepare(
    exp: &crate::experiment::Experiment,
    loaded: &Loaded,
) -> anyhow::Result<Prepared> {
    let device = select(&exp.device).with_context(|| format!("device = \"{}\"", exp.device))?;
    tch::Cuda::cudnn_set_benchmark(exp.cudnn_benchmark);
    prepare_dataset(&loaded.dataset)?;
    loaded.dataset.check_root()?;
    let (categories, splits) = read_splits(exp, loaded)?;
    // Masks no image uses are misnamed more often than not: their images count as unmasked;
    // images in a format memad does not read (WebP, GIF, ...) are not used: one note each,
    // said once the run log exists, or with a refusal of the data, which they may explain
    // (pixel metrics refused for want of masks that are all misnamed).
    let notes: Vec<String> = (splits.iter().flat_map(memad_data::unused_files))
        .map(|problem| problem.to_string())
        .collect();
    let spro = exp.eval.metrics.iter().any(|m| m == "auspro");
    let refused = refuse_unusable_data(&splits, &loaded.dataset.name, spro)
        .and_then(|()| refuse_pixel_metrics_without_masks(exp, &splits, &loaded.dataset));
    if let Err(e) = refused {
        for note in &notes {
            eprintln!("note: {note}");
        }
        return Err(e);
    }
    // A smoke run's part of each category, once every file of the whole has been checked.
    let splits = match exp.data.subset {
        Some(keep) => (splits.iter())
            .map(|s| s.subset(keep.train, keep.test_per_type))
            .collect(),
        None => splits,
    };
    Ok(Prepared {
        device,
        categories,
        splits,
        notes,
    })
}

/// Fails before training when pixel metrics are asked for and no anomalous test image of
/// any category has a mask (the `folder` format's masks are optional): they would all be
/// undefined. Categories where only some images lack one are noted at evaluation.
fn refuse_pixel_metrics_without_masks(
    exp: &crate::experiment::Experiment,
    splits: &[CategorySplit],
    dataset: &memad_data::catalog::DatasetEntry,
) -> anyhow::Result<()> {
    let pixel: Vec<&str> = (exp.eval.metrics.iter())
        .map(String::as_str)
        .filter(|m| is_masked_pixel_metric(m))
        .collect();
    let anomalous = || {
        splits
            .iter()
            .flat_map(|s| &s.test)
            .filter(|t| t.label.is_anomalous())
    };
    if pixel.is_empty() || anomalous().next().is_none() || anomalous().any(|t| t.mask.is_some()) {
        return Ok(());
    }
    anyhow::bail!("{}", no_masks_message(&pixel, anomalous().count(), dataset))
}

/// The refusal of the pixel metrics `pixel` when none of the `anomalous` test images of
/// `dataset` has a mask, saying where the masks go.
fn no_masks_message(
    pixel: &[&str],
    anomalous: usize,
    dataset: &memad_data::catalog::DatasetEntry,
) -> String {
    let (need, them) = if pixel.len() == 1 {
        ("needs", "it")
    } else {
        ("need", "them")
    };
    format!(
        "{} {need} pixel masks, and none of the {anomalous} anomalous test images of dataset \
         `{}` has one, so nothing was trained: remove {them} from [eval] metrics, or add the \
         masks ({})",
        pixel.join(", "),
        dataset.name,
        dataset.format.masks_layout()
    )
}

/// Makes `dataset` available: a synthetic dataset is generated on first use, saying so on
/// stderr (a second for the quickstart's, 20 s for the 1,825 images of
/// `synthetic-mvtec-sized` on 2 cores).
pub(crate) fn prepare_dataset(dataset: &memad_data::DatasetEntry) -> anyhow::Result<()> {
    let generating = dataset.to_generate();
    if let Some(spec) = generating {
        eprintln!(
            "generating dataset `{}` ({} images) into {} (first use)",
            dataset.name,
            spec.image_count(),
            dataset.root.display()
        );
    }
    let t0 = Instant::now();
    (dataset.prepare()).with_context(|| format!("preparing dataset `{}`", dataset.name))?;
    if generating.is_some() {
        eprintln!("generated in {:.1} s", t0.elapsed().as_secs_f64());
    }
    Ok(())
}

/// Fails, listing them, when files of `splits` are broken (unreadable images, masks that do
/// not decode or do not have their image's size: [`memad_data::file_problems`]) or a test
/// set lacks normal or anomalous images ([`memad_data::test_set_problem`]), or, with `spro`
/// (`auspro` asked for), a region file sPRO cannot read (a grey value its category's
/// `defects_config.json` lacks), so that a run stops before training rather than after it.
fn refuse_unusable_data(splits: &[CategorySplit], dataset: &str, spro: bool) -> anyhow::Result<()> {
    const SHOWN: usize = 10;
    let problems: Vec<String> = (splits.iter())
        .flat_map(|s| {
            (memad_data::file_problems(s).into_iter())
                .chain(memad_data::test_set_problem(s))
                .chain(spro.then(|| memad_data::spro_problem(s)).flatten())
                .map(|p| p.to_string())
        })
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    let more = match problems.len() > SHOWN {
        true => format!("\n  ... and {} more", problems.len() - SHOWN),
        false => String::new(),
    };
    anyhow::bail!(
        "{} problem(s) in dataset `{dataset}`, nothing trained (`memad datasets check {dataset}` lists them all):\n  {}{more}",
        problems.len(),
        problems[..problems.len().min(SHOWN)].join("\n  ")
    )
}

/// Says which CUDA-only switches of `exp` are on while `device` is not CUDA.
pub(crate) fn say_cuda_only_switches(
    exp: &crate::experiment::Experiment,
    device: Device,
    dir: &mut RunDir,
) {
    let cuda_only: Vec<&str> = [
        ("cudnn_benchmark", exp.cudnn_benchmark),
        ("cuda_graphs", exp.cuda_graphs),
    ]
    .into_iter()
    .filter(|(_, on)| *on && !device.is_cuda())
    .map(|(key, _)| key)
    .collect();
    if !cuda_only.is_empty() {
        let line = format!(
            "{} = true: CUDA only, no effect on {device:?}",
            cuda_only.join(" and ")
        );
        say(dir, &line);
    }
}

/// The categories of the experiment (all of the dataset when it names none) and their
/// splits, read as the experiment's data section says (clips, labelled training anomalies).
fn read_splits(
    exp: &crate::experiment::Experiment,
    loaded: &Loaded,
) -> anyhow::Result<(Vec<String>, Vec<CategorySplit>)> {
    let dataset = &loaded.dataset;
    let categories = if exp.data.categories.is_empty() {
        dataset.category_names()?
    } else {
        exp.data.categories.clone()
    };
    anyhow::ensure!(
        !categories.is_empty(),
        "dataset `{}` ({}) has no category at {}: expected {} (`memad datasets check {}`)",
        dataset.name,
        dataset.format,
        dataset.root.display(),
        dataset.format.layout(),
        dataset.name
    );
    crate::experiment::check_category_names(dataset, &categories)?;
    let read = |c: &String| match &exp.data.clip {
        Some(clip) => loaded.dataset.read_clips(c, clip.frames, clip.mode),
        None if exp.data.anomaly_fraction > 0.0 => loaded.dataset.read_classes(
            c,
            TrainAnomalies {
                fraction: exp.data.anomaly_fraction,
                seed: exp.seed,
            },
        ),
        None => loaded.dataset.read_category(c),
    };
    // Every category is read before refusing, so that one run names the layout problems
    // of all (each category's capped by its own error).
    let (mut splits, mut unreadable) = (Vec::new(), Vec::new());
    for c in &categories {
        match read(c) {
            Ok(split) => splits.push(split),
            Err(e) => unreadable.push(e),
        }
    }
    // One message per problem: a missing root (or MNIST's files) fails every category alike.
    let mut errors: Vec<String> = Vec::new();
    for e in &unreadable {
        if !errors.contains(&e.to_string()) {
            errors.push(e.to_string());
        }
    }
    match errors.len() {
        0 => Ok((categories, splits)),
        1 => Err(unreadable.remove(0).into()),
        _ => anyhow::bail!(
            "{} categories of dataset `{}` cannot be read, nothing run (`memad datasets check \
             {}` lists every problem):\n{}",
            unreadable.len(),
            dataset.name,
            dataset.name,
            errors.join("\n")
        ),
    }
}

/// The splits of each model: one-class, a model per category; multi-class, one model whose
/// classes are the categories (class index = position in the group).
pub(crate) fn model_groups<'a>(
    exp: &crate::experiment::Experiment,
    splits: &'a [CategorySplit],
) -> Vec<Vec<&'a CategorySplit>> {
    match exp.data.setting {
        Setting::OneClass => splits.iter().map(|s| vec![s]).collect(),
        Setting::MultiClass => vec![splits.iter().collect()],
    }
}

/// The name of a group's model: its checkpoint is `checkpoints/<name>.safetensors`.
pub(crate) fn model_name(exp: &crate::experiment::Experiment, group: &[&CategorySplit]) -> String {
    match exp.data.setting {
        Setting::OneClass => group[0].category.clone(),
        Setting::MultiClass => "all".to_string(),
    }
}

/// `checkpoints/<model>.classes`: the categories a model was trained on, one per line, in
/// class-index order (`Batch::class`, the class-aware memory's rows). Written when training
/// starts, so that a later session or `memad eval` gives each category the index it was
/// trained with, whatever category folders the dataset has then.
pub(crate) fn classes_file(model: &str) -> String {
    format!("checkpoints/{model}.classes")
}

/// The categories of `path` (a [`classes_file`]); `None` for a run made before the file
/// existed.
pub(crate) fn read_trained_classes(path: &Path) -> anyhow::Result<Option<Vec<String>>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text.lines().map(str::to_string).collect())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The class index of each category of `group` in a model trained on `trained` (its
/// [`classes_file`]), or, for a run without that file, the position in `group`; an error
/// names a category the model was not trained on.
pub(crate) fn class_indices(
    group: &[&CategorySplit],
    trained: Option<&[String]>,
    model: &str,
) -> anyhow::Result<Vec<usize>> {
    let Some(trained) = trained else {
        return Ok((0..group.len()).collect());
    };
    (group.iter())
        .map(|s| {
            (trained.iter().position(|c| *c == s.category)).ok_or_else(|| {
                anyhow::anyhow!(
                    "category `{}` was not among those the model `{model}` was trained on \
                     ({}); evaluate it with a model trained on it",
                    s.category,
                    trained.join(", ")
                )
            })
        })
        .collect()
}

/// The `metrics.csv` rows of one category's metric values.
pub(crate) fn metric_rows(
    exp: &crate::experiment::Experiment,
    loaded: &Loaded,
    run: &str,
    split: &CategorySplit,
    values: Vec<(String, f64)>,
) -> Vec<MetricRow> {
    (values.into_iter())
        .map(|(metric, value)| MetricRow {
            run: run.to_string(),
            commit: BUILD_COMMIT.to_string(),
            method: exp.method_kind().into(),
            memory: exp.memory_kind().into(),
            backbone: exp.backbone_kind().into(),
            dataset: loaded.dataset.name.clone(),
            category: split.category.clone(),
            setting: setting_label(exp).into(),
            seed: exp.seed,
            epoch: exp.train.epochs,
            metric,
            value,
        })
        .collect()
}

/// `(category, [(metric, value)])` of `rows`, in the order of `categories`.
pub(crate) fn results_by_category(
    categories: &[String],
    rows: &[MetricRow],
) -> Vec<(String, Vec<(String, f64)>)> {
    (categories.iter())
        .map(|c| {
            let values = (rows.iter().filter(|r| &r.category == c))
                .map(|r| (r.metric.clone(), r.value))
                .collect();
            (c.clone(), values)
        })
        .collect()
}

/// The `setting` column of `metrics.csv`.
fn setting_label(exp: &crate::experiment::Experiment) -> &'static str {
    match exp.data.setting {
        Setting::MultiClass => "multi_class",
        Setting::OneClass if exp.data.anomaly_fraction > 0.0 => "unbalanced",
        Setting::OneClass => "one_class",
    }
}

/// The `tch` version of the workspace pin (`tch = "=0.24.0"`; a test keeps them equal).
const TCH_VERSION: &str = "0.24.0";

/// `run.toml`: what produced a run.
#[derive(serde::Serialize)]
pub(crate) struct RunMeta {
    memad_version: &'static str,
    /// The commit the binary was built from ([`BUILD_COMMIT`]).
    commit: String,
    /// The checkout around the folder memad ran in at the start (absent outside one): where
    /// the experiment files came from; differs from `commit` when the binary is older.
    #[serde(skip_serializing_if = "Option::is_none")]
    checkout: Option<String>,
    device: String,
    /// The tch crate memad was built with (the workspace pin).
    tch_version: &'static str,
    torch_version: String,
    seed: u64,
    /// libtorch's intra-op CPU threads (`OMP_NUM_THREADS`): float reductions, hence CPU
    /// results, depend on it (after training, by up to about 0.01 of a metric), so identical
    /// numbers need the same count; a resume takes the count the run started with.
    torch_threads: i32,
    /// The host CPU and the vector instruction set libtorch's kernels use
    /// (`memad_core::device::cpu_description`): like the thread count, it changes CPU
    /// results slightly.
    cpu: String,
    /// Of the last session (the one that finished the run).
    wall_seconds: f64,
    /// Whether the last session continued an interrupted one.
    resumed: bool,
    /// Host peak resident set size of the last session's process (`getrusage`).
    peak_rss_bytes: u64,
    /// CUDA runs: the caching allocator's peaks over the last session (absent on the CPU).
    device_memory: Option<DeviceMemory>,
    config_sha256: String,
    /// The dataset's root, absolute: which copy of the data the run read (`memad eval`
    /// refuses another copy unless given `--datasets`).
    pub dataset_root: String,
    /// `memad eval` folders only: the run whose checkpoints were scored, and the overrides.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub evaluates: Option<crate::eval_cmd::EvaluatedRun>,
}

impl RunMeta {
    /// The metadata of `session`, which started at `started` (in `checkout`) and is ending
    /// now, on `device`; a note goes to `dir`'s log when GPU memory figures cannot be read.
    pub(crate) fn new(
        session: Session,
        seed: u64,
        device: Device,
        started: Instant,
        config_sha256: String,
        checkout: Option<String>,
        dir: &mut RunDir,
    ) -> Self {
        RunMeta {
            memad_version: env!("CARGO_PKG_VERSION"),
            commit: session.commit,
            checkout,
            device: session.device,
            tch_version: TCH_VERSION,
            torch_version: memad_core::device::torch_info()
                .torch_version
                .unwrap_or_default(),
            seed,
            torch_threads: session.torch_threads,
            cpu: session.cpu,
            wall_seconds: started.elapsed().as_secs_f64(),
            resumed: false,
            peak_rss_bytes: peak_rss_bytes().unwrap_or(0),
            device_memory: device_memory(device, dir),
            config_sha256,
            dataset_root: session.dataset_root,
            evaluates: None,
        }
    }
}

/// `root` made absolute (symbolic links resolved) where it exists, as written otherwise.
pub(crate) fn absolute_root(root: &Path) -> String {
    let root = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    root.display().to_string()
}

/// `[device_memory]` of `run.toml`: `torch.cuda.max_memory_allocated` and
/// `max_memory_reserved` of the process (`memad_cuda::memory_stats`), in bytes.
#[derive(serde::Serialize)]
struct DeviceMemory {
    peak_allocated_bytes: i64,
    peak_reserved_bytes: i64,
}

/// `None` off CUDA, and where the statistics cannot be read (a binary built without the
/// CUDA extension): a finished run is not failed for a figure of its record.
fn device_memory(device: tch::Device, dir: &mut RunDir) -> Option<DeviceMemory> {
    let tch::Device::Cuda(index) = device else {
        return None;
    };
    match memad_cuda::memory_stats(index) {
        Ok(stats) => Some(DeviceMemory {
            peak_allocated_bytes: stats.peak_allocated,
            peak_reserved_bytes: stats.peak_reserved,
        }),
        Err(e) => {
            say(dir, &format!("run.toml gets no GPU memory figures: {e:#}"));
            None
        }
    }
}

/// What a run's first session ran with (`session.toml` of the run folder), which a resumed
/// session must share for the run to be one result: the same code, the same copy of the
/// data and the same training images. On the CPU it takes the first session's thread
/// count too; another device or CPU is noted (they change the numbers slightly, as the
/// thread count does).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct Session {
    commit: String,
    dataset_root: String,
    device: String,
    torch_threads: i32,
    cpu: String,
    /// Per category, its training set ([`training_set_summary`]); none in an evaluation's
    /// session, nor in runs started before it was recorded (not checked then).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    training_sets: BTreeMap<String, String>,
}

/// A training set as `<n> images, sha256 <16 hex digits>`: how many samples and a SHA-256
/// of their paths (below the dataset root, as written in the catalog or absolute: the same
/// from any current folder), labels and file sizes, so that a resume sees images added,
/// removed, renamed or replaced by a file of another size since the run started (not one of
/// the same size: file times change when the same data is extracted again).
fn training_set_summary(split: &CategorySplit, roots: [&Path; 2]) -> String {
    let mut lines = String::new();
    for sample in &split.train {
        let image = sample.image.as_path();
        let path = (roots.iter().find_map(|r| image.strip_prefix(r).ok())).unwrap_or(image);
        // Samples held in memory (IDX, CIFAR-10) are named, not files.
        let size = match sample.pixels {
            Some(_) => 0,
            None => std::fs::metadata(image).map_or(0, |m| m.len()),
        };
        lines += &format!("{}\t{:?}\t{size}\n", path.display(), sample.label);
    }
    let hash = sha256_hex(lines.as_bytes());
    format!("{} images, sha256 {}", split.train.len(), &hash[..16])
}

impl Session {
    /// This process's session of `loaded` on `device`.
    pub(crate) fn now(loaded: &Loaded, device: Device) -> Self {
        Session {
            commit: BUILD_COMMIT.to_string(),
            dataset_root: absolute_root(&loaded.dataset.root),
            device: format!("{device:?}"),
            torch_threads: tch::get_num_threads(),
            cpu: memad_core::device::cpu_description(),
            training_sets: BTreeMap::new(),
        }
    }

    /// This session with the training sets of `splits` (of the dataset at `root`) recorded.
    pub(crate) fn with_training_sets(mut self, splits: &[CategorySplit], root: &Path) -> Self {
        let absolute = PathBuf::from(&self.dataset_root);
        self.training_sets = (splits.iter())
            .map(|s| {
                (
                    s.category.clone(),
                    training_set_summary(s, [root, &absolute]),
                )
            })
            .collect();
        self
    }

    /// Refuses to resume `dir` with another binary or another copy of the data; on the CPU,
    /// sets libtorch's thread count to the first session's; notes other differences on
    /// stderr. A run started before `session.toml` existed is not checked.
    fn check_resume(&mut self, dir: &RunDir) -> anyhow::Result<()> {
        let Ok(text) = std::fs::read_to_string(dir.path("session.toml")) else {
            return Ok(());
        };
        let first: Session = toml::from_str(&text)
            .with_context(|| format!("reading {}", dir.path("session.toml").display()))?;
        let refuse = |then: &str, now: &str| {
            anyhow::anyhow!(
                "{} was started with {then}, this session has {now}: resuming would \
                 mix the two in one result. Resume it as it was started, or start over: \
                 delete the folder (a sweep then runs the combination anew) or use \
                 `memad run --restart`",
                dir.partial.display()
            )
        };
        if first.commit != self.commit {
            let then = format!("a binary built from commit {}", first.commit);
            return Err(refuse(&then, &format!("commit {}", self.commit)));
        }
        if first.dataset_root != self.dataset_root {
            let then = format!("the dataset at {}", first.dataset_root);
            return Err(refuse(&then, &self.dataset_root));
        }
        for (category, then) in &first.training_sets {
            match self.training_sets.get(category) {
                Some(now) if now != then => {
                    let then = format!("category {category}'s training set of {then}");
                    return Err(refuse(&then, now));
                }
                _ => {}
            }
        }
        // The thread count sets the order of libtorch's float sums on the CPU: trained at
        // another count, a model ends up measurably elsewhere (about 0.01 of image AUROC
        // after two quickstart epochs), so the resume takes the first session's.
        let cpu_both = first.device == self.device && self.device == format!("{:?}", Device::Cpu);
        if cpu_both && first.torch_threads != self.torch_threads && first.torch_threads > 0 {
            eprintln!(
                "note: resuming {} at the {} torch threads it was started with (this session \
                 had {}), so that it gives the numbers of an uninterrupted run",
                dir.partial.display(),
                first.torch_threads,
                self.torch_threads
            );
            tch::set_num_threads(first.torch_threads);
            self.torch_threads = first.torch_threads;
        }
        let mut differ = Vec::new();
        if first.device != self.device {
            differ.push(format!("device {} (now {})", first.device, self.device));
        } else if first.torch_threads != self.torch_threads && cpu_both {
            differ.push(format!(
                "{} torch threads (now {})",
                first.torch_threads, self.torch_threads
            ));
        }
        if first.cpu != self.cpu {
            differ.push(format!("CPU {} (now {})", first.cpu, self.cpu));
        }
        if !differ.is_empty() {
            eprintln!(
                "note: {} was started with {}: the categories this session trains may differ \
                 slightly from an uninterrupted run",
                dir.partial.display(),
                differ.join(", ")
            );
        }
        Ok(())
    }
}

/// The newest `.partial` run of `name` whose `config.toml` hashes to `config_sha256`, opened
/// (locked) to continue it; folders another process holds are passed over, and those of
/// another config, or older than a complete run of this one on the same copy of the data
/// (`dataset_root`: `--restart` started anew and finished), are named and not resumed.
fn find_unfinished(
    runs_dir: &Path,
    name: &str,
    config_sha256: &str,
    dataset_root: &str,
) -> anyhow::Result<Option<RunDir>> {
    let partials = crate::run_folders::partial_runs_of(runs_dir, name);
    for partial in &partials {
        // A start killed before its config was written: nothing to resume or to keep.
        if crate::run_folders::partial_config_sha256(partial).is_none()
            && !has_resumable_state(partial)
        {
            crate::run_folders::remove_abandoned(
                partial,
                "a run killed while it started, before anything was saved",
            )?;
        }
    }
    // A complete run of the config supersedes its older unfinished ones (left by `--restart`).
    // (On this copy of the data: one elsewhere is another result, as a sweep counts it.)
    let newest_complete =
        (crate::run_folders::complete_runs_of(runs_dir, name).into_iter()).rfind(|r| {
            crate::run_folders::config_sha256(r).as_deref() == Some(config_sha256)
                && crate::run_folders::run_dataset_root(r).is_none_or(|d| d == dataset_root)
        });
    let order = crate::run_folders::creation_order;
    for partial in partials.iter().filter(|p| p.is_dir()) {
        let Some(sha256) = crate::run_folders::partial_config_sha256(partial) else {
            continue; // a run starting in another process
        };
        if let Some(complete) = (newest_complete.as_ref())
            .filter(|c| sha256 == config_sha256 && order(c) > order(partial))
        {
            eprintln!(
                "note: {} is an unfinished run of this config older than its complete run {}: \
                 not resumed (delete it if it is not wanted)",
                partial.display(),
                complete.display()
            );
            continue;
        }
        if sha256 != config_sha256 {
            eprintln!(
                "note: {} is an unfinished run of another config of `{name}` (the \
                 experiment was edited since?); left as is: restore those settings to \
                 resume it, or delete it",
                partial.display()
            );
            continue;
        }
        match RunDir::reopen(partial)? {
            Some(dir) => return Ok(Some(dir)),
            None => eprintln!(
                "{} is in use by another process; not resuming it",
                partial.display()
            ),
        }
    }
    Ok(None)
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Prints a line to stderr and the run log.
pub(crate) fn say(dir: &mut RunDir, line: &str) {
    eprintln!("{line}");
    dir.log(line);
}

/// Adam / AdamW are memad's (`memad_core::optim`, faster than libtorch's C++ Adam); SGD is
/// tch's.
fn build_optimizer(
    exp: &crate::experiment::Experiment,
    vs: &nn::VarStore,
) -> anyhow::Result<Optimizer> {
    let t = &exp.train;
    let adam = |decoupled| AdamConfig {
        lr: t.lr,
        beta1: t.betas[0],
        beta2: t.betas[1],
        eps: 1e-8,
        weight_decay: t.weight_decay,
        decoupled,
    };
    Ok(match t.optimizer {
        OptimizerKind::Adam => Optimizer::Adam(Adam::new(vs, adam(false))?),
        OptimizerKind::AdamW => Optimizer::Adam(Adam::new(vs, adam(true))?),
        OptimizerKind::Sgd => Optimizer::Tch(
            nn::Sgd {
                momentum: t.momentum.unwrap_or(0.0),
                wd: t.weight_decay,
                ..Default::default()
            }
            .build(vs, t.lr)?,
        ),
    })
}

/// The trainable variables of `vs` that took part in the last backward pass (their gradient
/// is defined: the optimizers' `zero_grad` sets gradients to none) and received an all-zero
/// gradient, sorted by name.
fn zero_gradient_variables(vs: &nn::VarStore) -> Vec<String> {
    let _guard = tch::no_grad_guard();
    let mut named: Vec<(String, Tensor)> = (vs.variables().into_iter())
        .filter(|(_, v)| v.requires_grad())
        .map(|(name, v)| (name, v.grad()))
        .filter(|(_, grad)| grad.defined())
        .map(|(name, grad)| (name, grad.abs().amax([] as [i64; 0], false)))
        .collect();
    if named.is_empty() {
        return Vec::new();
    }
    named.sort_by(|a, b| a.0.cmp(&b.0));
    let peaks: Vec<&Tensor> = named.iter().map(|(_, peak)| peak).collect();
    let peaks = Tensor::stack(&peaks, 0)
        .to_kind(Kind::Double)
        .to_device(Device::Cpu);
    let peaks = Vec::<f64>::try_from(peaks).unwrap_or_default();
    (named.into_iter().zip(peaks))
        .filter(|(_, peak)| *peak == 0.0)
        .map(|((name, _), _)| name)
        .collect()
}

/// At the first step of each epoch, says which trainable variables the loss depends on but
/// gave an all-zero gradient: a memory whose every read was emptied (MemAE's shrinkage), a
/// dead activation or a severed path trains nothing behind it, and the log should say so
/// before the run spends its epochs.
fn warn_zero_gradients(dir: &mut RunDir, category: &str, epoch: usize, vs: &nn::VarStore) {
    let zero = zero_gradient_variables(vs);
    if zero.is_empty() {
        return;
    }
    let total = vs.trainable_variables().len();
    let shown = zero.iter().take(6).cloned().collect::<Vec<_>>().join(", ");
    let more = match zero.len().saturating_sub(6) {
        0 => String::new(),
        n => format!(" and {n} more"),
    };
    say(
        dir,
        &format!(
            "[{category}] warning: epoch {epoch}, first step: {} of {total} trainable tensors got an all-zero gradient ({shown}{more}); nothing of the loss reaches them (an emptied memory read, a dead activation, a detached path?)",
            zero.len()
        ),
    );
}

/// The names of the floating-point variables of `vs` (running statistics included) and of
/// the `state` tensors that hold a NaN or an infinity, sorted; read in one transfer.
fn non_finite_tensors(vs: &nn::VarStore, state: &[(String, Tensor)]) -> Vec<String> {
    let mut named: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    named.extend(state.iter().map(|(n, t)| (n.clone(), t.shallow_clone())));
    named.retain(|(_, t)| t.is_floating_point());
    named.sort_by(|a, b| a.0.cmp(&b.0));
    if named.is_empty() {
        return Vec::new();
    }
    let finite: Vec<Tensor> = named.iter().map(|(_, t)| t.isfinite().all()).collect();
    let finite = Tensor::stack(&finite, 0).to_kind(Kind::Int64);
    let finite = Vec::<i64>::try_from(finite.to_device(Device::Cpu)).expect("[N] int64 flags");
    (named.into_iter().zip(finite))
        .filter(|(_, ok)| *ok == 0)
        .map(|((name, _), _)| name)
        .collect()
}

/// A bar of `len` steps named `prefix` on stderr, hidden when stderr is not a terminal.
pub(crate) fn progress_bar(len: u64, prefix: &str) -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let pb = ProgressBar::with_draw_target(Some(len), target);
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
    pb.set_prefix(prefix.to_string());
    pb
}

/// The training set of a model: the categories' training samples, each with its class
/// (the category's index in `group`).
fn training_set(group: &[&CategorySplit]) -> (Vec<Sample>, Vec<i64>) {
    let mut samples = Vec::new();
    let mut classes = Vec::new();
    for (class, split) in group.iter().enumerate() {
        samples.extend(split.train.iter().cloned());
        classes.extend(std::iter::repeat_n(class as i64, split.train.len()));
    }
    (samples, classes)
}

/// Builds the method and trains it on the categories of `group` (one in the one-class
/// setting); saves `checkpoints/<model>.safetensors`.
fn train_model(
    exp: &crate::experiment::Experiment,
    registry: &Registry,
    ctx: &BuildContext,
    group: &[&CategorySplit],
    model: &str,
    synthesizer: &Option<Arc<dyn AnomalySynthesizer>>,
    dir: &mut RunDir,
) -> anyhow::Result<Box<dyn Method>> {
    let mut method = build_method(exp, registry, ctx)?;
    let (train, classes) = training_set(group);
    let checkpoint = dir.path(&format!("checkpoints/{model}.safetensors"));
    if method.training() == Training::FitOnce {
        fit_once(exp, ctx, model, &train, method.as_mut(), dir)?;
        save_checkpoint(method.trainable(), &method.state(), &checkpoint)?;
        return Ok(method);
    }
    let mut opt = build_optimizer(exp, method.trainable())?;
    // Until 2026-12, SGD read its momentum from betas[0]: say so to a file written for that.
    if exp.train.optimizer == OptimizerKind::Sgd
        && exp.train.betas != crate::experiment::DEFAULT_BETAS
    {
        let line = format!(
            "[{model}] note: SGD does not use train.betas ({:?}, Adam's); its momentum is \
             train.momentum = {}",
            exp.train.betas,
            exp.train.momentum.unwrap_or(0.0)
        );
        say(dir, &line);
    }
    let batches_per_epoch = train.len().div_ceil(exp.data.batch_size);
    let total_steps = exp.train.epochs * batches_per_epoch;
    let schedule = exp.train.lr_schedule();
    drop_model_rows(dir, model, "train")?; // of an earlier session that did not finish it
    let resume_root = dir.path(&format!("resume/{model}"));
    let mut first_epoch = 1;
    let mut loss_rows = Vec::new();
    // Images and seconds of training so far, over every session of this model.
    let mut trained = Trained::default();
    if let Some((epoch, saved)) = latest_resume(&resume_root) {
        match restore(&saved, method.as_mut(), &mut opt) {
            Ok((rows, before)) => {
                first_epoch = epoch + 1;
                loss_rows = rows;
                trained = before;
                let line = match epoch >= exp.train.epochs {
                    true => format!(
                        "resuming {}: all {} epoch(s) of {model} restored; finishing it",
                        dir.partial.display(),
                        exp.train.epochs
                    ),
                    false => format!(
                        "resuming {} at {model} epoch {first_epoch} (epochs 1-{epoch} of {} \
                         restored)",
                        dir.partial.display(),
                        exp.train.epochs
                    ),
                };
                say(dir, &line);
                if exp.train.optimizer == OptimizerKind::Sgd
                    && exp.train.momentum.is_some_and(|m| m != 0.0)
                {
                    say(dir, &format!("[{model}] note: SGD's momentum restarts from zero (tch does not expose it)"));
                }
            }
            Err(e) => {
                say(
                    dir,
                    &format!(
                        "[{model}] cannot resume from {}: {e:#}; training from epoch 1",
                        saved.display()
                    ),
                );
                method = build_method(exp, registry, ctx)?;
                opt = build_optimizer(exp, method.trainable())?;
            }
        }
    }
    let test_images: usize = group.iter().map(|s| s.test.len()).sum();
    say(
        dir,
        &format!(
            "[{model}] train {} images, test {test_images} images{}",
            train.len(),
            if group.len() > 1 {
                format!(" ({} categories, one model)", group.len())
            } else {
                String::new()
            }
        ),
    );
    let category = &model.to_string();

    let tty = std::io::stderr().is_terminal();
    let pb = progress_bar(total_steps as u64, category);
    pb.set_position(((first_epoch - 1) * batches_per_epoch) as u64);
    let mut last_note = Instant::now();
    for epoch in first_epoch..=exp.train.epochs {
        method.start_epoch(epoch, exp.train.epochs)?;
        let epoch_seed = exp.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64);
        // libtorch's generator too (random augmentations): an epoch's draws do not depend on
        // the epochs before it, so a resumed run draws what an uninterrupted one does.
        seed_everything(epoch_seed);
        let order = shuffled(train.len(), epoch_seed);
        let load = LoadOptions {
            classes: classes.clone(),
            synthesis: synthesizer.clone().map(|s| (s, epoch_seed)),
            ..LoadOptions::new(exp.data.geometry())
        };
        let loader = BatchLoader::with_cache(
            train.clone(),
            order,
            exp.data.batch_size,
            load,
            exp.data.cache.clone(),
        );
        let (t0, mut seen) = (Instant::now(), 0usize);
        let mut sums: Vec<(String, f64)> = Vec::new();
        let mut steps = 0usize;
        for host in loader {
            let batch = host?.to_batch(ctx.device);
            let out = autocast(ctx.device, exp.precision, || method.train_step(&batch))?;
            let (loss, term_values) = out.read();
            if !loss.is_finite() {
                anyhow::bail!("[{category}] epoch {epoch}: the loss is {loss}; lower train.lr or check the data");
            }
            if schedule != LrSchedule::Constant {
                let step = (epoch - 1) * batches_per_epoch + steps;
                opt.set_lr(schedule.lr(exp.train.lr, step, total_steps));
            }
            opt.backward_step(&out.loss);
            if steps == 0 {
                warn_zero_gradients(dir, category, epoch, method.trainable());
            }
            method.after_step()?;
            seen += batch.input.size()[0] as usize;
            steps += 1;
            accumulate(&mut sums, "loss", loss);
            for (t, value) in out.terms.iter().zip(term_values) {
                accumulate(&mut sums, &t.name, value);
            }
            let rate = seen as f64 / t0.elapsed().as_secs_f64().max(1e-9);
            pb.set_message(format!(
                "epoch {epoch}/{} loss {loss:.4} {rate:.1} img/s",
                exp.train.epochs
            ));
            pb.inc(1);
            // Without a terminal (nohup, a sweep's log) the bar is hidden: a line a minute.
            if !tty && last_note.elapsed().as_secs() >= 60 {
                last_note = Instant::now();
                let left = (batches_per_epoch - steps) * exp.data.batch_size
                    + (exp.train.epochs - epoch) * train.len();
                say(
                    dir,
                    &format!(
                        "[{category}] epoch {epoch}/{} step {steps}/{batches_per_epoch} loss {loss:.4} | {rate:.1} img/s, about {:.0} min of training left",
                        exp.train.epochs,
                        left as f64 / rate.max(1e-9) / 60.0
                    ),
                );
            }
        }
        trained.images += seen;
        trained.seconds += t0.elapsed().as_secs_f64();
        let terms: Vec<String> = sums
            .iter()
            .map(|(n, s)| format!("{n} {:.4}", s / steps as f64))
            .collect();
        let line = format!(
            "[{category}] epoch {epoch}/{} {} | {:.1} img/s",
            exp.train.epochs,
            terms.join(" "),
            seen as f64 / t0.elapsed().as_secs_f64().max(1e-9)
        );
        if tty {
            pb.println(&line);
            dir.log(&line);
        } else {
            say(dir, &line);
        }
        for (name, s) in sums {
            loss_rows.push(LossRow {
                category: category.clone(),
                epoch,
                term: name,
                value: s / steps as f64,
            });
        }
        // A finite loss can leave NaN behind (a BatchNorm's running variance of one value):
        // stop before saving it, so that a resume starts from the last sound epoch.
        let broken = non_finite_tensors(method.trainable(), &method.state());
        if !broken.is_empty() {
            let last = match train.len() % exp.data.batch_size {
                0 => exp.data.batch_size,
                rest => rest,
            };
            anyhow::bail!(
                "[{category}] epoch {epoch}: {} tensor(s) hold NaN or inf after the epoch ({}); \
                 nothing of it is saved. {}",
                broken.len(),
                broken
                    .iter()
                    .take(6)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", "),
                match (last, train.len()) {
                    (1, 1) => "The category has 1 training image: a BatchNorm layer that sees \
                               one value per channel in training gets a NaN running variance \
                               (PyTorch refuses such a batch). Add training images, or use a \
                               larger data.image_size (more positions per channel)."
                        .to_string(),
                    (1, n) => format!(
                        "The epoch's last batch held 1 image ({n} training images, \
                         data.batch_size = {}): a BatchNorm layer that sees one value per \
                         channel in training gets a NaN running variance (PyTorch refuses such \
                         a batch). Choose another data.batch_size, or a larger \
                         data.image_size.",
                        exp.data.batch_size
                    ),
                    _ => "Lower train.lr or check the data.".to_string(),
                }
            );
        }
        save_resume(
            &resume_root,
            epoch,
            method.as_ref(),
            &opt,
            &loss_rows,
            trained,
        )?;
        if stop_requested(model, epoch) {
            say(
                dir,
                &format!("[{model}] stopping after epoch {epoch} (MEMAD_STOP_AFTER_EPOCH)"),
            );
            std::process::exit(75);
        }
    }
    pb.finish_and_clear();
    finalize(method.as_mut(), model)?;
    append_rows(dir, "losses.csv", &loss_rows)?;
    let timing = TimingRow {
        model: model.to_string(),
        category: model.to_string(),
        stage: "train".into(),
        images: trained.images,
        seconds: trained.seconds,
    };
    append_rows(dir, "timings.csv", &[timing])?;
    save_checkpoint(method.trainable(), &method.state(), &checkpoint)?;
    remove_resume(&resume_root)?;
    Ok(method)
}

/// Builds the experiment's method with libtorch seeded by the experiment's seed (the same
/// initial weights every time).
pub(crate) fn build_method(
    exp: &crate::experiment::Experiment,
    registry: &Registry,
    ctx: &BuildContext,
) -> anyhow::Result<Box<dyn Method>> {
    seed_everything(exp.seed);
    let entry = registry.method(exp.method_kind(), "method.kind")?;
    let method = (entry.build)(&exp.method, registry, ctx)?;
    if exp.channels_last {
        make_channels_last(method.trainable());
    }
    Ok(method)
}

/// The method of `checkpoints/<model>.safetensors`, when an earlier session of the run
/// finished training it and the method restores its state; `None` otherwise (train it).
fn load_trained(
    exp: &crate::experiment::Experiment,
    registry: &Registry,
    ctx: &BuildContext,
    model: &str,
    dir: &mut RunDir,
) -> anyhow::Result<Option<Box<dyn Method>>> {
    let checkpoint = dir.path(&format!("checkpoints/{model}.safetensors"));
    if !checkpoint.is_file() {
        return Ok(None);
    }
    match load_checkpoint(exp, registry, ctx, &checkpoint, "") {
        Ok(method) => {
            remove_resume(&dir.path(&format!("resume/{model}")))?;
            let line = format!(
                "[{model}] trained in an earlier session: loaded {}",
                checkpoint.display()
            );
            say(dir, &line);
            Ok(Some(method))
        }
        Err(e) => {
            say(dir, &format!("[{model}] {e:#}; training it again"));
            Ok(None)
        }
    }
}

/// The method of `exp` with the variables of `checkpoint` and the state beside it
/// (`<stem>.state.safetensors`, when the method keeps one). Each step fails with its own
/// message: the model's build (the config's error, no word of the checkpoint), the
/// variables (`hint` appended: why they may not fit) and the state (the method's refusal).
pub(crate) fn load_checkpoint(
    exp: &crate::experiment::Experiment,
    registry: &Registry,
    ctx: &BuildContext,
    checkpoint: &Path,
    hint: &str,
) -> anyhow::Result<Box<dyn Method>> {
    let mut method = build_method(exp, registry, ctx)?;
    load_vars(method.trainable(), checkpoint).with_context(|| {
        format!(
            "loading {} into the model of this config{hint}",
            checkpoint.display()
        )
    })?;
    let state = checkpoint.with_extension("state.safetensors");
    load_method_state(method.as_mut(), &state)
        .with_context(|| format!("loading the fitted state {}", state.display()))?;
    Ok(method)
}

/// Logs the binary's commit and, when the checkout around the current folder is at another
/// (a binary built earlier, or the tree edited since), that one too; returns the checkout's
/// commit for `run.toml`.
pub(crate) fn say_commits(dir: &mut RunDir) -> Option<String> {
    let checkout = checkout_commit();
    let mut line = format!("binary built from commit {BUILD_COMMIT}");
    if let Some(c) = checkout.as_deref().filter(|c| *c != BUILD_COMMIT) {
        line += &format!(
            " while the checkout is at {c}: the results are the binary's code, recorded as \
             {BUILD_COMMIT}"
        );
    }
    say(dir, &line);
    checkout
}

/// Test hook: `MEMAD_STOP_AFTER_EPOCH=[MODEL:]N` ends the process (exit code 75) right
/// after the resume state of epoch `N` (of `MODEL`, else of any model) is saved, as a kill
/// at that moment would.
fn stop_requested(model: &str, epoch: usize) -> bool {
    let Ok(v) = std::env::var("MEMAD_STOP_AFTER_EPOCH") else {
        return false;
    };
    let (m, e) = v
        .rsplit_once(':')
        .map_or((None, v.as_str()), |(m, e)| (Some(m), e));
    m.is_none_or(|m| m == model) && e.parse() == Ok(epoch)
}

/// Training done so far on one model, over all its sessions (the `train` row of
/// `timings.csv`); kept in the resume state as `trained.toml`.
#[derive(Debug, Clone, Copy, Default, serde::Serialize, serde::Deserialize)]
struct Trained {
    images: usize,
    seconds: f64,
}

/// Saves the resume state after `epoch` into `<root>/epoch-NNNNN/` (`model.safetensors`,
/// `state.safetensors` and `optimizer.safetensors` when not empty, `losses.csv`,
/// `trained.toml`): written as `epoch-NNNNN.tmp/`, renamed, then every other entry of `root`
/// is removed.
fn save_resume(
    root: &Path,
    epoch: usize,
    method: &dyn Method,
    opt: &Optimizer,
    losses: &[LossRow],
    trained: Trained,
) -> anyhow::Result<()> {
    let name = format!("epoch-{epoch:05}");
    let (tmp, done) = (root.join(format!("{name}.tmp")), root.join(&name));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let write = || -> anyhow::Result<()> {
        write_tensors(
            &variables(method.trainable()),
            &tmp.join("model.safetensors"),
        )?;
        for (file, tensors) in [("state", method.state()), ("optimizer", opt.state())] {
            if !tensors.is_empty() {
                write_tensors(&tensors, &tmp.join(format!("{file}.safetensors")))?;
            }
        }
        std::fs::write(tmp.join("losses.csv"), csv_text(losses)?)?;
        std::fs::write(tmp.join("trained.toml"), toml::to_string(&trained)?)?;
        Ok(())
    };
    write().with_context(|| format!("saving the resume state {}", tmp.display()))?;
    if done.exists() {
        std::fs::remove_dir_all(&done)?;
    }
    std::fs::rename(&tmp, &done)?;
    for entry in std::fs::read_dir(root)? {
        let path = entry?.path();
        if path != done {
            std::fs::remove_dir_all(&path)
                .with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// The newest complete resume state under `root`: `(epoch, folder)`.
fn latest_resume(root: &Path) -> Option<(usize, PathBuf)> {
    std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| {
            let path = e.ok()?.path();
            let epoch = path
                .file_name()?
                .to_str()?
                .strip_prefix("epoch-")?
                .parse()
                .ok()?;
            Some((epoch, path))
        })
        .max_by_key(|(epoch, _)| *epoch)
}

/// Loads a resume state into a freshly built method and optimizer; returns its loss rows
/// and the training done before it (zero for a state saved before `trained.toml` existed).
fn restore(
    saved: &Path,
    method: &mut dyn Method,
    opt: &mut Optimizer,
) -> anyhow::Result<(Vec<LossRow>, Trained)> {
    load_vars(method.trainable(), &saved.join("model.safetensors"))?;
    load_method_state(method, &saved.join("state.safetensors"))?;
    opt.load_state(&read_tensors_if_present(
        &saved.join("optimizer.safetensors"),
    )?)?;
    let rows = csv::Reader::from_path(saved.join("losses.csv"))?
        .deserialize()
        .collect::<Result<Vec<LossRow>, _>>()?;
    let trained = match std::fs::read_to_string(saved.join("trained.toml")) {
        Ok(text) => toml::from_str(&text)?,
        Err(_) => Trained::default(),
    };
    Ok((rows, trained))
}

fn remove_resume(root: &Path) -> anyhow::Result<()> {
    if root.exists() {
        std::fs::remove_dir_all(root).with_context(|| format!("removing {}", root.display()))?;
    }
    Ok(())
}

/// Gives `method` the state saved at `path` (none when the file is absent), moved to the
/// method's device: safetensors files read onto the CPU, and a PatchCore bank left there
/// made every CUDA scoring step search on the host (and a CUDA graph capture fail).
fn load_method_state(method: &mut dyn Method, path: &Path) -> anyhow::Result<()> {
    let device = method.trainable().device();
    let state: Vec<(String, Tensor)> = read_tensors_if_present(path)?
        .into_iter()
        .map(|(name, t)| (name, t.to_device(device)))
        .collect();
    method.load_state(&state)?;
    Ok(())
}

fn read_tensors_if_present(path: &Path) -> anyhow::Result<Vec<(String, Tensor)>> {
    if !path.is_file() {
        return Ok(Vec::new());
    }
    Tensor::read_safetensors(path).with_context(|| format!("reading {}", path.display()))
}

/// Copies the tensors of a safetensors file into the variables of `vs` (every variable by
/// name, shapes equal, nothing else in the file).
fn load_vars(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let saved: std::collections::HashMap<String, Tensor> = Tensor::read_safetensors(path)
        .with_context(|| format!("reading {}", path.display()))?
        .into_iter()
        .collect();
    let vars = vs.variables();
    anyhow::ensure!(
        saved.len() == vars.len(),
        "{} holds {} tensors, the model has {} variables",
        path.display(),
        saved.len(),
        vars.len()
    );
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let src = saved
                .get(&name)
                .with_context(|| format!("{} lacks `{name}`", path.display()))?;
            anyhow::ensure!(
                src.size() == var.size(),
                "`{name}`: {:?} saved, {:?} in the model",
                src.size(),
                var.size()
            );
            var.f_copy_(src)?;
        }
        Ok(())
    })
}

/// Removes the rows `stale` picks from the run's CSV file `name` (`losses.csv`,
/// `timings.csv`): rows an earlier session wrote for work this session does again (a model
/// trained or fitted again, a category scored again after an interruption between its rows
/// and its checkpoint or `metrics.csv`), so that they are not counted twice.
pub(crate) fn drop_rows<T>(
    dir: &RunDir,
    name: &str,
    stale: impl Fn(&T) -> bool,
) -> anyhow::Result<()>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    let path = dir.path(name);
    if !path.is_file() {
        return Ok(());
    }
    let rows: Vec<T> = csv::Reader::from_path(&path)
        .and_then(|mut r| r.deserialize().collect())
        .with_context(|| format!("reading {}", path.display()))?;
    if !rows.iter().any(&stale) {
        return Ok(());
    }
    let kept: Vec<T> = rows.into_iter().filter(|r| !stale(r)).collect();
    crate::output::write_atomic(&path, &csv_text(&kept)?)
}

/// [`drop_rows`] of `model`'s training or fitting (`losses.csv`, and `stage` in
/// `timings.csv`).
fn drop_model_rows(dir: &RunDir, model: &str, stage: &str) -> anyhow::Result<()> {
    drop_rows(dir, "losses.csv", |r: &LossRow| r.category == model)?;
    drop_rows(dir, "timings.csv", |r: &TimingRow| {
        r.model == model && r.category == model && r.stage == stage
    })
}

/// [`Training::FitOnce`]: one pass over the training set in order, `fit` per batch without
/// gradients, then `finalize`.
fn fit_once(
    exp: &crate::experiment::Experiment,
    ctx: &BuildContext,
    model: &str,
    train: &[Sample],
    method: &mut dyn Method,
    dir: &mut RunDir,
) -> anyhow::Result<()> {
    drop_model_rows(dir, model, "fit")?; // of an earlier session that did not save the fit
    let order: Vec<usize> = (0..train.len()).collect();
    let loader = BatchLoader::with_cache(
        train.to_vec(),
        order,
        exp.data.batch_size,
        LoadOptions::new(exp.data.geometry()),
        exp.data.cache.clone(),
    );
    let pb = progress_bar(loader.batches as u64, model);
    let t0 = Instant::now();
    for host in loader {
        let batch = host?.to_batch(ctx.device);
        tch::no_grad(|| method.fit(&batch))?;
        pb.set_message("fitting (one pass, no gradients)");
        pb.inc(1);
    }
    pb.finish_and_clear();
    let features = t0.elapsed().as_secs_f64();
    finalize(method, model)?;
    let seconds = t0.elapsed().as_secs_f64();
    // What was fitted (PatchCore: the bank's items x dimension).
    let state: Vec<String> = (method.state().iter())
        .map(|(name, t)| format!("{name} {:?}", t.size()))
        .collect();
    let line = format!(
        "[{model}] fitted on {} images in {seconds:.1} s (one pass, no gradients; features {features:.1} s, finalize {:.1} s){}",
        train.len(),
        seconds - features,
        match state.is_empty() {
            true => String::new(),
            false => format!("; state {}", state.join(", ")),
        }
    );
    say(dir, &line);
    let timing = TimingRow {
        model: model.to_string(),
        category: model.to_string(),
        stage: "fit".into(),
        images: train.len(),
        seconds,
    };
    append_rows(dir, "timings.csv", &[timing])
}

/// `Method::finalize` under no-grad, its progress (a coreset's greedy steps) drawn as a bar.
fn finalize(method: &mut dyn Method, model: &str) -> anyhow::Result<()> {
    let pb = progress_bar(0, model); // drawn from the first report on
    let progress = |done: u64, total: u64| {
        if pb.length() != Some(total) {
            pb.set_length(total);
            pb.set_message("finalizing the fitted memory");
        }
        pb.set_position(done);
    };
    tch::no_grad(|| method.finalize(&progress))?;
    pb.finish_and_clear();
    Ok(())
}

fn accumulate(sums: &mut Vec<(String, f64)>, name: &str, value: f64) {
    match sums.iter_mut().find(|(n, _)| n == name) {
        Some((_, s)) => *s += value,
        None => sums.push((name.to_string(), value)),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct LossRow {
    category: String,
    epoch: usize,
    term: String,
    value: f64,
}

/// `timings.csv`: seconds a stage of a session took (`train`, `fit`, and per category
/// `waiting_for_images`, `scoring`, `outputs`, `metrics`), and on how many images.
#[derive(serde::Serialize, serde::Deserialize)]
pub(crate) struct TimingRow {
    pub(crate) model: String,
    pub(crate) category: String,
    pub(crate) stage: String,
    pub(crate) images: usize,
    pub(crate) seconds: f64,
}

/// Appends `rows` to the CSV file `name` of the run (written whole, atomically): `losses.csv`
/// (the mean of each loss term per epoch) and `timings.csv` ([`TimingRow`]).
pub(crate) fn append_rows<T: serde::Serialize>(
    dir: &RunDir,
    name: &str,
    rows: &[T],
) -> anyhow::Result<()> {
    let path = dir.path(name);
    let mut text = std::fs::read(&path).unwrap_or_default();
    let new = csv_text(rows)?;
    if text.is_empty() {
        text = new;
    } else {
        // Skip the header of the new block.
        let body = new
            .iter()
            .position(|&b| b == b'\n')
            .map_or(&new[..], |i| &new[i + 1..]);
        text.extend_from_slice(body);
    }
    crate::output::write_atomic(&path, &text)
}

/// The variables at `path`; state outside the VarStore (memory items) at
/// `<path stem>.state.safetensors`. Written to a temporary name and renamed.
pub(crate) fn save_checkpoint(
    vs: &nn::VarStore,
    state: &[(String, Tensor)],
    path: &Path,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    write_tensors(&variables(vs), &tmp)?;
    std::fs::rename(&tmp, path)?;
    if !state.is_empty() {
        let final_path = path.with_extension("state.safetensors");
        let tmp = path.with_extension("state.tmp.safetensors");
        write_tensors(state, &tmp)?;
        std::fs::rename(&tmp, final_path)?;
    }
    Ok(())
}

/// The named variables of `vs`.
fn variables(vs: &nn::VarStore) -> Vec<(String, Tensor)> {
    vs.variables().into_iter().collect()
}

/// Writes `tensors` as safetensors at `path`, each as a contiguous copy on the CPU
/// (safetensors holds the standard layout: channels-last variables are written as any other).
fn write_tensors(tensors: &[(String, Tensor)], path: &Path) -> anyhow::Result<()> {
    let cpu: Vec<(&str, Tensor)> = (tensors.iter())
        .map(|(n, t)| (n.as_str(), t.to_device(Device::Cpu).contiguous()))
        .collect();
    Tensor::write_safetensors(&cpu, path).with_context(|| format!("saving {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_gradients_are_named_and_variables_outside_the_graph_are_not() {
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let used = root.var("used", &[3], nn::Init::Const(1.0));
        let blocked = root.var("blocked", &[3], nn::Init::Const(1.0));
        let outside = root.var("outside", &[3], nn::Init::Const(1.0));
        let mut opt = Optimizer::Adam(Adam::new(&vs, AdamConfig::adam(0.1)).unwrap());
        // `blocked` is in the graph behind a ReLU that is zero everywhere.
        let loss = (&used * 2.0).sum(Kind::Float) + (-&blocked).relu().sum(Kind::Float);
        opt.backward_step(&loss);
        assert_eq!(zero_gradient_variables(&vs), ["blocked"]);
        // The next step leaves `blocked` out of the graph: zero_grad undefines its gradient.
        opt.backward_step(&(&used * &outside).sum(Kind::Float));
        assert!(zero_gradient_variables(&vs).is_empty());
    }

    #[test]
    fn a_batch_norm_trained_on_one_value_per_channel_is_named_non_finite() {
        let vs = nn::VarStore::new(Device::Cpu);
        let bn = nn::batch_norm2d(vs.root() / "bn", 2, Default::default());
        let _ = nn::conv2d(vs.root() / "conv", 2, 2, 1, Default::default());
        assert!(non_finite_tensors(&vs, &[]).is_empty());
        // A batch of one 1x1 image: the unbiased variance of one value is 0/0.
        let _ = Tensor::ones([1, 2, 1, 1], (Kind::Float, Device::Cpu)).apply_t(&bn, true);
        let state = [
            (
                "memory.items".to_string(),
                Tensor::from_slice(&[1f32, f32::INFINITY]),
            ),
            ("count".to_string(), Tensor::from(3i64)),
        ];
        assert_eq!(
            non_finite_tensors(&vs, &state),
            ["bn.running_var", "memory.items"]
        );
    }

    #[test]
    fn the_no_masks_refusal_agrees_in_number_and_says_where_masks_go() {
        let text = "[v]\nformat = \"video_frames\"\nroot = \"/nowhere\"\n\
                    [f]\nformat = \"folder\"\nroot = \"/nowhere\"\n";
        let catalog = memad_data::DatasetCatalog::parse(text, Path::new("d.toml")).unwrap();
        let video = catalog.get("v").unwrap();
        let one = no_masks_message(&["pixel_auroc"], 3, video);
        assert!(
            one.starts_with("pixel_auroc needs pixel masks, and none of the 3 anomalous")
                && one.contains("remove it from [eval] metrics")
                && one
                    .contains("(testing/masks/<video>/<frame>.png: one mask image per test frame"),
            "{one}"
        );
        let two = no_masks_message(&["pixel_auroc", "aupro"], 6, catalog.get("f").unwrap());
        assert!(
            two.starts_with("pixel_auroc, aupro need pixel masks")
                && two.contains("remove them from [eval] metrics")
                && two.contains("ground_truth/<label>/<image>_mask.png"),
            "{two}"
        );
    }

    #[test]
    fn tch_version_is_the_workspace_pin() {
        let manifest = include_str!("../../../Cargo.toml");
        assert!(
            manifest.contains(&format!("tch = \"={TCH_VERSION}\"")),
            "update TCH_VERSION to the pin in the workspace Cargo.toml"
        );
    }

    #[test]
    fn a_failed_run_folder_is_removed_only_when_it_holds_nothing_to_resume() {
        let root = tempfile::tempdir().unwrap();
        let partial = |name: &str| {
            let p = root.path().join(name).join("t.partial");
            std::fs::create_dir_all(p.join("checkpoints")).unwrap();
            std::fs::write(p.join("log.txt"), "started").unwrap();
            p
        };
        let empty = partial("empty");
        // The class list a model's training starts with is not a checkpoint.
        std::fs::write(empty.join(classes_file("all")), "grid\n").unwrap();
        drop(DiscardIfNothingToResume(Some(empty.clone())));
        assert!(!empty.exists() && !root.path().join("empty").exists());

        let trained = partial("trained");
        std::fs::write(trained.join("checkpoints/grid.safetensors"), "x").unwrap();
        drop(DiscardIfNothingToResume(Some(trained.clone())));
        assert!(trained.exists(), "a trained model is kept");

        let saved = partial("saved");
        std::fs::create_dir_all(saved.join("resume/m/epoch-00001")).unwrap();
        drop(DiscardIfNothingToResume(Some(saved.clone())));
        assert!(saved.exists(), "a saved epoch is kept for resuming");

        let scored = partial("scored");
        std::fs::write(scored.join("metrics.csv"), "run").unwrap();
        drop(DiscardIfNothingToResume(Some(scored.clone())));
        assert!(scored.exists(), "finished categories are kept");

        let disarmed = partial("disarmed");
        let mut guard = DiscardIfNothingToResume(Some(disarmed.clone()));
        guard.disarm();
        drop(guard);
        assert!(disarmed.exists());
    }
}
