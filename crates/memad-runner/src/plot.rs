//! `memad plot RUN_FOLDER`: PNG and SVG figures of a run, with `plotters`.
//!
//! - `losses.{png,svg}`: each loss term per epoch (`losses.csv`), one panel per category;
//! - `roc.{png,svg}`: the ROC curve of each category (`scores/<category>.csv`), its AUROC in
//!   the legend;
//! - `pr.{png,svg}`: the precision-recall curve of each category as steps (their area is the
//!   legend's AP, `memad_metrics::average_precision`), its positive rate (a random scorer's
//!   precision) dashed in the same colour;
//! - `frames_<category>.{png,svg}` for video runs (a non-empty `video` column): each test
//!   video's frame score over time, anomalous frames shaded (12 videos a page; more pages are
//!   `frames_<category>_<page>.*`);
//! - `memory_<category>.{png,svg}` for methods with a memory (`memory/<category>.csv`): a heat
//!   map per memory, rows normal / anomalous test images, a column per item, colour = the
//!   item's share of the addressing weight (colour bar in percent, the uniform share marked);
//!   `memory_all.{png,svg}` in a multi-class run: a row per category.
//!
//! `memad plot ablation --runs R --param KEY --metric M [--group G[,G2]]` ([`ablation`]):
//! `ablation_<KEY>_<M>.{png,svg}`, the metric against a dotted key of the runs' `config.toml`,
//! one line per group (the values of one or more columns or config keys). Each run
//! contributes the mean of `M` over its categories (rows read by `table::read_metrics`; the
//! latest re-run of an experiment and seed counts); a point is the mean over seeds with ±1
//! sample std as error bars. Numeric values sit at their value (log scale when positive and
//! spanning 20x or more), text values at their rank; ticks are the values themselves.
//! Anomaly-map grids are `overlay.rs`.
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`dejavu`, rendered by `ab_glyph`),
//! so figures look the same on every machine, with or without system fonts. Every file is
//! rendered in memory and written atomically.
use crate::output::write_atomic;
use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::path::{Path, PathBuf};

/// Qualitative colours (matplotlib's `tab10`).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// Videos per page of a frame-score figure.
const VIDEOS_PER_PAGE: usize = 12;

fn color(i: usize) -> RGBColor {
    COLORS[i % COLORS.len()]
}

/// Registers the embedded DejaVu Sans as plotters' `sans-serif` (once).
pub(crate) fn register_fonts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Both fonts are valid TrueType files shipped by `dejavu`.
        let _ = plotters::style::register_font(
            "sans-serif",
            FontStyle::Normal,
            dejavu::sans::regular(),
        );
        let _ = plotters::style::register_font("sans-serif", FontStyle::Bold, dejavu::sans::bold());
    });
}

fn drawing<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e}")
}

/// The legend of every chart: the series labels in a light box at `position`.
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    CT: plotters::coord::CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .position(position)
        .draw()
        .map_err(drawing)
}

/// Renders a figure twice (bitmap and SVG) with the same drawing code and writes
/// `<stem>.png` and `<stem>.svg` atomically; returns the two paths.
macro_rules! png_and_svg {
    ($stem:expr, $size:expr, $draw:expr) => {{
        let (stem, (w, h)): (&Path, (u32, u32)) = ($stem, $size);
        let mut pixels = vec![255u8; (w * h * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, (w, h)).into_drawing_area();
            $draw(&root)?;
            root.present().map_err(drawing)?;
        }
        let image = image::RgbImage::from_raw(w, h, pixels).context("bitmap size")?;
        let mut png = std::io::Cursor::new(Vec::new());
        image.write_to(&mut png, image::ImageFormat::Png)?;
        let png_path = with_suffix(stem, ".png");
        write_atomic(&png_path, &png.into_inner())?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            $draw(&root)?;
            root.present().map_err(drawing)?;
        }
        let svg_path = with_suffix(stem, ".svg");
        write_atomic(&svg_path, svg.as_bytes())?;
        anyhow::Ok(vec![png_path, svg_path])
    }};
}

/// `stem` + `suffix` (`with_extension` would cut a stem holding a dot, e.g. a dotted key).
fn with_suffix(stem: &Path, suffix: &str) -> PathBuf {
    let mut s = stem.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// One row of `losses.csv`.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct LossRow {
    pub category: String,
    pub epoch: usize,
    pub term: String,
    pub value: f64,
}

/// One category's test scores from `scores/<category>.csv`, in file order.
#[derive(Debug, Clone)]
pub struct Scores {
    pub category: String,
    pub videos: Vec<String>,
    pub labels: Vec<bool>,
    pub scores: Vec<f32>,
}

/// One category's ROC curve and its AUROC.
struct RocCurve {
    category: String,
    /// `(false-positive rate, true-positive rate)` from `(0, 0)` to `(1, 1)`.
    points: Vec<(f64, f64)>,
    auroc: f64,
}

/// One category's precision-recall curve, its AP and positive rate.
struct PrCurve {
    category: String,
    /// `(recall, precision)` from `(0, 1)`, one point per distinct score.
    points: Vec<(f64, f64)>,
    ap: f64,
    positive_rate: f64,
}

/// `memad plot`: every figure the run folder has data for; returns the files written.
pub fn run(run_dir: &Path, out: Option<&Path>) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts();
    anyhow::ensure!(
        run_dir.is_dir(),
        "{} is not a run folder",
        run_dir.display()
    );
    let out = out.map_or_else(|| run_dir.join("plots"), Path::to_path_buf);
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut written = Vec::new();

    let losses_path = run_dir.join("losses.csv");
    if losses_path.is_file() {
        let rows = read_losses(&losses_path)?;
        if !rows.is_empty() {
            written.extend(plot_losses(&rows, &out.join("losses"))?);
        }
    }
    let scores = read_scores_dir(&run_dir.join("scores"))?;
    let curves: Vec<RocCurve> = scores
        .iter()
        .filter_map(|s| {
            Some(RocCurve {
                auroc: memad_metrics::auroc(&s.scores, &s.labels).ok()?,
                category: s.category.clone(),
                points: roc_curve(&s.scores, &s.labels),
            })
        })
        .collect();
    if !curves.is_empty() {
        written.extend(plot_roc(&curves, &out.join("roc"))?);
    }
    let pr: Vec<PrCurve> = scores
        .iter()
        .filter_map(|s| {
            Some(PrCurve {
                ap: memad_metrics::average_precision(&s.scores, &s.labels).ok()?,
                category: s.category.clone(),
                points: pr_curve(&s.scores, &s.labels),
                positive_rate: s.labels.iter().filter(|&&l| l).count() as f64
                    / s.labels.len() as f64,
            })
        })
        .collect();
    if !pr.is_empty() {
        written.extend(plot_pr(&pr, &out.join("pr"))?);
    }
    for s in scores
        .iter()
        .filter(|s| s.videos.iter().any(|v| !v.is_empty()))
    {
        written.extend(plot_frames(s, &out)?);
    }
    let usage = read_usage_dir(&run_dir.join("memory"))?;
    if !usage.is_empty() {
        written.extend(plot_memory_usage(&usage, is_multi_class(run_dir), &out)?);
    }
    anyhow::ensure!(
        !written.is_empty(),
        "{}: nothing to plot (no losses.csv rows, no scores/*.csv)",
        run_dir.display()
    );
    Ok(written)
}

/// Reads `losses.csv`.
pub fn read_losses(path: &Path) -> anyhow::Result<Vec<LossRow>> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    reader
        .deserialize()
        .map(|r| r.with_context(|| format!("reading {}", path.display())))
        .collect()
}

/// Reads every `scores/<category>.csv` (sorted by category); none when the folder is
/// missing.
pub fn read_scores_dir(dir: &Path) -> anyhow::Result<Vec<Scores>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(Vec::new());
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    files.iter().map(|f| read_scores(f)).collect()
}

/// Reads one `scores/<category>.csv` (`video`, `label`, `score` columns; others ignored).
pub fn read_scores(path: &Path) -> anyhow::Result<Scores> {
    let mut reader =
        csv::Reader::from_path(path).with_context(|| format!("reading {}", path.display()))?;
    let header = reader.headers()?.clone();
    let col = |name: &str| {
        header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("{}: no `{name}` column", path.display()))
    };
    let (video, label, score) = (col("video")?, col("label")?, col("score")?);
    let mut s = Scores {
        category: path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        videos: Vec::new(),
        labels: Vec::new(),
        scores: Vec::new(),
    };
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("reading {}", path.display()))?;
        let bad = |what: &str| anyhow!("{} row {}: bad {what}", path.display(), i + 2);
        s.videos.push(row.get(video).unwrap_or("").to_string());
        s.labels.push(match row.get(label) {
            Some("1") => true,
            Some("0") => false,
            _ => return Err(bad("label")),
        });
        s.scores.push(
            row.get(score)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad("score"))?,
        );
    }
    Ok(s)
}

/// ROC points `(false-positive rate, true-positive rate)` from `(0, 0)` to `(1, 1)`, one per
/// distinct score (ties form one step, as in scikit-learn's `roc_curve`); `labels[i]` marks
/// an anomaly, higher scores are more anomalous. Empty without positives or negatives.
pub fn roc_curve(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        let last_of_tie = order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]);
        if last_of_tie {
            points.push((fp / negatives, tp / positives));
        }
    }
    points
}

/// Precision-recall points `(recall, precision)`, one per distinct score from the highest down
/// (ties form one point), after `(0, 1)`, up to the first that reaches recall 1 (as
/// scikit-learn's `precision_recall_curve`: lower thresholds only add false positives).
/// Empty without positives or negatives.
pub fn pr_curve(scores: &[f32], labels: &[bool]) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    if positives == 0.0 || positives == labels.len() as f64 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut points = vec![(0.0, 1.0)];
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]) {
            points.push((tp / positives, tp / (tp + fp)));
            if tp == positives {
                break;
            }
        }
    }
    points
}

/// The step polyline of a PR curve: between recalls `R_{k-1}` and `R_k` the precision is
/// `P_k`, so its area is the step-wise average precision (`sum (R_k - R_{k-1}) P_k`).
fn pr_steps(points: &[(f64, f64)]) -> Vec<(f64, f64)> {
    let mut steps = points.first().into_iter().copied().collect::<Vec<_>>();
    for w in points.windows(2) {
        steps.push((w[0].0, w[1].1));
        steps.push(w[1]);
    }
    steps
}

/// Training curves: one panel per category, one line per loss term.
fn plot_losses(rows: &[LossRow], stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut categories: Vec<&str> = Vec::new();
    for r in rows {
        if !categories.contains(&r.category.as_str()) {
            categories.push(&r.category);
        }
    }
    let cols = categories.len().min(3);
    let grid_rows = categories.len().div_ceil(cols);
    let size = (480 * cols as u32, 340 * grid_rows as u32);
    png_and_svg!(stem, size, |root| draw_losses(
        root,
        rows,
        &categories,
        (grid_rows, cols)
    ))
}

fn draw_losses<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    rows: &[LossRow],
    categories: &[&str],
    grid: (usize, usize),
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let panels = root.split_evenly(grid);
    for (panel, category) in panels.iter().zip(categories) {
        let mine: Vec<&LossRow> = rows.iter().filter(|r| &r.category == category).collect();
        let mut terms: Vec<&str> = Vec::new();
        for r in &mine {
            if !terms.contains(&r.term.as_str()) {
                terms.push(&r.term);
            }
        }
        let last = mine.iter().map(|r| r.epoch).max().unwrap_or(1);
        let (lo, hi) = padded_range(mine.iter().map(|r| r.value));
        let mut chart = ChartBuilder::on(panel)
            .caption(format!("{category}: training loss"), ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.5f64..last as f64 + 0.5, lo..hi)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc("mean over the epoch")
            .x_labels(last.min(10) + 1)
            .x_label_formatter(&|x| {
                if x.fract() == 0.0 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(drawing)?;
        for (i, term) in terms.iter().enumerate() {
            let points: Vec<(f64, f64)> = mine
                .iter()
                .filter(|r| r.term == *term)
                .map(|r| (r.epoch as f64, r.value))
                .collect();
            let c = color(i);
            chart
                .draw_series(LineSeries::new(points.clone(), c.stroke_width(2)))
                .map_err(drawing)?
                .label(*term)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(2))
                });
            chart
                .draw_series(points.iter().map(|&p| Circle::new(p, 3, c.filled())))
                .map_err(drawing)?;
        }
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    }
    Ok(())
}

/// ROC curves of every category on one chart.
fn plot_roc(curves: &[RocCurve], stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    png_and_svg!(stem, (640, 600), |root| draw_roc(root, curves))
}

fn draw_roc<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[RocCurve],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let mut chart = ChartBuilder::on(root)
        .caption("ROC per category", ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(55)
        // A little room beyond [0, 1] so wide lines on the edges are not clipped.
        .build_cartesian_2d(-0.01f64..1.01f64, -0.01f64..1.02f64)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("false-positive rate")
        .y_desc("true-positive rate")
        .label_style(("sans-serif", 14))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(drawing)?;
    chart
        .draw_series(DashedLineSeries::new(
            vec![(0.0, 0.0), (1.0, 1.0)],
            6,
            6,
            BLACK.mix(0.35).stroke_width(1),
        ))
        .map_err(drawing)?;
    for (i, curve) in curves.iter().enumerate() {
        let c = color(i);
        // Earlier curves are wider, so curves that coincide (two perfect categories)
        // stay visible under later ones.
        let width = 2 + (curves.len() - 1 - i).min(3) as u32;
        chart
            .draw_series(LineSeries::new(curve.points.clone(), c.stroke_width(width)))
            .map_err(drawing)?
            .label(format!("{} (AUROC {:.3})", curve.category, curve.auroc))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

/// PR curves of every category on one chart, each with its positive rate dashed.
fn plot_pr(curves: &[PrCurve], stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    png_and_svg!(stem, (640, 600), |root| draw_pr(root, curves))
}

fn draw_pr<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    curves: &[PrCurve],
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    // The y axis starts at the tenth below the lowest precision or positive rate, so curves
    // that all stay high (a one-class protocol with 90% positives) are not squeezed.
    let lowest = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1).chain([c.positive_rate]))
        .fold(1.0f64, f64::min);
    let y_lo = ((lowest * 10.0).floor() / 10.0 - 0.1).max(0.0) - 0.01;
    let mut chart = ChartBuilder::on(root)
        .caption(
            "Precision-recall per category (dashed: positive rate)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(45)
        .y_label_area_size(55)
        .build_cartesian_2d(-0.01f64..1.01f64, y_lo..1.02f64)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_desc("recall")
        .y_desc("precision")
        .label_style(("sans-serif", 14))
        .light_line_style(BLACK.mix(0.05))
        .draw()
        .map_err(drawing)?;
    for (i, curve) in curves.iter().enumerate() {
        let c = color(i);
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, curve.positive_rate), (1.0, curve.positive_rate)],
                6,
                6,
                c.mix(0.7).stroke_width(1),
            ))
            .map_err(drawing)?;
    }
    for (i, curve) in curves.iter().enumerate() {
        let c = color(i);
        // As in `draw_roc`: earlier curves wider, so coinciding curves stay visible.
        let width = 2 + (curves.len() - 1 - i).min(3) as u32;
        chart
            .draw_series(LineSeries::new(
                pr_steps(&curve.points),
                c.stroke_width(width),
            ))
            .map_err(drawing)?
            .label(format!(
                "{} (AP {:.3}, positives {:.0}%)",
                curve.category,
                curve.ap,
                100.0 * curve.positive_rate
            ))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerLeft)?;
    Ok(())
}

/// Frame scores over time per test video, anomalous frames shaded; one figure per page of
/// [`VIDEOS_PER_PAGE`] videos.
fn plot_frames(s: &Scores, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut videos: Vec<&str> = Vec::new();
    for v in &s.videos {
        if !videos.contains(&v.as_str()) {
            videos.push(v);
        }
    }
    let pages: Vec<&[&str]> = videos.chunks(VIDEOS_PER_PAGE).collect();
    let mut written = Vec::new();
    for (p, page) in pages.iter().enumerate() {
        let stem = if pages.len() == 1 {
            out.join(format!("frames_{}", s.category))
        } else {
            out.join(format!("frames_{}_{}", s.category, p + 1))
        };
        let cols = page.len().min(2);
        let grid_rows = page.len().div_ceil(cols);
        let size = (560 * cols as u32, 40 + 230 * grid_rows as u32);
        written.extend(png_and_svg!(&stem, size, |root| draw_frames(
            root,
            s,
            page,
            (grid_rows, cols)
        ))?);
    }
    Ok(written)
}

fn draw_frames<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    s: &Scores,
    page: &[&str],
    grid: (usize, usize),
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let title = format!(
        "{}: frame score per test video (red: anomalous frames)",
        s.category
    );
    let root = root.titled(&title, ("sans-serif", 20)).map_err(drawing)?;
    let panels = root.split_evenly(grid);
    for (panel, video) in panels.iter().zip(page.iter()) {
        let idx: Vec<usize> = (0..s.videos.len())
            .filter(|&i| s.videos[i] == *video)
            .collect();
        let (lo, hi) = padded_range(idx.iter().map(|&i| s.scores[i] as f64));
        let n = idx.len();
        let mut chart = ChartBuilder::on(panel)
            .caption(*video, ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(-0.5f64..n as f64 - 0.5, lo..hi)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("frame")
            .x_label_formatter(&|x| format!("{x:.0}"))
            .label_style(("sans-serif", 12))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(drawing)?;
        let labels: Vec<bool> = idx.iter().map(|&i| s.labels[i]).collect();
        let shade = RGBColor(214, 39, 40).mix(0.18).filled();
        chart
            .draw_series(
                anomalous_spans(&labels).into_iter().map(|(a, b)| {
                    Rectangle::new([(a as f64 - 0.5, lo), (b as f64 + 0.5, hi)], shade)
                }),
            )
            .map_err(drawing)?;
        chart
            .draw_series(LineSeries::new(
                idx.iter()
                    .enumerate()
                    .map(|(k, &i)| (k as f64, s.scores[i] as f64)),
                color(0).stroke_width(2),
            ))
            .map_err(drawing)?;
    }
    Ok(())
}

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
    /// the values of those the run has (`method,method.memory.init`: `rd4ad`, `mddnet,
    /// features`), at least one.
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
    pub seeds: usize,
}

/// The lines of an ablation figure, ready to draw.
#[derive(Debug, Clone)]
pub struct Ablation {
    pub spec: AblationSpec,
    /// `(group, points in x order)`, groups sorted.
    pub lines: Vec<(String, Vec<AblationPoint>)>,
    /// Every parameter value is a number (else the axis is categorical, values in name order).
    pub numeric: bool,
}

/// `memad plot ablation`: reads the runs, writes `ablation_<param>_<metric>.{png,svg}` into
/// `out`; returns the files written.
pub fn ablation(spec: &AblationSpec, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts();
    let data = read_ablation(spec)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stem = out.join(format!("ablation_{}_{}", spec.param, spec.metric));
    png_and_svg!(&stem, (760, 520), |root| draw_ablation(root, &data))
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

/// A dotted key's value in a TOML document.
fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted.split('.').try_fold(value, |v, part| v.get(part))
}

/// A scalar as text (strings unquoted); `None` for tables and arrays.
fn scalar(value: &toml::Value) -> Option<String> {
    match value {
        toml::Value::String(s) => Some(s.clone()),
        toml::Value::Integer(_)
        | toml::Value::Float(_)
        | toml::Value::Boolean(_)
        | toml::Value::Datetime(_) => Some(value.to_string()),
        toml::Value::Array(_) | toml::Value::Table(_) => None,
    }
}

/// Reads the runs into lines: per run the metric's mean over categories; among re-runs of one
/// experiment and seed the latest counts (as in `memad table`); then mean and sample std over
/// seeds per (group, value). Runs without the key or the metric are left out with a note.
///
/// # Errors
/// No complete run; the key holding a table or array; no run with both key and metric.
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
    // (group, value, experiment, seed) -> (stamp, per-run value, name)
    type Key = (String, String, String, String);
    let mut per_run: std::collections::BTreeMap<Key, (String, f64, String)> = Default::default();
    let mut raw_values: Vec<toml::Value> = Vec::new();
    let (mut no_key, mut no_metric) = (Vec::new(), Vec::new());
    let group_keys: Vec<&str> = spec.group.split(',').map(str::trim).collect();
    for folder in &folders {
        let config_path = folder.join("config.toml");
        let text = std::fs::read_to_string(&config_path)
            .with_context(|| format!("reading {}", config_path.display()))?;
        let config: toml::Value =
            toml::from_str(&text).with_context(|| format!("parsing {}", config_path.display()))?;
        let Some(raw) = lookup(&config, &spec.param) else {
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
        let records: Vec<crate::table::Record> =
            crate::table::read_metrics(&folder.join("metrics.csv"))?
                .into_iter()
                .filter(|r| r.fields.get("metric") == Some(&spec.metric))
                .collect();
        let Some(first) = records.first() else {
            no_metric.push(folder.display().to_string());
            continue;
        };
        let field = |c: &str| first.fields.get(c).cloned().unwrap_or_default();
        // Each key of the group: a metrics.csv column, else a config value; a key the run
        // lacks (`method.memory.init` of a run without memory) adds nothing to its label.
        let parts: Vec<String> = (group_keys.iter())
            .filter_map(|&key| {
                (first.fields.get(key).cloned()).or_else(|| lookup(&config, key).and_then(scalar))
            })
            .collect();
        if parts.is_empty() {
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
        let group = parts.join(", ");
        let mean = records.iter().map(|r| r.value).sum::<f64>() / records.len() as f64;
        let key = (group, value, field("_experiment"), field("seed"));
        let stamp = field("_stamp");
        if per_run.get(&key).is_none_or(|old| old.0 < stamp) {
            per_run.insert(key, (stamp, mean, field("name")));
        }
        raw_values.push(raw.clone());
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
    anyhow::ensure!(
        !per_run.is_empty(),
        "{patterns}: no complete run has both `{}` in config.toml and `{}` in metrics.csv",
        spec.param,
        spec.metric
    );
    let numeric = raw_values
        .iter()
        .all(|v| matches!(v, toml::Value::Integer(_) | toml::Value::Float(_)));
    // (group, value) -> (per-seed values, experiment names)
    let mut cells: std::collections::BTreeMap<(String, String), (Vec<f64>, Vec<String>)> =
        Default::default();
    for ((group, value, _, _), (_, v, name)) in per_run {
        let cell = cells.entry((group, value)).or_default();
        cell.0.push(v);
        if !cell.1.contains(&name) {
            cell.1.push(name);
        }
    }
    let mut lines: Vec<(String, Vec<AblationPoint>)> = Vec::new();
    for ((group, value), (v, names)) in cells {
        if names.len() > 1 {
            eprintln!(
                "note: {group} at {} = {value} pools {} experiments ({}); \
                 pass --group name to draw them apart",
                spec.param,
                names.len(),
                names.join(", ")
            );
        }
        let n = v.len() as f64;
        let mean = v.iter().sum::<f64>() / n;
        let std = (v.len() > 1)
            .then(|| (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt());
        let point = AblationPoint {
            value,
            mean,
            std,
            seeds: v.len(),
        };
        match lines.last_mut() {
            Some((g, points)) if *g == group => points.push(point),
            _ => lines.push((group, vec![point])),
        }
    }
    if numeric {
        for (_, points) in &mut lines {
            points.sort_by(|a, b| number(&a.value).total_cmp(&number(&b.value)));
        }
    }
    Ok(Ablation {
        spec: spec.clone(),
        lines,
        numeric,
    })
}

/// A linear f64 axis with ticks only at `keys`, labelled `labels` (the parameter values as
/// written, wherever the axis puts them: linear, log10 or rank).
struct KeyAxis {
    range: std::ops::Range<f64>,
    keys: Vec<f64>,
    labels: Vec<String>,
}

impl Ranged for KeyAxis {
    type ValueType = f64;
    type FormatOption = plotters::coord::ranged1d::NoDefaultFormatting;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        let f = (value - self.range.start) / (self.range.end - self.range.start);
        limit.0 + (f * f64::from(limit.1 - limit.0)).round() as i32
    }

    fn key_points<H: plotters::coord::ranged1d::KeyPointHint>(&self, hint: H) -> Vec<f64> {
        if hint.weight().allow_light_points() {
            Vec::new()
        } else {
            self.keys.clone()
        }
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.range.clone()
    }
}

impl plotters::coord::ranged1d::ValueFormatter<f64> for KeyAxis {
    fn format_ext(&self, value: &f64) -> String {
        self.keys
            .iter()
            .position(|k| (k - value).abs() <= 1e-9 * (1.0 + k.abs()))
            .map(|i| self.labels[i].clone())
            .unwrap_or_default()
    }
}

fn number(text: &str) -> f64 {
    text.parse().unwrap_or(f64::NAN)
}

fn draw_ablation<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    data: &Ablation,
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
    let (first, last) = (xs[0], xs[xs.len() - 1]);
    let pad = if last > first {
        0.06 * (last - first)
    } else {
        0.5
    };
    let (x_lo, x_hi) = (first - pad, last + pad);
    let (y_lo, y_hi) = padded_range(data.lines.iter().flat_map(|(_, points)| {
        points.iter().flat_map(|p| {
            let s = p.std.unwrap_or(0.0);
            [p.mean - s, p.mean + s]
        })
    }));
    let spec = &data.spec;
    let mut chart = ChartBuilder::on(root)
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
            "{} (mean over categories; bars: ±1 std over seeds)",
            spec.metric
        ))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(drawing)?;
    let groups = data.lines.len();
    for (i, (group, points)) in data.lines.iter().enumerate() {
        let c = color(i);
        // Groups sharing a value are nudged apart so their bars do not hide each other.
        let dodge = (i as f64 - (groups as f64 - 1.0) / 2.0) * 0.012 * (x_hi - x_lo);
        let at = |p: &AblationPoint| x_of(&p.value) + dodge;
        let (lo_seeds, hi_seeds) = points.iter().fold((usize::MAX, 0), |(a, b), p| {
            (a.min(p.seeds), b.max(p.seeds))
        });
        let seeds = if lo_seeds == hi_seeds {
            format!("{lo_seeds} seed{}", if lo_seeds == 1 { "" } else { "s" })
        } else {
            format!("{lo_seeds}-{hi_seeds} seeds")
        };
        chart
            .draw_series(LineSeries::new(
                points.iter().map(|p| (at(p), p.mean)),
                c.stroke_width(2),
            ))
            .map_err(drawing)?
            .label(format!("{group} ({seeds})"))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], c.stroke_width(3)));
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((at(p), p.mean), 4, c.filled())),
            )
            .map_err(drawing)?;
        for p in points {
            let Some(s) = p.std else { continue };
            let x = at(p);
            let (a, b) = (p.mean - s, p.mean + s);
            chart
                .draw_series([PathElement::new(vec![(x, a), (x, b)], c.stroke_width(2))])
                .map_err(drawing)?;
            chart
                .draw_series([a, b].map(|y| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(-6, 0), (6, 0)], c.stroke_width(2))
                }))
                .map_err(drawing)?;
        }
    }
    draw_legend(&mut chart, SeriesLabelPosition::LowerRight)?;
    Ok(())
}

// ------------------------------------------------------------------ memory usage heat maps

/// One row of `memory/<category>.csv`: the share of one memory item (`None`: the test set
/// has no sample of that label).
#[derive(Debug, Clone, serde::Deserialize)]
pub struct UsageRow {
    pub memory: String,
    pub item: usize,
    pub normal: Option<f64>,
    pub anomalous: Option<f64>,
}

/// One category's memory usage, rows in file order.
#[derive(Debug, Clone)]
pub struct CategoryUsage {
    pub category: String,
    pub rows: Vec<UsageRow>,
}

/// One heat map: a row of shares per label (`None`: no sample), a column per item.
#[derive(Debug, Clone, PartialEq)]
struct HeatPanel {
    memory: String,
    rows: Vec<(String, Option<Vec<f64>>)>,
}

/// `memory/*.csv` of a run, sorted by category (empty without the folder).
pub fn read_usage_dir(dir: &Path) -> anyhow::Result<Vec<CategoryUsage>> {
    let mut found = Vec::new();
    if !dir.is_dir() {
        return Ok(found);
    }
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "csv") {
            let category = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            let rows = csv::Reader::from_path(&path)
                .and_then(|mut r| r.deserialize().collect::<Result<Vec<UsageRow>, _>>())
                .with_context(|| format!("reading {}", path.display()))?;
            found.push(CategoryUsage { category, rows });
        }
    }
    found.sort_by(|a, b| a.category.cmp(&b.category));
    Ok(found)
}

/// The memories of `rows` in file order, each with its rows in item order.
fn memories(rows: &[UsageRow]) -> Vec<(String, Vec<&UsageRow>)> {
    let mut out: Vec<(String, Vec<&UsageRow>)> = Vec::new();
    for r in rows {
        match out.iter_mut().find(|(m, _)| *m == r.memory) {
            Some((_, items)) => items.push(r),
            None => out.push((r.memory.clone(), vec![r])),
        }
    }
    for (_, items) in &mut out {
        items.sort_by_key(|r| r.item);
    }
    out
}

/// Shares of one column, `None` when any item has none (no sample of that label).
fn column(items: &[&UsageRow], get: impl Fn(&UsageRow) -> Option<f64>) -> Option<Vec<f64>> {
    items.iter().map(|r| get(r)).collect()
}

/// One category's panels: a panel per memory, rows normal / anomalous.
fn category_panels(usage: &CategoryUsage) -> Vec<HeatPanel> {
    memories(&usage.rows)
        .into_iter()
        .map(|(memory, items)| HeatPanel {
            memory,
            rows: vec![
                ("normal".into(), column(&items, |r| r.normal)),
                ("anomalous".into(), column(&items, |r| r.anomalous)),
            ],
        })
        .collect()
}

/// A multi-class run's panels: a panel per memory, a row per category (normal test images).
fn class_panels(all: &[CategoryUsage]) -> Vec<HeatPanel> {
    let Some(first) = all.first() else {
        return Vec::new();
    };
    memories(&first.rows)
        .into_iter()
        .map(|(memory, _)| HeatPanel {
            rows: all
                .iter()
                .map(|u| {
                    let items = memories(&u.rows)
                        .into_iter()
                        .find(|(m, _)| *m == memory)
                        .map(|(_, items)| column(&items, |r| r.normal))
                        .unwrap_or_default();
                    (u.category.clone(), items)
                })
                .collect(),
            memory,
        })
        .collect()
}

/// Whether the run's `config.toml` says `data.setting = "multi_class"` (one model for all
/// categories).
fn is_multi_class(run_dir: &Path) -> bool {
    std::fs::read_to_string(run_dir.join("config.toml"))
        .ok()
        .and_then(|text| toml::from_str::<toml::Value>(&text).ok())
        .is_some_and(|config| {
            lookup(&config, "data.setting").and_then(toml::Value::as_str) == Some("multi_class")
        })
}

/// `memory_<category>.{png,svg}` per category and, for a multi-class run,
/// `memory_all.{png,svg}` (a row per category).
fn plot_memory_usage(
    all: &[CategoryUsage],
    multi_class: bool,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for usage in all {
        let title = format!(
            "{}: memory usage (share of the addressing weight per item, test images)",
            usage.category
        );
        let panels = category_panels(usage);
        written.extend(plot_heat_panels(
            &panels,
            &title,
            &out.join(format!("memory_{}", usage.category)),
        )?);
    }
    if multi_class && all.len() > 1 {
        let title = "memory usage per category (one model; normal test images)";
        written.extend(plot_heat_panels(
            &class_panels(all),
            title,
            &out.join("memory_all"),
        )?);
    }
    Ok(written)
}

fn plot_heat_panels(
    panels: &[HeatPanel],
    title: &str,
    stem: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let heights: Vec<u32> = panels.iter().map(|p| heat_height(p.rows.len())).collect();
    let size = (1100, 40 + heights.iter().sum::<u32>());
    png_and_svg!(stem, size, |root| draw_heat_panels(
        root, panels, &heights, title
    ))
}

/// Pixels of a panel with `rows` rows.
fn heat_height(rows: usize) -> u32 {
    110 + 34 * rows.max(2) as u32
}

/// matplotlib's viridis at `t` in `[0, 1]` (linear between 9 of its stops).
fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f64;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + (b as f64 - a as f64) * f).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// About `target` ticks on `[0, hi]` at 1, 2 or 5 times a power of ten.
fn nice_ticks(hi: f64, target: usize) -> Vec<f64> {
    if hi <= 0.0 {
        return vec![0.0];
    }
    let raw = hi / target.max(1) as f64;
    let power = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| m * power)
        .find(|&s| s >= raw)
        .unwrap_or(10.0 * power);
    (0..)
        .map(|k| k as f64 * step)
        .take_while(|&v| v <= hi * (1.0 + 1e-9))
        .collect()
}

/// Item ticks: every item up to 25, else every 1/2/5 x 10^k-th.
fn item_ticks(slots: usize) -> Vec<usize> {
    let step = if slots <= 25 {
        1
    } else {
        nice_ticks(slots as f64, 20)
            .get(1)
            .map_or(1, |&s| s as usize)
    };
    (0..slots).step_by(step.max(1)).collect()
}

fn percent(share: f64) -> String {
    if share == 0.0 {
        "0%".into()
    } else if share >= 0.1 {
        format!("{:.0}%", share * 100.0)
    } else {
        format!("{:.1}%", share * 100.0)
    }
}

fn draw_heat_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[HeatPanel],
    heights: &[u32],
    title: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(drawing)?;
    let mut area = root;
    for (panel, &h) in panels.iter().zip(heights) {
        let (this, rest) = area.split_vertically(h);
        draw_heat_panel(&this, panel)?;
        area = rest;
    }
    Ok(())
}

/// A heat map (rows x items, colour = share, from 0 to the panel's largest share) and its
/// colour bar, the uniform share `1 / items` marked on the bar.
fn draw_heat_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &HeatPanel,
) -> anyhow::Result<()> {
    let slots = panel
        .rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    let hi = panel
        .rows
        .iter()
        .filter_map(|(_, r)| r.as_ref())
        .flatten()
        .fold(0.0f64, |m, &v| m.max(v));
    let hi = if hi > 0.0 { hi } else { 1.0 };
    let (map_area, bar_area) = area.split_horizontally(area.dim_in_pixel().0 - 130);
    let n = panel.rows.len();
    let label_width = panel.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(4) as u32 * 9 + 16;
    let items = item_ticks(slots);
    let mut chart = ChartBuilder::on(&map_area)
        .caption(
            format!(
                "{} ({slots} items; uniform use = {} each, the white line on the colour bar)",
                panel.memory,
                percent(1.0 / slots.max(1) as f64)
            ),
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(42)
        .y_label_area_size(label_width)
        .build_cartesian_2d(
            KeyAxis {
                range: 0.0..slots.max(1) as f64,
                keys: items.iter().map(|&i| i as f64 + 0.5).collect(),
                labels: items.iter().map(|i| i.to_string()).collect(),
            },
            KeyAxis {
                range: 0.0..n as f64,
                keys: (0..n).map(|r| (n - 1 - r) as f64 + 0.5).collect(),
                labels: panel.rows.iter().map(|(l, _)| l.clone()).collect(),
            },
        )
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("memory item")
        .label_style(("sans-serif", 13))
        .axis_desc_style(("sans-serif", 14))
        .draw()
        .map_err(drawing)?;
    // Cells wide enough for a label get their share printed.
    let cell_px = chart.plotting_area().dim_in_pixel().0 as f64 / slots.max(1) as f64;
    for (r, (_, shares)) in panel.rows.iter().enumerate() {
        let y = (n - 1 - r) as f64;
        match shares {
            Some(shares) => {
                chart
                    .draw_series(shares.iter().enumerate().map(|(i, &s)| {
                        Rectangle::new(
                            [(i as f64, y), (i as f64 + 1.0, y + 1.0)],
                            viridis(s / hi).filled(),
                        )
                    }))
                    .map_err(drawing)?;
                if cell_px >= 44.0 {
                    chart
                        .draw_series(shares.iter().enumerate().map(|(i, &s)| {
                            let ink = if s / hi > 0.6 { BLACK } else { WHITE };
                            Text::new(
                                percent(s),
                                (i as f64 + 0.5, y + 0.5),
                                ("sans-serif", 12)
                                    .into_font()
                                    .color(&ink)
                                    .pos(Pos::new(HPos::Center, VPos::Center)),
                            )
                        }))
                        .map_err(drawing)?;
                }
            }
            None => {
                let grey = RGBColor(225, 225, 225);
                chart
                    .draw_series([Rectangle::new(
                        [(0.0, y), (slots as f64, y + 1.0)],
                        grey.filled(),
                    )])
                    .map_err(drawing)?;
                chart
                    .draw_series([Text::new(
                        "no test image with this label",
                        (slots as f64 / 2.0, y + 0.5),
                        ("sans-serif", 13)
                            .into_font()
                            .color(&BLACK)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    )])
                    .map_err(drawing)?;
            }
        }
    }
    // Colour bar: 0 .. the largest share, ticks in percent, the uniform share as a line.
    let ticks = nice_ticks(hi, 5);
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(36)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(62)
        .build_cartesian_2d(
            0.0..1.0,
            KeyAxis {
                range: 0.0..hi,
                keys: ticks.clone(),
                labels: ticks.iter().map(|&t| percent(t)).collect(),
            },
        )
        .map_err(drawing)?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("share")
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(drawing)?;
    let steps = 64;
    bar.draw_series((0..steps).map(|k| {
        let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        Rectangle::new(
            [(0.0, a * hi), (1.0, b * hi)],
            viridis((a + b) / 2.0).filled(),
        )
    }))
    .map_err(drawing)?;
    let uniform = 1.0 / slots.max(1) as f64;
    if uniform <= hi {
        bar.draw_series([PathElement::new(
            vec![(0.0, uniform), (1.0, uniform)],
            WHITE.stroke_width(2),
        )])
        .map_err(drawing)?;
    }
    Ok(())
}

/// `[first, last]` index pairs of the runs of `true`.
fn anomalous_spans(labels: &[bool]) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    let mut start = None;
    for (i, &l) in labels.iter().enumerate() {
        match (l, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                spans.push((s, i - 1));
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        spans.push((s, labels.len() - 1));
    }
    spans
}

/// The range of `values` with 5% padding (a constant gets ±0.5, nothing gets 0..1).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    if hi - lo < 1e-12 {
        return (lo - 0.5, hi + 0.5);
    }
    let pad = 0.05 * (hi - lo);
    (lo - pad, hi + pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_area_equals_the_auroc() {
        let scores = [0.1f32, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9, 0.4];
        let labels = [false, false, true, true, true, false, true, false];
        let points = roc_curve(&scores, &labels);
        assert_eq!(points.first(), Some(&(0.0, 0.0)));
        assert_eq!(points.last(), Some(&(1.0, 1.0)));
        // Three tied scores of 0.4 are one step: 6 distinct scores.
        assert_eq!(points.len(), 1 + 6);
        let area: f64 = points
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        let auroc = memad_metrics::auroc(&scores, &labels).unwrap();
        assert!((area - auroc).abs() < 1e-12, "{area} vs {auroc}");
        assert!(roc_curve(&[1.0, 2.0], &[true, true]).is_empty());
    }

    #[test]
    fn pr_step_area_equals_the_average_precision() {
        let scores = [0.1f32, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9, 0.4, 0.05];
        let labels = [false, false, true, true, true, false, true, false, true];
        let points = pr_curve(&scores, &labels);
        assert_eq!(points.first(), Some(&(0.0, 1.0)));
        // Every sample predicted anomalous: recall 1, precision = the positive rate.
        assert_eq!(points.last(), Some(&(1.0, 5.0 / 9.0)));
        assert_eq!(points.len(), 1 + 7); // 7 distinct scores
        let steps = pr_steps(&points);
        let area: f64 = steps.windows(2).map(|w| (w[1].0 - w[0].0) * w[1].1).sum();
        let ap = memad_metrics::average_precision(&scores, &labels).unwrap();
        assert!((area - ap).abs() < 1e-12, "{area} vs {ap}");
        // Recall never decreases along the polyline.
        assert!(steps.windows(2).all(|w| w[1].0 >= w[0].0));
        assert!(pr_curve(&[1.0, 2.0], &[false, false]).is_empty());
        // The curve stops at full recall.
        assert_eq!(
            pr_curve(&[3.0, 2.0, 1.0], &[true, false, false]),
            [(0.0, 1.0), (1.0, 1.0)]
        );
    }

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
        assert_eq!(groups, ["memae", "mnad"]);
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
            svg.contains("memae (3 seeds)") && svg.contains("mnad (1 seed)"),
            "{svg}"
        );
        assert!(svg.contains("(log scale)") && svg.contains("\n1000\n</text>"));
        assert_eq!(image::open(&files[0]).unwrap().width(), 760);

        // Errors: a table as the parameter, an unknown metric.
        let table = AblationSpec {
            param: "method.memory".into(),
            ..spec.clone()
        };
        let e = read_ablation(&table).unwrap_err().to_string();
        assert!(e.contains("`method.memory` is a table"), "{e}");
        let none = AblationSpec {
            metric: "pixel_auroc".into(),
            ..spec
        };
        assert!(read_ablation(&none).is_err());
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
        assert_eq!(groups, ["mnad", "mnad, false"]);
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
    fn memory_usage_panels_and_files() {
        let dir = tempfile::tempdir().unwrap();
        let memory = dir.path().join("memory");
        std::fs::create_dir_all(&memory).unwrap();
        // `b` has no anomalous test image: its anomalous row is empty.
        std::fs::write(
            memory.join("a.csv"),
            "memory,item,normal,anomalous\nmemory,0,0.75,0.5\nmemory,1,0.25,0.5\n\
             scale2,1,0.4,0.1\nscale2,0,0.6,0.9\n",
        )
        .unwrap();
        std::fs::write(
            memory.join("b.csv"),
            "memory,item,normal,anomalous\nmemory,0,0.1,\nmemory,1,0.9,\n\
             scale2,0,1.0,\nscale2,1,0.0,\n",
        )
        .unwrap();
        let usage = read_usage_dir(&memory).unwrap();
        assert_eq!(usage[0].category, "a");
        let panels = category_panels(&usage[0]);
        assert_eq!(panels.len(), 2);
        assert_eq!(panels[1].memory, "scale2");
        // Items in item order, whatever the file order.
        assert_eq!(panels[1].rows[0], ("normal".into(), Some(vec![0.6, 0.4])));
        assert_eq!(
            category_panels(&usage[1])[0].rows[1],
            ("anomalous".into(), None)
        );
        let classes = class_panels(&usage);
        assert_eq!(
            classes[0].rows,
            [
                ("a".to_string(), Some(vec![0.75, 0.25])),
                ("b".to_string(), Some(vec![0.1, 0.9]))
            ]
        );
        register_fonts();
        let out = dir.path().join("plots");
        std::fs::create_dir_all(&out).unwrap();
        let files = plot_memory_usage(&usage, true, &out).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "memory_a.png",
                "memory_a.svg",
                "memory_b.png",
                "memory_b.svg",
                "memory_all.png",
                "memory_all.svg"
            ]
        );
        let svg = std::fs::read_to_string(out.join("memory_a.svg")).unwrap();
        assert!(
            svg.contains("anomalous") && svg.contains("75%"),
            "labels and shares"
        );
    }

    #[test]
    fn heat_map_ticks_and_colours() {
        let close = |got: Vec<f64>, want: &[f64]| {
            got.len() == want.len() && got.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-12)
        };
        assert!(close(nice_ticks(0.3, 4), &[0.0, 0.1, 0.2, 0.3]));
        assert!(close(nice_ticks(0.07, 4), &[0.0, 0.02, 0.04, 0.06]));
        assert_eq!(item_ticks(4), [0, 1, 2, 3]);
        assert_eq!(item_ticks(100), (0..100).step_by(5).collect::<Vec<_>>());
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
        assert_eq!(viridis(2.0), viridis(1.0));
    }

    #[test]
    fn spans_of_anomalous_frames() {
        assert_eq!(
            anomalous_spans(&[false, true, true, false, true]),
            [(1, 2), (4, 4)]
        );
        assert!(anomalous_spans(&[false, false]).is_empty());
    }

    #[test]
    fn ranges_are_padded() {
        assert_eq!(padded_range([1.0, 3.0].into_iter()), (0.9, 3.1));
        assert_eq!(padded_range([2.0].into_iter()), (1.5, 2.5));
        assert_eq!(padded_range(std::iter::empty()), (0.0, 1.0));
    }
}
