//! `memad run`: trains and evaluates an experiment: one model per category (`one_class`) or
//! one model for all its categories (`multi_class`), evaluated per category.
//!
//! The runner owns the loop: seed, data order, optimizer, progress, checkpoints, results.
//! Results are last-epoch numbers; nothing is selected on the test set.
use crate::experiment::{Loaded, OptimizerKind, Setting, VideoNormalizationConfig, METRICS};
use crate::output::{csv_text, git_commit, timestamp, MetricRow, RunDir};
use crate::overlay::{write_overlay_grid, OverlaySample};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memad_core::device::{seed_everything, select};
use memad_core::optim::{Adam, AdamConfig, Optimizer};
use memad_core::{BuildContext, Method, Registry, Training};
use memad_data::arrays::TrainAnomalies;
use memad_data::loader::{shuffled, BatchLoader, LoadOptions};
use memad_data::mvtec::{CategorySplit, Sample};
use memad_data::synthesis::AnomalySynthesizer;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

/// Options of `memad run` beyond the experiment file.
pub struct RunOptions {
    pub runs_dir: PathBuf,
    pub weights_dir: PathBuf,
    /// Overrides `train.epochs` (quick smoke runs).
    pub epochs: Option<usize>,
}

/// What a finished run reports.
pub struct RunSummary {
    pub folder: PathBuf,
    /// `(category, [(metric, value)])`.
    pub results: Vec<(String, Vec<(String, f64)>)>,
}

pub fn run(loaded: &Loaded, registry: &Registry, opts: &RunOptions) -> anyhow::Result<RunSummary> {
    let mut exp = loaded.experiment.clone();
    if let Some(e) = opts.epochs {
        exp.train.epochs = e;
    }
    let device = select(&exp.device)?;
    loaded
        .dataset
        .prepare()
        .with_context(|| format!("preparing dataset `{}`", loaded.dataset.name))?;
    let categories = if exp.data.categories.is_empty() {
        loaded.dataset.category_names()?
    } else {
        exp.data.categories.clone()
    };
    // Read every split before creating the run folder: a bad layout fails early.
    let splits = categories
        .iter()
        .map(|c| match &exp.data.clip {
            Some(clip) => loaded.dataset.read_clips(c, clip.frames, clip.mode),
            None if exp.data.anomaly_fraction > 0.0 => loaded.dataset.read_classes(
                c,
                TrainAnomalies {
                    fraction: exp.data.anomaly_fraction,
                    seed: exp.seed,
                },
            ),
            None => loaded.dataset.read_category(c),
        })
        .collect::<Result<Vec<_>, _>>()?;

    let stamp = timestamp();
    let mut dir = RunDir::create(&opts.runs_dir, &exp.name, &stamp)?;
    let resolved = exp.to_toml();
    dir.write("config.toml", resolved.as_bytes())?;
    let (commit, dirty) = git_commit();
    let synthesizer: Option<Arc<dyn AnomalySynthesizer>> = match &exp.data.synthesis {
        Some(c) => Some(Arc::from(memad_data::synthesis::build(c)?)),
        None => None,
    };
    // One-class: a model per category; multi-class: one model, its classes the categories.
    let groups: Vec<Vec<&CategorySplit>> = match exp.data.setting {
        Setting::OneClass => splits.iter().map(|s| vec![s]).collect(),
        Setting::MultiClass => vec![splits.iter().collect()],
    };
    let started = Instant::now();
    let header = format!(
        "memad {} | {} on {} | device {device:?} | run {}",
        env!("CARGO_PKG_VERSION"),
        exp.method_kind(),
        loaded.dataset.name,
        dir.final_path.display()
    );
    say(&mut dir, &header);

    let mut rows: Vec<MetricRow> = Vec::new();
    let mut results = Vec::new();
    for group in &groups {
        let ctx = BuildContext {
            device,
            weights_dir: opts.weights_dir.clone(),
            image_size: exp.data.image_size as i64,
            classes: group.len(),
        };
        let model = match exp.data.setting {
            Setting::OneClass => group[0].category.clone(),
            Setting::MultiClass => "all".to_string(),
        };
        let method = train_model(&exp, registry, &ctx, group, &model, &synthesizer, &mut dir)?;
        for (class, split) in group.iter().enumerate() {
            let values = evaluate_category(&exp, &ctx, split, class, method.as_ref(), &mut dir)?;
            for (metric, value) in &values {
                rows.push(MetricRow {
                    run: format!("{}/{stamp}", exp.name),
                    commit: format!("{commit}{}", if dirty { "-dirty" } else { "" }),
                    method: exp.method_kind().into(),
                    backbone: exp.backbone_kind().into(),
                    dataset: loaded.dataset.name.clone(),
                    category: split.category.clone(),
                    setting: setting_label(&exp).into(),
                    seed: exp.seed,
                    epoch: exp.train.epochs,
                    metric: metric.clone(),
                    value: *value,
                });
            }
            // Rewritten after every category: an interrupted run keeps what it finished.
            dir.write("metrics.csv", &csv_text(&rows)?)?;
            results.push((split.category.clone(), values));
        }
    }
    let meta = RunMeta {
        memad_version: env!("CARGO_PKG_VERSION"),
        commit,
        dirty,
        device: format!("{device:?}"),
        torch_version: memad_core::device::torch_info()
            .torch_version
            .unwrap_or_default(),
        seed: exp.seed,
        wall_seconds: started.elapsed().as_secs_f64(),
        config_sha256: sha256_hex(resolved.as_bytes()),
    };
    dir.write("run.toml", toml::to_string(&meta)?.as_bytes())?;
    say(
        &mut dir,
        &format!("finished in {:.1} s", started.elapsed().as_secs_f64()),
    );
    let folder = dir.finish()?;
    Ok(RunSummary { folder, results })
}

/// The `setting` column of `metrics.csv`.
fn setting_label(exp: &crate::experiment::Experiment) -> &'static str {
    match exp.data.setting {
        Setting::MultiClass => "multi_class",
        Setting::OneClass if exp.data.anomaly_fraction > 0.0 => "unbalanced",
        Setting::OneClass => "one_class",
    }
}

/// `run.toml`: what produced a run.
#[derive(serde::Serialize)]
struct RunMeta {
    memad_version: &'static str,
    commit: String,
    dirty: bool,
    device: String,
    torch_version: String,
    seed: u64,
    wall_seconds: f64,
    config_sha256: String,
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Prints a line to stderr and the run log.
fn say(dir: &mut RunDir, line: &str) {
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
                momentum: t.betas[0],
                wd: t.weight_decay,
                ..Default::default()
            }
            .build(vs, t.lr)?,
        ),
    })
}

fn progress_bar(len: u64) -> ProgressBar {
    let pb = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {msg} (eta {eta})")
            .expect("valid template")
            .progress_chars("=> "),
    );
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
    seed_everything(exp.seed);
    let entry = registry.method(exp.method_kind(), "method.kind")?;
    let mut method = (entry.build)(&exp.method, registry, ctx)?;
    let (train, classes) = training_set(group);
    let checkpoint = dir.path(&format!("checkpoints/{model}.safetensors"));
    if method.training() == Training::FitOnce {
        fit_once(exp, ctx, model, &train, method.as_mut(), dir)?;
        save_checkpoint(method.trainable(), &method.state(), &checkpoint)?;
        return Ok(method);
    }
    let size = exp.data.image_size;
    let mut opt = build_optimizer(exp, method.trainable())?;
    let batches_per_epoch = train.len().div_ceil(exp.data.batch_size);
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
    let pb = progress_bar((exp.train.epochs * batches_per_epoch) as u64);
    pb.set_prefix(category.clone());
    if !tty {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut loss_rows = Vec::new();
    let mut last_note = Instant::now();
    for epoch in 1..=exp.train.epochs {
        method.start_epoch(epoch, exp.train.epochs)?;
        let epoch_seed = exp.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64);
        let order = shuffled(train.len(), epoch_seed);
        let load = LoadOptions {
            with_masks: false,
            classes: classes.clone(),
            synthesis: synthesizer.clone().map(|s| (s, epoch_seed)),
        };
        let loader = BatchLoader::new(train.clone(), order, exp.data.batch_size, size, load);
        let (t0, mut seen) = (Instant::now(), 0usize);
        let mut sums: Vec<(String, f64)> = Vec::new();
        let mut steps = 0usize;
        for host in loader {
            let batch = host?.to_batch(ctx.device);
            let out = method.train_step(&batch)?;
            let loss = out.loss.double_value(&[]);
            if !loss.is_finite() {
                anyhow::bail!("[{category}] epoch {epoch}: the loss is {loss}; lower train.lr or check the data");
            }
            opt.backward_step(&out.loss);
            method.after_step()?;
            seen += batch.input.size()[0] as usize;
            steps += 1;
            accumulate(&mut sums, "loss", loss);
            for t in &out.terms {
                accumulate(&mut sums, &t.name, t.value);
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
    }
    pb.finish_and_clear();
    method.finalize()?;
    append_losses(dir, &loss_rows)?;
    save_checkpoint(method.trainable(), &method.state(), &checkpoint)?;
    Ok(method)
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
    let order: Vec<usize> = (0..train.len()).collect();
    let loader = BatchLoader::new(
        train.to_vec(),
        order,
        exp.data.batch_size,
        exp.data.image_size,
        LoadOptions::default(),
    );
    let pb = progress_bar(loader.batches as u64);
    pb.set_prefix(model.to_string());
    if !std::io::stderr().is_terminal() {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let t0 = Instant::now();
    for host in loader {
        let batch = host?.to_batch(ctx.device);
        tch::no_grad(|| method.fit(&batch))?;
        pb.set_message("fitting (one pass, no gradients)");
        pb.inc(1);
    }
    pb.finish_and_clear();
    tch::no_grad(|| method.finalize())?;
    say(
        dir,
        &format!(
            "[{model}] fitted on {} images in {:.1} s (one pass, no gradients)",
            train.len(),
            t0.elapsed().as_secs_f64()
        ),
    );
    Ok(())
}

/// Scores a category's test set (its samples of class `class`), writes the scores and
/// returns the metrics of `eval.metrics`.
fn evaluate_category(
    exp: &crate::experiment::Experiment,
    ctx: &BuildContext,
    split: &CategorySplit,
    class: usize,
    method: &dyn Method,
    dir: &mut RunDir,
) -> anyhow::Result<Vec<(String, f64)>> {
    let category = &split.category;
    let size = exp.data.image_size;
    let eval = evaluate(
        method,
        &split.test,
        class as i64,
        exp.data.eval_batch_size,
        size,
        ctx.device,
    )?;
    write_scores(dir, category, &split.test, &eval)?;
    write_overlays(exp, dir, split, &eval)?;
    let values = compute_metrics(&exp.eval.metrics, exp.eval.video_normalization, &eval)?;
    let shown: Vec<String> = values.iter().map(|(m, v)| format!("{m} {v:.4}")).collect();
    say(dir, &format!("[{category}] {}", shown.join(" ")));
    Ok(values)
}

/// `overlays/<category>.png` ([`crate::overlay`]), when asked for and the method gives maps
/// of images read from files.
fn write_overlays(
    exp: &crate::experiment::Experiment,
    dir: &mut RunDir,
    split: &CategorySplit,
    eval: &Evaluation,
) -> anyhow::Result<()> {
    let Some(maps) = &eval.maps else {
        return Ok(());
    };
    if exp.eval.overlays == 0 || split.test.iter().any(|s| s.pixels.is_some()) {
        return Ok(()); // not asked for, or images held in memory (no files to show)
    }
    let samples: Vec<OverlaySample> = (split.test.iter().zip(&eval.image_scores))
        .map(|(s, &score)| OverlaySample {
            image: s.image.clone(),
            defect: s.defect.clone(),
            label: s.label.is_anomalous(),
            score: Some(score),
        })
        .collect();
    let out = dir.path(&format!("overlays/{}.png", split.category));
    write_overlay_grid(
        &out,
        &samples,
        maps,
        &eval.masks,
        eval.size,
        exp.eval.overlays,
    )
    .with_context(|| format!("[{}] writing {}", split.category, out.display()))
}

fn accumulate(sums: &mut Vec<(String, f64)>, name: &str, value: f64) {
    match sums.iter_mut().find(|(n, _)| n == name) {
        Some((_, s)) => *s += value,
        None => sums.push((name.to_string(), value)),
    }
}

#[derive(serde::Serialize)]
struct LossRow {
    category: String,
    epoch: usize,
    term: String,
    value: f64,
}

/// `losses.csv`: mean of each loss term per epoch, all categories so far.
fn append_losses(dir: &RunDir, rows: &[LossRow]) -> anyhow::Result<()> {
    let path = dir.path("losses.csv");
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
fn save_checkpoint(
    vs: &nn::VarStore,
    state: &[(String, Tensor)],
    path: &Path,
) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)
        .with_context(|| format!("saving {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
    if !state.is_empty() {
        let final_path = path.with_extension("state.safetensors");
        let tmp = path.with_extension("state.tmp.safetensors");
        Tensor::write_safetensors(state, &tmp)
            .with_context(|| format!("saving {}", tmp.display()))?;
        std::fs::rename(&tmp, final_path)?;
    }
    Ok(())
}

/// Scores of a test set, on the host.
pub struct Evaluation {
    pub image_scores: Vec<f32>,
    pub labels: Vec<bool>,
    /// `[N * H * W]` maps and masks, when the method localises.
    pub maps: Option<Vec<f32>>,
    pub masks: Vec<bool>,
    pub size: usize,
    /// The video of each sample (`None` for still images).
    pub videos: Vec<Option<String>>,
    /// The weighted parts of the image score (`AnomalyOutput::parts`): `(name, weight,
    /// values)`, one value per sample.
    pub parts: Vec<(String, f64, Vec<f32>)>,
    /// Whether the method's predicted class was the sample's, for methods that predict one
    /// (empty otherwise).
    pub class_correct: Vec<bool>,
}

/// Scores `test`, every sample of class `class`.
pub fn evaluate(
    method: &dyn Method,
    test: &[Sample],
    class: i64,
    batch_size: usize,
    size: u32,
    device: Device,
) -> anyhow::Result<Evaluation> {
    let order: Vec<usize> = (0..test.len()).collect();
    let load = LoadOptions {
        with_masks: true,
        classes: vec![class; test.len()],
        synthesis: None,
    };
    let loader = BatchLoader::new(test.to_vec(), order, batch_size, size, load);
    let mut eval = Evaluation {
        image_scores: Vec::new(),
        labels: Vec::new(),
        maps: Some(Vec::new()),
        masks: Vec::new(),
        size: size as usize,
        videos: test.iter().map(|t| t.video.clone()).collect(),
        parts: Vec::new(),
        class_correct: Vec::new(),
    };
    for host in loader {
        let host = host?;
        let batch = host.to_batch(device);
        let out = tch::no_grad(|| method.score(&batch))?;
        eval.image_scores.extend(to_vec(&out.image_score)?);
        if eval.parts.is_empty() {
            eval.parts = (out.parts.iter())
                .map(|p| (p.name.clone(), p.weight, Vec::new()))
                .collect();
        }
        anyhow::ensure!(
            out.parts.len() == eval.parts.len(),
            "the method returned {} score parts for one batch and {} for another",
            out.parts.len(),
            eval.parts.len()
        );
        for (part, all) in out.parts.iter().zip(eval.parts.iter_mut()) {
            all.2.extend(to_vec(&part.value)?);
        }
        if let Some(predicted) = &out.class_prediction {
            let predicted = Vec::<i64>::try_from(predicted.to_device(Device::Cpu))?;
            eval.class_correct
                .extend(predicted.iter().map(|&p| p == class));
        }
        eval.labels.extend(host.labels.iter().map(|&l| l == 1));
        eval.masks.extend(
            host.masks
                .as_deref()
                .unwrap_or(&[])
                .iter()
                .map(|&m| m > 0.5),
        );
        match (out.anomaly_map, eval.maps.as_mut()) {
            (Some(map), Some(all)) => all.extend(to_vec(&map)?),
            _ => eval.maps = None,
        }
    }
    Ok(eval)
}

fn to_vec(t: &Tensor) -> anyhow::Result<Vec<f32>> {
    Ok(Vec::<f32>::try_from(
        t.to_device(Device::Cpu).to_kind(Kind::Float).flatten(0, -1),
    )?)
}

fn write_scores(
    dir: &RunDir,
    category: &str,
    test: &[Sample],
    eval: &Evaluation,
) -> anyhow::Result<()> {
    let mut header = vec!["image", "video", "defect", "label", "score"];
    header.extend(eval.parts.iter().map(|p| p.0.as_str()));
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(&header)?;
    for (i, s) in test.iter().enumerate() {
        let mut row = vec![
            s.image.display().to_string(),
            s.video.clone().unwrap_or_default(),
            s.defect.clone(),
            (s.label.is_anomalous() as u8).to_string(),
            eval.image_scores[i].to_string(),
        ];
        row.extend(eval.parts.iter().map(|p| p.2[i].to_string()));
        out.write_record(&row)?;
    }
    std::fs::create_dir_all(dir.path("scores"))?;
    dir.write(&format!("scores/{category}.csv"), &out.into_inner()?)
}

/// The requested metrics, in the order of [`METRICS`].
pub fn compute_metrics(
    requested: &[String],
    video_norm: VideoNormalizationConfig,
    eval: &Evaluation,
) -> anyhow::Result<Vec<(String, f64)>> {
    use memad_metrics as m;
    let mut out = Vec::new();
    for &name in METRICS.iter().filter(|n| requested.iter().any(|r| r == *n)) {
        let pixel = name.starts_with("pixel") || name == "aupro";
        if pixel && eval.maps.is_none() {
            continue; // the method gives no anomaly map
        }
        if name == "class_accuracy" {
            if !eval.class_correct.is_empty() {
                let right = eval.class_correct.iter().filter(|&&c| c).count();
                out.push((
                    name.to_string(),
                    right as f64 / eval.class_correct.len() as f64,
                ));
            }
            continue; // only methods that predict classes have one
        }
        let maps = eval.maps.as_deref().unwrap_or(&[]);
        let (n, s) = (eval.labels.len(), eval.size);
        let value = match name {
            "image_auroc" => m::auroc(&eval.image_scores, &eval.labels),
            "image_ap" => m::average_precision(&eval.image_scores, &eval.labels),
            "image_f1_max" => m::f1_max(&eval.image_scores, &eval.labels).map(|f| f.f1),
            "pixel_auroc" => m::auroc(maps, &eval.masks),
            "pixel_ap" => m::average_precision(maps, &eval.masks),
            "pixel_f1_max" => m::f1_max(maps, &eval.masks).map(|f| f.f1),
            "aupro" => m::aupro(maps, &eval.masks, n, s, s, 0.3),
            "frame_auroc_micro" | "frame_auroc_macro" => {
                let (videos, norm) = frames_by_video(eval, video_norm);
                if name == "frame_auroc_micro" {
                    m::frame_auroc_micro(&videos, norm)
                } else {
                    m::frame_auroc_macro(&videos, norm)
                }
            }
            other => unreachable!("metric {other} is validated at load time"),
        }
        .with_context(|| format!("computing {name}"))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// One video's frame scores and labels (`true` = anomalous).
type VideoFrames = (Vec<f32>, Vec<bool>);

/// The frames grouped by video, in order of first appearance: `(scores, labels)` per video,
/// and the normalisation left for the metric. With score parts and `min_max`, each part is
/// min-max normalised within its video and the parts summed with their weights (MNAD's
/// `alpha * g(-PSNR) + (1 - alpha) * g(distance)`); the sum is not normalised again.
fn frames_by_video(
    eval: &Evaluation,
    norm: VideoNormalizationConfig,
) -> (Vec<VideoFrames>, memad_metrics::VideoNormalization) {
    use memad_metrics::VideoNormalization;
    let mut names: Vec<&Option<String>> = Vec::new();
    let mut members: Vec<Vec<usize>> = Vec::new();
    for (i, v) in eval.videos.iter().enumerate() {
        match names.iter().position(|n| *n == v) {
            Some(k) => members[k].push(i),
            None => {
                names.push(v);
                members.push(vec![i]);
            }
        }
    }
    let combine = norm == VideoNormalizationConfig::MinMax && !eval.parts.is_empty();
    let videos = members
        .iter()
        .map(|idx| {
            let labels = idx.iter().map(|&i| eval.labels[i]).collect();
            let scores = if combine {
                let mut sum = vec![0f64; idx.len()];
                for (_, weight, values) in &eval.parts {
                    let part: Vec<f32> = idx.iter().map(|&i| values[i]).collect();
                    for (s, v) in sum.iter_mut().zip(min_max(&part)) {
                        *s += weight * v;
                    }
                }
                sum.into_iter().map(|s| s as f32).collect()
            } else {
                idx.iter().map(|&i| eval.image_scores[i]).collect()
            };
            (scores, labels)
        })
        .collect();
    let norm = match norm {
        VideoNormalizationConfig::MinMax if !combine => VideoNormalization::MinMaxPerVideo,
        _ => VideoNormalization::None,
    };
    (videos, norm)
}

/// `(v - min) / (max - min)`; a constant input maps to zeros.
fn min_max(values: &[f32]) -> Vec<f64> {
    let lo = values.iter().fold(f64::INFINITY, |m, &v| m.min(v as f64));
    let hi = values
        .iter()
        .fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let range = hi - lo;
    values
        .iter()
        .map(|&v| {
            if range > 0.0 {
                (v as f64 - lo) / range
            } else {
                0.0
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eval(scores: &[f32], labels: &[bool], videos: &[&str]) -> Evaluation {
        Evaluation {
            image_scores: scores.to_vec(),
            labels: labels.to_vec(),
            maps: None,
            masks: Vec::new(),
            size: 1,
            videos: videos.iter().map(|v| Some(v.to_string())).collect(),
            parts: Vec::new(),
            class_correct: Vec::new(),
        }
    }

    #[test]
    fn frames_are_grouped_by_video_in_order() {
        let e = eval(&[1.0, 5.0, 2.0], &[false, true, true], &["b", "a", "b"]);
        let (videos, norm) = frames_by_video(&e, VideoNormalizationConfig::MinMax);
        assert_eq!(videos[0], (vec![1.0, 2.0], vec![false, true]));
        assert_eq!(videos[1], (vec![5.0], vec![true]));
        assert_eq!(norm, memad_metrics::VideoNormalization::MinMaxPerVideo);
    }

    #[test]
    fn score_parts_are_normalised_per_video_then_weighted() {
        // MNAD: 0.6 g(-psnr) + 0.4 g(distance), g = min-max within the video.
        let mut e = eval(&[0.0; 4], &[false, false, true, true], &["a"; 4]);
        e.parts = vec![
            ("neg_psnr".into(), 0.6, vec![-30.0, -28.0, -20.0, -30.0]),
            ("feature_distance".into(), 0.4, vec![1.0, 3.0, 2.0, 5.0]),
        ];
        let (videos, norm) = frames_by_video(&e, VideoNormalizationConfig::MinMax);
        let want = [0.0, 0.6 * 0.2 + 0.4 * 0.5, 0.6 + 0.4 * 0.25, 0.4];
        for (got, want) in videos[0].0.iter().zip(want) {
            assert!((*got as f64 - want).abs() < 1e-6, "{got} vs {want}");
        }
        assert_eq!(norm, memad_metrics::VideoNormalization::None);
        let (raw, _) = frames_by_video(&e, VideoNormalizationConfig::None);
        assert_eq!(
            raw[0].0,
            vec![0.0; 4],
            "without min_max the image score is used"
        );
    }

    #[test]
    fn min_max_of_a_constant_video_is_zero() {
        assert_eq!(min_max(&[3.0, 3.0]), vec![0.0, 0.0]);
        assert_eq!(min_max(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
    }
}
