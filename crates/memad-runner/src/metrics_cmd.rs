//! `memad metrics --pred PRED.npz --gt GT.npz [--json]`: image- and pixel-level metrics of
//! any framework's predictions, per category and averaged over categories.
//!
//! - `PRED.npz`: `image_scores [N]`, optionally `anomaly_maps [N,H,W]` (or `[N,1,H,W]`).
//! - `GT.npz`: `image_labels [N]`, optionally `masks [N,H,W]` (or `[N,1,H,W]`),
//!   `categories [N]` (strings or integers; one table row each, sorted) and `videos [N]`
//!   (strings or integers: the video of each frame, frames in time order within a video),
//!   which adds `frame_auroc_micro` and `frame_auroc_macro` ([`memad_metrics::video`]) under
//!   `--video-normalization none` or `min_max` (MNAD's and MemAE's protocols normalise each
//!   video's scores to [0, 1]; no default, so the choice shows in the command).
//!
//! Labels are 0 (normal) or 1 (anomalous), anything else is an error; nonzero mask pixels
//! are anomalous (masks of 0/255 and 0/1 both work). Scores and maps are ranked in the precision
//! of the file ([`Values`]): `float64` (and integers wider than 16 bits) in `f64`, anything
//! else in `f32`, so no score is rounded before ranking (integers above 2^53 excepted). The metrics are
//! [`memad_metrics::evaluate_images`]'s (pixel metrics and AUPRO when both maps and masks are
//! given). A category whose metrics are undefined (only normal or only anomalous images or
//! pixels) is reported as such and left out of the mean, which says how many categories it
//! averages. The `.npz` reader ([`npz`]) is self-contained: zip (stored or deflated, zip64,
//! CRC-checked) holding `.npy` arrays, decoded while streaming so that an array costs its
//! converted size only.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{anyhow, bail, ensure, Context, Result};
use memad_metrics::{
    aupro, evaluate_images, frame_auroc_macro, frame_auroc_micro, ImageMetrics, MetricError,
    RankedScores, Score, VideoNormalization, MVTEC_FPR_LIMIT,
};
use serde::Serialize;

use npz::{Category, Dtype, Npz};

/// Arguments of `memad metrics`.
#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Predictions: `image_scores [N]`, optionally `anomaly_maps [N,H,W]`.
    #[arg(long)]
    pub pred: PathBuf,
    /// Ground truth: `image_labels [N]`, optionally `masks [N,H,W]` and `categories [N]`.
    #[arg(long)]
    pub gt: PathBuf,
    /// Print one JSON object (per category and mean) instead of the table.
    #[arg(long)]
    pub json: bool,
    /// AUPRO's false-positive-rate limit.
    #[arg(long, default_value_t = MVTEC_FPR_LIMIT)]
    pub fpr_limit: f64,
    /// Print timings and peak memory (resident set growth) to stderr as one JSON line.
    #[arg(long)]
    pub stats: bool,
    /// With `videos [N]` in the ground truth: `none` (raw scores) or `min_max` (each video's
    /// scores to [0, 1] first) for the frame AUROCs.
    #[arg(long, value_enum)]
    pub video_normalization: Option<VideoNorm>,
}

/// `--video-normalization`.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoNorm {
    None,
    /// Spelled as `[eval] video_normalization` spells it.
    #[value(name = "min_max")]
    MinMax,
}

/// Runs `memad metrics`.
pub fn run(args: &MetricsArgs) -> Result<()> {
    let peak_reset = args.stats && memory::reset_peak();
    let rss_start = args.stats.then(|| memory::status_mib("VmRSS")).flatten();
    let start = Instant::now();
    let mut inputs = Inputs::load(&args.pred, &args.gt)?;
    inputs.video_normalization = match (&inputs.videos, args.video_normalization) {
        (Some(_), Some(VideoNorm::None)) => VideoNormalization::None,
        (Some(_), Some(VideoNorm::MinMax)) => VideoNormalization::MinMaxPerVideo,
        (Some(_), None) => bail!(
            "{} has `videos`: pass --video-normalization none or min_max (MNAD and MemAE \
             normalise each video's scores to [0, 1] before the frame AUROCs)",
            args.gt.display()
        ),
        (None, Some(_)) => bail!(
            "--video-normalization needs `videos [N]` (the video of each frame) in {}",
            args.gt.display()
        ),
        (None, None) => VideoNormalization::None,
    };
    let read_seconds = start.elapsed().as_secs_f64();
    let report = evaluate(&inputs, args.fpr_limit)?;
    let evaluate_seconds = start.elapsed().as_secs_f64() - read_seconds;
    drop(inputs);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    if args.stats {
        let peak = memory::status_mib("VmHWM");
        let stats = serde_json::json!({
            "read_seconds": read_seconds,
            "evaluate_seconds": evaluate_seconds,
            "rss_start_mib": rss_start,
            "peak_rss_mib": peak,
            "peak_rss_growth_mib": peak.zip(rss_start).map(|(p, s)| p - s),
            "peak_reset": peak_reset,
        });
        eprintln!("stats: {stats}");
    }
    Ok(())
}

/// Scores or maps in the precision the file needs: `f64` for `float64` and for integers
/// wider than 16 bits (which `f32` cannot all hold exactly), `f32` for everything else
/// (`float16`/`float32`, booleans, small integers). So a score is never rounded before it is
/// ranked, and `f32` data costs 4 bytes a value.
enum Values {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

impl Values {
    /// Array `key` of `npz` and its shape; an error naming the keys present if absent.
    fn require(npz: &mut Npz, key: &str) -> Result<(Values, Vec<usize>)> {
        let wide = matches!(
            npz.dtype(key)?,
            Some(Dtype::F64 | Dtype::I32 | Dtype::I64 | Dtype::U32 | Dtype::U64)
        );
        Ok(if wide {
            let a = npz.require::<f64>(key)?;
            (Values::F64(a.data), a.shape)
        } else {
            let a = npz.require::<f32>(key)?;
            (Values::F32(a.data), a.shape)
        })
    }

    /// Value `i`, as text.
    fn show(&self, i: usize) -> String {
        match self {
            Values::F32(v) => v[i].to_string(),
            Values::F64(v) => v[i].to_string(),
        }
    }
}

/// Everything read from the two files, checked for consistent shapes.
struct Inputs {
    pred: PathBuf,
    scores: Values,
    labels: Vec<bool>,
    pixels: Option<Pixels>,
    categories: Option<Vec<Category>>,
    /// The video of each frame, for the frame AUROCs.
    videos: Option<Vec<Category>>,
    video_normalization: VideoNormalization,
}

/// Anomaly maps and masks, `n * h * w` row-major.
struct Pixels {
    maps: Values,
    masks: Vec<bool>,
    h: usize,
    w: usize,
}

impl Inputs {
    fn load(pred_path: &Path, gt_path: &Path) -> Result<Inputs> {
        let (mut pred, mut gt) = (Npz::open(pred_path)?, Npz::open(gt_path)?);
        let (scores, scores_shape) = Values::require(&mut pred, "image_scores")?;
        let labels = gt.require::<f64>("image_labels")?;
        let (p, g) = (pred_path.display(), gt_path.display());
        // 1 is anomalous, 0 normal; other conventions (-1/1 as scikit-learn's outlier
        // detectors, 1 for normal) would be read wrongly without a word.
        if let Some(i) = labels.data.iter().position(|&l| l != 0.0 && l != 1.0) {
            bail!(
                "{g}: image_labels[{i}] is {}: labels must be 0 (normal) or 1 (anomalous)",
                labels.data[i]
            );
        }
        let labels = npz::Array {
            data: labels.data.iter().map(|&l| l == 1.0).collect::<Vec<bool>>(),
            shape: labels.shape,
            dtype: labels.dtype,
        };
        let n = vector_len(&scores_shape)
            .with_context(|| format!("{p}: image_scores must be [N], got {scores_shape:?}"))?;
        ensure!(
            vector_len(&labels.shape) == Some(n),
            "shape mismatch: {p} image_scores has shape {scores_shape:?} but {g} image_labels \
             has shape {:?}",
            labels.shape
        );
        let categories = Self::load_per_image(&mut gt, "categories", &labels.shape)?;
        let videos = Self::load_per_image(&mut gt, "videos", &labels.shape)?;
        let pixels = match (pred.has("anomaly_maps"), gt.has("masks")) {
            (true, true) => Some(Self::load_pixels(&mut pred, &mut gt, &scores_shape)?),
            (true, false) => {
                eprintln!("note: {g} has no `masks`: pixel metrics skipped");
                None
            }
            (false, true) => {
                eprintln!("note: {p} has no `anomaly_maps`: pixel metrics skipped");
                None
            }
            (false, false) => None,
        };
        if let Some(p) = &pixels {
            if let Some(note) = label_mask_disagreement(&labels.data, &p.masks) {
                eprintln!("note: {g}: {note}");
            }
        }
        Ok(Inputs {
            pred: pred_path.to_path_buf(),
            scores,
            labels: labels.data,
            pixels,
            categories,
            videos,
            video_normalization: VideoNormalization::None,
        })
    }

    /// The optional `[N]` array `key` of `gt` (`categories`, `videos`: strings or integers),
    /// checked to have one value per image (`image_labels` has `labels_shape`).
    fn load_per_image(
        gt: &mut Npz,
        key: &str,
        labels_shape: &[usize],
    ) -> Result<Option<Vec<Category>>> {
        let Some(values) = gt.get::<Category>(key)? else {
            return Ok(None);
        };
        ensure!(
            vector_len(&values.shape) == vector_len(labels_shape),
            "shape mismatch: {} {key} has shape {:?} but image_labels has shape {labels_shape:?}",
            gt.path().display(),
            values.shape
        );
        Ok(Some(values.data))
    }

    fn load_pixels(pred: &mut Npz, gt: &mut Npz, scores_shape: &[usize]) -> Result<Pixels> {
        let (p, g) = (pred.path().to_owned(), gt.path().to_owned());
        let (p, g) = (p.display(), g.display());
        let (maps, maps_shape) = Values::require(pred, "anomaly_maps")?;
        let dims = image_dims(&maps_shape).with_context(|| {
            format!("{p}: anomaly_maps must be [N,H,W] or [N,1,H,W], got {maps_shape:?}")
        })?;
        ensure!(
            Some(dims.0) == vector_len(scores_shape),
            "shape mismatch: {p} anomaly_maps has shape {maps_shape:?} but image_scores has \
             shape {scores_shape:?}"
        );
        let masks = gt.require::<bool>("masks")?;
        ensure!(
            image_dims(&masks.shape) == Some(dims),
            "shape mismatch: {p} anomaly_maps has shape {maps_shape:?} but {g} masks has shape \
             {:?}",
            masks.shape
        );
        Ok(Pixels {
            maps,
            masks: masks.data,
            h: dims.1,
            w: dims.2,
        })
    }
}

/// Where `image_labels` and `masks` (`labels.len()` masks, row-major) disagree: normal
/// images whose mask marks pixels, anomalous images whose mask marks none (the metrics
/// take each as given: a label for the image level, a mask for the pixel level).
fn label_mask_disagreement(labels: &[bool], masks: &[bool]) -> Option<String> {
    let per_image = masks.len() / labels.len().max(1);
    let (mut normal_marked, mut anomalous_empty) = (Vec::new(), Vec::new());
    for (i, (&label, mask)) in labels
        .iter()
        .zip(masks.chunks(per_image.max(1)))
        .enumerate()
    {
        match (label, mask.iter().any(|&m| m)) {
            (false, true) => normal_marked.push(i),
            (true, false) => anomalous_empty.push(i),
            _ => {}
        }
    }
    let first = |v: &[usize]| {
        let shown: Vec<String> = v.iter().take(5).map(usize::to_string).collect();
        let more = if v.len() > 5 { ", ..." } else { "" };
        format!("{}{more}", shown.join(", "))
    };
    let mut parts = Vec::new();
    if !normal_marked.is_empty() {
        parts.push(format!(
            "{} normal image(s) whose mask marks pixels (images {})",
            normal_marked.len(),
            first(&normal_marked)
        ));
    }
    if !anomalous_empty.is_empty() {
        parts.push(format!(
            "{} anomalous image(s) whose mask marks none (images {})",
            anomalous_empty.len(),
            first(&anomalous_empty)
        ));
    }
    (!parts.is_empty()).then(|| {
        format!(
            "image_labels and masks disagree: {}; each level uses its own",
            parts.join("; ")
        )
    })
}

/// `N` of a `[N]` or `[N, 1]` array.
fn vector_len(shape: &[usize]) -> Option<usize> {
    match shape {
        [n] | [n, 1] => Some(*n),
        _ => None,
    }
}

/// `(N, H, W)` of a `[N, H, W]` or `[N, 1, H, W]` array.
fn image_dims(shape: &[usize]) -> Option<(usize, usize, usize)> {
    match shape {
        [n, h, w] | [n, 1, h, w] => Some((*n, *h, *w)),
        _ => None,
    }
}

/// The images of one category (`all` without categories), ascending.
struct Group {
    name: String,
    images: Vec<usize>,
}

fn groups(categories: Option<&[Category]>, n: usize) -> Vec<Group> {
    let Some(categories) = categories else {
        return vec![Group {
            name: "all".into(),
            images: (0..n).collect(),
        }];
    };
    let mut by_name = BTreeMap::<&Category, Vec<usize>>::new();
    for (i, c) in categories.iter().enumerate() {
        by_name.entry(c).or_default().push(i);
    }
    by_name
        .into_iter()
        .map(|(c, images)| Group {
            name: c.to_string(),
            images,
        })
        .collect()
}

/// The items of `images` (`per_image` values each): borrowed when they are contiguous.
fn select<'a, T: Copy>(data: &'a [T], images: &[usize], per_image: usize) -> Cow<'a, [T]> {
    let first = images.first().copied().unwrap_or(0);
    if images.iter().enumerate().all(|(k, &i)| i == first + k) {
        return Cow::Borrowed(&data[first * per_image..(first + images.len()) * per_image]);
    }
    let mut out = Vec::with_capacity(images.len() * per_image);
    for &i in images {
        out.extend_from_slice(&data[i * per_image..(i + 1) * per_image]);
    }
    Cow::Owned(out)
}

/// The unweighted mean over `metrics` (non-empty, all with the same metrics).
fn mean_metrics(metrics: &[&ImageMetrics]) -> ImageMetrics {
    let n = metrics.len() as f64;
    let mean = |f: fn(&ImageMetrics) -> f64| metrics.iter().map(|m| f(m)).sum::<f64>() / n;
    let mean_opt = |f: fn(&ImageMetrics) -> Option<f64>| {
        metrics
            .iter()
            .map(|m| f(m))
            .sum::<Option<f64>>()
            .map(|s| s / n)
    };
    ImageMetrics {
        image_auroc: mean(|m| m.image_auroc),
        image_ap: mean(|m| m.image_ap),
        image_f1_max: mean(|m| m.image_f1_max),
        pixel_auroc: mean_opt(|m| m.pixel_auroc),
        pixel_ap: mean_opt(|m| m.pixel_ap),
        pixel_f1_max: mean_opt(|m| m.pixel_f1_max),
        aupro: mean_opt(|m| m.aupro),
    }
}

/// One category's row: its metrics, or why they are undefined (exactly one is `Some`).
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Row {
    category: String,
    images: usize,
    #[serde(flatten)]
    metrics: Option<ImageMetrics>,
    /// With `videos`: the frame AUROCs.
    #[serde(flatten)]
    frames: Option<FrameMetrics>,
    /// Why the metrics are undefined (a class is missing); the row is left out of the mean.
    #[serde(skip_serializing_if = "Option::is_none")]
    undefined: Option<String>,
}

/// What `memad metrics` prints: per category, and the mean over the categories whose
/// metrics are defined.
#[derive(Debug, Clone, PartialEq, Serialize)]
struct Report {
    categories: Vec<Row>,
    mean: ImageMetrics,
    /// With `videos`: the mean frame AUROCs over the same categories as `mean`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mean_frames: Option<FrameMetrics>,
    /// How many categories `mean` averages.
    mean_of: usize,
}

/// Frame AUROC pooled over the videos (micro) and averaged over the videos with both
/// classes (macro, `None` when no video has both: `-` in the table, `null` in JSON), after
/// `Inputs::video_normalization`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
struct FrameMetrics {
    frame_auroc_micro: f64,
    frame_auroc_macro: Option<f64>,
}

impl FrameMetrics {
    fn named(&self) -> [(&'static str, Option<f64>); 2] {
        [
            ("frame_auroc_micro", Some(self.frame_auroc_micro)),
            ("frame_auroc_macro", self.frame_auroc_macro),
        ]
    }
}

/// The values of a row by name: the image (and pixel) metrics, then the frame AUROCs.
fn named(
    metrics: &ImageMetrics,
    frames: Option<&FrameMetrics>,
) -> Vec<(&'static str, Option<f64>)> {
    let mut out: Vec<_> = (metrics.named().into_iter())
        .map(|(n, v)| (n, Some(v)))
        .collect();
    out.extend(frames.iter().flat_map(|f| f.named()));
    out
}

impl Report {
    /// Categories x metrics, then the mean row; where a category is undefined, `-` cells
    /// and a last line saying what the mean averages and why the others are left out.
    fn table(&self) -> String {
        use std::fmt::Write;
        let mut s = format!("{:<14} {:>7}", "category", "images");
        let names = named(&self.mean, self.mean_frames.as_ref());
        // Each column as wide as its name, at least 12.
        let widths: Vec<usize> = names.iter().map(|(name, _)| name.len().max(12)).collect();
        for ((name, _), w) in names.iter().zip(&widths) {
            write!(s, " {name:>w$}").unwrap();
        }
        s.push('\n');
        let defined = self.categories.iter().filter(|r| r.metrics.is_some());
        let mean = Row {
            category: "mean".into(),
            images: defined.map(|r| r.images).sum(),
            metrics: Some(self.mean),
            frames: self.mean_frames,
            undefined: None,
        };
        for row in self.categories.iter().chain([&mean]) {
            write!(s, "{:<14} {:>7}", row.category, row.images).unwrap();
            match &row.metrics {
                Some(m) => {
                    (named(m, row.frames.as_ref()).iter().zip(&widths)).for_each(|((_, v), w)| {
                        match v {
                            Some(v) => write!(s, " {v:>w$.4}").unwrap(),
                            None => write!(s, " {:>w$}", "-").unwrap(),
                        }
                    })
                }
                None => (widths.iter()).for_each(|w| write!(s, " {:>w$}", "-").unwrap()),
            }
            s.push('\n');
        }
        let undefined: Vec<String> = (self.categories.iter())
            .filter_map(|r| Some(format!("{} ({})", r.category, r.undefined.as_ref()?)))
            .collect();
        let no_macro: Vec<&str> = (self.categories.iter())
            .filter(|r| r.frames.is_some_and(|f| f.frame_auroc_macro.is_none()))
            .map(|r| r.category.as_str())
            .collect();
        if !no_macro.is_empty() {
            let rest = match self
                .mean_frames
                .is_some_and(|f| f.frame_auroc_macro.is_some())
            {
                true => "; its mean averages the other categories",
                false => "",
            };
            writeln!(
                s,
                "frame_auroc_macro is undefined in {}: no video there has both normal and \
                 anomalous frames{rest}",
                no_macro.join(", ")
            )
            .unwrap();
        }
        if !undefined.is_empty() {
            writeln!(
                s,
                "mean over {} of {} categories; undefined: {}",
                self.mean_of,
                self.categories.len(),
                undefined.join(", ")
            )
            .unwrap();
        }
        s
    }
}

/// Evaluates every category. With categories, one whose metrics are undefined (no
/// anomalous or no normal image or pixel) becomes a row saying why and is left out of the
/// mean; an error if that leaves none.
fn evaluate(inputs: &Inputs, fpr_limit: f64) -> Result<Report> {
    let mut categories = Vec::new();
    for group in groups(inputs.categories.as_deref(), inputs.labels.len()) {
        let (metrics, undefined) = match evaluate_group(inputs, &group, fpr_limit) {
            Ok(m) => (Some(m), None),
            Err(e) if inputs.categories.is_some() && missing_class(&e) => {
                (None, Some(e.to_string()))
            }
            Err(e) => return Err(explain(e, &group, inputs)),
        };
        let frames = match (&metrics, &inputs.videos) {
            (Some(_), Some(videos)) => Some(frame_metrics(inputs, videos, &group)?),
            _ => None,
        };
        categories.push(Row {
            category: group.name,
            images: group.images.len(),
            metrics,
            frames,
            undefined,
        });
    }
    let defined: Vec<&ImageMetrics> = categories
        .iter()
        .filter_map(|r| r.metrics.as_ref())
        .collect();
    if defined.is_empty() {
        let why: Vec<String> = (categories.iter())
            .map(|r| {
                format!(
                    "category {}: {}",
                    r.category,
                    r.undefined.as_deref().unwrap_or("")
                )
            })
            .collect();
        bail!(
            "the metrics are undefined in every category: {}",
            why.join("; ")
        );
    }
    let frames: Vec<&FrameMetrics> = (categories.iter())
        .filter_map(|r| r.frames.as_ref())
        .collect();
    let mean_frames = (!frames.is_empty()).then(|| {
        let micro = frames.iter().map(|m| m.frame_auroc_micro).sum::<f64>();
        let macros: Vec<f64> = frames.iter().filter_map(|m| m.frame_auroc_macro).collect();
        FrameMetrics {
            frame_auroc_micro: micro / frames.len() as f64,
            frame_auroc_macro: (!macros.is_empty())
                .then(|| macros.iter().sum::<f64>() / macros.len() as f64),
        }
    });
    Ok(Report {
        mean: mean_metrics(&defined),
        mean_frames,
        mean_of: defined.len(),
        categories,
    })
}

/// The frame AUROCs of `group`: its frames split by video (videos in order of first
/// appearance, frames in file order), scored in the file's precision.
fn frame_metrics(inputs: &Inputs, videos: &[Category], group: &Group) -> Result<FrameMetrics> {
    let of_group: Vec<&Category> = group.images.iter().map(|&i| &videos[i]).collect();
    let rows = crate::run::rows_by_video(&of_group);
    let split = |scores: &dyn Fn(usize) -> f64| -> Vec<(Vec<f64>, Vec<bool>)> {
        (rows.iter())
            .map(|r| {
                let images = r.iter().map(|&k| group.images[k]);
                (
                    images.clone().map(scores).collect(),
                    images.map(|i| inputs.labels[i]).collect(),
                )
            })
            .collect()
    };
    // f32 scores are exact in f64, so one f64 path serves both precisions.
    let per_video = match &inputs.scores {
        Values::F32(s) => split(&|i| f64::from(s[i])),
        Values::F64(s) => split(&|i| s[i]),
    };
    let norm = inputs.video_normalization;
    let within = |e: MetricError| anyhow!("category {}: frame level: {e}", group.name);
    let macro_auroc = match frame_auroc_macro(&per_video, norm) {
        Ok(v) => Some(v),
        Err(MetricError::NoVideoWithBothClasses) => None,
        Err(e) => return Err(within(e)),
    };
    Ok(FrameMetrics {
        frame_auroc_micro: frame_auroc_micro(&per_video, norm).map_err(within)?,
        frame_auroc_macro: macro_auroc,
    })
}

/// Whether `e` says that a class is missing (the metric is undefined, not the input wrong).
fn missing_class(e: &MetricError) -> bool {
    matches!(
        e.root(),
        MetricError::NoPositives | MetricError::NoNegatives
    )
}

/// One category's image metrics and, with maps and masks, its pixel metrics.
fn evaluate_group(
    inputs: &Inputs,
    group: &Group,
    fpr_limit: f64,
) -> std::result::Result<ImageMetrics, MetricError> {
    let labels = select(&inputs.labels, &group.images, 1);
    let mut metrics = match &inputs.scores {
        Values::F32(s) => evaluate_images(&select(s, &group.images, 1), &labels, None),
        Values::F64(s) => evaluate_images(&select(s, &group.images, 1), &labels, None),
    }?;
    if let Some(p) = &inputs.pixels {
        let hw = p.h * p.w;
        let masks = select(&p.masks, &group.images, hw);
        let (n, h, w) = (group.images.len(), p.h, p.w);
        match &p.maps {
            Values::F32(m) => pixel_metrics(
                &select(m, &group.images, hw),
                &masks,
                (n, h, w),
                fpr_limit,
                &mut metrics,
            ),
            Values::F64(m) => pixel_metrics(
                &select(m, &group.images, hw),
                &masks,
                (n, h, w),
                fpr_limit,
                &mut metrics,
            ),
        }?;
    }
    Ok(metrics)
}

/// Pixel AUROC, AP, F1-max and AUPRO of `n` maps of `h x w` (`dims`) into `metrics`: the
/// ranking and AUPRO one after the other, not together as [`evaluate_images`] does, so the
/// peak memory is the larger of their working sets, not the sum.
fn pixel_metrics<S: Score>(
    maps: &[S],
    masks: &[bool],
    (n, h, w): (usize, usize, usize),
    fpr_limit: f64,
    metrics: &mut ImageMetrics,
) -> std::result::Result<(), MetricError> {
    let ranked = RankedScores::new(maps, masks).map_err(|e| e.within("pixel level"))?;
    metrics.pixel_auroc = Some(ranked.auroc());
    metrics.pixel_ap = Some(ranked.average_precision());
    metrics.pixel_f1_max = Some(ranked.f1_max().f1);
    drop(ranked);
    let pro = aupro(maps, masks, n, h, w, fpr_limit);
    metrics.aupro = Some(pro.map_err(|e| e.within("pixel level"))?);
    Ok(())
}

/// A metric error of `group`, with a non-finite score located in the input file.
fn explain(e: MetricError, group: &Group, inputs: &Inputs) -> anyhow::Error {
    let pred = inputs.pred.display();
    let location = match &e {
        MetricError::In { context, source } => match (context.as_str(), source.as_ref()) {
            ("image level", &MetricError::NonFinite { index }) => {
                let i = group.images[index];
                Some(format!(
                    "{pred}: image_scores[{i}] = {}",
                    inputs.scores.show(i)
                ))
            }
            ("pixel level", &MetricError::NonFinite { index }) => inputs.pixels.as_ref().map(|p| {
                let hw = p.h * p.w;
                let (i, y, x) = (group.images[index / hw], index % hw / p.w, index % p.w);
                let v = p.maps.show(i * hw + index % hw);
                format!("{pred}: anomaly_maps[{i}, {y}, {x}] = {v}")
            }),
            _ => None,
        },
        _ => None,
    };
    let message = match location {
        Some(at) => format!("{e} ({at})"),
        None => e.to_string(),
    };
    match inputs.categories {
        Some(_) => anyhow!("category {}: {message}", group.name),
        None => anyhow!(message),
    }
}

/// Resident-set figures of this process from `/proc/self/status` (Linux).
mod memory {
    /// A `VmRSS`/`VmHWM`-style field in MiB; `None` where unavailable.
    pub fn status_mib(field: &str) -> Option<f64> {
        let status = std::fs::read_to_string("/proc/self/status").ok()?;
        let line = status.lines().find(|l| l.starts_with(field))?;
        let kib: f64 = line[field.len() + 1..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kib / 1024.0)
    }

    /// Resets the peak resident set (`VmHWM`) to the current one; `false` if not possible.
    pub fn reset_peak() -> bool {
        std::fs::write("/proc/self/clear_refs", "5").is_ok()
    }
}

/// NumPy `.npz` (zip of `.npy`) and `.npy` reading.
///
/// `.npy`: format versions 1-3, C order, little-endian `b1 i1 i2 i4 i8 u1 u2 u4 u8 f2 f4 f8`,
/// unicode `<U*` and byte `|S*` strings (trailing NULs stripped, as NumPy does). Zip:
/// stored or deflated entries (own inflater, [`inflate`]), zip64 sizes and offsets, CRC-32
/// checked. Arrays are converted while they stream in, to the type the caller asks for.
pub mod npz {
    use std::fmt;
    use std::fs::File;
    use std::io::{Read, Seek, SeekFrom};
    use std::path::{Path, PathBuf};

    use anyhow::{anyhow, bail, ensure, Context, Result};

    use super::inflate::{crc32_update, inflate};

    /// A NumPy element type this reader understands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Dtype {
        Bool,
        I8,
        I16,
        I32,
        I64,
        U8,
        U16,
        U32,
        U64,
        F16,
        F32,
        F64,
        /// `<U n`: `n` UCS-4 code points.
        Unicode(usize),
        /// `|S n`: `n` bytes.
        Bytes(usize),
    }

    impl Dtype {
        /// Parses a `descr` such as `<f4`, `|b1`, `<U12`.
        pub fn parse(descr: &str) -> Result<Dtype> {
            let unsupported = || {
                anyhow!(
                    "unsupported dtype '{descr}' (supported: bool, int8-64, uint8-64, \
                     float16/32/64 little-endian, unicode and byte strings)"
                )
            };
            let (order, kind) = match descr.as_bytes() {
                [o, k, ..] => (*o, *k),
                _ => return Err(unsupported()),
            };
            if kind == b'O' {
                bail!(
                    "unsupported dtype '{descr}' (Python objects; save strings as \
                     np.array(names, dtype=str))"
                );
            }
            let n: usize = descr[2..].parse().map_err(|_| unsupported())?;
            let dtype = match (kind, n) {
                (b'b', 1) => Dtype::Bool,
                (b'i', 1) => Dtype::I8,
                (b'i', 2) => Dtype::I16,
                (b'i', 4) => Dtype::I32,
                (b'i', 8) => Dtype::I64,
                (b'u', 1) => Dtype::U8,
                (b'u', 2) => Dtype::U16,
                (b'u', 4) => Dtype::U32,
                (b'u', 8) => Dtype::U64,
                (b'f', 2) => Dtype::F16,
                (b'f', 4) => Dtype::F32,
                (b'f', 8) => Dtype::F64,
                (b'U', n) if n > 0 => Dtype::Unicode(n),
                (b'S', n) if n > 0 => Dtype::Bytes(n),
                _ => return Err(unsupported()),
            };
            let single_bytes = dtype.size() == 1 || matches!(dtype, Dtype::Bytes(_));
            match order {
                b'<' | b'|' | b'=' => Ok(dtype),
                b'>' if single_bytes => Ok(dtype),
                b'>' => bail!("unsupported dtype '{descr}' (big-endian; save little-endian)"),
                _ => Err(unsupported()),
            }
        }

        /// Bytes per element.
        pub fn size(self) -> usize {
            match self {
                Dtype::Bool | Dtype::I8 | Dtype::U8 => 1,
                Dtype::I16 | Dtype::U16 | Dtype::F16 => 2,
                Dtype::I32 | Dtype::U32 | Dtype::F32 => 4,
                Dtype::I64 | Dtype::U64 | Dtype::F64 => 8,
                Dtype::Unicode(n) => 4 * n,
                Dtype::Bytes(n) => n,
            }
        }

        fn is_text(self) -> bool {
            matches!(self, Dtype::Unicode(_) | Dtype::Bytes(_))
        }

        fn is_float(self) -> bool {
            matches!(self, Dtype::F16 | Dtype::F32 | Dtype::F64)
        }
    }

    /// NumPy's names: `bool`, `int8` ... `float64`, `<U6`, `|S2`.
    impl fmt::Display for Dtype {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            let name = match self {
                Dtype::Bool => "bool",
                Dtype::I8 => "int8",
                Dtype::I16 => "int16",
                Dtype::I32 => "int32",
                Dtype::I64 => "int64",
                Dtype::U8 => "uint8",
                Dtype::U16 => "uint16",
                Dtype::U32 => "uint32",
                Dtype::U64 => "uint64",
                Dtype::F16 => "float16",
                Dtype::F32 => "float32",
                Dtype::F64 => "float64",
                Dtype::Unicode(n) => return write!(f, "<U{n}"),
                Dtype::Bytes(n) => return write!(f, "|S{n}"),
            };
            f.write_str(name)
        }
    }

    /// A decoded array: its shape (C order) and elements.
    #[derive(Debug, Clone, PartialEq)]
    pub struct Array<T> {
        pub shape: Vec<usize>,
        pub dtype: Dtype,
        pub data: Vec<T>,
    }

    /// A type `.npy` elements convert to.
    pub trait Element: Sized {
        /// What is expected, for errors ("numbers").
        const EXPECTED: &'static str;
        /// Whether elements of `dtype` convert to `Self`.
        fn accepts(dtype: Dtype) -> bool;
        /// Appends the elements in `bytes`, a whole number of `dtype` items.
        fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]);
    }

    /// Conversions from the numeric dtypes.
    trait FromNumber {
        fn from_f32(x: f32) -> Self;
        fn from_f64(x: f64) -> Self;
        fn from_i64(x: i64) -> Self;
        fn from_u64(x: u64) -> Self;
    }

    /// Numbers as `f32` (`f64` and 64-bit integers rounded).
    impl FromNumber for f32 {
        fn from_f32(x: f32) -> Self {
            x
        }
        fn from_f64(x: f64) -> Self {
            x as f32
        }
        fn from_i64(x: i64) -> Self {
            x as f32
        }
        fn from_u64(x: u64) -> Self {
            x as f32
        }
    }

    /// Numbers as `f64` (exact, but for 64-bit integers beyond 2^53).
    impl FromNumber for f64 {
        fn from_f32(x: f32) -> Self {
            x.into()
        }
        fn from_f64(x: f64) -> Self {
            x
        }
        fn from_i64(x: i64) -> Self {
            x as f64
        }
        fn from_u64(x: u64) -> Self {
            x as f64
        }
    }

    /// Numbers as "nonzero".
    impl FromNumber for bool {
        fn from_f32(x: f32) -> Self {
            x != 0.0
        }
        fn from_f64(x: f64) -> Self {
            x != 0.0
        }
        fn from_i64(x: i64) -> Self {
            x != 0
        }
        fn from_u64(x: u64) -> Self {
            x != 0
        }
    }

    /// `f16` bits to `f32` (exact).
    fn f16_to_f32(h: u16) -> f32 {
        let sign = u32::from(h >> 15) << 31;
        let exp = u32::from((h >> 10) & 0x1f);
        let frac = u32::from(h & 0x3ff);
        let bits = match exp {
            0 if frac == 0 => sign,
            0 => {
                // Subnormal: frac * 2^-24, exact in f32.
                let v = frac as f32 / 16_777_216.0;
                return if sign == 0 { v } else { -v };
            }
            0x1f => sign | 0x7f80_0000 | (frac << 13),
            _ => sign | ((exp + 112) << 23) | (frac << 13),
        };
        f32::from_bits(bits)
    }

    fn extend_numbers<T: FromNumber>(out: &mut Vec<T>, dtype: Dtype, bytes: &[u8]) {
        macro_rules! le {
            ($t:ty, $conv:expr) => {
                out.extend(
                    bytes
                        .chunks_exact(std::mem::size_of::<$t>())
                        .map(|b| $conv(<$t>::from_le_bytes(b.try_into().unwrap()))),
                )
            };
        }
        match dtype {
            Dtype::Bool | Dtype::U8 => out.extend(bytes.iter().map(|&b| T::from_u64(b.into()))),
            Dtype::I8 => out.extend(bytes.iter().map(|&b| T::from_i64((b as i8).into()))),
            Dtype::I16 => le!(i16, |x: i16| T::from_i64(x.into())),
            Dtype::I32 => le!(i32, |x: i32| T::from_i64(x.into())),
            Dtype::I64 => le!(i64, T::from_i64),
            Dtype::U16 => le!(u16, |x: u16| T::from_u64(x.into())),
            Dtype::U32 => le!(u32, |x: u32| T::from_u64(x.into())),
            Dtype::U64 => le!(u64, T::from_u64),
            Dtype::F16 => le!(u16, |x: u16| T::from_f32(f16_to_f32(x))),
            Dtype::F32 => le!(f32, T::from_f32),
            Dtype::F64 => le!(f64, T::from_f64),
            Dtype::Unicode(_) | Dtype::Bytes(_) => {} // excluded by `accepts`
        }
    }

    /// `f32` and `f64`: any numeric dtype.
    macro_rules! float_element {
        ($($t:ty),*) => {$(
            impl Element for $t {
                const EXPECTED: &'static str = "numbers";
                fn accepts(dtype: Dtype) -> bool {
                    !dtype.is_text()
                }
                fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]) {
                    extend_numbers(out, dtype, bytes)
                }
            }
        )*};
    }
    float_element!(f32, f64);

    /// Nonzero = `true`.
    impl Element for bool {
        const EXPECTED: &'static str = "numbers or booleans";
        fn accepts(dtype: Dtype) -> bool {
            !dtype.is_text()
        }
        fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]) {
            extend_numbers(out, dtype, bytes)
        }
    }

    /// A category name: an integer or a string (integers sort numerically).
    #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
    pub enum Category {
        Int(i128),
        Text(String),
    }

    impl fmt::Display for Category {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            match self {
                Category::Int(i) => write!(f, "{i}"),
                Category::Text(s) => f.write_str(s),
            }
        }
    }

    impl FromNumber for Category {
        fn from_f32(x: f32) -> Self {
            Category::Int(x as i128) // floats are excluded by `accepts`
        }
        fn from_f64(x: f64) -> Self {
            Category::Int(x as i128)
        }
        fn from_i64(x: i64) -> Self {
            Category::Int(x.into())
        }
        fn from_u64(x: u64) -> Self {
            Category::Int(x.into())
        }
    }

    impl Element for Category {
        const EXPECTED: &'static str = "strings or integers";
        fn accepts(dtype: Dtype) -> bool {
            !dtype.is_float()
        }
        fn extend(out: &mut Vec<Self>, dtype: Dtype, bytes: &[u8]) {
            match dtype {
                Dtype::Unicode(_) => out.extend(bytes.chunks_exact(dtype.size()).map(|item| {
                    let chars = item
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes(c.try_into().unwrap()));
                    let text: String = chars
                        .map(|c| char::from_u32(c).unwrap_or(char::REPLACEMENT_CHARACTER))
                        .collect();
                    Category::Text(text.trim_end_matches('\0').to_string())
                })),
                Dtype::Bytes(_) => out.extend(bytes.chunks_exact(dtype.size()).map(|item| {
                    let end = item.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
                    Category::Text(String::from_utf8_lossy(&item[..end]).into_owned())
                })),
                _ => extend_numbers(out, dtype, bytes),
            }
        }
    }

    const MAGIC: &[u8] = b"\x93NUMPY";
    /// Longest `.npy` header accepted.
    const MAX_HEADER: usize = 1 << 20;

    /// Bytes of the whole header that `buf` (its start) announces; while too short to
    /// tell, the bytes needed to know more.
    fn header_need(buf: &[u8]) -> Result<usize> {
        if buf.len() < 8 {
            return Ok(8);
        }
        ensure!(
            buf.starts_with(MAGIC),
            "not a .npy array (no \\x93NUMPY magic)"
        );
        let prefix = match buf[6] {
            1 => 10,
            2 | 3 => 12,
            v => bail!(".npy format version {v} is not supported (1 to 3 are)"),
        };
        if buf.len() < prefix {
            return Ok(prefix);
        }
        let len = if prefix == 10 {
            usize::from(u16::from_le_bytes([buf[8], buf[9]]))
        } else {
            u32::from_le_bytes([buf[8], buf[9], buf[10], buf[11]]) as usize
        };
        ensure!(len <= MAX_HEADER, ".npy header of {len} bytes is too long");
        Ok(prefix + len)
    }

    /// A Python literal of a `.npy` header.
    #[derive(Debug, Clone, PartialEq)]
    enum Lit {
        Str(String),
        Bool(bool),
        Int(u64),
        Tuple(Vec<Lit>),
        /// Anything else (a list, e.g. a structured dtype), as written.
        Other(String),
    }

    /// A parser of the header's Python dict literal.
    struct Literal<'a> {
        s: &'a str,
        pos: usize,
    }

    impl Literal<'_> {
        fn peek(&mut self) -> Option<u8> {
            let rest = &self.s[self.pos..];
            self.pos += rest.len() - rest.trim_start().len();
            self.s.as_bytes().get(self.pos).copied()
        }

        fn expect(&mut self, c: u8) -> Result<()> {
            ensure!(
                self.peek() == Some(c),
                "expected '{}' at byte {} of the .npy header {:?}",
                c as char,
                self.pos,
                self.s
            );
            self.pos += 1;
            Ok(())
        }

        fn value(&mut self) -> Result<Lit> {
            let start = self.pos;
            match self.peek() {
                Some(q @ (b'\'' | b'"')) => {
                    let body = &self.s[self.pos + 1..];
                    let end = body
                        .bytes()
                        .position(|b| b == q)
                        .with_context(|| format!("unterminated string in {:?}", self.s))?;
                    self.pos += end + 2;
                    Ok(Lit::Str(body[..end].to_string()))
                }
                Some(open @ (b'(' | b'[')) => {
                    let close = if open == b'(' { b')' } else { b']' };
                    self.pos += 1;
                    let mut items = Vec::new();
                    while self.peek() != Some(close) {
                        items.push(self.value()?);
                        if self.peek() == Some(b',') {
                            self.pos += 1;
                        } else {
                            break;
                        }
                    }
                    self.expect(close)?;
                    Ok(if open == b'(' {
                        Lit::Tuple(items)
                    } else {
                        Lit::Other(self.s[start..self.pos].to_string())
                    })
                }
                Some(b'0'..=b'9') => {
                    let rest = &self.s[self.pos..];
                    let end = rest
                        .find(|c: char| !c.is_ascii_digit())
                        .unwrap_or(rest.len());
                    self.pos += end;
                    if self.s[self.pos..].starts_with('L') {
                        self.pos += 1; // Python 2 long
                    }
                    Ok(Lit::Int(rest[..end].parse()?))
                }
                _ => {
                    for (word, v) in [("True", true), ("False", false)] {
                        if self.s[self.pos..].starts_with(word) {
                            self.pos += word.len();
                            return Ok(Lit::Bool(v));
                        }
                    }
                    bail!("unexpected value at byte {} of {:?}", self.pos, self.s)
                }
            }
        }

        /// The `{key: value, ...}` dict.
        fn dict(&mut self) -> Result<Vec<(String, Lit)>> {
            self.expect(b'{')?;
            let mut items = Vec::new();
            while self.peek() != Some(b'}') {
                let Lit::Str(key) = self.value()? else {
                    bail!("non-string key in the .npy header {:?}", self.s);
                };
                self.expect(b':')?;
                items.push((key, self.value()?));
                if self.peek() == Some(b',') {
                    self.pos += 1;
                } else {
                    break;
                }
            }
            self.expect(b'}')?;
            Ok(items)
        }
    }

    /// Dtype and shape from a `.npy` header dict such as
    /// `{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }`.
    pub fn parse_header(text: &str) -> Result<(Dtype, Vec<usize>)> {
        let items = Literal { s: text, pos: 0 }.dict()?;
        let get = |key: &str| {
            items
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v)
                .with_context(|| format!("the .npy header {text:?} has no '{key}'"))
        };
        let dtype = match get("descr")? {
            Lit::Str(d) => Dtype::parse(d)?,
            Lit::Other(raw) => {
                bail!("unsupported dtype {raw} (structured arrays are not supported)")
            }
            other => bail!("unsupported dtype {other:?}"),
        };
        match get("fortran_order")? {
            Lit::Bool(false) => {}
            Lit::Bool(true) => bail!(
                "Fortran-order arrays are not supported; save np.ascontiguousarray(a) instead"
            ),
            other => bail!("bad fortran_order {other:?}"),
        }
        let Lit::Tuple(dims) = get("shape")? else {
            bail!("bad shape in the .npy header {text:?}");
        };
        let shape = dims
            .iter()
            .map(|d| match d {
                Lit::Int(n) => usize::try_from(*n).map_err(|_| anyhow!("dimension {n} too large")),
                _ => bail!("bad shape in the .npy header {text:?}"),
            })
            .collect::<Result<Vec<usize>>>()?;
        Ok((dtype, shape))
    }

    /// A `.npy` decoder fed its bytes in pieces of any size.
    pub struct Decoder<T> {
        header: Vec<u8>,
        /// Dtype, shape, element count, once the header is read.
        layout: Option<(Dtype, Vec<usize>, usize)>,
        /// Bytes of a partial element.
        carry: Vec<u8>,
        data: Vec<T>,
        /// Size of the whole `.npy`, if known (checked against the header).
        total: Option<u64>,
    }

    impl<T: Element> Decoder<T> {
        /// A decoder for a `.npy` of `total` bytes, if known.
        pub fn new(total: Option<u64>) -> Self {
            Decoder {
                header: Vec::new(),
                layout: None,
                carry: Vec::new(),
                data: Vec::new(),
                total,
            }
        }

        /// Consumes the next bytes.
        pub fn feed(&mut self, mut bytes: &[u8]) -> Result<()> {
            while self.layout.is_none() {
                let need = header_need(&self.header)?;
                if self.header.len() >= need {
                    self.start_data(need)?;
                    break;
                }
                let take = (need - self.header.len()).min(bytes.len());
                if take == 0 {
                    return Ok(());
                }
                self.header.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
            }
            let Some((dtype, _, count)) = &self.layout else {
                unreachable!("the loop above sets the layout")
            };
            let (dtype, count, item) = (*dtype, *count, dtype.size());
            let arrived = (self.carry.len() + bytes.len()) / item;
            ensure!(
                self.data.len() + arrived <= count,
                "more data than the shape announces"
            );
            if !self.carry.is_empty() {
                let take = (item - self.carry.len()).min(bytes.len());
                self.carry.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.carry.len() < item {
                    return Ok(());
                }
                T::extend(&mut self.data, dtype, &self.carry);
                self.carry.clear();
            }
            let whole = bytes.len() / item * item;
            T::extend(&mut self.data, dtype, &bytes[..whole]);
            self.carry.extend_from_slice(&bytes[whole..]);
            Ok(())
        }

        fn start_data(&mut self, header_len: usize) -> Result<()> {
            let prefix = if self.header[6] == 1 { 10 } else { 12 };
            let text = std::str::from_utf8(&self.header[prefix..header_len])
                .context("the .npy header is not text")?;
            let (dtype, shape) = parse_header(text)?;
            ensure!(
                T::accepts(dtype),
                "unsupported dtype {dtype} here ({} expected)",
                T::EXPECTED
            );
            let count = shape
                .iter()
                .try_fold(1usize, |a, &d| a.checked_mul(d))
                .context("shape too large")?;
            let bytes = count.checked_mul(dtype.size()).context("shape too large")?;
            if let Some(total) = self.total {
                ensure!(
                    (header_len + bytes) as u64 == total,
                    "the .npy holds {total} bytes but its header announces {} ({dtype} x {shape:?})",
                    header_len + bytes
                );
            }
            self.data.reserve_exact(count);
            self.layout = Some((dtype, shape, count));
            Ok(())
        }

        /// The array, once every byte has been fed.
        pub fn finish(self) -> Result<Array<T>> {
            let Some((dtype, shape, count)) = self.layout else {
                bail!("truncated .npy: incomplete header");
            };
            ensure!(
                self.data.len() == count && self.carry.is_empty(),
                "truncated .npy: shape {shape:?} needs {count} elements, got {}",
                self.data.len()
            );
            Ok(Array {
                shape,
                dtype,
                data: self.data,
            })
        }
    }

    /// Decodes a whole `.npy` held in memory.
    #[cfg(test)]
    pub fn parse_npy<T: Element>(bytes: &[u8]) -> Result<Array<T>> {
        let mut d = Decoder::new(Some(bytes.len() as u64));
        d.feed(bytes)?;
        d.finish()
    }

    /// One member of the zip archive.
    #[derive(Debug, Clone)]
    struct Entry {
        name: String,
        flags: u16,
        method: u16,
        crc: u32,
        compressed: u64,
        size: u64,
        offset: u64,
    }

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    /// An open `.npz` file.
    pub struct Npz {
        path: PathBuf,
        file: File,
        entries: Vec<Entry>,
    }

    impl Npz {
        /// Opens `path` and reads its zip directory.
        pub fn open(path: &Path) -> Result<Npz> {
            let inner = || -> Result<Npz> {
                let mut file = File::open(path)?;
                let entries = read_directory(&mut file)?;
                Ok(Npz {
                    path: path.to_path_buf(),
                    file,
                    entries,
                })
            };
            inner().with_context(|| format!("reading {}", path.display()))
        }

        pub fn path(&self) -> &Path {
            &self.path
        }

        /// The array names (member names without `.npy`).
        pub fn keys(&self) -> Vec<&str> {
            self.entries
                .iter()
                .map(|e| e.name.strip_suffix(".npy").unwrap_or(&e.name))
                .collect()
        }

        fn entry(&self, key: &str) -> Option<&Entry> {
            self.entries
                .iter()
                .find(|e| e.name.strip_suffix(".npy") == Some(key))
                .or_else(|| self.entries.iter().find(|e| e.name == key))
        }

        /// Whether the archive holds array `key`.
        pub fn has(&self, key: &str) -> bool {
            self.entry(key).is_some()
        }

        /// Array `key` converted to `T`, `None` if absent.
        pub fn get<T: Element>(&mut self, key: &str) -> Result<Option<Array<T>>> {
            let Some(entry) = self.entry(key).cloned() else {
                return Ok(None);
            };
            let mut read = || -> Result<Array<T>> {
                let mut decoder = Decoder::new(Some(entry.size));
                self.read_entry(&entry, &mut |b| decoder.feed(b))?;
                decoder.finish()
            };
            read()
                .map(Some)
                .with_context(|| format!("{}: array `{key}`", self.path.display()))
        }

        /// The dtype of array `key`, from its `.npy` header alone; `None` if absent.
        pub fn dtype(&mut self, key: &str) -> Result<Option<Dtype>> {
            let Some(entry) = self.entry(key).cloned() else {
                return Ok(None);
            };
            let (mut header, mut dtype) = (Vec::new(), None);
            // The sink stops the reading (with an error) once the header is in.
            let read = self.read_entry(&entry, &mut |bytes| {
                header.extend_from_slice(bytes);
                let need = header_need(&header)?;
                if header.len() < need {
                    return Ok(());
                }
                let prefix = if header[6] == 1 { 10 } else { 12 };
                let text = std::str::from_utf8(&header[prefix..need])
                    .context("the .npy header is not text")?;
                dtype = Some(parse_header(text)?.0);
                bail!("header read")
            });
            match (dtype, read) {
                (Some(d), _) => Ok(Some(d)),
                (None, Err(e)) => Err(e),
                (None, Ok(())) => Err(anyhow!("truncated .npy: incomplete header")),
            }
            .with_context(|| format!("{}: array `{key}`", self.path.display()))
        }

        /// Array `key` converted to `T`; an error naming the keys present if absent.
        pub fn require<T: Element>(&mut self, key: &str) -> Result<Array<T>> {
            match self.get(key)? {
                Some(a) => Ok(a),
                None => bail!(
                    "{}: no array `{key}`; it holds: {}",
                    self.path.display(),
                    match self.keys().join(", ") {
                        k if k.is_empty() => "nothing".to_string(),
                        k => k,
                    }
                ),
            }
        }

        /// Streams the uncompressed bytes of `e` into `sink`, checking size and CRC-32.
        fn read_entry(
            &mut self,
            e: &Entry,
            sink: &mut dyn FnMut(&[u8]) -> Result<()>,
        ) -> Result<()> {
            ensure!(e.flags & 1 == 0, "encrypted zip members are not supported");
            let mut local = [0u8; 30];
            self.file.seek(SeekFrom::Start(e.offset))?;
            self.file.read_exact(&mut local)?;
            ensure!(local.starts_with(b"PK\x03\x04"), "bad zip local header");
            let skip = u64::from(u16_at(&local, 26)) + u64::from(u16_at(&local, 28));
            self.file.seek(SeekFrom::Current(skip as i64))?;
            let mut src = (&self.file).take(e.compressed);
            let (mut crc, mut size) = (!0u32, 0u64);
            let mut checked = |b: &[u8]| {
                crc = crc32_update(crc, b);
                size += b.len() as u64;
                sink(b)
            };
            match e.method {
                0 => {
                    let mut buf = vec![0u8; 1 << 20];
                    loop {
                        let n = match src.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                            Err(e) => return Err(e.into()),
                        };
                        checked(&buf[..n])?;
                    }
                }
                8 => inflate(&mut src, &mut checked)?,
                m => bail!("zip compression method {m} is not supported (stored and deflate are)"),
            }
            ensure!(
                size == e.size,
                "zip member {} holds {size} bytes, its directory says {}",
                e.name,
                e.size
            );
            ensure!(
                !crc == e.crc,
                "zip member {} fails its CRC check: the file is corrupt",
                e.name
            );
            Ok(())
        }
    }

    /// The central directory of the zip `file`.
    fn read_directory(file: &mut File) -> Result<Vec<Entry>> {
        let len = file.seek(SeekFrom::End(0))?;
        let tail_len = len.min(22 + 65535 + 20);
        let mut tail = vec![0u8; tail_len as usize];
        file.seek(SeekFrom::Start(len - tail_len))?;
        file.read_exact(&mut tail)?;
        let eocd = (0..tail.len().saturating_sub(21))
            .rev()
            .find(|&p| tail[p..].starts_with(b"PK\x05\x06"))
            .context("not a zip (.npz) file: no end-of-directory record")?;
        let (mut count, mut cd_size, mut cd_offset) = (
            u64::from(u16_at(&tail, eocd + 10)),
            u64::from(u32_at(&tail, eocd + 12)),
            u64::from(u32_at(&tail, eocd + 16)),
        );
        if count == 0xffff || cd_size == 0xffff_ffff || cd_offset == 0xffff_ffff {
            let locator = eocd
                .checked_sub(20)
                .filter(|&l| tail[l..].starts_with(b"PK\x06\x07"))
                .context("zip64 archive without its locator")?;
            let mut record = [0u8; 56];
            file.seek(SeekFrom::Start(u64_at(&tail, locator + 8)))?;
            file.read_exact(&mut record)?;
            ensure!(
                record.starts_with(b"PK\x06\x06"),
                "bad zip64 directory record"
            );
            (count, cd_size, cd_offset) = (
                u64_at(&record, 32),
                u64_at(&record, 40),
                u64_at(&record, 48),
            );
        }
        ensure!(
            cd_offset.checked_add(cd_size).is_some_and(|end| end <= len) && cd_size < 1 << 30,
            "corrupt zip directory"
        );
        let mut cd = vec![0u8; cd_size as usize];
        file.seek(SeekFrom::Start(cd_offset))?;
        file.read_exact(&mut cd)?;
        let mut entries = Vec::new();
        let mut p = 0;
        for _ in 0..count {
            ensure!(
                cd.len() >= p + 46 && cd[p..].starts_with(b"PK\x01\x02"),
                "corrupt zip directory"
            );
            let name_len = usize::from(u16_at(&cd, p + 28));
            let extra_len = usize::from(u16_at(&cd, p + 30));
            let comment_len = usize::from(u16_at(&cd, p + 32));
            let end = p + 46 + name_len + extra_len + comment_len;
            ensure!(cd.len() >= end, "corrupt zip directory");
            let mut entry = Entry {
                name: String::from_utf8_lossy(&cd[p + 46..p + 46 + name_len]).into_owned(),
                flags: u16_at(&cd, p + 8),
                method: u16_at(&cd, p + 10),
                crc: u32_at(&cd, p + 16),
                compressed: u32_at(&cd, p + 20).into(),
                size: u32_at(&cd, p + 24).into(),
                offset: u32_at(&cd, p + 42).into(),
            };
            // The zip64 extra field holds, in order, those of the three that overflowed.
            let mut extra = &cd[p + 46 + name_len..p + 46 + name_len + extra_len];
            while extra.len() >= 4 {
                let (id, n) = (u16_at(extra, 0), usize::from(u16_at(extra, 2)));
                let data = extra.get(4..4 + n).context("corrupt zip extra field")?;
                if id == 1 {
                    let mut values = data.chunks_exact(8).map(|c| u64_at(c, 0));
                    for field in [&mut entry.size, &mut entry.compressed, &mut entry.offset] {
                        if *field == 0xffff_ffff {
                            *field = values.next().context("corrupt zip64 extra field")?;
                        }
                    }
                }
                extra = &extra[4 + n..];
            }
            entries.push(entry);
            p = end;
        }
        Ok(entries)
    }
}

/// Raw DEFLATE decompression (RFC 1951), streaming, and CRC-32.
pub mod inflate {
    use std::io::Read;

    use anyhow::{bail, ensure, Context, Result};

    /// DEFLATE's largest back-reference distance.
    const WINDOW: usize = 1 << 15;
    /// Output handed on per call (the window is kept on top).
    const FLUSH: usize = 1 << 18;

    const LEN_BASE: [u16; 29] = [
        3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 15, 17, 19, 23, 27, 31, 35, 43, 51, 59, 67, 83, 99, 115,
        131, 163, 195, 227, 258,
    ];
    const LEN_EXTRA: [u8; 29] = [
        0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 0,
    ];
    const DIST_BASE: [u16; 30] = [
        1, 2, 3, 4, 5, 7, 9, 13, 17, 25, 33, 49, 65, 97, 129, 193, 257, 385, 513, 769, 1025, 1537,
        2049, 3073, 4097, 6145, 8193, 12289, 16385, 24577,
    ];
    const DIST_EXTRA: [u8; 30] = [
        0, 0, 0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9, 10, 10, 11, 11, 12, 12,
        13, 13,
    ];
    /// Order of the code-length code lengths in a dynamic block header.
    const CLEN_ORDER: [usize; 19] = [
        16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15,
    ];

    /// LSB-first bits of a byte stream.
    struct Bits<R> {
        src: R,
        buf: Vec<u8>,
        pos: usize,
        end: usize,
        eof: bool,
        bits: u64,
        n: u32,
    }

    impl<R: Read> Bits<R> {
        fn new(src: R) -> Self {
            Bits {
                src,
                buf: vec![0; 1 << 16],
                pos: 0,
                end: 0,
                eof: false,
                bits: 0,
                n: 0,
            }
        }

        /// Tops the bit buffer up to at least 57 bits unless the input ends.
        fn refill(&mut self) -> Result<()> {
            while self.n <= 56 {
                if self.pos == self.end {
                    if self.eof {
                        return Ok(());
                    }
                    self.end = loop {
                        match self.src.read(&mut self.buf) {
                            Ok(n) => break n,
                            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                            Err(e) => return Err(e.into()),
                        }
                    };
                    self.pos = 0;
                    self.eof = self.end == 0;
                    continue;
                }
                if self.end - self.pos >= 8 {
                    let word = u64::from_le_bytes(self.buf[self.pos..self.pos + 8].try_into()?);
                    self.bits |= word << self.n;
                    let bytes = (64 - self.n) / 8;
                    self.pos += bytes as usize;
                    self.n += bytes * 8;
                    if self.n < 64 {
                        self.bits &= (1u64 << self.n) - 1;
                    }
                } else {
                    self.bits |= u64::from(self.buf[self.pos]) << self.n;
                    self.pos += 1;
                    self.n += 8;
                }
            }
            Ok(())
        }

        /// The next `k <= 32` bits.
        fn take(&mut self, k: u32) -> Result<u32> {
            if self.n < k {
                self.refill()?;
                ensure!(self.n >= k, "truncated deflate stream");
            }
            let v = (self.bits & ((1u64 << k) - 1)) as u32;
            self.bits >>= k;
            self.n -= k;
            Ok(v)
        }

        /// The next symbol of `code`.
        fn decode(&mut self, code: &Huffman) -> Result<usize> {
            if self.n < code.bits {
                self.refill()?;
            }
            let e = code.table[(self.bits & ((1u64 << code.bits) - 1)) as usize];
            let len = e & 15;
            if len == 0 || len > self.n {
                ensure!(len != 0, "invalid Huffman code in deflate stream");
                bail!("truncated deflate stream");
            }
            self.bits >>= len;
            self.n -= len;
            Ok((e >> 4) as usize)
        }

        /// Drops the bits up to the next byte boundary.
        fn align(&mut self) {
            let k = self.n % 8;
            self.bits >>= k;
            self.n -= k;
        }
    }

    /// A canonical Huffman code as a lookup table on the next `bits` input bits.
    struct Huffman {
        /// `symbol << 4 | length`; `0` for bit patterns that are no code.
        table: Vec<u32>,
        bits: u32,
    }

    impl Huffman {
        /// The code with these code lengths (`0` = unused symbol).
        fn new(lengths: &[u8]) -> Result<Huffman> {
            let bits = u32::from(lengths.iter().copied().max().unwrap_or(0));
            let mut count = [0u32; 16];
            lengths.iter().for_each(|&l| count[usize::from(l)] += 1);
            count[0] = 0;
            let mut next = [0u32; 16];
            let mut code = 0;
            for len in 1..16 {
                code = (code + count[len - 1]) << 1;
                next[len] = code;
                ensure!(
                    code + count[len] <= 1 << len,
                    "over-subscribed Huffman code in deflate stream"
                );
            }
            let mut table = vec![0u32; 1 << bits];
            for (symbol, &len) in lengths.iter().enumerate() {
                if len == 0 {
                    continue;
                }
                let len = u32::from(len);
                let c = next[len as usize];
                next[len as usize] += 1;
                let reversed = (c.reverse_bits() >> (32 - len)) as usize;
                let entry = (symbol as u32) << 4 | len;
                for slot in table.iter_mut().skip(reversed).step_by(1 << len) {
                    *slot = entry;
                }
            }
            Ok(Huffman { table, bits })
        }
    }

    /// The fixed literal/length and distance codes.
    fn fixed_codes() -> Result<(Huffman, Huffman)> {
        let mut lit = [8u8; 288];
        lit[144..256].fill(9);
        lit[256..280].fill(7);
        Ok((Huffman::new(&lit)?, Huffman::new(&[5; 30])?))
    }

    /// The codes of a dynamic block, read from its header.
    fn dynamic_codes<R: Read>(input: &mut Bits<R>) -> Result<(Huffman, Huffman)> {
        let n_lit = input.take(5)? as usize + 257;
        let n_dist = input.take(5)? as usize + 1;
        let n_clen = input.take(4)? as usize + 4;
        ensure!(n_lit <= 286 && n_dist <= 30, "bad deflate block header");
        let mut clen = [0u8; 19];
        for &i in &CLEN_ORDER[..n_clen] {
            clen[i] = input.take(3)? as u8;
        }
        let clen = Huffman::new(&clen)?;
        let mut lengths = vec![0u8; n_lit + n_dist];
        let mut i = 0;
        while i < lengths.len() {
            let (value, repeat) = match input.decode(&clen)? {
                len @ 0..=15 => (len as u8, 1),
                16 => {
                    ensure!(i > 0, "bad deflate code lengths");
                    (lengths[i - 1], 3 + input.take(2)? as usize)
                }
                17 => (0, 3 + input.take(3)? as usize),
                _ => (0, 11 + input.take(7)? as usize),
            };
            ensure!(i + repeat <= lengths.len(), "bad deflate code lengths");
            lengths[i..i + repeat].fill(value);
            i += repeat;
        }
        ensure!(lengths[256] != 0, "deflate block without an end code");
        Ok((
            Huffman::new(&lengths[..n_lit])?,
            Huffman::new(&lengths[n_lit..])?,
        ))
    }

    /// Decompresses the raw DEFLATE stream `src`, handing the output to `sink` in pieces.
    pub fn inflate(src: impl Read, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<()> {
        let mut input = Bits::new(src);
        let mut out: Vec<u8> = Vec::with_capacity(WINDOW + FLUSH + 258);
        loop {
            if out.len() >= WINDOW + FLUSH {
                let done = out.len() - WINDOW;
                sink(&out[..done])?;
                out.drain(..done);
            }
            let last = input.take(1)? == 1;
            match input.take(2)? {
                0 => {
                    input.align();
                    let len = input.take(16)?;
                    let nlen = input.take(16)?;
                    ensure!(len == !nlen & 0xffff, "bad stored block length");
                    for _ in 0..len {
                        out.push(input.take(8)? as u8);
                        if out.len() >= WINDOW + FLUSH {
                            let done = out.len() - WINDOW;
                            sink(&out[..done])?;
                            out.drain(..done);
                        }
                    }
                }
                kind @ (1 | 2) => {
                    let (lit, dist) = if kind == 1 {
                        fixed_codes()?
                    } else {
                        dynamic_codes(&mut input)?
                    };
                    inflate_block(&mut input, &lit, &dist, &mut out, sink)?;
                }
                _ => bail!("invalid deflate block type 3"),
            }
            if last {
                break;
            }
        }
        sink(&out)
    }

    /// The symbols of one Huffman-coded block, up to its end code.
    fn inflate_block<R: Read>(
        input: &mut Bits<R>,
        lit: &Huffman,
        dist: &Huffman,
        out: &mut Vec<u8>,
        sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    ) -> Result<()> {
        loop {
            if out.len() >= WINDOW + FLUSH {
                let done = out.len() - WINDOW;
                sink(&out[..done])?;
                out.drain(..done);
            }
            let symbol = input.decode(lit)?;
            if symbol < 256 {
                out.push(symbol as u8);
                continue;
            }
            if symbol == 256 {
                return Ok(());
            }
            let s = symbol - 257;
            ensure!(s < 29, "invalid deflate length code");
            let len = usize::from(LEN_BASE[s]) + input.take(LEN_EXTRA[s].into())? as usize;
            let d = input.decode(dist)?;
            ensure!(d < 30, "invalid deflate distance code");
            let distance = usize::from(DIST_BASE[d]) + input.take(DIST_EXTRA[d].into())? as usize;
            let start = out
                .len()
                .checked_sub(distance)
                .context("deflate distance reaches before the start")?;
            if distance >= len {
                out.extend_from_within(start..start + len);
            } else {
                for k in 0..len {
                    out.push(out[start + k]);
                }
            }
        }
    }

    /// Slice-by-8 tables of the CRC-32 of zip (reflected polynomial `0xEDB88320`).
    const CRC_TABLES: [[u32; 256]; 8] = {
        let mut t = [[0u32; 256]; 8];
        let mut i = 0;
        while i < 256 {
            let mut c = i as u32;
            let mut k = 0;
            while k < 8 {
                c = if c & 1 == 1 {
                    0xedb8_8320 ^ (c >> 1)
                } else {
                    c >> 1
                };
                k += 1;
            }
            t[0][i] = c;
            i += 1;
        }
        let mut i = 0;
        while i < 256 {
            let mut j = 1;
            while j < 8 {
                t[j][i] = (t[j - 1][i] >> 8) ^ t[0][(t[j - 1][i] & 0xff) as usize];
                j += 1;
            }
            i += 1;
        }
        t
    };

    /// Continues a CRC-32 over `bytes`; start from `!0` and invert at the end.
    pub fn crc32_update(mut crc: u32, bytes: &[u8]) -> u32 {
        let t = &CRC_TABLES;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let lo = crc ^ u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            crc = t[7][(lo & 0xff) as usize]
                ^ t[6][(lo >> 8 & 0xff) as usize]
                ^ t[5][(lo >> 16 & 0xff) as usize]
                ^ t[4][(lo >> 24) as usize]
                ^ t[3][c[4] as usize]
                ^ t[2][c[5] as usize]
                ^ t[1][c[6] as usize]
                ^ t[0][c[7] as usize];
        }
        for &b in chunks.remainder() {
            crc = (crc >> 8) ^ t[0][((crc ^ u32::from(b)) & 0xff) as usize];
        }
        crc
    }
}

#[cfg(test)]
mod tests {
    use super::inflate::{crc32_update, inflate};
    use super::npz::{parse_header, parse_npy, Array, Category, Decoder, Dtype, Npz};
    use super::*;
    use memad_metrics::PixelInputs;

    /// A version-1 `.npy` as NumPy writes it (header padded to a multiple of 64 bytes).
    fn npy(descr: &str, shape: &str, data: &[u8]) -> Vec<u8> {
        let mut header =
            format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + header.len() + 1) % 64 != 0 {
            header.push(' ');
        }
        header.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
        out.extend_from_slice(header.as_bytes());
        out.extend_from_slice(data);
        out
    }

    fn f32_npy(shape: &str, values: &[f32]) -> Vec<u8> {
        npy(
            "<f4",
            shape,
            &le_bytes(values.iter().map(|v| v.to_le_bytes())),
        )
    }

    fn le_bytes<const K: usize>(items: impl Iterator<Item = [u8; K]>) -> Vec<u8> {
        items.flatten().collect()
    }

    fn crc32(bytes: &[u8]) -> u32 {
        !crc32_update(!0, bytes)
    }

    /// A zip of stored members; with `zip64`, sizes and offsets are in zip64 fields.
    fn zip(members: &[(&str, Vec<u8>)], zip64: bool) -> Vec<u8> {
        let (mut out, mut central) = (Vec::new(), Vec::new());
        for (name, data) in members {
            let offset = out.len() as u32;
            let (crc, size) = (crc32(data), data.len() as u32);
            out.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            for v in [crc, size, size] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&(name.len() as u16).to_le_bytes());
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(name.as_bytes());
            out.extend_from_slice(data);
            central
                .extend_from_slice(b"PK\x01\x02\x14\x00\x14\x00\x00\x00\x00\x00\x00\x00\x00\x00");
            let big = |v: u32| if zip64 { u32::MAX } else { v };
            for v in [crc, big(size), big(size)] {
                central.extend_from_slice(&v.to_le_bytes());
            }
            let extra_len: u16 = if zip64 { 28 } else { 0 };
            for v in [name.len() as u16, extra_len, 0, 0, 0, 0, 0] {
                central.extend_from_slice(&v.to_le_bytes());
            }
            central.extend_from_slice(&big(offset).to_le_bytes());
            central.extend_from_slice(name.as_bytes());
            if zip64 {
                central.extend_from_slice(&[1, 0, 24, 0]);
                for v in [size as u64, size as u64, offset as u64] {
                    central.extend_from_slice(&v.to_le_bytes());
                }
            }
        }
        let (cd_offset, cd_size) = (out.len(), central.len());
        out.extend_from_slice(&central);
        let n = members.len() as u16;
        if zip64 {
            let record = out.len() as u64;
            out.extend_from_slice(b"PK\x06\x06");
            out.extend_from_slice(&44u64.to_le_bytes());
            out.extend_from_slice(&[45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
            for v in [n as u64, n as u64, cd_size as u64, cd_offset as u64] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(b"PK\x06\x07\x00\x00\x00\x00");
            out.extend_from_slice(&record.to_le_bytes());
            out.extend_from_slice(&1u32.to_le_bytes());
        }
        out.extend_from_slice(b"PK\x05\x06\x00\x00\x00\x00");
        let (count, size, offset) = if zip64 {
            (u16::MAX, u32::MAX, u32::MAX)
        } else {
            (n, cd_size as u32, cd_offset as u32)
        };
        for v in [count, count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn inflate_all(src: impl std::io::Read) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        inflate(src, &mut |b| {
            out.extend_from_slice(b);
            Ok(())
        })?;
        Ok(out)
    }

    /// Hands out one byte per read, to exercise every refill path.
    struct OneByte<'a>(&'a [u8]);

    impl std::io::Read for OneByte<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            match (self.0.split_first(), buf.first_mut()) {
                (Some((&b, rest)), Some(slot)) => {
                    *slot = b;
                    self.0 = rest;
                    Ok(1)
                }
                _ => Ok(0),
            }
        }
    }

    fn dynamic_text() -> Vec<u8> {
        (0..300u32)
            .flat_map(|i| format!("{},", i * i % 1000).into_bytes())
            .collect()
    }

    /// `zlib` level 6 of `b"memad memad memad anomaly"`: one fixed-Huffman block.
    const FIXED: &str = "cb4dcd4d4c51c8452213f3f27313732a01";
    const DYNAMIC: &str = concat!(
        "2c924116c03004052f645122c2fd2fd6915879d18ff9f4131597120db12d2bc44bc22555f4fb448d",
        "e8ce571485048d6d62962c73f454a37327a6cbb6927d42025d100fef433ef95ee80a3d6554eb9e6e",
        "745d7477ef6a9540154c3f0d014bad0ba6cdf731f47306aaec96110fef245f8f5f5b4dd5a2daf375",
        "3b744dba1753c6c262b80311b09c7868102aa40b621f078758bc499b3fa31bf56907548f8345d34d",
        "efd333ecedcd98ed30042cf91c18840e695c6215445ff74444361fbff501fa02ed7e6eb0e8b9bd41",
        "e11f03ceec00a1ac6ff3d002c40455215ee32089f79d7ebfb7d1aba7eed68f07a7efb957b8e37a6d",
        "777caf119cf32c2c201bb680b639425bd17b1464f313a16ee345b5cd117a31d62766488e89cdf0de",
        "a399dfbd365cef79a7dfb5db9828629f25c8cf19fa686a3f000000ffff2d90c101c020080317e221",
        "14a8ecbf582fda4fad12c291b4dc63bbda22ca6adaa6c79e4c7bc3cdd7a2eeb63b2d72ac1f7465e9",
        "6d7b8dc54aebe58688efe616bcb65f11da4d4fd0dbfb7a159e83f7c38c77eecc66360815c968c769",
        "d1e6165b0863feb635328ee23a3c27e541f620dfb405edefbf41e3eab837539c692d3bb7020296ba",
        "fc05211778a920f0f33fe75d655412d3b3afc37192a39c7fee3351d9451e12111d320845fa738b5f",
        "7b681feda5fdb4a7f6a5bb7f6ea5a154944efdc92b35a5a714f3929f6cc958592bf30f",
    );
    /// `zlib` level 0 of `0..=255` twice: stored blocks.
    const STORED: &str = concat!(
        "010002fffd000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f202122",
        "232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f404142434445464748494a",
        "4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f707172",
        "737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f909192939495969798999a",
        "9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0c1c2",
        "c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedfe0e1e2e3e4e5e6e7e8e9ea",
        "ebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff000102030405060708090a0b0c0d0e0f101112",
        "131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f303132333435363738393a",
        "3b3c3d3e3f404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f606162",
        "636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f808182838485868788898a",
        "8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2",
        "b3b4b5b6b7b8b9babbbcbdbebfc0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9da",
        "dbdcdddedfe0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff",
    );
    /// `np.savez_compressed`: `image_scores` (f8), `categories` (<U6), `masks` (bool [4,2,3]).
    const NPZ_DEFLATED: &str = concat!(
        "504b03042d0000000800000021007c548acfffffffffffffffff10001400696d6167655f73636f72",
        "65732e6e707901001000a00000000000000057000000000000009bec17ea1b10c9c850c650ad9e92",
        "5a9c5ca46ea5a06e9366a1aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a4",
        "02f91a263a9a3a0ab50a1400ae59334160a7fdd93320f0c61ec2bf09a55fda0300504b03042d0000",
        "000800000021001134c06fffffffffffffffff0e00140063617465676f726965732e6e7079010010",
        "00e00000000000000060000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a06e13",
        "6aa6aea3a09e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a263a9a3a0ab5",
        "0a1400ae6206068664202e02e254202e6780802420ce07e21228ce81ca93aa1e00504b03042d0000",
        "0008000000210052dc8749ffffffffffffffff090014006d61736b732e6e70790100100098000000",
        "0000000052000000000000009bec17ea1b10c9c850c650ad9e925a9c5ca46ea5a05e9364a8aea3a0",
        "9e965f54529498179f5f94920a12774bcc294e058a17672416a402f91a263a0a463a0ac69a3a0ab5",
        "0ae4012e06086064648001080b00504b01022d032d0000000800000021007c548acf57000000a000",
        "0000100000000000000000000000800100000000696d6167655f73636f7265732e6e7079504b0102",
        "2d032d0000000800000021001134c06f60000000e00000000e000000000000000000000080019900",
        "000063617465676f726965732e6e7079504b01022d032d00000008000000210052dc874952000000",
        "980000000900000000000000000000008001390100006d61736b732e6e7079504b05060000000003",
        "000300b1000000c60100000000",
    );
    /// `np.savez`: `x = arange(3, dtype=int16)`, `s = [b"ab", b"c"]` (|S2).
    const NPZ_STORED: &str = concat!(
        "504b03042d0000000000000021006acff251ffffffffffffffff05001400782e6e70790100100086",
        "000000000000008600000000000000934e554d5059010076007b276465736372273a20273c693227",
        "2c2027666f727472616e5f6f72646572273a2046616c73652c20277368617065273a2028332c292c",
        "207d2020202020202020202020202020202020202020202020202020202020202020202020202020",
        "202020202020202020202020202020202020202020200a000001000200504b03042d000000000000",
        "002100b635f1d7ffffffffffffffff05001400732e6e707901001000840000000000000084000000",
        "00000000934e554d5059010076007b276465736372273a20277c5332272c2027666f727472616e5f",
        "6f72646572273a2046616c73652c20277368617065273a2028322c292c207d202020202020202020",
        "20202020202020202020202020202020202020202020202020202020202020202020202020202020",
        "20202020202020202020200a61626300504b01022d032d0000000000000021006acff25186000000",
        "86000000050000000000000000000000800100000000782e6e7079504b01022d032d000000000000",
        "002100b635f1d784000000840000000500000000000000000000008001bd000000732e6e7079504b",
        "0506000000000200020066000000780100000000",
    );

    #[test]
    fn labels_and_masks_that_disagree_are_noted() {
        // Image 0 normal with a marked pixel, image 1 anomalous with an empty mask.
        let labels = [false, true, true, false];
        let masks = [
            false, true, /**/ false, false, /**/ true, false, /**/ false, false,
        ];
        let note = label_mask_disagreement(&labels, &masks).unwrap();
        assert!(
            note.contains("1 normal image(s) whose mask marks pixels (images 0)")
                && note.contains("1 anomalous image(s) whose mask marks none (images 1)"),
            "{note}"
        );
        assert_eq!(
            label_mask_disagreement(&[false, true], &[false, false, true, false]),
            None
        );
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
        let long: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let split = crc32_update(crc32_update(!0, &long[..333]), &long[333..]);
        assert_eq!(!split, crc32(&long));
    }

    #[test]
    fn inflates_fixed_dynamic_and_stored_blocks() {
        let stored: Vec<u8> = (0..=255u8).chain(0..=255).collect();
        for (hex, want) in [
            (FIXED, b"memad memad memad anomaly".to_vec()),
            (DYNAMIC, dynamic_text()),
            (STORED, stored),
        ] {
            let bytes = unhex(hex);
            assert_eq!(inflate_all(&bytes[..]).unwrap(), want);
            assert_eq!(inflate_all(OneByte(&bytes)).unwrap(), want);
        }
    }

    #[test]
    fn inflate_rejects_corrupt_streams() {
        let bytes = unhex(DYNAMIC);
        let e = inflate_all(&bytes[..bytes.len() / 2]).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
        let e = inflate_all(&[0x07u8][..]).unwrap_err();
        assert_eq!(e.to_string(), "invalid deflate block type 3");
        let e = inflate_all(&[0x01u8, 0x05, 0x00, 0x00, 0x00][..]).unwrap_err();
        assert_eq!(e.to_string(), "bad stored block length");
    }

    #[test]
    fn parses_dtypes_and_names_unsupported_ones() {
        let ok = [
            ("|b1", Dtype::Bool),
            ("|i1", Dtype::I8),
            ("<i2", Dtype::I16),
            ("<i4", Dtype::I32),
            ("<i8", Dtype::I64),
            ("|u1", Dtype::U8),
            ("<u2", Dtype::U16),
            ("<u4", Dtype::U32),
            ("<u8", Dtype::U64),
            ("<f2", Dtype::F16),
            ("<f4", Dtype::F32),
            ("<f8", Dtype::F64),
            ("<U7", Dtype::Unicode(7)),
            ("|S3", Dtype::Bytes(3)),
            (">S3", Dtype::Bytes(3)),
        ];
        for (descr, dtype) in ok {
            assert_eq!(Dtype::parse(descr).unwrap(), dtype, "{descr}");
        }
        assert_eq!(Dtype::Unicode(7).size(), 28);
        assert_eq!(Dtype::F16.to_string(), "float16");
        for descr in ["<c8", "|O", "|O8", "|V8", "<f3", "<U0", "f4", ""] {
            let e = Dtype::parse(descr).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("unsupported dtype '{descr}'")),
                "{e}"
            );
        }
        let e = Dtype::parse(">f4").unwrap_err().to_string();
        assert!(e.contains("'>f4'") && e.contains("big-endian"), "{e}");
    }

    #[test]
    fn parses_headers() {
        let h = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }          \n";
        assert_eq!(parse_header(h).unwrap(), (Dtype::F32, vec![2, 3]));
        let h = "{\"shape\": (3L,), \"fortran_order\": False, \"descr\": \"|b1\"}";
        assert_eq!(parse_header(h).unwrap(), (Dtype::Bool, vec![3]));
        let h = "{'descr': '<i8', 'fortran_order': False, 'shape': ()}";
        assert_eq!(parse_header(h).unwrap(), (Dtype::I64, vec![]));
        let h = "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }";
        assert!(parse_header(h).unwrap_err().to_string().contains("Fortran"));
        let h = "{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (2,), }";
        let e = parse_header(h).unwrap_err().to_string();
        assert!(
            e.contains("[('a', '<f4'), ('b', '<i4')]") && e.contains("structured"),
            "{e}"
        );
        let h = "{'descr': '<f4', 'fortran_order': False}";
        assert!(parse_header(h)
            .unwrap_err()
            .to_string()
            .contains("no 'shape'"));
    }

    #[test]
    fn decodes_every_numeric_dtype() {
        let want = [0.0f32, 1.0, 2.0, 100.0];
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("|b1", vec![0, 1, 1, 1]),
            ("|i1", vec![0, 1, 2, 100]),
            ("|u1", vec![0, 1, 2, 100]),
            (
                "<i2",
                le_bytes([0i16, 1, 2, 100].map(i16::to_le_bytes).into_iter()),
            ),
            (
                "<u2",
                le_bytes([0u16, 1, 2, 100].map(u16::to_le_bytes).into_iter()),
            ),
            (
                "<i4",
                le_bytes([0i32, 1, 2, 100].map(i32::to_le_bytes).into_iter()),
            ),
            (
                "<u4",
                le_bytes([0u32, 1, 2, 100].map(u32::to_le_bytes).into_iter()),
            ),
            (
                "<i8",
                le_bytes([0i64, 1, 2, 100].map(i64::to_le_bytes).into_iter()),
            ),
            (
                "<u8",
                le_bytes([0u64, 1, 2, 100].map(u64::to_le_bytes).into_iter()),
            ),
            (
                "<f2",
                le_bytes(
                    [0u16, 0x3c00, 0x4000, 0x5640]
                        .map(u16::to_le_bytes)
                        .into_iter(),
                ),
            ),
            ("<f4", le_bytes(want.map(f32::to_le_bytes).into_iter())),
            (
                "<f8",
                le_bytes([0f64, 1.0, 2.0, 100.0].map(f64::to_le_bytes).into_iter()),
            ),
        ];
        for (descr, data) in cases {
            let bytes = npy(descr, "(2, 2)", &data);
            let a: Array<f32> = parse_npy(&bytes).unwrap();
            let expect = if descr == "|b1" {
                [0.0, 1.0, 1.0, 1.0]
            } else {
                want
            };
            assert_eq!((a.shape, a.data), (vec![2, 2], expect.to_vec()), "{descr}");
            let b: Array<bool> = parse_npy(&bytes).unwrap();
            assert_eq!(b.data, [false, true, true, true], "{descr}");
            // Any split into pieces gives the same array.
            let mut d = Decoder::<f32>::new(None);
            bytes.chunks(3).for_each(|c| d.feed(c).unwrap());
            assert_eq!(d.finish().unwrap().data, expect, "{descr}");
        }
        let negative = npy("|i1", "(2,)", &[0xff, 0x80]);
        assert_eq!(parse_npy::<f32>(&negative).unwrap().data, [-1.0, -128.0]);
    }

    #[test]
    fn decodes_half_floats_exactly() {
        let halves = [
            0x3c00u16, 0xc000, 0x0001, 0x8001, 0x7c00, 0x8000, 0x7bff, 0x3555,
        ];
        let bytes = npy(
            "<f2",
            "(8,)",
            &le_bytes(halves.map(u16::to_le_bytes).into_iter()),
        );
        let got = parse_npy::<f32>(&bytes).unwrap().data;
        let want = [
            1.0,
            -2.0,
            2f32.powi(-24),
            -(2f32.powi(-24)),
            f32::INFINITY,
            -0.0,
            65504.0,
            0.333_251_95,
        ];
        assert_eq!(got, want);
        assert!(got[5].is_sign_negative());
        let nan = npy("<f2", "(1,)", &0x7e00u16.to_le_bytes());
        assert!(parse_npy::<f32>(&nan).unwrap().data[0].is_nan());
    }

    #[test]
    fn decodes_categories_from_strings_and_integers() {
        let mut unicode = Vec::new();
        for s in ["bottle", "ab", "é"] {
            let mut chars: Vec<u32> = s.chars().map(u32::from).collect();
            chars.resize(6, 0);
            unicode.extend(le_bytes(chars.into_iter().map(u32::to_le_bytes)));
        }
        let a: Array<Category> = parse_npy(&npy("<U6", "(3,)", &unicode)).unwrap();
        let text = |s: &str| Category::Text(s.into());
        assert_eq!(a.data, [text("bottle"), text("ab"), text("é")]);
        let a: Array<Category> = parse_npy(&npy("|S3", "(2,)", b"ab\0cde")).unwrap();
        assert_eq!(a.data, [text("ab"), text("cde")]);
        let ints = le_bytes([3i64, -1].map(i64::to_le_bytes).into_iter());
        let a: Array<Category> = parse_npy(&npy("<i8", "(2,)", &ints)).unwrap();
        assert_eq!(a.data, [Category::Int(3), Category::Int(-1)]);
        let e = parse_npy::<Category>(&f32_npy("(1,)", &[1.0])).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported dtype float32 here (strings or integers expected)"
        );
        let e = parse_npy::<f32>(&npy("|S3", "(2,)", b"ab\0cde")).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unsupported dtype |S3 here (numbers expected)"
        );
    }

    #[test]
    fn npy_length_errors() {
        let bytes = f32_npy("(3,)", &[1.0, 2.0, 3.0]);
        let e = parse_npy::<f32>(&bytes[..bytes.len() - 2]).unwrap_err();
        assert!(e.to_string().contains("announces"), "{e}");
        let mut d = Decoder::<f32>::new(None);
        d.feed(&bytes[..bytes.len() - 2]).unwrap();
        let e = d.finish().unwrap_err().to_string();
        assert_eq!(e, "truncated .npy: shape [3] needs 3 elements, got 2");
        let mut d = Decoder::<f32>::new(None);
        let e = d.feed(&[bytes.as_slice(), &[0; 4]].concat()).unwrap_err();
        assert_eq!(e.to_string(), "more data than the shape announces");
        let e = parse_npy::<f32>(b"PK\x03\x04 not an npy").unwrap_err();
        assert!(e.to_string().contains("magic"), "{e}");
    }

    #[test]
    fn reads_numpy_written_npz_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "c.npz", &unhex(NPZ_DEFLATED));
        let mut z = Npz::open(&path).unwrap();
        assert_eq!(z.keys(), ["image_scores", "categories", "masks"]);
        let scores = z.require::<f32>("image_scores").unwrap();
        assert_eq!(
            (scores.dtype, scores.data),
            (Dtype::F64, vec![0.1, 0.9, 0.4, 0.8])
        );
        // The dtype alone, from the header of a deflated member.
        assert_eq!(z.dtype("image_scores").unwrap(), Some(Dtype::F64));
        assert_eq!(z.dtype("masks").unwrap(), Some(Dtype::Bool));
        assert_eq!(z.dtype("nothing").unwrap(), None);
        let c = z.require::<Category>("categories").unwrap();
        assert_eq!(c.dtype, Dtype::Unicode(6));
        assert_eq!(
            c.data[..2],
            [
                Category::Text("screw".into()),
                Category::Text("bottle".into())
            ]
        );
        let masks = z.require::<bool>("masks").unwrap();
        assert_eq!(masks.shape, [4, 2, 3]);
        assert_eq!(masks.data.iter().filter(|&&m| m).count(), 3);
        assert!(masks.data[7] && masks.data[8] && masks.data[18]);

        let path = write(dir.path(), "s.npz", &unhex(NPZ_STORED));
        let mut z = Npz::open(&path).unwrap();
        assert_eq!(z.require::<f32>("x").unwrap().data, [0.0, 1.0, 2.0]);
        let s = z.require::<Category>("s").unwrap().data;
        assert_eq!(s, [Category::Text("ab".into()), Category::Text("c".into())]);
        assert!(z.get::<f32>("y").unwrap().is_none());
        let e = z.require::<f32>("image_scores").unwrap_err().to_string();
        assert_eq!(
            e,
            format!(
                "{}: no array `image_scores`; it holds: x, s",
                path.display()
            )
        );
    }

    #[test]
    fn reads_zip64_and_detects_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let members = [
            ("a.npy", f32_npy("(3,)", &[1.0, 2.5, -3.0])),
            ("b.npy", npy("|b1", "(2,)", &[0, 7])),
        ];
        for zip64 in [false, true] {
            let path = write(dir.path(), "z.npz", &zip(&members, zip64));
            let mut z = Npz::open(&path).unwrap();
            assert_eq!(z.require::<f32>("a").unwrap().data, [1.0, 2.5, -3.0]);
            assert_eq!(z.require::<bool>("b").unwrap().data, [false, true]);
        }
        let mut bytes = zip(&members, false);
        let at = members[0].1.len() + 30 + 5 - 4; // inside a's data
        bytes[at] ^= 1;
        let path = write(dir.path(), "bad.npz", &bytes);
        let e = Npz::open(&path).unwrap().require::<f32>("a").unwrap_err();
        assert!(format!("{e:#}").contains("CRC"), "{e:#}");
        let path = write(dir.path(), "no.npz", b"hello");
        let e = Npz::open(&path).err().unwrap();
        assert!(format!("{e:#}").contains("not a zip"), "{e:#}");
    }

    /// A small test set.
    struct Data {
        scores: Vec<f32>,
        labels: Vec<bool>,
        maps: Vec<f32>,
        masks: Vec<bool>,
        categories: Vec<&'static str>,
    }

    /// Six 4x5 images in two interleaved categories (`b`, `a`), each with anomalies.
    fn dataset() -> Data {
        let labels = vec![false, true, true, false, true, false];
        let scores = vec![0.1, 0.7, 0.9, 0.3, 0.2, 0.25];
        let mut masks = vec![false; 6 * 20];
        for (img, &l) in labels.iter().enumerate() {
            if l {
                for p in [6, 7, 11, 12 + img % 3] {
                    masks[img * 20 + p] = true;
                }
                masks[img * 20 + 19] = img == 2;
            }
        }
        let maps = (0..120)
            .map(|i| ((i * 37) % 101) as f32 / 101.0 + if masks[i] { 0.4 } else { 0.0 })
            .collect();
        let categories = vec!["b", "a", "b", "a", "b", "a"];
        Data {
            scores,
            labels,
            maps,
            masks,
            categories,
        }
    }

    fn write_dataset(dir: &Path, maps: &[f32], scores: &[f32]) -> (PathBuf, PathBuf) {
        let Data {
            labels,
            masks,
            categories,
            ..
        } = dataset();
        let pred = zip(
            &[
                ("image_scores.npy", f32_npy("(6,)", scores)),
                ("anomaly_maps.npy", f32_npy("(6, 1, 4, 5)", maps)),
            ],
            false,
        );
        let cats: Vec<u8> = categories
            .iter()
            .flat_map(|c| [c.as_bytes()[0], 0])
            .collect();
        let gt = zip(
            &[
                ("image_labels.npy", npy("|b1", "(6,)", &labels.map_u8())),
                ("masks.npy", npy("|u1", "(6, 4, 5)", &masks.map_u8())),
                ("categories.npy", npy("|S2", "(6,)", &cats)),
            ],
            false,
        );
        (write(dir, "pred.npz", &pred), write(dir, "gt.npz", &gt))
    }

    trait MapU8 {
        fn map_u8(&self) -> Vec<u8>;
    }

    impl MapU8 for Vec<bool> {
        fn map_u8(&self) -> Vec<u8> {
            self.iter().map(|&b| u8::from(b)).collect()
        }
    }

    #[test]
    fn evaluates_per_category_and_mean() {
        let dir = tempfile::tempdir().unwrap();
        let Data {
            scores,
            labels,
            maps,
            masks,
            ..
        } = dataset();
        let (pred, gt) = write_dataset(dir.path(), &maps, &scores);
        let inputs = Inputs::load(&pred, &gt).unwrap();
        let report = evaluate(&inputs, 0.3).unwrap();
        let names: Vec<&str> = report
            .categories
            .iter()
            .map(|r| r.category.as_str())
            .collect();
        assert_eq!(names, ["a", "b"]);
        for (row, images) in report.categories.iter().zip([[1, 3, 5], [0, 2, 4]]) {
            let pick = |v: &[f32], k: usize| -> Vec<f32> {
                images
                    .iter()
                    .flat_map(|&i| v[i * k..(i + 1) * k].to_vec())
                    .collect()
            };
            let pick_b = |v: &[bool], k: usize| -> Vec<bool> {
                images
                    .iter()
                    .flat_map(|&i| v[i * k..(i + 1) * k].to_vec())
                    .collect()
            };
            let (m, k) = (pick(&maps, 20), pick_b(&masks, 20));
            let want = evaluate_images(
                &pick(&scores, 1),
                &pick_b(&labels, 1),
                Some(PixelInputs::new(&m, &k, 4, 5)),
            )
            .unwrap();
            assert_eq!((row.images, row.metrics), (3, Some(want)));
        }
        let (a, b) = (
            report.categories[0].metrics.unwrap(),
            report.categories[1].metrics.unwrap(),
        );
        assert_eq!(
            report.mean.aupro,
            Some((a.aupro.unwrap() + b.aupro.unwrap()) / 2.0)
        );
        assert_eq!(report.mean.image_ap, (a.image_ap + b.image_ap) / 2.0);

        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("category        images  image_auroc"));
        assert!(lines[0].ends_with("aupro"));
        assert!(lines[3].starts_with("mean                 6"));
        let json: serde_json::Value = serde_json::to_value(&report).unwrap();
        assert_eq!(json["categories"][1]["category"], "b");
        assert_eq!(json["categories"][1]["images"], 3);
        assert_eq!(json["mean"]["aupro"], report.mean.aupro.unwrap());
    }

    #[test]
    fn without_categories_and_maps_one_row_of_image_metrics() {
        let dir = tempfile::tempdir().unwrap();
        let pred = zip(
            &[(
                "image_scores.npy",
                f32_npy("(4, 1)", &[0.1, 0.4, 0.35, 0.8]),
            )],
            false,
        );
        let labels = |values: [i64; 4]| {
            let bytes = le_bytes(values.map(i64::to_le_bytes).into_iter());
            zip(&[("image_labels.npy", npy("<i8", "(4,)", &bytes))], false)
        };
        let pred = write(dir.path(), "p.npz", &pred);
        // Only 0 and 1: -1/1 (scikit-learn's outliers) would otherwise read as all anomalous.
        let gt = write(dir.path(), "g.npz", &labels([0, -1, 1, 1]));
        let e = format!("{:#}", Inputs::load(&pred, &gt).err().unwrap());
        assert!(
            e.contains("image_labels[1] is -1: labels must be 0 (normal) or 1 (anomalous)"),
            "{e}"
        );
        let gt = write(dir.path(), "g.npz", &labels([0, 0, 1, 1]));
        let report = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3).unwrap();
        assert_eq!(report.categories.len(), 1);
        assert_eq!(report.categories[0].category, "all");
        assert_eq!(report.mean.image_auroc, 0.75);
        assert_eq!(report.mean.named().len(), 3);
        let json = serde_json::to_string(&report.mean).unwrap();
        assert!(!json.contains("pixel"), "{json}");
    }

    #[test]
    fn errors_name_files_keys_and_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let Data { scores, maps, .. } = dataset();
        let (_, gt) = write_dataset(dir.path(), &maps, &scores);
        let msg = |p: &Path, g: &Path| format!("{:#}", Inputs::load(p, g).err().unwrap());

        let e = msg(&gt, &gt);
        assert!(e.contains("pred.npz") || e.contains("gt.npz"), "{e}");
        assert!(
            e.ends_with("no array `image_scores`; it holds: image_labels, masks, categories"),
            "{e}"
        );
        let short = zip(
            &[
                ("image_scores.npy", f32_npy("(5,)", &scores[..5])),
                ("anomaly_maps.npy", f32_npy("(6, 4, 5)", &maps)),
            ],
            false,
        );
        let short = write(dir.path(), "short.npz", &short);
        let e = msg(&short, &gt);
        assert!(
            e.contains("image_scores has shape [5]") && e.contains("image_labels has shape [6]"),
            "{e}"
        );
        let wide = zip(
            &[
                ("image_scores.npy", f32_npy("(6,)", &scores)),
                ("anomaly_maps.npy", f32_npy("(6, 5, 4)", &maps)),
            ],
            false,
        );
        let wide = write(dir.path(), "wide.npz", &wide);
        let e = msg(&wide, &gt);
        assert!(
            e.contains("anomaly_maps has shape [6, 5, 4]")
                && e.contains("masks has shape [6, 4, 5]"),
            "{e}"
        );
    }

    #[test]
    fn non_finite_scores_are_located() {
        let dir = tempfile::tempdir().unwrap();
        let Data {
            mut scores,
            mut maps,
            ..
        } = dataset();
        scores[4] = f32::NAN;
        let (pred, gt) = write_dataset(dir.path(), &maps, &scores);
        let e = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("category b: image level: score at index 2 is not finite")
                && e.ends_with("pred.npz: image_scores[4] = NaN)"),
            "{e}"
        );
        scores[4] = 0.5;
        maps[3 * 20 + 2 * 5 + 1] = f32::INFINITY;
        let (pred, gt) = write_dataset(dir.path(), &maps, &scores);
        let e = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("category a: pixel level: score at index 31 is not finite")
                && e.ends_with("pred.npz: anomaly_maps[3, 2, 1] = inf)"),
            "{e}"
        );
    }

    /// `pred.npz` with `image_scores` of `descr` (`<f8` or `<f4`) and `gt.npz` with labels
    /// (and, if given, categories), from `scores` as `f64`.
    fn write_scores(
        dir: &Path,
        descr: &str,
        scores: &[f64],
        labels: &[bool],
        categories: Option<&[u8]>,
    ) -> (PathBuf, PathBuf) {
        let shape = format!("({},)", scores.len());
        let data = match descr {
            "<f8" => le_bytes(scores.iter().map(|v| v.to_le_bytes())),
            _ => le_bytes(scores.iter().map(|&v| (v as f32).to_le_bytes())),
        };
        let pred = zip(&[("image_scores.npy", npy(descr, &shape, &data))], false);
        let mut gt = vec![(
            "image_labels.npy",
            npy("|b1", &shape, &labels.to_vec().map_u8()),
        )];
        if let Some(c) = categories {
            gt.push(("categories.npy", npy("|S1", &shape, c)));
        }
        let gt = zip(&gt, false);
        (write(dir, "pred.npz", &pred), write(dir, "gt.npz", &gt))
    }

    #[test]
    fn float64_scores_are_ranked_in_float64_and_float32_as_before() {
        let dir = tempfile::tempdir().unwrap();
        // Distinct in f64, all 1.0 in f32.
        let scores: Vec<f64> = (0..10).map(|k| 1.0 + k as f64 * 1e-10).collect();
        let labels: Vec<bool> = (0..10).map(|k| k >= 5).collect();
        let (pred, gt) = write_scores(dir.path(), "<f8", &scores, &labels, None);
        let inputs = Inputs::load(&pred, &gt).unwrap();
        assert!(matches!(inputs.scores, Values::F64(_)));
        let report = evaluate(&inputs, 0.3).unwrap();
        assert_eq!(report.mean.image_auroc, 1.0);
        assert_eq!(report.mean.image_ap, 1.0);
        // The same numbers stored as float32 are float32 (all tied): scored as before.
        let (pred, gt) = write_scores(dir.path(), "<f4", &scores, &labels, None);
        let inputs = Inputs::load(&pred, &gt).unwrap();
        assert!(matches!(inputs.scores, Values::F32(_)));
        let report = evaluate(&inputs, 0.3).unwrap();
        assert_eq!(report.mean.image_auroc, 0.5);
        let rounded: Vec<f32> = scores.iter().map(|&s| s as f32).collect();
        let want = evaluate_images(&rounded, &labels, None).unwrap();
        assert_eq!(report.mean, want);
    }

    #[test]
    fn float64_maps_are_ranked_in_float64() {
        let dir = tempfile::tempdir().unwrap();
        let Data { scores, maps, .. } = dataset();
        // Each map value `m` as `1 + m * 1e-9`: in the same order as the maps in f64, all
        // `1.0` in f32 (which would give a pixel AUROC of 0.5).
        let wide: Vec<f64> = maps.iter().map(|&m| 1.0 + f64::from(m) * 1e-9).collect();
        let map_bytes = le_bytes(wide.iter().map(|v| v.to_le_bytes()));
        let pred = zip(
            &[
                ("image_scores.npy", f32_npy("(6,)", &scores)),
                ("anomaly_maps.npy", npy("<f8", "(6, 4, 5)", &map_bytes)),
            ],
            false,
        );
        let (_, gt) = write_dataset(dir.path(), &maps, &scores);
        let pred = write(dir.path(), "wide.npz", &pred);
        let report = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3).unwrap();
        // The ranking of the f32 maps, which the f64 maps keep.
        let (f32_pred, _) = write_dataset(dir.path(), &maps, &scores);
        let want = evaluate(&Inputs::load(&f32_pred, &gt).unwrap(), 0.3).unwrap();
        assert_eq!(report.categories, want.categories);
        assert_eq!(report.mean.pixel_auroc, want.mean.pixel_auroc);
        assert!(report.mean.aupro.is_some());
    }

    #[test]
    fn a_category_without_anomalies_is_undefined_and_left_out_of_the_mean() {
        let dir = tempfile::tempdir().unwrap();
        let scores = [0.1, 0.9, 0.2, 0.8, 0.3, 0.4, 0.6];
        let labels = [false, true, false, true, false, false, false];
        let (pred, gt) = write_scores(dir.path(), "<f8", &scores, &labels, Some(b"aaaazzz"));
        let report = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3).unwrap();
        assert_eq!(report.mean_of, 1);
        assert_eq!(report.mean.image_auroc, 1.0);
        let z = &report.categories[1];
        assert_eq!((z.category.as_str(), z.images, z.metrics), ("z", 3, None));
        assert_eq!(
            z.undefined.as_deref(),
            Some("image level: no positive (anomalous) samples: the metric is undefined")
        );
        let table = report.table();
        let lines: Vec<&str> = table.lines().collect();
        assert!(
            lines[2].starts_with("z") && lines[2].ends_with("-"),
            "{table}"
        );
        assert!(lines[3].starts_with("mean                 4"), "{table}");
        assert_eq!(
            lines[4],
            "mean over 1 of 2 categories; undefined: z (image level: no positive (anomalous) \
             samples: the metric is undefined)"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mean_of"], 1);
        assert!(json["categories"][1].get("image_auroc").is_none());
        // Every category undefined: an error naming them; without categories, as before.
        let (pred, gt) = write_scores(dir.path(), "<f8", &scores, &[false; 7], Some(b"aaaazzz"));
        let e = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3).unwrap_err();
        assert!(
            e.to_string().starts_with(
                "the metrics are undefined in every category: category a: image level: no \
                 positive"
            ),
            "{e}"
        );
        let (pred, gt) = write_scores(dir.path(), "<f8", &scores, &[false; 7], None);
        let e = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3).unwrap_err();
        assert_eq!(
            e.to_string(),
            "image level: no positive (anomalous) samples: the metric is undefined"
        );
    }

    #[test]
    fn selects_borrow_contiguous_images() {
        let data = [0, 1, 2, 3, 4, 5, 6, 7];
        assert!(matches!(
            select(&data, &[1, 2], 2),
            Cow::Borrowed([2, 3, 4, 5])
        ));
        assert_eq!(select(&data, &[3, 0], 2).as_ref(), [6, 7, 0, 1]);
        assert_eq!(vector_len(&[4, 1]), Some(4));
        assert_eq!(vector_len(&[4, 2]), None);
        assert_eq!(image_dims(&[2, 1, 3, 4]), Some((2, 3, 4)));
        assert_eq!(image_dims(&[2, 2, 3, 4]), None);
    }

    #[test]
    fn videos_add_the_frame_aurocs_under_the_normalisation_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        // Video `a` ranked perfectly on a high scale, video `b` half right on a low one.
        let scores = [10.0, 11.0, 12.0, 13.0, 0.1, 0.4, 0.35, 0.8];
        let labels = [false, false, true, true, false, false, true, true];
        let (pred, _) = write_scores(dir.path(), "<f8", &scores, &labels, None);
        let gt = zip(
            &[
                (
                    "image_labels.npy",
                    npy("|b1", "(8,)", &labels.to_vec().map_u8()),
                ),
                ("videos.npy", npy("|S1", "(8,)", b"aaaabbbb")),
            ],
            false,
        );
        let gt = write(dir.path(), "gt_videos.npz", &gt);
        let videos = vec![
            (scores[..4].to_vec(), labels[..4].to_vec()),
            (scores[4..].to_vec(), labels[4..].to_vec()),
        ];
        let args = |norm| MetricsArgs {
            pred: pred.clone(),
            gt: gt.clone(),
            json: false,
            fpr_limit: MVTEC_FPR_LIMIT,
            stats: false,
            video_normalization: norm,
        };
        for (flag, norm) in [
            (VideoNorm::None, VideoNormalization::None),
            (VideoNorm::MinMax, VideoNormalization::MinMaxPerVideo),
        ] {
            let mut inputs = Inputs::load(&pred, &gt).unwrap();
            inputs.video_normalization = norm;
            let frames = evaluate(&inputs, 0.3).unwrap().mean_frames.unwrap();
            assert_eq!(
                frames.frame_auroc_micro,
                frame_auroc_micro(&videos, norm).unwrap()
            );
            assert_eq!(
                frames.frame_auroc_macro,
                Some(frame_auroc_macro(&videos, norm).unwrap())
            );
            assert!(run(&args(Some(flag))).is_ok());
        }
        // Pooled raw scores rank video `a` above all of `b`: micro differs from min-max.
        let mut inputs = Inputs::load(&pred, &gt).unwrap();
        let raw = evaluate(&inputs, 0.3).unwrap().mean_frames.unwrap();
        inputs.video_normalization = VideoNormalization::MinMaxPerVideo;
        let normalised = evaluate(&inputs, 0.3).unwrap().mean_frames.unwrap();
        assert!(raw.frame_auroc_micro != normalised.frame_auroc_micro);
        assert_eq!(raw.frame_auroc_macro, normalised.frame_auroc_macro);
        // The normalisation must be named; it needs videos.
        let msg = run(&args(None)).unwrap_err().to_string();
        assert!(
            msg.contains("pass --video-normalization none or min_max"),
            "{msg}"
        );
        let (pred_only, gt_plain) = write_scores(dir.path(), "<f8", &scores, &labels, None);
        let msg = run(&MetricsArgs {
            pred: pred_only,
            gt: gt_plain,
            ..args(Some(VideoNorm::None))
        })
        .unwrap_err()
        .to_string();
        assert!(msg.contains("needs `videos [N]`"), "{msg}");
    }

    #[test]
    fn without_a_video_holding_both_classes_the_macro_auroc_is_left_empty() {
        // Video `a` all normal, video `b` all anomalous: micro is defined, macro is not.
        let dir = tempfile::tempdir().unwrap();
        let scores = [0.1, 0.2, 0.3, 0.4];
        let labels = [false, false, true, true];
        let (pred, _) = write_scores(dir.path(), "<f8", &scores, &labels, None);
        let gt = zip(
            &[
                (
                    "image_labels.npy",
                    npy("|b1", "(4,)", &labels.to_vec().map_u8()),
                ),
                ("videos.npy", npy("|S1", "(4,)", b"aabb")),
            ],
            false,
        );
        let gt = write(dir.path(), "gt_videos.npz", &gt);
        let mut inputs = Inputs::load(&pred, &gt).unwrap();
        inputs.video_normalization = VideoNormalization::None;
        let report = evaluate(&inputs, 0.3).unwrap();
        let frames = report.mean_frames.unwrap();
        assert_eq!(frames.frame_auroc_micro, 1.0);
        assert_eq!(frames.frame_auroc_macro, None);
        let table = report.table();
        let mean = table.lines().find(|l| l.starts_with("mean")).unwrap();
        let cells: Vec<&str> = mean.split_whitespace().collect();
        assert_eq!(cells[cells.len() - 2..], ["1.0000", "-"], "{table}");
        assert!(
            table.contains("frame_auroc_macro is undefined in all: no video there has both"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert!(json["mean_frames"]["frame_auroc_macro"].is_null(), "{json}");
    }
}
