//! `memad plot RUN_FOLDER`: PNG and SVG figures of a run, with `plotters`.
//!
//! - `losses.{png,svg}`: each loss term per epoch (`losses.csv`), one panel per category;
//! - `roc.{png,svg}`: the ROC curve of each category (`scores/<category>.csv`), its AUROC in
//!   the legend;
//! - `frames_<category>.{png,svg}` for video runs (a non-empty `video` column): each test
//!   video's frame score over time, anomalous frames shaded (12 videos a page; more pages are
//!   `frames_<category>_<page>.*`).
//!
//! Text is drawn with DejaVu Sans embedded in the binary (`dejavu`, rendered by `ab_glyph`),
//! so figures look the same on every machine, with or without system fonts. Every file is
//! rendered in memory and written atomically.
use crate::output::write_atomic;
use anyhow::{anyhow, Context};
use plotters::coord::Shift;
use plotters::prelude::*;
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
fn register_fonts() {
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
        let png_path = stem.with_extension("png");
        write_atomic(&png_path, &png.into_inner())?;
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
            $draw(&root)?;
            root.present().map_err(drawing)?;
        }
        let svg_path = stem.with_extension("svg");
        write_atomic(&svg_path, svg.as_bytes())?;
        anyhow::Ok(vec![png_path, svg_path])
    }};
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
    for s in scores
        .iter()
        .filter(|s| s.videos.iter().any(|v| !v.is_empty()))
    {
        written.extend(plot_frames(s, &out)?);
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
        chart
            .configure_series_labels()
            .label_font(("sans-serif", 13))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.4))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(drawing)?;
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
    chart
        .configure_series_labels()
        .label_font(("sans-serif", 14))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .position(SeriesLabelPosition::LowerRight)
        .draw()
        .map_err(drawing)?;
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
