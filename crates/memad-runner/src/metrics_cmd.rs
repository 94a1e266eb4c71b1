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
//! Any other array in either file is an error, with a did-you-mean: a misspelt optional one
//! (`anomaly_map`, `category`) would otherwise be skipped, and its metrics with it.
//!
//! Labels are 0 (normal) or 1 (anomalous), anything else is an error; masks are binary:
//! booleans, 0/1 or 0/255 (any other value, a soft mask or NaN, is an error naming the pixel). Scores and maps are ranked in the precision
//! of the file ([`Values`]): `float64` (and integers wider than 16 bits) in `f64`, anything
//! else in `f32`, so no score is rounded before ranking (integers above 2^53 excepted). The metrics are
//! [`memad_metrics::evaluate_images`]'s (pixel metrics and AUPRO when both maps and masks are
//! given). A category whose image metrics are undefined (only normal or only anomalous
//! images) is reported as such and left out of the mean, which says how many categories it
//! averages; one whose pixel metrics alone are undefined (only normal or only anomalous
//! pixels) keeps its image metrics, its pixel metrics left out of the pixel means. The `.npz` files are read by [`crate::npz`], which decodes each array while
//! it streams in, so that an array costs its converted size only.

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

use crate::npz::{self, Category, Dtype, MaskPixel, Npz};

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
    /// AUPRO's false-positive-rate limit, in (0, 1].
    #[arg(long, default_value_t = MVTEC_FPR_LIMIT, value_parser = fpr_limit)]
    pub fpr_limit: f64,
    /// Print timings and peak memory (resident set growth) to stderr as one JSON line.
    #[arg(long)]
    pub stats: bool,
    /// With `videos [N]` in the ground truth: `none` (raw scores) or `min_max` (each video's
    /// scores to [0, 1] first) for the frame AUROCs.
    #[arg(long, value_enum)]
    pub video_normalization: Option<VideoNorm>,
}

/// `--fpr-limit`: a number in (0, 1], checked before any file is read.
fn fpr_limit(text: &str) -> std::result::Result<f64, String> {
    match text.parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 1.0 => Ok(v),
        Ok(v) => Err(format!("{v} is not in (0, 1] (MVTec AD's AUPRO uses 0.3)")),
        Err(e) => Err(e.to_string()),
    }
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
        refuse_unknown_arrays(&pred, &PRED_ARRAYS)?;
        refuse_unknown_arrays(&gt, &GT_ARRAYS)?;
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
        let masks = gt.require::<MaskPixel>("masks")?;
        ensure!(
            image_dims(&masks.shape) == Some(dims),
            "shape mismatch: {p} anomaly_maps has shape {maps_shape:?} but {g} masks has shape \
             {:?}",
            masks.shape
        );
        if let Some(k) = masks.data.iter().position(|&m| m == MaskPixel::Other) {
            let (hw, w) = (dims.1 * dims.2, dims.2);
            // The value, read again (only on this error path).
            let value = Npz::open(gt.path())
                .and_then(|mut z| z.require::<f64>("masks"))
                .map(|a| a.data[k].to_string())
                .unwrap_or_else(|_| "?".into());
            bail!(
                "{g}: masks[{}, {}, {}] = {value} is neither 0, 1 nor 255: masks must be binary \
                 (booleans, 0/1 or 0/255). A soft mask (resized with interpolation) or NaN \
                 would count every nonzero pixel as anomalous: threshold it first (`masks > \
                 0.5`), or resize masks with nearest-neighbour",
                k / hw,
                k % hw / w,
                k % w
            );
        }
        Ok(Pixels {
            maps,
            masks: (masks.data.iter())
                .map(|&m| m == MaskPixel::Anomalous)
                .collect(),
            h: dims.1,
            w: dims.2,
        })
    }
}

/// The arrays a predictions file may hold, the first required.
const PRED_ARRAYS: [&str; 2] = ["image_scores", "anomaly_maps"];
/// The arrays a ground-truth file may hold, the first required.
const GT_ARRAYS: [&str; 4] = ["image_labels", "masks", "categories", "videos"];

/// Refuses arrays of `npz` that are neither `known` (the first required, the rest optional)
/// nor an array of the other file (one npz may hold both, given as `--pred` and `--gt`): a
/// misspelt optional one (`anomaly_map`, `category`) would otherwise be skipped without a
/// word, and its metrics with it.
fn refuse_unknown_arrays(npz: &Npz, known: &[&str]) -> Result<()> {
    let candidates: Vec<String> = known.iter().map(|k| k.to_string()).collect();
    let unknown: Vec<String> = (npz.keys().into_iter())
        .filter(|k| !PRED_ARRAYS.contains(k) && !GT_ARRAYS.contains(k))
        .map(|k| format!("`{k}`{}", memad_data::did_you_mean(k, &candidates)))
        .collect();
    ensure!(
        unknown.is_empty(),
        "{}: unknown array(s) {}; expected `{}` and optionally `{}`",
        npz.path().display(),
        unknown.join(", "),
        known[0],
        known[1..].join("`, `")
    );
    Ok(())
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

/// The unweighted mean over `metrics` (non-empty); a pixel metric over the categories that
/// have it (`None` where none has).
fn mean_metrics(metrics: &[&ImageMetrics]) -> ImageMetrics {
    let n = metrics.len() as f64;
    let mean = |f: fn(&ImageMetrics) -> f64| metrics.iter().map(|m| f(m)).sum::<f64>() / n;
    let mean_opt = |f: fn(&ImageMetrics) -> Option<f64>| {
        let values: Vec<f64> = metrics.iter().filter_map(|m| f(m)).collect();
        (!values.is_empty()).then(|| values.iter().sum::<f64>() / values.len() as f64)
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
    /// Why the pixel metrics alone are undefined (no anomalous or no normal pixel): the
    /// image metrics are reported and averaged, the pixel ones left out of their means.
    #[serde(skip_serializing_if = "Option::is_none")]
    pixel_undefined: Option<String>,
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
    /// With maps and masks: how many categories the pixel metrics of `mean` average (fewer
    /// than `mean_of` where some have `pixel_undefined`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pixel_mean_of: Option<usize>,
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
            pixel_undefined: None,
        };
        for row in self.categories.iter().chain([&mean]) {
            write!(s, "{:<14} {:>7}", row.category, row.images).unwrap();
            // Each column's value by name: a row may lack some (its pixel metrics undefined).
            let values = match &row.metrics {
                Some(m) => named(m, row.frames.as_ref()),
                None => Vec::new(),
            };
            for ((name, _), w) in names.iter().zip(&widths) {
                match values.iter().find(|(n, _)| n == name).and_then(|(_, v)| *v) {
                    Some(v) => write!(s, " {v:>w$.4}").unwrap(),
                    None => write!(s, " {:>w$}", "-").unwrap(),
                }
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
        let pixel_undefined: Vec<String> = (self.categories.iter())
            .filter_map(|r| Some(format!("{} ({})", r.category, r.pixel_undefined.as_ref()?)))
            .collect();
        if !pixel_undefined.is_empty() {
            let rest = match self.mean.pixel_auroc.is_some() {
                true => "; their means average the other categories",
                false => "",
            };
            writeln!(
                s,
                "pixel metrics undefined in {}{rest}",
                pixel_undefined.join(", ")
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

/// Evaluates every category. With categories, one whose image metrics are undefined (no
/// anomalous or no normal image) becomes a row saying why and is left out of the mean; an
/// error if that leaves none. Undefined pixel metrics leave the row's image metrics.
fn evaluate(inputs: &Inputs, fpr_limit: f64) -> Result<Report> {
    let mut categories = Vec::new();
    for group in groups(inputs.categories.as_deref(), inputs.labels.len()) {
        let (metrics, undefined, pixel_undefined) = match evaluate_group(inputs, &group, fpr_limit)
        {
            Ok((m, pixel_undefined)) => (Some(m), None, pixel_undefined),
            Err(e) if inputs.categories.is_some() && missing_class(&e) => {
                (None, Some(e.to_string()), None)
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
            pixel_undefined,
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
    let pixel_mean_of = (inputs.pixels.as_ref())
        .map(|_| defined.iter().filter(|m| m.pixel_auroc.is_some()).count());
    Ok(Report {
        mean: mean_metrics(&defined),
        mean_frames,
        mean_of: defined.len(),
        pixel_mean_of,
        categories,
    })
}

/// The frame AUROCs of `group`: its frames split by video (videos in order of first
/// appearance, frames in file order), scored in the file's precision.
fn frame_metrics(inputs: &Inputs, videos: &[Category], group: &Group) -> Result<FrameMetrics> {
    let of_group: Vec<&Category> = group.images.iter().map(|&i| &videos[i]).collect();
    let rows = crate::evaluate::rows_by_video(&of_group);
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
    if norm == VideoNormalization::MinMaxPerVideo {
        let constant: Vec<String> = (rows.iter().zip(&per_video))
            .filter(|(_, (scores, _))| scores.iter().all(|&s| s == scores[0]))
            .map(|(r, _)| of_group[r[0]].to_string())
            .collect();
        if !constant.is_empty() {
            let shown = constant
                .iter()
                .take(5)
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let more = if constant.len() > 5 { ", ..." } else { "" };
            eprintln!(
                "note: {}{} video(s) with constant scores ({shown}{more}): min_max makes each \
                 all 0, the most normal score, which moves frame_auroc_micro",
                match inputs.categories {
                    Some(_) => format!("category {}: ", group.name),
                    None => String::new(),
                },
                constant.len()
            );
        }
    }
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

/// One category's image metrics and, with maps and masks, its pixel metrics, or why the
/// pixel metrics are undefined (no anomalous or no normal pixel: the image metrics stand).
/// Invalid input (a non-finite score or map value) is an error at either level, also where
/// the other level is undefined.
fn evaluate_group(
    inputs: &Inputs,
    group: &Group,
    fpr_limit: f64,
) -> std::result::Result<(ImageMetrics, Option<String>), MetricError> {
    let labels = select(&inputs.labels, &group.images, 1);
    let image = match &inputs.scores {
        Values::F32(s) => evaluate_images(&select(s, &group.images, 1), &labels, None),
        Values::F64(s) => evaluate_images(&select(s, &group.images, 1), &labels, None),
    };
    let image = match image {
        Err(e) if !missing_class(&e) => return Err(e),
        image => image,
    };
    let pixel = inputs.pixels.as_ref().map(|p| {
        let hw = p.h * p.w;
        let masks = select(&p.masks, &group.images, hw);
        let dims = (group.images.len(), p.h, p.w);
        match &p.maps {
            Values::F32(m) => pixel_metrics(&select(m, &group.images, hw), &masks, dims, fpr_limit),
            Values::F64(m) => pixel_metrics(&select(m, &group.images, hw), &masks, dims, fpr_limit),
        }
    });
    let pixel = match pixel {
        Some(Err(e)) if !missing_class(&e) => return Err(e),
        pixel => pixel,
    };
    let mut metrics = image?;
    let undefined = match pixel {
        Some(Ok([auroc, ap, f1_max, aupro])) => {
            metrics.pixel_auroc = Some(auroc);
            metrics.pixel_ap = Some(ap);
            metrics.pixel_f1_max = Some(f1_max);
            metrics.aupro = Some(aupro);
            None
        }
        Some(Err(e)) => Some(e.to_string()),
        None => None,
    };
    Ok((metrics, undefined))
}

/// Pixel AUROC, AP, F1-max and AUPRO of `n` maps of `h x w` (`dims`): the ranking and
/// AUPRO one after the other, not together as [`evaluate_images`] does, so the peak memory
/// is the larger of their working sets, not the sum.
fn pixel_metrics<S: Score>(
    maps: &[S],
    masks: &[bool],
    (n, h, w): (usize, usize, usize),
    fpr_limit: f64,
) -> std::result::Result<[f64; 4], MetricError> {
    let ranked = RankedScores::new(maps, masks).map_err(|e| e.within("pixel level"))?;
    let (auroc, ap, f1_max) = (
        ranked.auroc(),
        ranked.average_precision(),
        ranked.f1_max().f1,
    );
    drop(ranked);
    let pro = aupro(maps, masks, n, h, w, fpr_limit).map_err(|e| e.within("pixel level"))?;
    Ok([auroc, ap, f1_max, pro])
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::npz::test_files::{f32_npy, le_bytes, npy, write, zip};
    use memad_metrics::PixelInputs;

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
    fn misspelt_array_names_are_refused_with_a_suggestion() {
        let dir = tempfile::tempdir().unwrap();
        let Data {
            scores,
            labels,
            maps,
            masks,
            ..
        } = dataset();
        let (pred, gt) = write_dataset(dir.path(), &maps, &scores);
        let msg = |p: &Path, g: &Path| format!("{:#}", Inputs::load(p, g).err().unwrap());
        let typo_pred = zip(
            &[
                ("image_scores.npy", f32_npy("(6,)", &scores)),
                ("anomaly_map.npy", f32_npy("(6, 4, 5)", &maps)),
            ],
            false,
        );
        let typo_pred = write(dir.path(), "typo_pred.npz", &typo_pred);
        assert_eq!(
            msg(&typo_pred, &gt),
            format!(
                "{}: unknown array(s) `anomaly_map` (did you mean `anomaly_maps`?); expected \
                 `image_scores` and optionally `anomaly_maps`",
                typo_pred.display()
            )
        );
        let typo_gt = zip(
            &[
                ("image_labels.npy", npy("|b1", "(6,)", &labels.map_u8())),
                ("mask.npy", npy("|u1", "(6, 4, 5)", &masks.map_u8())),
                ("category.npy", npy("|S1", "(6,)", b"ababab")),
                ("foo.npy", f32_npy("(1,)", &[0.0])),
            ],
            false,
        );
        let typo_gt = write(dir.path(), "typo_gt.npz", &typo_gt);
        // `category` is 3 edits from `categories`, too far for a suggestion; the list names it.
        assert_eq!(
            msg(&pred, &typo_gt),
            format!(
                "{}: unknown array(s) `mask` (did you mean `masks`?), `category`, `foo`; expected \
                 `image_labels` and optionally `masks`, `categories`, `videos`",
                typo_gt.display()
            )
        );
        // One file holding both, given as --pred and --gt.
        let both = zip(
            &[
                ("image_scores.npy", f32_npy("(6,)", &scores)),
                ("anomaly_maps.npy", f32_npy("(6, 4, 5)", &maps)),
                ("image_labels.npy", npy("|b1", "(6,)", &labels.map_u8())),
                ("masks.npy", npy("|u1", "(6, 4, 5)", &masks.map_u8())),
            ],
            false,
        );
        let both = write(dir.path(), "both.npz", &both);
        Inputs::load(&both, &both).unwrap();
        // A missing required array is named as such, with the nearest name present.
        let no_scores = zip(&[("image_score.npy", f32_npy("(6,)", &scores))], false);
        let no_scores = write(dir.path(), "no_scores.npz", &no_scores);
        let e = msg(&no_scores, &gt);
        assert!(
            e.ends_with(
                "no_scores.npz: no array `image_scores` (did you mean `image_score`?); it \
                 holds: image_score"
            ),
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
    fn a_category_without_masked_pixels_keeps_its_image_metrics() {
        // Category b's anomalous images have empty masks: its pixel metrics are undefined,
        // its image metrics stand and count in the image means.
        let dir = tempfile::tempdir().unwrap();
        let Data {
            scores,
            maps,
            masks,
            ..
        } = dataset();
        let (pred, gt) = write_dataset(dir.path(), &maps, &scores);
        let full = evaluate(&Inputs::load(&pred, &gt).unwrap(), 0.3).unwrap();
        let mut inputs = Inputs::load(&pred, &gt).unwrap();
        let pixels = inputs.pixels.as_mut().unwrap();
        for b in [0, 2, 4] {
            pixels.masks[b * 20..(b + 1) * 20].fill(false);
        }
        let report = evaluate(&inputs, 0.3).unwrap();
        let (a, b) = (&report.categories[0], &report.categories[1]);
        assert_eq!(a, &full.categories[0]);
        let b_metrics = b.metrics.unwrap();
        assert_eq!(
            b_metrics.image_auroc,
            full.categories[1].metrics.unwrap().image_auroc
        );
        assert_eq!((b_metrics.pixel_auroc, b_metrics.aupro), (None, None));
        assert_eq!(
            b.pixel_undefined.as_deref(),
            Some("pixel level: no positive (anomalous) samples: the metric is undefined")
        );
        assert_eq!((report.mean_of, report.pixel_mean_of), (2, Some(1)));
        assert_eq!(report.mean.image_auroc, full.mean.image_auroc);
        assert_eq!(report.mean.pixel_auroc, a.metrics.unwrap().pixel_auroc);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(
            (json["mean_of"].as_u64(), json["pixel_mean_of"].as_u64()),
            (Some(2), Some(1))
        );
        let b_json = &json["categories"][1];
        assert!(b_json["image_auroc"].is_number() && b_json.get("pixel_auroc").is_none());
        assert!(b_json["pixel_undefined"].is_string());
        let table = report.table();
        let b_line = table.lines().find(|l| l.starts_with("b ")).unwrap();
        let cells: Vec<&str> = b_line.split_whitespace().collect();
        assert_eq!(cells[2..5], ["1.0000"; 3], "{table}");
        assert_eq!(cells[5..], ["-"; 4], "{table}");
        assert!(
            table.contains(
                "pixel metrics undefined in b (pixel level: no positive (anomalous) samples: \
                 the metric is undefined); their means average the other categories"
            ),
            "{table}"
        );
        // Without categories: the image metrics, the pixel columns left out, and why.
        inputs.categories = None;
        inputs.pixels.as_mut().unwrap().masks.fill(false);
        let report = evaluate(&inputs, 0.3).unwrap();
        assert_eq!(report.mean.pixel_auroc, None);
        assert!(report.mean.image_auroc > 0.0);
        assert!(
            report.table().contains("pixel metrics undefined in all"),
            "{}",
            report.table()
        );
        // A non-finite map value is an error even where a level is undefined.
        let mut maps = maps;
        maps[2 * 20 + 3] = f32::NAN;
        let (pred, gt) = write_dataset(dir.path(), &maps, &scores);
        let mut inputs = Inputs::load(&pred, &gt).unwrap();
        inputs.pixels.as_mut().unwrap().masks = masks.iter().map(|_| false).collect();
        let e = evaluate(&inputs, 0.3).unwrap_err().to_string();
        assert!(e.contains("anomaly_maps[2, 0, 3] = NaN"), "{e}");
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
