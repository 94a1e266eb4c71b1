//! Scoring a test set and its metrics, for `memad run` and `memad eval`: the method's maps
//! and image scores batch by batch ([`evaluate`]), the files a category's scoring writes
//! (`scores/`, `memory/`, overlays, `timings.csv` rows) and the metrics of `[eval] metrics`
//! ([`compute_metrics`]: image and pixel ranks shared between metrics, pixel metrics without
//! the anomalous images that have no mask, MVTec LOCO AD's per-type means, video frame
//! metrics from per-video normalised score parts).
use crate::experiment::{DataConfig, ResizeShape, VideoNormalizationConfig, METRICS};
use crate::output::RunDir;
use crate::overlay::{write_overlay_grid, OverlaySample};
use crate::run::{append_rows, drop_rows, progress_bar, say, TimingRow};
use anyhow::Context;
use memad_core::precision::Precision;
use memad_core::{BuildContext, Method};
use memad_cuda::GraphedScorer;
use memad_data::catalog::DatasetFormat;
use memad_data::loader::{BatchLoader, LoadOptions};
use memad_data::mvtec::{CategorySplit, Sample};
use std::borrow::Cow;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

/// Scores a category's test set (its samples of class `class`) with the model `model`,
/// writes the scores and the stage times and returns the metrics of `eval.metrics`
/// (`format`: the dataset's, for LOCO's per-type figures).
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_category(
    exp: &crate::experiment::Experiment,
    format: DatasetFormat,
    ctx: &BuildContext,
    model: &str,
    split: &CategorySplit,
    class: usize,
    method: &dyn Method,
    dir: &mut RunDir,
) -> anyhow::Result<Vec<(String, f64)>> {
    let category = &split.category;
    // Rows of an earlier session that scored this category but did not save its metrics.
    drop_rows(dir, "timings.csv", |r: &TimingRow| {
        r.model == model && r.category == *category && r.stage != "train" && r.stage != "fit"
    })?;
    let mut eval = evaluate(
        category,
        method,
        &split.test,
        class as i64,
        &exp.data,
        (ctx.device, exp.precision, exp.cuda_graphs),
    )?;
    if format == DatasetFormat::MvtecLoco {
        eval.anomaly_types = anomaly_type_subsets(split);
    }
    if exp.eval.metrics.iter().any(|m| m == "auspro") {
        let geometry = exp.data.geometry();
        eval.spro_regions = memad_data::mvtec_loco::spro_regions_fitted(&split.test, &geometry)?
            .into_iter()
            .map(|r| memad_metrics::SaturatedRegion {
                image: r.sample,
                pixels: r.pixels,
                saturation: r.saturation,
            })
            .collect();
    }
    let outputs = Instant::now();
    write_scores(dir, category, &split.test, &eval)?;
    write_memory_usage(dir, category, &eval)?;
    for usage in &eval.memory_usage {
        say(
            dir,
            &format!("[{category}] {}", usage.summary(eval.labels.len())),
        );
    }
    write_overlays(exp, dir, split, &eval)?;
    let metrics = Instant::now();
    let values = compute_metrics(&exp.eval.metrics, exp.eval.video_normalization, &eval)?;
    let asked = |name: &str| exp.eval.metrics.iter().any(|m| m == name);
    if asked("frame_auroc_macro") && !values.iter().any(|(m, _)| m == "frame_auroc_macro") {
        let line = format!(
            "[{category}] frame_auroc_macro is undefined: no video has both normal and \
             anomalous frames (no row written)"
        );
        say(dir, &line);
    }
    if asked("class_accuracy") && eval.class_correct.is_empty() {
        let line = format!(
            "[{category}] class_accuracy is not applicable: this model predicts no classes \
             (MDD-Net does with its class memory, method.class_source = \"predicted\" and \
             more than one class; no row written)"
        );
        say(dir, &line);
    }
    if let Some(line) = pixel_metrics_note(exp, split, &eval, &values) {
        say(dir, &line);
    }
    if asked("auspro") && !values.iter().any(|(m, _)| m == "auspro") {
        // The anomaly types whose regions all vanished (their rows are missing), or none
        // without types.
        let vanished: Vec<&str> = (eval.anomaly_types.iter())
            .map(|(t, _)| t.as_str())
            .filter(|t| !values.iter().any(|(m, _)| *m == format!("auspro_{t}")))
            .collect();
        let of = match vanished.is_empty() {
            true => String::new(),
            false => format!(" of {}", vanished.join(", ")),
        };
        let g = exp.data.geometry();
        let line = format!(
            "[{category}] auspro undefined: no sPRO region{of} keeps a pixel at the evaluated \
             size (resized to {} ({:?}), cropped to {}: the defects vanish; no row written \
             for the mean{})",
            g.resize,
            g.shape,
            g.side(),
            match vanished.is_empty() {
                true => String::new(),
                false => " nor for those types".to_string(),
            }
        );
        say(dir, &line);
    }
    let (outputs, metrics) = (metrics - outputs, metrics.elapsed());
    let images = split.test.len();
    let t = eval.timing;
    let line = format!(
        "[{category}] scored {images} images in {:.1} s ({:.1} images/s; {:.1} s of it waiting for images), outputs {:.2} s, metrics {:.2} s",
        t.waiting_for_images + t.scoring,
        images as f64 / (t.waiting_for_images + t.scoring).max(1e-9),
        t.waiting_for_images,
        outputs.as_secs_f64(),
        metrics.as_secs_f64()
    );
    say(dir, &line);
    if let Some((replayed, eager)) = eval.graph_batches {
        let line = format!(
            "[{category}] cuda_graphs: {replayed} batches replayed from a CUDA graph, {eager} scored eagerly (the first, and batches of other shapes)"
        );
        say(dir, &line);
    }
    let row = |stage: &str, seconds: f64| TimingRow {
        model: model.to_string(),
        category: category.clone(),
        stage: stage.to_string(),
        images,
        seconds,
    };
    append_rows(
        dir,
        "timings.csv",
        &[
            row("waiting_for_images", t.waiting_for_images),
            row("scoring", t.scoring),
            row("outputs", outputs.as_secs_f64()),
            row("metrics", metrics.as_secs_f64()),
        ],
    )?;
    let shown: Vec<String> = values.iter().map(|(m, v)| format!("{m} {v:.4}")).collect();
    say(dir, &format!("[{category}] {}", shown.join(" ")));
    Ok(values)
}

/// Says which anomalous test images without a mask the pixel metrics left out, or why they
/// are undefined: no anomalous image has a mask, or every mask lost its pixels when resized
/// to the evaluated size; `None` when they were computed from every image.
fn pixel_metrics_note(
    exp: &crate::experiment::Experiment,
    split: &CategorySplit,
    eval: &Evaluation,
    values: &[(String, f64)],
) -> Option<String> {
    let pixel: Vec<&str> = (exp.eval.metrics.iter())
        .map(String::as_str)
        .filter(|m| is_masked_pixel_metric(m))
        .collect();
    let computed = values.iter().any(|(m, _)| pixel.contains(&m.as_str()));
    if eval.maps.is_none() || pixel.is_empty() || eval.unmasked.is_empty() && computed {
        return None;
    }
    let (category, n, metrics) = (&split.category, eval.unmasked.len(), pixel.join(", "));
    let lost = format!(
        "no test mask marks a pixel at the evaluated size (data.image_size = {}: the defects \
         vanish when the masks are resized or cropped)",
        exp.data.image_size
    );
    if eval.unmasked.is_empty() {
        return Some(format!(
            "[{category}] {metrics} undefined: {lost}; no row written"
        ));
    }
    let defects: std::collections::BTreeSet<&str> = (eval.unmasked.iter())
        .map(|&i| split.test[i].defect.as_str())
        .collect();
    let defects = defects.into_iter().collect::<Vec<_>>().join(", ");
    let anomalous = eval.labels.iter().filter(|&&l| l).count();
    Some(if computed {
        format!(
            "[{category}] {n} anomalous test image(s) without a mask ({defects}) left out of \
             {metrics}: their defect pixels are unknown"
        )
    } else if n < anomalous {
        format!(
            "[{category}] {metrics} undefined: {n} anomalous test image(s) without a mask \
             ({defects}), and of the others {lost}; no row written"
        )
    } else {
        format!(
            "[{category}] {metrics} undefined: no anomalous test image has a mask ({n} \
             without: {defects}; no row written)"
        )
    })
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
    // The image is cropped as the model input: the crop's share of the resize, of each side
    // (a square resize) or of the shorter one on both axes.
    let geometry = exp.data.geometry();
    let crop = geometry.side() as f64 / geometry.resize as f64;
    let crop_square = geometry.shape == ResizeShape::ShorterSide;
    let samples: Vec<OverlaySample> = (split.test.iter().zip(&eval.image_scores))
        .map(|(s, &score)| OverlaySample {
            image: s.image.clone(),
            defect: s.defect.clone(),
            label: s.label.is_anomalous(),
            name: {
                let stem = s.image.file_stem().unwrap_or_default().to_string_lossy();
                match &s.video {
                    Some(video) => format!("{video}/{stem}"),
                    None => stem.into_owned(),
                }
            },
            score: Some(score),
            raw_frame_score: s.video.is_some()
                && exp.eval.video_normalization != VideoNormalizationConfig::None,
            crop,
            crop_square,
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

/// Per anomaly type of the test set ([`CategorySplit::defects`]), the indices of the normal
/// samples and of the samples of that type.
fn anomaly_type_subsets(split: &CategorySplit) -> Vec<(String, Vec<usize>)> {
    (split.defects().into_iter())
        .map(|t| {
            let members = (split.test.iter().enumerate())
                .filter(|(_, s)| !s.label.is_anomalous() || s.defect == t)
                .map(|(i, _)| i)
                .collect();
            (t.to_string(), members)
        })
        .collect()
}

/// MVTec LOCO AD's AU-sPRO per anomaly type, as its official `evaluate_experiment.py`
/// computes it: one curve per type (logical, structural) over the normal images and that
/// type's. `(type, area)` in the order of `eval.anomaly_types`; the area is `None` for a
/// type none of whose regions keeps a pixel at the evaluated size (undefined).
fn auspro_per_type(
    eval: &Evaluation,
    maps: &[f32],
    s: usize,
) -> memad_metrics::Result<Vec<(String, Option<f64>)>> {
    use memad_metrics as m;
    let n = eval.labels.len();
    let mut areas = Vec::with_capacity(eval.anomaly_types.len());
    for (anomaly_type, members) in &eval.anomaly_types {
        let mut position = vec![usize::MAX; n];
        let mut subset_maps = Vec::with_capacity(members.len() * s * s);
        for (k, &i) in members.iter().enumerate() {
            position[i] = k;
            subset_maps.extend_from_slice(&maps[i * s * s..(i + 1) * s * s]);
        }
        let regions: Vec<m::SaturatedRegion> = (eval.spro_regions.iter())
            .filter(|r| position[r.image] != usize::MAX)
            .map(|r| m::SaturatedRegion {
                image: position[r.image],
                pixels: r.pixels.clone(),
                saturation: r.saturation,
            })
            .collect();
        let area = match regions.is_empty() {
            true => None,
            false => Some(m::auspro(
                &subset_maps,
                &regions,
                members.len(),
                s,
                s,
                m::LOCO_FPR_LIMIT,
            )?),
        };
        areas.push((anomaly_type.clone(), area));
    }
    Ok(areas)
}

/// MVTec LOCO AD's image metric `name` (`image_auroc`, `image_ap`, `image_f1_max`) per
/// anomaly type, as its official `evaluate_experiment.py` computes the AUROC: the normal
/// images against each type's (logical, structural). `(type, value)` in the order of
/// `eval.anomaly_types`.
fn image_metric_per_type(
    eval: &Evaluation,
    name: &str,
) -> memad_metrics::Result<Vec<(String, f64)>> {
    (eval.anomaly_types.iter())
        .map(|(anomaly_type, members)| {
            let scores: Vec<f32> = members.iter().map(|&i| eval.image_scores[i]).collect();
            let labels: Vec<bool> = members.iter().map(|&i| eval.labels[i]).collect();
            let ranks = memad_metrics::RankedScores::new(&scores, &labels)?;
            Ok((anomaly_type.clone(), ranked_metric(&ranks, name)))
        })
        .collect()
}

/// Scores of a test set, on the host.
pub struct Evaluation {
    pub image_scores: Vec<f32>,
    pub labels: Vec<bool>,
    /// `[N * H * W]` maps and masks, when the method localises.
    pub maps: Option<Vec<f32>>,
    pub masks: Vec<bool>,
    pub size: usize,
    /// The anomalous samples without a mask (the `folder` format's masks are optional), in
    /// order: their defect pixels are unknown, so the pixel metrics leave them out (their
    /// `masks` are all false, which would count every defect pixel as normal).
    pub unmasked: Vec<usize>,
    /// The video of each sample (`None` for still images).
    pub videos: Vec<Option<String>>,
    /// The weighted parts of the image score (`AnomalyOutput::parts`): `(name, weight,
    /// values)`, one value per sample.
    pub parts: Vec<(String, f64, Vec<f32>)>,
    /// Whether the method's predicted class was the sample's, for methods that predict one
    /// (empty otherwise).
    pub class_correct: Vec<bool>,
    /// How each memory of the method was addressed (`AnomalyOutput::memory_usage`).
    pub memory_usage: Vec<UsageSums>,
    /// The ground-truth regions for `auspro` (MVTec LOCO AD), when it is asked for.
    pub spro_regions: Vec<memad_metrics::SaturatedRegion>,
    /// MVTec LOCO AD only (empty otherwise): the anomaly types of the test set (logical,
    /// structural), each with its samples and the normal ones. `image_auroc` and `auspro` are
    /// the mean over the types, as LOCO's official evaluation reports them (`image_ap` and
    /// `image_f1_max` likewise), each type's value following as `<metric>_<type>`.
    pub anomaly_types: Vec<(String, Vec<usize>)>,
    /// Where the scoring time went.
    pub timing: ScoringTime,
    /// With `cuda_graphs` on CUDA: (batches replayed from the graph, batches scored eagerly).
    pub graph_batches: Option<(usize, usize)>,
}

/// Where [`evaluate`]'s time went, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ScoringTime {
    /// Blocked on the loader: decoding and resizing not hidden behind the model.
    pub waiting_for_images: f64,
    /// Moving each batch to the device, the method's `score` and copying its outputs to the
    /// host (which waits for the device).
    pub scoring: f64,
}

/// One memory's addressing weights summed over a test set, per item.
#[derive(Debug, Clone, PartialEq)]
pub struct UsageSums {
    pub name: String,
    /// `[slots]`: the sum over the normal test samples of each one's mean attention.
    pub normal: Vec<f64>,
    /// `[slots]`: the same over the anomalous test samples.
    pub anomalous: Vec<f64>,
}

impl UsageSums {
    /// Adds a batch's `[B * slots]` per-sample attention rows, each to its label's sums.
    fn add(&mut self, rows: &[f32], anomalous: &[bool]) -> anyhow::Result<()> {
        let slots = self.normal.len();
        anyhow::ensure!(
            rows.len() == slots * anomalous.len(),
            "memory `{}`: {} attention values for {} samples of {slots} items",
            self.name,
            rows.len(),
            anomalous.len()
        );
        for (row, &a) in rows.chunks(slots).zip(anomalous) {
            let sums = if a {
                &mut self.anomalous
            } else {
                &mut self.normal
            };
            for (s, &w) in sums.iter_mut().zip(row) {
                *s += w as f64;
            }
        }
        Ok(())
    }

    /// One log line on how the memory was used over `samples` test samples: how many items
    /// carry 90% of the addressing weight, and the share of the reads that kept any item
    /// (the mean row sum: 100% for a softmax read; MemAE's hard shrinkage empties a read
    /// whose every weight falls under its threshold, and such a read passes nothing on).
    pub fn summary(&self, samples: usize) -> String {
        let mut weights: Vec<f64> = (self.normal.iter())
            .zip(&self.anomalous)
            .map(|(n, a)| n + a)
            .collect();
        let total: f64 = weights.iter().sum();
        let kept = 100.0 * total / samples.max(1) as f64;
        if total <= 0.0 {
            return format!(
                "memory `{}`: no read kept any item (every addressing weight was removed): the memory passed nothing on",
                self.name
            );
        }
        weights.sort_by(|a, b| b.total_cmp(a));
        let mut carried = 0.0;
        let items = 1
            + (weights.iter())
                .position(|w| {
                    carried += w;
                    carried >= 0.9 * total
                })
                .unwrap_or(weights.len() - 1);
        format!(
            "memory `{}`: {items} of {} items carry 90% of the addressing weight; reads that kept any item: {kept:.1}%",
            self.name,
            weights.len()
        )
    }
}

/// Scores `test`, every sample of class `class`, loaded as `data` says (size, crop, batch
/// size, cache), on `device` in `precision`, through a CUDA graph with `cuda_graphs`
/// (`memad_cuda::GraphedScorer`); `label` names the progress bar.
pub fn evaluate(
    label: &str,
    method: &dyn Method,
    test: &[Sample],
    class: i64,
    data: &DataConfig,
    (device, precision, cuda_graphs): (Device, Precision, bool),
) -> anyhow::Result<Evaluation> {
    let mut scorer = GraphedScorer::new(method, device, precision, cuda_graphs);
    let order: Vec<usize> = (0..test.len()).collect();
    let load = LoadOptions {
        geometry: data.geometry(),
        with_masks: true,
        mask_resize: data.mask_resize,
        classes: vec![class; test.len()],
        synthesis: None,
    };
    let size = data.image_size;
    let mut loader = BatchLoader::with_cache(
        test.to_vec(),
        order,
        data.eval_batch_size,
        load,
        data.cache.clone(),
    );
    let mut eval = Evaluation {
        image_scores: Vec::new(),
        labels: Vec::new(),
        maps: Some(Vec::new()),
        masks: Vec::new(),
        size: size as usize,
        unmasked: (test.iter().enumerate())
            .filter(|(_, t)| t.label.is_anomalous() && t.mask.is_none())
            .map(|(i, _)| i)
            .collect(),
        videos: test.iter().map(|t| t.video.clone()).collect(),
        parts: Vec::new(),
        class_correct: Vec::new(),
        memory_usage: Vec::new(),
        spro_regions: Vec::new(),
        anomaly_types: Vec::new(),
        timing: ScoringTime::default(),
        graph_batches: None,
    };
    let pb = progress_bar(loader.batches as u64, label);
    pb.set_message("scoring");
    loop {
        let waiting = Instant::now();
        let Some(host) = loader.next() else { break };
        let host = host?;
        let scoring = Instant::now();
        eval.timing.waiting_for_images += (scoring - waiting).as_secs_f64();
        let batch = host.to_batch(device);
        // The graph's outputs are overwritten by the next batch: all are read below.
        let out = scorer.score(&batch)?;
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
        let anomalous: Vec<bool> = host.labels.iter().map(|&l| l == 1).collect();
        if eval.memory_usage.is_empty() {
            eval.memory_usage = (out.memory_usage.iter())
                .map(|u| UsageSums {
                    name: u.name.clone(),
                    normal: vec![0.0; u.attention.size()[1] as usize],
                    anomalous: vec![0.0; u.attention.size()[1] as usize],
                })
                .collect();
        }
        anyhow::ensure!(
            out.memory_usage.len() == eval.memory_usage.len(),
            "the method reported {} memories for one batch and {} for another",
            out.memory_usage.len(),
            eval.memory_usage.len()
        );
        for (usage, sums) in out.memory_usage.iter().zip(eval.memory_usage.iter_mut()) {
            sums.add(&to_vec(&usage.attention)?, &anomalous)?;
        }
        eval.labels.extend(anomalous);
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
        eval.timing.scoring += scoring.elapsed().as_secs_f64();
        pb.inc(1);
    }
    pb.finish_and_clear();
    if scorer.uses_graphs() {
        eval.graph_batches = Some((scorer.replayed, scorer.eager));
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

/// `memory/<category>.csv` (memory, item, normal, anomalous): the share of the addressing
/// weight each item of each memory receives over the normal and over the anomalous test
/// samples (`sum / total`, a column sums to 1; empty where the test set has no such
/// sample). Nothing for methods without a memory.
fn write_memory_usage(dir: &RunDir, category: &str, eval: &Evaluation) -> anyhow::Result<()> {
    if eval.memory_usage.is_empty() {
        return Ok(());
    }
    let share = |sums: &[f64], i: usize| {
        let total: f64 = sums.iter().sum();
        if total > 0.0 {
            (sums[i] / total).to_string()
        } else {
            String::new()
        }
    };
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record(["memory", "item", "normal", "anomalous"])?;
    for u in &eval.memory_usage {
        for i in 0..u.normal.len() {
            out.write_record([
                u.name.clone(),
                i.to_string(),
                share(&u.normal, i),
                share(&u.anomalous, i),
            ])?;
        }
    }
    std::fs::create_dir_all(dir.path("memory"))?;
    dir.write(&format!("memory/{category}.csv"), &out.into_inner()?)
}

/// The requested metrics, in the order of [`METRICS`].
pub fn compute_metrics(
    requested: &[String],
    video_norm: VideoNormalizationConfig,
    eval: &Evaluation,
) -> anyhow::Result<Vec<(String, f64)>> {
    use memad_metrics as m;
    let mut out = Vec::new();
    // AUROC, AP and F1-max of the same scores share one sort (of `N * H * W` pixels).
    let (mut image_ranks, mut pixel_ranks) = (None, None);
    let (maps, masks, masked) = match requested.iter().any(|r| is_masked_pixel_metric(r)) {
        true => pixel_inputs(eval),
        false => (Cow::Borrowed(&[][..]), Cow::Borrowed(&[][..]), 0),
    };
    for &name in METRICS.iter().filter(|n| requested.iter().any(|r| r == *n)) {
        let pixel = crate::experiment::is_pixel_metric(name);
        if pixel && (eval.maps.is_none() || is_masked_pixel_metric(name) && !masks.contains(&true))
        {
            // The method gives no anomaly map, or no anomalous pixel is left to find (no
            // anomalous sample has a mask, or the masks vanished at this image size):
            // undefined, not wrong (`evaluate_category` notes it).
            continue;
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
        let (all_maps, n, s) = (
            eval.maps.as_deref().unwrap_or(&[]),
            eval.labels.len(),
            eval.size,
        );
        if !eval.anomaly_types.is_empty() && (name.starts_with("image_") || name == "auspro") {
            // MVTec LOCO AD: the mean over the anomaly types (the official headline figure
            // for the AUROC and AU-sPRO; AP and F1-max alike, which pooled would depend on
            // how many images each type has), then each type's, as `<metric>_<type>`
            // (`image_auroc_logical_anomalies`).
            let per_type = if name == "auspro" {
                auspro_per_type(eval, all_maps, s)
            } else {
                image_metric_per_type(eval, name)
                    .map(|v| v.into_iter().map(|(t, v)| (t, Some(v))).collect())
            }
            .with_context(|| format!("computing {name}"))?;
            // A type whose regions all vanished at this size: undefined, and so is the mean
            // (`evaluate_category` notes it).
            let defined: Vec<f64> = per_type.iter().filter_map(|(_, v)| *v).collect();
            if defined.len() == per_type.len() {
                out.push((
                    name.to_string(),
                    defined.iter().sum::<f64>() / defined.len() as f64,
                ));
            }
            out.extend(
                (per_type.into_iter()).filter_map(|(t, v)| Some((format!("{name}_{t}"), v?))),
            );
            continue;
        }
        let value = match name {
            "image_auroc" | "image_ap" | "image_f1_max" => {
                ranked(&mut image_ranks, &eval.image_scores, &eval.labels)
                    .map(|r| ranked_metric(r, name))
            }
            "pixel_auroc" | "pixel_ap" | "pixel_f1_max" => {
                ranked(&mut pixel_ranks, &maps, &masks).map(|r| ranked_metric(r, name))
            }
            "aupro" => m::aupro(&maps, &masks, masked, s, s, m::MVTEC_FPR_LIMIT),
            // Without anomaly types (no anomaly in the test set): one curve over all images
            // (MVTec LOCO AD, whose anomalous images all have masks: its regions index them).
            // No region left at this size: undefined (`evaluate_category` notes it).
            "auspro" if eval.spro_regions.is_empty() => continue,
            "auspro" => m::auspro(all_maps, &eval.spro_regions, n, s, s, m::LOCO_FPR_LIMIT),
            "aupro_rd4ad" => m::aupro_rd4ad(&maps, &masks, masked, s, s),
            "frame_auroc_micro" => {
                let (videos, norm) = frames_by_video(eval, video_norm);
                m::frame_auroc_micro(&videos, norm)
            }
            "frame_auroc_macro" => {
                let (videos, norm) = frames_by_video(eval, video_norm);
                match m::frame_auroc_macro(&videos, norm) {
                    // Undefined, not wrong: the caller notes it and writes no row.
                    Err(m::MetricError::NoVideoWithBothClasses) => continue,
                    other => other,
                }
            }
            other => unreachable!("metric {other} is validated at load time"),
        }
        .with_context(|| format!("computing {name}"))?;
        out.push((name.to_string(), value));
    }
    Ok(out)
}

/// Whether `metric` is computed from the maps and masks ([`pixel_inputs`]): `pixel_*` and
/// `aupro*` (`auspro` reads LOCO's regions instead).
pub(crate) fn is_masked_pixel_metric(metric: &str) -> bool {
    metric.starts_with("pixel_") || metric.starts_with("aupro")
}

/// The maps and masks the pixel metrics count and their number of samples: every sample
/// but the anomalous ones without a mask ([`Evaluation::unmasked`]). Empty without maps.
fn pixel_inputs(eval: &Evaluation) -> (Cow<'_, [f32]>, Cow<'_, [bool]>, usize) {
    let (maps, n) = (eval.maps.as_deref().unwrap_or(&[]), eval.labels.len());
    if eval.unmasked.is_empty() || maps.is_empty() {
        return (Cow::Borrowed(maps), Cow::Borrowed(&eval.masks), n);
    }
    let plane = eval.size * eval.size;
    let kept: Vec<usize> = (0..n)
        .filter(|i| eval.unmasked.binary_search(i).is_err())
        .collect();
    let maps = planes(maps, &kept, plane);
    let masks = planes(&eval.masks, &kept, plane);
    (Cow::Owned(maps), Cow::Owned(masks), kept.len())
}

/// The planes `kept` of `all` (`[N * plane]`), in order.
fn planes<T: Copy>(all: &[T], kept: &[usize], plane: usize) -> Vec<T> {
    (kept.iter())
        .flat_map(|&i| &all[i * plane..(i + 1) * plane])
        .copied()
        .collect()
}

/// `slot`'s ranking of `scores`, computed on first use.
fn ranked<'a>(
    slot: &'a mut Option<memad_metrics::RankedScores>,
    scores: &[f32],
    labels: &[bool],
) -> Result<&'a memad_metrics::RankedScores, memad_metrics::MetricError> {
    if slot.is_none() {
        *slot = Some(memad_metrics::RankedScores::new(scores, labels)?);
    }
    Ok(slot.as_ref().expect("ranked above"))
}

/// `*_auroc`, `*_ap` or `*_f1_max` of ranked scores.
fn ranked_metric(ranks: &memad_metrics::RankedScores, name: &str) -> f64 {
    if name.ends_with("auroc") {
        ranks.auroc()
    } else if name.ends_with("_ap") {
        ranks.average_precision()
    } else {
        ranks.f1_max().f1
    }
}

/// One video's frame scores and labels (`true` = anomalous); `f64`, so that MNAD's weighted
/// sum of normalised parts is ranked as computed, not rounded to `f32` first.
type VideoFrames = (Vec<f64>, Vec<bool>);

/// The frames grouped by video, in order of first appearance: `(scores, labels)` per video,
/// and the normalisation left for the metric. With score parts and `min_max`, each part is
/// min-max normalised within its video and the parts summed with their weights (MNAD's
/// `alpha * g(-PSNR) + (1 - alpha) * g(distance)`); the sum is not normalised again.
fn frames_by_video(
    eval: &Evaluation,
    norm: VideoNormalizationConfig,
) -> (Vec<VideoFrames>, memad_metrics::VideoNormalization) {
    use memad_metrics::VideoNormalization;
    let combine = norm == VideoNormalizationConfig::MinMax && !eval.parts.is_empty();
    let videos = rows_by_video(&eval.videos)
        .iter()
        .map(|rows| {
            let labels = rows.iter().map(|&i| eval.labels[i]).collect();
            let scores = if combine {
                let parts =
                    (eval.parts.iter()).map(|(_, weight, values)| (*weight, values.as_slice()));
                combined_parts(rows, parts)
            } else {
                rows.iter().map(|&i| eval.image_scores[i] as f64).collect()
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

/// The rows of each video, videos in order of first appearance (as the frame metrics
/// group them).
pub(crate) fn rows_by_video<T: Eq + std::hash::Hash>(videos: &[T]) -> Vec<Vec<usize>> {
    let mut index: std::collections::HashMap<&T, usize> = std::collections::HashMap::new();
    let mut rows: Vec<Vec<usize>> = Vec::new();
    for (i, v) in videos.iter().enumerate() {
        let k = *index.entry(v).or_insert_with(|| {
            rows.push(Vec::new());
            rows.len() - 1
        });
        rows[k].push(i);
    }
    rows
}

/// For the rows `rows` of one video, `sum weight * min_max(part)` over the `(weight, part)`
/// score parts (each part one value per row of the whole file): MNAD's
/// `alpha * g(-PSNR) + (1 - alpha) * g(distance)`.
pub(crate) fn combined_parts<'a>(
    rows: &[usize],
    parts: impl IntoIterator<Item = (f64, &'a [f32])>,
) -> Vec<f64> {
    let mut sum = vec![0f64; rows.len()];
    for (weight, values) in parts {
        let part: Vec<f32> = rows.iter().map(|&i| values[i]).collect();
        for (s, v) in sum.iter_mut().zip(min_max(&part)) {
            *s += weight * v;
        }
    }
    sum
}

/// `(v - min) / (max - min)`; a constant input maps to zeros.
pub(crate) fn min_max(values: &[f32]) -> Vec<f64> {
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
    use std::path::PathBuf;

    fn eval(scores: &[f32], labels: &[bool], videos: &[&str]) -> Evaluation {
        Evaluation {
            image_scores: scores.to_vec(),
            labels: labels.to_vec(),
            maps: None,
            masks: Vec::new(),
            unmasked: Vec::new(),
            size: 1,
            videos: videos.iter().map(|v| Some(v.to_string())).collect(),
            parts: Vec::new(),
            class_correct: Vec::new(),
            memory_usage: Vec::new(),
            spro_regions: Vec::new(),
            anomaly_types: Vec::new(),
            timing: ScoringTime::default(),
            graph_batches: None,
        }
    }

    #[test]
    fn auspro_is_the_mean_of_one_curve_per_anomaly_type_each_reported() {
        use memad_metrics as m;
        // 2x2 maps: a good image, a logical one (region: pixel 0, weakly scored) and two
        // structural ones (regions: pixel 3, strongly scored).
        let mut e = eval(&[0.0; 4], &[false, true, true, true], &["", "", "", ""]);
        e.size = 2;
        let maps = vec![
            0.1, 0.2, 0.3, 0.2, // good
            0.25, 0.5, 0.1, 0.1, // logical
            0.0, 0.1, 0.1, 0.9, // structural
            0.1, 0.0, 0.2, 0.8, // structural
        ];
        let region = |image, pixel| m::SaturatedRegion {
            image,
            pixels: vec![pixel],
            saturation: 1.0,
        };
        e.spro_regions = vec![region(1, 0), region(2, 3), region(3, 3)];
        let test: Vec<Sample> = ["good", "logical_anomalies", "structural_anomalies"]
            .iter()
            .chain(["structural_anomalies"].iter())
            .map(|d| {
                let label = match *d {
                    "good" => memad_data::Label::Normal,
                    _ => memad_data::Label::Anomalous,
                };
                Sample::still(PathBuf::new(), label, d, None)
            })
            .collect();
        let split = CategorySplit {
            category: "c".into(),
            train: Vec::new(),
            test,
        };
        e.anomaly_types = anomaly_type_subsets(&split);
        assert_eq!(
            e.anomaly_types,
            [
                ("logical_anomalies".to_string(), vec![0, 1]),
                ("structural_anomalies".to_string(), vec![0, 2, 3])
            ]
        );
        let limit = m::LOCO_FPR_LIMIT;
        let logical = m::auspro(&maps[..8], &[region(1, 0)], 2, 2, 2, limit).unwrap();
        let mut structural_maps = maps[..4].to_vec();
        structural_maps.extend_from_slice(&maps[8..]);
        let structural = m::auspro(
            &structural_maps,
            &[region(1, 3), region(2, 3)],
            3,
            2,
            2,
            limit,
        )
        .unwrap();
        e.maps = Some(maps.clone());
        let values = compute_metrics(&["auspro".into()], VideoNormalizationConfig::None, &e);
        let values = values.unwrap();
        let names: Vec<&str> = values.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [
                "auspro",
                "auspro_logical_anomalies",
                "auspro_structural_anomalies"
            ]
        );
        assert_eq!((values[1].1, values[2].1), (logical, structural));
        let got = values[0].1;
        assert!((got - (logical + structural) / 2.0).abs() < 1e-12, "{got}");
        let pooled = m::auspro(&maps, &e.spro_regions, 4, 2, 2, limit).unwrap();
        assert!(
            (got - pooled).abs() > 1e-3,
            "the pooled curve differs: {pooled}"
        );

        // The structural regions cropped away at the evaluated size: that type and the mean
        // are undefined (no row), the logical one is still reported; without any region
        // (no anomaly type either) nothing, and neither is an error.
        e.spro_regions = vec![region(1, 0)];
        let values = compute_metrics(&["auspro".into()], VideoNormalizationConfig::None, &e);
        assert_eq!(
            values.unwrap(),
            [("auspro_logical_anomalies".to_string(), logical)]
        );
        e.spro_regions.clear();
        e.anomaly_types.clear();
        let values = compute_metrics(&["auspro".into()], VideoNormalizationConfig::None, &e);
        assert_eq!(values.unwrap(), []);
    }

    #[test]
    fn loco_image_metrics_are_the_mean_over_anomaly_types_each_reported() {
        // Normal 0.2, 0.4; logical 0.3 (AUROC 0.5 against the normal ones); structural 0.5,
        // 0.6 (AUROC 1). The official mean is 0.75; pooled, 5 of 6 pairs are ordered.
        let mut e = eval(
            &[0.2, 0.4, 0.3, 0.5, 0.6],
            &[false, false, true, true, true],
            &["", "", "", "", ""],
        );
        e.videos = vec![None; 5];
        e.anomaly_types = vec![
            ("logical_anomalies".into(), vec![0, 1, 2]),
            ("structural_anomalies".into(), vec![0, 1, 3, 4]),
        ];
        let requested = ["image_auroc", "image_ap", "image_f1_max"].map(String::from);
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        // AP: logical, 0.3 ranks below 0.4 (precision 1/2 at its recall); structural, 1.
        // F1-max: logical, 2/3 (0.4 and 0.3 flagged: precision 1/2, recall 1); structural, 1.
        let want = [
            ("image_auroc", 0.75),
            ("image_auroc_logical_anomalies", 0.5),
            ("image_auroc_structural_anomalies", 1.0),
            ("image_ap", 0.75),
            ("image_ap_logical_anomalies", 0.5),
            ("image_ap_structural_anomalies", 1.0),
            ("image_f1_max", (2.0 / 3.0 + 1.0) / 2.0),
            ("image_f1_max_logical_anomalies", 2.0 / 3.0),
            ("image_f1_max_structural_anomalies", 1.0),
        ];
        let want: Vec<(String, f64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        let names = |v: &[(String, f64)]| v.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
        assert_eq!(names(&got), names(&want));
        assert!(
            got.iter()
                .zip(&want)
                .all(|(g, w)| (g.1 - w.1).abs() < 1e-12),
            "{got:?}"
        );
        e.anomaly_types.clear();
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        assert!((got[0].1 - 5.0 / 6.0).abs() < 1e-12, "{got:?}");
    }

    #[test]
    fn metrics_sharing_a_ranking_equal_the_metric_functions() {
        use memad_metrics as m;
        // Two 2x2 maps: image 1 anomalous with one anomalous pixel; tied scores included.
        let mut e = eval(&[0.2, 0.7], &[false, true], &["a", "a"]);
        e.size = 2;
        e.maps = Some(vec![0.1, 0.3, 0.3, 0.2, 0.3, 0.9, 0.1, 0.4]);
        e.masks = vec![false, false, false, false, true, false, false, false];
        let requested: Vec<String> = METRICS[..7].iter().map(|n| n.to_string()).collect();
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        let (maps, masks) = (e.maps.as_deref().unwrap(), &e.masks);
        let s = &e.image_scores;
        let want = [
            ("image_auroc", m::auroc(s, &e.labels).unwrap()),
            ("image_ap", m::average_precision(s, &e.labels).unwrap()),
            ("image_f1_max", m::f1_max(s, &e.labels).unwrap().f1),
            ("pixel_auroc", m::auroc(maps, masks).unwrap()),
            ("pixel_ap", m::average_precision(maps, masks).unwrap()),
            ("pixel_f1_max", m::f1_max(maps, masks).unwrap().f1),
        ];
        for (name, value) in want {
            let found = got.iter().find(|(n, _)| n == name);
            assert_eq!(found.map(|(_, v)| *v), Some(value), "{name}: {got:?}");
        }
        assert!(
            (got.iter()).any(|(n, v)| n == "pixel_auroc" && *v < 1.0 && *v > 0.5),
            "a non-trivial pixel ranking: {got:?}"
        );
    }

    #[test]
    fn anomalous_images_without_a_mask_are_left_out_of_the_pixel_metrics() {
        // Three 2x2 maps: a normal image, an anomalous one with its mask and an anomalous one
        // without (its all-false mask would count its hottest pixels as normal).
        let mut e = eval(&[0.2, 0.9, 0.7], &[false, true, true], &["a", "a", "a"]);
        e.size = 2;
        e.maps = Some(vec![
            0.1, 0.3, 0.3, 0.2, /**/ 0.95, 0.9, 0.8, 0.7, /**/ 0.3, 0.9, 0.1, 0.4,
        ]);
        e.masks = vec![false; 12];
        e.masks[8] = true;
        e.unmasked = vec![1];
        let requested = ["image_auroc", "pixel_auroc", "pixel_ap", "aupro"].map(String::from);
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        let all = e.maps.as_deref().unwrap();
        let maps: Vec<f32> = [&all[..4], &all[8..]].concat();
        let masks: Vec<bool> = [&e.masks[..4], &e.masks[8..]].concat();
        let (maps, masks) = (&maps[..], &masks[..]);
        let want = [
            ("image_auroc", 1.0),
            ("pixel_auroc", memad_metrics::auroc(maps, masks).unwrap()),
            (
                "pixel_ap",
                memad_metrics::average_precision(maps, masks).unwrap(),
            ),
            (
                "aupro",
                memad_metrics::aupro(maps, masks, 2, 2, 2, 0.3).unwrap(),
            ),
        ];
        let want: Vec<(String, f64)> = want.iter().map(|(n, v)| (n.to_string(), *v)).collect();
        assert_eq!(got, want);
        // With no anomalous image masked the pixel metrics are undefined: no rows.
        e.unmasked = vec![1, 2];
        e.masks[8] = false;
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        assert_eq!(got, [("image_auroc".to_string(), 1.0)]);
        // Every anomalous image masked, but no mask marks a pixel at this size (a defect
        // smaller than a pixel after resizing): undefined too, not an error.
        e.unmasked = Vec::new();
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        assert_eq!(got, [("image_auroc".to_string(), 1.0)]);
    }

    #[test]
    fn usage_sums_split_rows_by_label() {
        let mut u = UsageSums {
            name: "memory".into(),
            normal: vec![0.0; 2],
            anomalous: vec![0.0; 2],
        };
        u.add(&[0.25, 0.75, 1.0, 0.0, 0.5, 0.5], &[false, true, false])
            .unwrap();
        assert_eq!(u.normal, [0.75, 1.25]);
        assert_eq!(u.anomalous, [1.0, 0.0]);
        let err = u
            .add(&[0.5, 0.5, 1.0], &[false, false])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("memory `memory`: 3 attention values for 2 samples of 2 items"),
            "{err}"
        );
    }

    #[test]
    fn usage_summary_counts_the_items_of_90_percent_and_the_empty_reads() {
        let u = UsageSums {
            name: "memory".into(),
            normal: vec![0.0625, 1.0, 0.125, 0.0],
            anomalous: vec![0.0, 0.5, 0.25, 0.0625],
        };
        // 2 samples of full reads (weight 2.0): items 1 and 2 carry 1.875 >= 1.8.
        assert_eq!(
            u.summary(2),
            "memory `memory`: 2 of 4 items carry 90% of the addressing weight; reads that kept any item: 100.0%"
        );
        // The same weight over 4 samples: half the reads were empty.
        assert!(
            u.summary(4).ends_with("reads that kept any item: 50.0%"),
            "{}",
            u.summary(4)
        );
        let empty = UsageSums {
            name: "memory".into(),
            normal: vec![0.0; 3],
            anomalous: vec![0.0; 3],
        };
        assert!(empty.summary(5).contains("no read kept any item"));
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
            assert!((got - want).abs() < 1e-12, "{got} vs {want}");
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
    fn frame_auroc_macro_is_left_out_when_no_video_has_both_classes() {
        let e = eval(&[0.1, 0.2, 0.3], &[false, false, true], &["a", "a", "b"]);
        let requested = [
            "frame_auroc_micro".to_string(),
            "frame_auroc_macro".to_string(),
        ];
        let got = compute_metrics(&requested, VideoNormalizationConfig::None, &e).unwrap();
        assert_eq!(got, [("frame_auroc_micro".to_string(), 1.0)]);
    }

    #[test]
    fn combined_frame_scores_are_ranked_in_f64() {
        // Frames 1 and 2 differ by 1e-8 in the weighted sum: a tie in f32 (AUROC 0.75),
        // ordered in f64 (AUROC 1).
        let mut e = eval(&[0.0; 3], &[false, false, true], &["a"; 3]);
        e.parts = vec![
            ("neg_psnr".into(), 1.0, vec![0.0, 1.0, 1.0]),
            ("feature_distance".into(), 1e-8, vec![0.0, 0.0, 1.0]),
        ];
        let requested = ["frame_auroc_micro".to_string()];
        let got = compute_metrics(&requested, VideoNormalizationConfig::MinMax, &e).unwrap();
        assert_eq!(got, [("frame_auroc_micro".to_string(), 1.0)]);
    }

    #[test]
    fn min_max_of_a_constant_video_is_zero() {
        assert_eq!(min_max(&[3.0, 3.0]), vec![0.0, 0.0]);
        assert_eq!(min_max(&[1.0, 3.0, 2.0]), vec![0.0, 1.0, 0.5]);
    }
}
