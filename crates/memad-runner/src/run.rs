//! `memad run`: trains and evaluates an experiment, one model per category (one-class).
//!
//! The runner owns the loop: seed, data order, optimizer, progress, checkpoints, results.
//! Results are last-epoch numbers; nothing is selected on the test set.
use crate::experiment::{Loaded, OptimizerKind, METRICS};
use crate::output::{csv_text, git_commit, timestamp, MetricRow, RunDir};
use anyhow::Context;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use memad_core::device::{seed_everything, select};
use memad_core::{BuildContext, Method, Registry};
use memad_data::loader::{shuffled, BatchLoader};
use memad_data::mvtec::Sample;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
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
        .map(|c| loaded.dataset.read_category(c))
        .collect::<Result<Vec<_>, _>>()?;

    let stamp = timestamp();
    let mut dir = RunDir::create(&opts.runs_dir, &exp.name, &stamp)?;
    let resolved = exp.to_toml();
    dir.write("config.toml", resolved.as_bytes())?;
    let (commit, dirty) = git_commit();
    let ctx = BuildContext {
        device,
        weights_dir: opts.weights_dir.clone(),
        image_size: exp.data.image_size as i64,
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
    for split in &splits {
        let values = run_category(&exp, registry, &ctx, split, &mut dir)?;
        for (metric, value) in &values {
            rows.push(MetricRow {
                run: format!("{}/{stamp}", exp.name),
                commit: format!("{commit}{}", if dirty { "-dirty" } else { "" }),
                method: exp.method_kind().into(),
                backbone: exp.backbone_kind().into(),
                dataset: loaded.dataset.name.clone(),
                category: split.category.clone(),
                setting: "one_class".into(),
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

fn sha256_hex(bytes: &[u8]) -> String {
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

fn build_optimizer(
    exp: &crate::experiment::Experiment,
    vs: &nn::VarStore,
) -> anyhow::Result<nn::Optimizer> {
    let t = &exp.train;
    let opt = match t.optimizer {
        OptimizerKind::Adam => nn::Adam {
            beta1: t.betas[0],
            beta2: t.betas[1],
            wd: t.weight_decay,
            ..Default::default()
        }
        .build(vs, t.lr),
        OptimizerKind::AdamW => nn::AdamW {
            beta1: t.betas[0],
            beta2: t.betas[1],
            wd: t.weight_decay,
            ..Default::default()
        }
        .build(vs, t.lr),
        OptimizerKind::Sgd => nn::Sgd {
            momentum: t.betas[0],
            wd: t.weight_decay,
            ..Default::default()
        }
        .build(vs, t.lr),
    };
    Ok(opt?)
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

fn run_category(
    exp: &crate::experiment::Experiment,
    registry: &Registry,
    ctx: &BuildContext,
    split: &memad_data::mvtec::CategorySplit,
    dir: &mut RunDir,
) -> anyhow::Result<Vec<(String, f64)>> {
    let category = &split.category;
    seed_everything(exp.seed);
    let entry = registry.method(exp.method_kind(), "method.kind")?;
    let mut method = (entry.build)(&exp.method, registry, ctx)?;
    let mut opt = build_optimizer(exp, method.trainable())?;
    let size = exp.data.image_size;
    let batches_per_epoch = split.train.len().div_ceil(exp.data.batch_size);
    say(
        dir,
        &format!(
            "[{category}] train {} images, test {} images",
            split.train.len(),
            split.test.len()
        ),
    );

    let tty = std::io::stderr().is_terminal();
    let pb = progress_bar((exp.train.epochs * batches_per_epoch) as u64);
    pb.set_prefix(category.clone());
    if !tty {
        pb.set_draw_target(ProgressDrawTarget::hidden());
    }
    let mut loss_rows = Vec::new();
    for epoch in 1..=exp.train.epochs {
        let order = shuffled(
            split.train.len(),
            exp.seed.wrapping_mul(1_000_003).wrapping_add(epoch as u64),
        );
        let loader = BatchLoader::new(split.train.clone(), order, exp.data.batch_size, size, false);
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
    save_checkpoint(
        method.trainable(),
        &dir.path(&format!("checkpoints/{category}.safetensors")),
    )?;

    let eval = evaluate(
        method.as_ref(),
        &split.test,
        exp.data.eval_batch_size,
        size,
        ctx.device,
    )?;
    write_scores(dir, category, &split.test, &eval.image_scores)?;
    let values = compute_metrics(&exp.eval.metrics, &eval)?;
    let shown: Vec<String> = values.iter().map(|(m, v)| format!("{m} {v:.4}")).collect();
    say(dir, &format!("[{category}] {}", shown.join(" ")));
    Ok(values)
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

fn save_checkpoint(vs: &nn::VarStore, path: &Path) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp.safetensors");
    vs.save(&tmp)
        .with_context(|| format!("saving {}", tmp.display()))?;
    std::fs::rename(&tmp, path)?;
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
}

pub fn evaluate(
    method: &dyn Method,
    test: &[Sample],
    batch_size: usize,
    size: u32,
    device: Device,
) -> anyhow::Result<Evaluation> {
    let order: Vec<usize> = (0..test.len()).collect();
    let loader = BatchLoader::new(test.to_vec(), order, batch_size, size, true);
    let mut eval = Evaluation {
        image_scores: Vec::new(),
        labels: Vec::new(),
        maps: Some(Vec::new()),
        masks: Vec::new(),
        size: size as usize,
    };
    for host in loader {
        let host = host?;
        let batch = host.to_batch(device);
        let out = tch::no_grad(|| method.score(&batch))?;
        eval.image_scores.extend(to_vec(&out.image_score)?);
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
    scores: &[f32],
) -> anyhow::Result<()> {
    #[derive(serde::Serialize)]
    struct Row<'a> {
        image: String,
        defect: &'a str,
        label: u8,
        score: f32,
    }
    let rows: Vec<Row> = test
        .iter()
        .zip(scores)
        .map(|(s, &score)| Row {
            image: s.image.display().to_string(),
            defect: &s.defect,
            label: s.label.is_anomalous() as u8,
            score,
        })
        .collect();
    std::fs::create_dir_all(dir.path("scores"))?;
    dir.write(&format!("scores/{category}.csv"), &csv_text(&rows)?)
}

/// The requested metrics, in the order of [`METRICS`].
pub fn compute_metrics(
    requested: &[String],
    eval: &Evaluation,
) -> anyhow::Result<Vec<(String, f64)>> {
    use memad_metrics as m;
    let mut out = Vec::new();
    for &name in METRICS.iter().filter(|n| requested.iter().any(|r| r == *n)) {
        let pixel = name.starts_with("pixel") || name == "aupro";
        if pixel && eval.maps.is_none() {
            continue; // the method gives no anomaly map
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
            other => unreachable!("metric {other} is validated at load time"),
        }
        .with_context(|| format!("computing {name}"))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}
