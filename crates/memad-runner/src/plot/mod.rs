//! `memad plot RUN_FOLDER`: PNG and SVG figures of a run, with `plotters`.
//!
//! - `losses.{png,svg}`: each loss term per epoch (`losses.csv`), one panel per category
//!   (non-finite values left out, each term with some noted);
//! - `roc.{png,svg}`: the ROC curve of each category (`scores/<category>.csv`), its AUROC in
//!   the legend: `image_auroc`, or for video categories `frame_auroc_micro`, as in
//!   `metrics.csv`;
//! - `pr.{png,svg}`: the precision-recall curve of each category as steps (their area is the
//!   legend's AP, `memad_metrics::average_precision`), its positive rate (a random scorer's
//!   precision) dashed in the same colour;
//! - `frames_<category>.{png,svg}` for video runs (a non-empty `video` column): each test
//!   video's frame score against the dataset's frame number, anomalous frames shaded (12
//!   videos a page; more pages are `frames_<category>_<page>.*`; a video with one scored
//!   frame is a marker), ticks on whole frames;
//! - `memory_<category>.{png,svg}` for methods with a memory (`memory/<category>.csv`): a heat
//!   map per memory, rows normal / anomalous test images, a column per item (or per bin of
//!   items, showing the largest share, where items are narrower than 2 px), colour = the
//!   item's share of the addressing weight (colour bar in percent, the uniform share marked:
//!   of a class's own items where each class reads only its own, as in MDD-Net); a row
//!   without shares says why: no test image of its label, or (the scores file has some)
//!   no weight on any item, every read emptied (MemAE's hard shrinkage);
//!   `memory_all.{png,svg}` in a multi-class run: a row per category.
//!
//! Video categories are plotted with the frame scores the `frame_auroc_*` metrics rank
//! ([`FrameScoring`], from the run's `config.toml`): with `video_normalization = "min_max"`
//! each video's scores (or each score part, summed with the method's weights) min-max
//! normalised, so ROC, PR and frame curves show what the metric measures.
//!
//! `memad plot ablation --runs R --param KEY --metric M [--group G[,G2]]` ([`ablation()`]):
//! `ablation_<KEY>_<M>.{png,svg}`, the metric against a dotted key of the runs' `config.toml`,
//! one line per group (the values of one or more columns or config keys, labelled
//! `key=value`) and configuration: runs of a group that differ in more than seed and the
//! parameter are split into lines labelled by what differs, never averaged together. Each
//! run contributes the mean of `M` over its categories (rows read by `table::read_metrics`;
//! among runs of one configuration and seed the latest counts); a point is the mean over
//! the distinct seeds with ±1 sample std as error bars. Numeric values sit at their value
//! (log scale when positive and spanning 20x or more), text values at their rank; ticks are
//! the values themselves; the legend is beside the plot. Anomaly-map grids are `overlay.rs`.
//!
//! Series beyond ten change dash pattern and marker as well as colour; a legend inside a
//! plot goes where it covers the fewest drawn pixels. Wide lines are drawn by [`draw_line`]
//! (plotters' own wide strokes break on step curves). Text is drawn with DejaVu Sans
//! embedded in the binary (`dejavu`, rendered by `ab_glyph`), so figures look the same on
//! every machine, with or without system fonts. Every file is rendered in memory and
//! written atomically.
use crate::evaluate::{combined_parts, min_max, rows_by_video};
use crate::output::write_atomic;
use anyhow::{anyhow, Context};
use plotters::coord::{CoordTranslate, Shift};
use plotters::element::IntoDynElement;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// A pixel position `(x, y)`, as plotters' backends take it.
type BackendCoord = (i32, i32);

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

/// How the `i`-th series of a chart looks: colour `i mod 10` (tab10), then the dash pattern
/// and the marker change with every ten series, so 30 series all look different.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Look {
    color: RGBColor,
    dash: Dash,
    marker: Marker,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dash {
    Solid,
    /// 8 px drawn, 5 px gap.
    Dashed,
    /// 2 px drawn, 4 px gap.
    Dotted,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Marker {
    Circle,
    Square,
    Triangle,
}

fn look(i: usize) -> Look {
    let (dash, marker) = match (i / COLORS.len()) % 3 {
        0 => (Dash::Solid, Marker::Circle),
        1 => (Dash::Dashed, Marker::Square),
        _ => (Dash::Dotted, Marker::Triangle),
    };
    Look {
        color: COLORS[i % COLORS.len()],
        dash,
        marker,
    }
}

/// Whether a backend draws pixels (a bitmap) or vectors (SVG): [`draw_line`] strokes wide
/// lines differently for the two.
pub(crate) trait Raster {
    const PIXELS: bool;
}

impl Raster for BitMapBackend<'_> {
    const PIXELS: bool = true;
}

impl Raster for SVGBackend<'_> {
    const PIXELS: bool = false;
}

/// `points` (chart coordinates) in pixels relative to the top-left corner of `area`,
/// consecutive repeats dropped.
fn to_pixels<DB: DrawingBackend, CT: CoordTranslate>(
    area: &DrawingArea<DB, CT>,
    points: impl IntoIterator<Item = CT::From>,
) -> Vec<BackendCoord> {
    let (x0, y0) = area.get_base_pixel();
    let mut pixels: Vec<BackendCoord> = Vec::new();
    for p in points {
        let (x, y) = area.map_coordinate(&p);
        if pixels.last() != Some(&(x - x0, y - y0)) {
            pixels.push((x - x0, y - y0));
        }
    }
    pixels
}

/// The pieces of the pixel polyline `path` that a dash pattern draws (the whole path when
/// solid), cut by length along the path.
fn dash_pieces(path: &[BackendCoord], dash: Dash) -> Vec<Vec<BackendCoord>> {
    let (on, off) = match dash {
        Dash::Solid => return vec![path.to_vec()],
        Dash::Dashed => (8.0, 5.0),
        Dash::Dotted => (2.0, 4.0),
    };
    let at = |a: BackendCoord, b: BackendCoord, t: f64| {
        let lerp = |u: i32, v: i32| (f64::from(u) + t * f64::from(v - u)).round() as i32;
        (lerp(a.0, b.0), lerp(a.1, b.1))
    };
    let mut pieces = Vec::new();
    let mut piece: Vec<BackendCoord> = path.first().into_iter().copied().collect();
    // Length left in the current on (drawing) or off stretch.
    let (mut drawing, mut left) = (true, on);
    for w in path.windows(2) {
        let length = f64::from(w[1].0 - w[0].0).hypot(f64::from(w[1].1 - w[0].1));
        let mut done = 0.0;
        while length - done > left {
            done += left;
            let p = at(w[0], w[1], done / length);
            if drawing {
                piece.push(p);
                pieces.push(std::mem::take(&mut piece));
            } else {
                piece = vec![p];
            }
            drawing = !drawing;
            left = if drawing { on } else { off };
        }
        left -= length - done;
        if drawing {
            piece.push(w[1]);
        }
    }
    if drawing && piece.len() > 1 {
        pieces.push(piece);
    }
    pieces
}

/// Draws the polyline `points` (chart coordinates) `width` pixels wide in `look`'s colour
/// and dash pattern; returns it in pixels of the plotting area (for [`draw_legend`]).
///
/// plotters fills a stroke wider than a pixel as one polygon around the whole path, which
/// breaks on step curves (vertical runs offset by a pixel, stray pixels at corners). On a
/// bitmap the line is therefore the 1-pixel polyline (drawn exactly) repeated at every
/// offset of a `width` x `width` square; SVG gets one polyline of stroke `width`.
fn draw_line<DB: DrawingBackend + Raster, CT: CoordTranslate>(
    chart: &ChartContext<'_, DB, CT>,
    points: impl IntoIterator<Item = CT::From>,
    look: Look,
    width: u32,
) -> anyhow::Result<Vec<BackendCoord>> {
    let area = chart.plotting_area();
    let pixels = to_pixels(area, points);
    let canvas = area.strip_coord_spec();
    let width = width.max(1) as i32;
    for piece in dash_pieces(&pixels, look.dash) {
        if DB::PIXELS {
            for dx in -(width - 1) / 2..=width / 2 {
                for dy in -(width - 1) / 2..=width / 2 {
                    let moved: Vec<BackendCoord> =
                        piece.iter().map(|&(x, y)| (x + dx, y + dy)).collect();
                    canvas
                        .draw(&PathElement::new(moved, look.color.stroke_width(1)))
                        .map_err(drawing)?;
                }
            }
        } else {
            canvas
                .draw(&PathElement::new(
                    piece,
                    look.color.stroke_width(width as u32),
                ))
                .map_err(drawing)?;
        }
    }
    Ok(pixels)
}

/// The outline of `marker` around (0, 0), in pixels.
fn marker_shape(marker: Marker) -> Vec<BackendCoord> {
    match marker {
        Marker::Circle => (0..12)
            .map(|k| {
                let angle = f64::from(k) * std::f64::consts::PI / 6.0;
                (
                    (3.6 * angle.cos()).round() as i32,
                    (3.6 * angle.sin()).round() as i32,
                )
            })
            .collect(),
        Marker::Square => vec![(-3, -3), (3, -3), (3, 3), (-3, 3)],
        Marker::Triangle => vec![(0, -5), (4, 3), (-4, 3)],
    }
}

/// The legend sample of a series, from `at` to 20 px right of it: a line in its dash
/// pattern, with its marker in the middle when `marker` is set.
fn legend_sample<'a, DB: DrawingBackend + 'a>(
    at: BackendCoord,
    look: Look,
    marker: bool,
) -> impl IntoDynElement<'a, DB, BackendCoord> {
    let style = look.color.stroke_width(3);
    let [a, b, c, d] = match look.dash {
        Dash::Solid => [(0, 5), (5, 10), (10, 15), (15, 20)],
        Dash::Dashed => [(0, 4), (4, 8), (12, 16), (16, 20)],
        Dash::Dotted => [(0, 2), (6, 8), (12, 14), (18, 20)],
    };
    let piece = |(u, v): (i32, i32)| PathElement::new(vec![(u, 0), (v, 0)], style);
    let shape = if marker {
        marker_shape(look.marker)
    } else {
        Vec::new()
    };
    let shape = shape
        .into_iter()
        .map(|(x, y)| (x + 10, y))
        .collect::<Vec<_>>();
    EmptyElement::at(at)
        + piece(a)
        + piece(b)
        + piece(c)
        + piece(d)
        + Polygon::new(shape, look.color.filled())
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

/// Legend text size.
const LEGEND_FONT: u32 = 14;

/// The legend of every chart: the series labels (in the order they were drawn) in a light
/// box at [`legend_position`].
fn draw_legend<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    labels: &[String],
    lines: &[Vec<BackendCoord>],
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    let ((x, y), _) = legend_position(chart, labels, lines)?;
    draw_legend_at(chart, SeriesLabelPosition::Coordinate(x, y))
}

/// Where the legend box of `labels` covers the fewest pixels of `lines` (series in pixels of
/// the plotting area, as [`draw_line`] returns them) among the corners and edge middles of
/// the plotting area (ties: upper right, upper left, lower right, lower left, then the edge
/// middles): its top-left corner and the pixels it covers.
fn legend_position<DB, CT>(
    chart: &ChartContext<'_, DB, CT>,
    labels: &[String],
    lines: &[Vec<BackendCoord>],
) -> anyhow::Result<((i32, i32), usize)>
where
    DB: DrawingBackend,
    CT: CoordTranslate,
{
    let (w, h) = legend_size(labels)?;
    let (area_w, area_h) = chart.plotting_area().dim_in_pixel();
    let (right, bottom) = (area_w as i32 - w - 5, area_h as i32 - h - 5);
    let (middle_x, middle_y) = ((area_w as i32 - w) / 2, (area_h as i32 - h) / 2);
    let candidates = [
        (right, 5),
        (5, 5),
        (right, bottom),
        (5, bottom),
        (middle_x, 5),
        (middle_x, bottom),
        (5, middle_y),
        (right, middle_y),
    ];
    let covered = |&(x, y): &(i32, i32)| {
        let inside = |&(px, py): &BackendCoord| {
            (x - 3..=x + w + 3).contains(&px) && (y - 3..=y + h + 3).contains(&py)
        };
        lines
            .iter()
            .flat_map(|line| line_pixels(line))
            .filter(inside)
            .count()
    };
    let mut best = candidates[0];
    let mut fewest = covered(&best);
    for c in &candidates[1..] {
        let n = covered(c);
        if n < fewest {
            (best, fewest) = (*c, n);
        }
    }
    Ok((best, fewest))
}

/// Draws the legend box at `position` (relative to the plotting area).
fn draw_legend_at<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
{
    chart
        .configure_series_labels()
        .label_font(("sans-serif", LEGEND_FONT))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .position(position)
        .draw()
        .map_err(drawing)
}

/// Pixels of the legend box of `labels`, as plotters lays it out (the text, a 30 px sample
/// column, 10 px margins).
fn legend_size(labels: &[String]) -> anyhow::Result<(i32, i32)> {
    let font = ("sans-serif", LEGEND_FONT).into_font();
    let mut text = MultiLineText::<BackendCoord, &str>::new((0, 0), font);
    for label in labels {
        text.push_line(label.as_str());
    }
    let (w, h) = text.estimate_dimension().map_err(drawing)?;
    Ok((w + 30 + 20, h + 20))
}

/// Every pixel of a pixel polyline, one per step along its longer axis.
fn line_pixels(line: &[BackendCoord]) -> impl Iterator<Item = BackendCoord> + '_ {
    let first = line.first().copied();
    first.into_iter().chain(line.windows(2).flat_map(|w| {
        let (a, b) = (w[0], w[1]);
        let steps = (b.0 - a.0).abs().max((b.1 - a.1).abs()).max(1);
        (1..=steps).map(move |k| {
            let t = f64::from(k) / f64::from(steps);
            (
                a.0 + (t * f64::from(b.0 - a.0)).round() as i32,
                a.1 + (t * f64::from(b.1 - a.1)).round() as i32,
            )
        })
    }))
}

/// Adds a legend entry `label` drawn as `look`'s sample, for a series drawn by [`draw_line`]
/// (which plotters does not know as a series).
fn legend_entry<'a, DB, CT>(
    chart: &mut ChartContext<'a, DB, CT>,
    label: String,
    look: Look,
    marker: bool,
) -> anyhow::Result<()>
where
    DB: DrawingBackend + 'a,
    CT: CoordTranslate,
    CT::From: Clone + 'static,
{
    chart
        .draw_series(std::iter::empty::<EmptyElement<CT::From, DB>>())
        .map_err(drawing)?
        .label(label)
        .legend(move |at| legend_sample(at, look, marker));
    Ok(())
}

/// Renders a figure twice (bitmap and SVG) with the same drawing code and writes
/// `<stem>.png` and `<stem>.svg` atomically; returns the two paths.
macro_rules! png_and_svg {
    ($stem:expr, $size:expr, $draw:expr) => {{
        let (stem, (w, h)): (&Path, (u32, u32)) = ($stem, $size);
        let mut pixels = vec![255u8; (w * h * 3) as usize];
        {
            let root = crate::glyphs::Glyphs(BitMapBackend::with_buffer(&mut pixels, (w, h)))
                .into_drawing_area();
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

mod ablation;
mod memory_heatmap;
pub use ablation::{ablation, AblationSpec};
use memory_heatmap::{count_samples, plot_memory_usage, read_usage_dir, CategoryUsage};

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
    /// The `image` column: the file scored (for a video frame, its frame file).
    pub images: Vec<String>,
    pub videos: Vec<String>,
    pub labels: Vec<bool>,
    pub scores: Vec<f32>,
    /// The score parts after the `score` column (`AnomalyOutput::parts`, e.g. MNAD's
    /// `neg_psnr` and `feature_distance`): `(name, one value per row)`.
    pub parts: Vec<(String, Vec<f32>)>,
}

impl Scores {
    /// Whether the rows are video frames (a non-empty `video` column).
    fn is_video(&self) -> bool {
        self.videos.iter().any(|v| !v.is_empty())
    }
}

/// How the `frame_auroc_micro` / `frame_auroc_macro` metrics score a video's frames
/// (`evaluate::compute_metrics` through `evaluate::frames_by_video`), from the run's config.toml.
#[derive(Debug, Clone, PartialEq)]
enum FrameScoring {
    /// `[eval] video_normalization = "none"`: the `score` column.
    Raw,
    /// `min_max` and no score parts: the `score` column min-max normalised per video.
    MinMax,
    /// `min_max` and score parts: each part min-max normalised per video, then summed with
    /// these weights (one per part, in column order) and rounded to `f32`.
    Parts(Vec<f64>),
}

impl FrameScoring {
    /// The y-axis label of frame scores.
    fn axis_label(&self) -> &'static str {
        match self {
            FrameScoring::Raw => "frame score",
            FrameScoring::MinMax => "frame score (min-max per video)",
            FrameScoring::Parts(_) => "frame score (parts min-max per video)",
        }
    }

    /// What the frame scores of `s` are, for captions.
    fn describe(&self, s: &Scores) -> String {
        match self {
            FrameScoring::Raw => "frame score".into(),
            FrameScoring::MinMax => "frame score (min-max per video)".into(),
            FrameScoring::Parts(weights) => {
                let terms: Vec<String> = (weights.iter().zip(&s.parts))
                    .map(|(w, (name, _))| format!("{w} × {name}"))
                    .collect();
                format!(
                    "frame score ({}, each min-max per video)",
                    terms.join(" + ")
                )
            }
        }
    }
}

/// The frame scoring of `s` under the run's `config` (see [`FrameScoring`]). The part weights
/// are not in the run folder: they are the method's (MNAD: `psnr_weight` for `neg_psnr`,
/// `1 - psnr_weight` for `feature_distance`; `neg_psnr` alone weighs 1) and must reproduce
/// the `score` column (`sum weight * part`); otherwise a note says the plots show the raw
/// score, which is not what the metric ranks.
fn frame_scoring(config: Option<&toml::Value>, s: &Scores) -> FrameScoring {
    let min_max = config
        .and_then(|c| lookup(c, "eval.video_normalization"))
        .and_then(toml::Value::as_str)
        == Some("min_max");
    if !min_max {
        return FrameScoring::Raw;
    }
    if s.parts.is_empty() {
        return FrameScoring::MinMax;
    }
    let names: Vec<&str> = s.parts.iter().map(|(n, _)| n.as_str()).collect();
    let psnr_weight = config
        .and_then(|c| lookup(c, "method.psnr_weight"))
        .and_then(toml::Value::as_float);
    let weights = match (names.as_slice(), psnr_weight) {
        (["neg_psnr"], _) => Some(vec![1.0]),
        (["neg_psnr", "feature_distance"], Some(w)) => Some(vec![w, 1.0 - w]),
        _ => None,
    };
    let reproduces = |weights: &[f64]| {
        (0..s.scores.len()).all(|i| {
            let sum: f64 = (weights.iter().zip(&s.parts))
                .map(|(w, (_, values))| w * f64::from(values[i]))
                .sum();
            let score = f64::from(s.scores[i]);
            (sum - score).abs() <= 1e-4 * (1.0 + score.abs())
        })
    };
    match weights {
        Some(w) if reproduces(&w) => FrameScoring::Parts(w),
        _ => {
            eprintln!(
                "note: {}: the weights of the score parts {} are unknown (or do not give the \
                 score column), so the plots show the raw score, not the per-video \
                 normalised score frame_auroc_micro ranks",
                s.category,
                names.join(", ")
            );
            FrameScoring::Raw
        }
    }
}

/// The frame scores the metric ranks, one per row of `s` in file order, in `f64` as the
/// metric ranks them (MNAD's weighted sums of normalised parts are not rounded to `f32`;
/// [`FrameScoring::MinMax`]'s values are the metric's normalisation of the raw scores).
fn frame_scores(s: &Scores, scoring: &FrameScoring) -> Vec<f64> {
    let mut out: Vec<f64> = s.scores.iter().map(|&v| f64::from(v)).collect();
    for rows in rows_by_video(&s.videos) {
        let normalised = match scoring {
            FrameScoring::Raw => continue,
            FrameScoring::MinMax => min_max(&rows.iter().map(|&i| s.scores[i]).collect::<Vec<_>>()),
            FrameScoring::Parts(weights) => {
                let parts = (weights.iter().zip(&s.parts)).map(|(w, (_, v))| (*w, v.as_slice()));
                combined_parts(&rows, parts)
            }
        };
        for (&i, v) in rows.iter().zip(normalised) {
            out[i] = v;
        }
    }
    out
}

/// `frame_auroc_micro` of `s`, given the inputs `evaluate::compute_metrics` gives it (the raw
/// scores with `MinMaxPerVideo` for [`FrameScoring::MinMax`], else [`frame_scores`]), so
/// it is the `metrics.csv` value; `None` where the metric has none.
fn frame_auroc(s: &Scores, scoring: &FrameScoring) -> Result<f64, String> {
    use memad_metrics::VideoNormalization;
    let (scores, norm) = match scoring {
        FrameScoring::MinMax => (
            frame_scores(s, &FrameScoring::Raw),
            VideoNormalization::MinMaxPerVideo,
        ),
        _ => (frame_scores(s, scoring), VideoNormalization::None),
    };
    let videos: Vec<(Vec<f64>, Vec<bool>)> = rows_by_video(&s.videos)
        .into_iter()
        .map(|rows| {
            (
                rows.iter().map(|&i| scores[i]).collect(),
                rows.iter().map(|&i| s.labels[i]).collect(),
            )
        })
        .collect();
    memad_metrics::frame_auroc_micro(&videos, norm).map_err(|e| e.to_string())
}

/// The frame number of a frame file: the digits its name ends with (`.../frames/01/004.jpg`
/// is frame 4), as the dataset numbers its frames.
fn frame_number(image: &str) -> Option<usize> {
    let stem = Path::new(image).file_stem()?.to_str()?;
    let digits = stem.len() - stem.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    stem[stem.len() - digits..].parse().ok()
}

/// One category's scores as `memad plot` shows them: the `score` column for images, the
/// frame scores the video metrics rank for videos.
struct Shown<'a> {
    raw: &'a Scores,
    /// What the metric ranks (`f32` image scores are exact in `f64`).
    scores: Vec<f64>,
    /// The legend's AUROC: `image_auroc` or `frame_auroc_micro` as `metrics.csv` has it;
    /// why it is undefined otherwise (one class, non-finite scores).
    auroc: Result<f64, String>,
    /// How the frames are scored, for video categories.
    video: Option<FrameScoring>,
}

impl<'a> Shown<'a> {
    fn new(raw: &'a Scores, config: Option<&toml::Value>) -> Self {
        if !raw.is_video() {
            return Shown {
                raw,
                scores: raw.scores.iter().map(|&v| f64::from(v)).collect(),
                auroc: memad_metrics::auroc(&raw.scores, &raw.labels).map_err(|e| e.to_string()),
                video: None,
            };
        }
        let scoring = frame_scoring(config, raw);
        Shown {
            raw,
            scores: frame_scores(raw, &scoring),
            auroc: frame_auroc(raw, &scoring),
            video: Some(scoring),
        }
    }
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
    let runs_inside: Vec<PathBuf> = match crate::run_folders::is_complete(run_dir) {
        true => Vec::new(),
        false => crate::run_folders::complete_runs_in(run_dir),
    };
    if let Some(latest) = runs_inside.first() {
        anyhow::bail!(
            "{} is an experiment's folder, not a run: it holds {} complete run(s); plot one, \
             e.g. `memad plot {}`",
            run_dir.display(),
            runs_inside.len(),
            latest.display()
        );
    }
    // Plots written inside an unfinished run would move with it when it completes, showing
    // only what it had at plotting time.
    let unfinished = run_dir.to_string_lossy().ends_with(".partial");
    anyhow::ensure!(
        !unfinished || out.is_some(),
        "{} is an unfinished run: plots inside it would be stale once `memad run` finishes \
         it; pass --out to plot what it has so far elsewhere",
        run_dir.display()
    );
    if unfinished {
        eprintln!(
            "note: {} is unfinished: the plots show what it had so far",
            run_dir.display()
        );
    }
    let out = out.map_or_else(|| run_dir.join("plots"), Path::to_path_buf);
    let created = !out.exists();
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    // `None` when missing or unparsable: the figures that need it are left out.
    let config = crate::run_folders::read_config(run_dir).ok().flatten();
    // Every input is read before the first figure is written, so that a bad file leaves
    // the folder's figures as they were instead of half replaced.
    let losses_path = run_dir.join("losses.csv");
    let losses = match losses_path.is_file() {
        true => read_losses(&losses_path)?,
        false => Vec::new(),
    };
    let scores = read_scores_dir(&run_dir.join("scores"))?;
    let mut usage = read_usage_dir(&run_dir.join("memory"))?;
    // Which labels have samples: a row without shares had none, or kept no weight.
    count_samples(&mut usage, &scores);
    let mut written = Vec::new();
    let drawn = draw_run(
        &losses,
        &scores,
        &usage,
        config.as_ref(),
        &out,
        &mut written,
    );
    if written.is_empty() && created {
        let _ = std::fs::remove_dir(&out);
    }
    if let Err(e) = drawn {
        let kept: Vec<String> = (written.iter()).map(|p| p.display().to_string()).collect();
        return Err(match kept.is_empty() {
            true => e,
            false => e.context(format!(
                "drawing the figures of {} (written before the error: {})",
                run_dir.display(),
                kept.join(", ")
            )),
        });
    }
    anyhow::ensure!(
        !written.is_empty(),
        "{}: nothing to plot (no losses.csv rows, no scores/*.csv)",
        run_dir.display()
    );
    Ok(written)
}

/// Draws every figure the inputs hold data for into `out`, adding each file to `written`
/// as it is written.
fn draw_run(
    losses: &[LossRow],
    scores: &[Scores],
    usage: &[CategoryUsage],
    config: Option<&toml::Value>,
    out: &Path,
    written: &mut Vec<PathBuf>,
) -> anyhow::Result<()> {
    for note in non_finite_losses(losses) {
        eprintln!("note: {note}");
    }
    if losses.iter().any(|r| r.value.is_finite()) {
        written.extend(plot_losses(losses, &out.join("losses"))?);
    }
    let shown: Vec<Shown> = (scores.iter()).map(|s| Shown::new(s, config)).collect();
    // How video categories' scores are normalised, for the ROC and PR captions.
    let mut what: Vec<String> = Vec::new();
    for s in &shown {
        if let Some(scoring) = s.video.as_ref().filter(|v| **v != FrameScoring::Raw) {
            let v = scoring.describe(s.raw);
            if !what.contains(&v) {
                what.push(v);
            }
        }
    }
    let note = what.join("; ");
    let curves: Vec<RocCurve> = (shown.iter())
        .filter_map(|s| {
            Some(RocCurve {
                auroc: s.auroc.clone().ok()?,
                category: s.raw.category.clone(),
                points: roc_curve(&s.scores, &s.raw.labels),
            })
        })
        .collect();
    for s in &shown {
        if let Err(why) = &s.auroc {
            eprintln!(
                "note: {}: no ROC curve, its AUROC is undefined: {why}",
                s.raw.category
            );
        }
    }
    if !curves.is_empty() {
        written.extend(plot_roc(&curves, &note, &out.join("roc"))?);
    }
    let pr: Vec<PrCurve> = (shown.iter())
        .filter_map(|s| {
            let labels = &s.raw.labels;
            Some(PrCurve {
                ap: memad_metrics::average_precision(&s.scores, labels).ok()?,
                category: s.raw.category.clone(),
                points: pr_curve(&s.scores, labels),
                positive_rate: labels.iter().filter(|&&l| l).count() as f64 / labels.len() as f64,
            })
        })
        .collect();
    if !pr.is_empty() {
        written.extend(plot_pr(&pr, &note, &out.join("pr"))?);
    }
    for s in &shown {
        if let Some(scoring) = &s.video {
            written.extend(plot_frames(s.raw, &s.scores, scoring, out)?);
        }
    }
    if !usage.is_empty() {
        let per_class = config
            .and_then(|c| lookup(c, "method.memory.items_per_class"))
            .and_then(toml::Value::as_integer)
            .and_then(|k| usize::try_from(k).ok());
        let multi_class = config.is_some_and(|c| {
            lookup(c, "data.setting").and_then(toml::Value::as_str) == Some("multi_class")
        });
        written.extend(plot_memory_usage(usage, multi_class, per_class, out)?);
    }
    Ok(())
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

/// Reads one `scores/<category>.csv`: `image` (optional), `video`, `label`, `score`, and the
/// score parts in the columns after `score`; `defect` is ignored.
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
    let image = header.iter().position(|h| h == "image");
    let mut s = Scores {
        category: path
            .file_stem()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        images: Vec::new(),
        videos: Vec::new(),
        labels: Vec::new(),
        scores: Vec::new(),
        parts: (header.iter().skip(score + 1))
            .map(|name| (name.to_string(), Vec::new()))
            .collect(),
    };
    for (i, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("reading {}", path.display()))?;
        let bad = |what: &str| anyhow!("{} row {}: bad {what}", path.display(), i + 2);
        let number = |c: usize, what: &str| -> anyhow::Result<f32> {
            row.get(c)
                .and_then(|v| v.parse().ok())
                .ok_or_else(|| bad(what))
        };
        s.images
            .push(image.and_then(|c| row.get(c)).unwrap_or("").to_string());
        s.videos.push(row.get(video).unwrap_or("").to_string());
        s.labels.push(match row.get(label) {
            Some("1") => true,
            Some("0") => false,
            _ => return Err(bad("label")),
        });
        s.scores.push(number(score, "score")?);
        for (k, (name, values)) in s.parts.iter_mut().enumerate() {
            values.push(number(score + 1 + k, name)?);
        }
    }
    Ok(s)
}

/// `(true positives, false positives)` above each distinct score, from the highest score down
/// (ties count as one threshold); `labels[i]` marks an anomaly.
fn counts_at_thresholds(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut counts = Vec::new();
    let (mut tp, mut fp) = (0.0, 0.0);
    for (k, &i) in order.iter().enumerate() {
        if labels[i] {
            tp += 1.0;
        } else {
            fp += 1.0;
        }
        if order.get(k + 1).is_none_or(|&j| scores[j] != scores[i]) {
            counts.push((tp, fp));
        }
    }
    counts
}

/// ROC points `(false-positive rate, true-positive rate)` from `(0, 0)` to `(1, 1)`, one per
/// distinct score (ties form one step, as in scikit-learn's `roc_curve`); `labels[i]` marks
/// an anomaly, higher scores are more anomalous. Empty without positives or negatives.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    let negatives = labels.len() as f64 - positives;
    if positives == 0.0 || negatives == 0.0 {
        return Vec::new();
    }
    let steps = counts_at_thresholds(scores, labels).into_iter();
    std::iter::once((0.0, 0.0))
        .chain(steps.map(|(tp, fp)| (fp / negatives, tp / positives)))
        .collect()
}

/// Precision-recall points `(recall, precision)`, one per distinct score from the highest down
/// (ties form one point), after `(0, 1)`, up to the first that reaches recall 1 (as
/// scikit-learn's `precision_recall_curve`: lower thresholds only add false positives).
/// Empty without positives or negatives.
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    let positives = labels.iter().filter(|&&l| l).count() as f64;
    if positives == 0.0 || positives == labels.len() as f64 {
        return Vec::new();
    }
    let mut points = vec![(0.0, 1.0)];
    for (tp, fp) in counts_at_thresholds(scores, labels) {
        points.push((tp / positives, tp / (tp + fp)));
        if tp == positives {
            break;
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

/// A note for each loss term with non-finite values, which the loss plot leaves out (drawn,
/// a NaN would lie on 0 and an infinity on the axis' edge).
fn non_finite_losses(rows: &[LossRow]) -> Vec<String> {
    let mut bad: Vec<(&str, &str, Vec<String>)> = Vec::new();
    for r in rows.iter().filter(|r| !r.value.is_finite()) {
        match (bad.iter_mut()).find(|(c, t, _)| *c == r.category && *t == r.term) {
            Some((_, _, epochs)) => epochs.push(r.epoch.to_string()),
            None => bad.push((&r.category, &r.term, vec![r.epoch.to_string()])),
        }
    }
    (bad.iter())
        .map(|(category, term, epochs)| {
            let some_finite = (rows.iter())
                .any(|r| r.category == *category && r.term == *term && r.value.is_finite());
            match (some_finite, epochs.as_slice()) {
                (false, _) => {
                    format!("loss `{term}` of {category} is not finite at any epoch: not drawn")
                }
                (true, [one]) => {
                    format!("loss `{term}` of {category} is not finite at epoch {one}: not drawn")
                }
                (true, many) => format!(
                    "loss `{term}` of {category} is not finite at epochs {}: not drawn",
                    many.join(", ")
                ),
            }
        })
        .collect()
}

/// Training curves: one panel per category, one line per loss term, of the finite values
/// ([`non_finite_losses`]).
fn plot_losses(rows: &[LossRow], stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut categories: Vec<&str> = Vec::new();
    for r in rows.iter().filter(|r| r.value.is_finite()) {
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

fn draw_losses<DB: DrawingBackend + Raster>(
    root: &DrawingArea<DB, Shift>,
    rows: &[LossRow],
    categories: &[&str],
    grid: (usize, usize),
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let panels = root.split_evenly(grid);
    for (panel, category) in panels.iter().zip(categories) {
        let mine: Vec<&LossRow> = (rows.iter())
            .filter(|r| &r.category == category && r.value.is_finite())
            .collect();
        // In the order of `losses.csv` (the colours of a run without non-finite values).
        let mut terms: Vec<&str> = Vec::new();
        for r in rows.iter().filter(|r| &r.category == category) {
            if !terms.contains(&r.term.as_str()) && mine.iter().any(|m| m.term == r.term) {
                terms.push(&r.term);
            }
        }
        // Terms spanning more than two decades share a log axis: on a linear one the small
        // ones (an entropy of 1e-5 beside a reconstruction error of 0.4) lie flat on zero.
        let log = log_axis(mine.iter().map(|r| r.value));
        let y = |v: f64| if log { v.log10() } else { v };
        let series: Vec<Vec<(f64, f64)>> = (terms.iter())
            .map(|term| {
                (mine.iter())
                    .filter(|r| r.term == *term)
                    .map(|r| (r.epoch as f64, y(r.value)))
                    .collect()
            })
            .collect();
        let labels: Vec<String> = terms.iter().map(|t| t.to_string()).collect();
        let last = mine.iter().map(|r| r.epoch).max().unwrap_or(1);
        let (lo, hi) = padded_range(mine.iter().map(|r| y(r.value)));
        let area = (panel.titled(&format!("{category}: training loss"), ("sans-serif", 18)))
            .map_err(drawing)?;
        let mut x_hi = last as f64 + 0.5;
        let build = |x_hi: f64, hi: f64| {
            ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.5f64..x_hi, lo..hi)
                .map_err(drawing)
        };
        // Where the legend would cover a curve wherever it goes, the range grows, rightwards
        // past the last epoch or upwards, whichever needs less of the plot, until the curves
        // leave it room (nothing is drawn until the range is settled; upwards on a log axis
        // adds empty decades).
        let mut chart = build(x_hi, hi)?;
        let pixels = |chart: &ChartContext<'_, DB, _>| -> Vec<Vec<BackendCoord>> {
            (series.iter())
                .map(|points| to_pixels(chart.plotting_area(), points.iter().copied()))
                .collect()
        };
        if legend_position(&chart, &labels, &pixels(&chart))?.1 > 0 {
            let (legend_w, legend_h) = legend_size(&labels)?;
            let (plot_w, plot_h) = chart.plotting_area().dim_in_pixel();
            let free =
                |legend: i32, plot: u32| (f64::from(legend + 12) / f64::from(plot.max(1))).min(0.6);
            let (free_x, free_y) = (free(legend_w, plot_w), free(legend_h, plot_h));
            chart = match free_x < free_y {
                true => {
                    x_hi = 0.5 + (x_hi - 0.5) / (1.0 - free_x);
                    build(x_hi, hi)?
                }
                false => build(x_hi, lo + (hi - lo) / (1.0 - free_y))?,
            };
        }
        // Tick labels rounded to the axis's span (plotters' ticks carry float noise).
        let span = hi - lo;
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(match log {
                true => "mean over the epoch (log scale)",
                false => "mean over the epoch",
            })
            .y_label_formatter(&|&v| match log {
                // Whole decades only (half-decade ticks would read 0.0316, 3.2e-3).
                true if (v - v.round()).abs() < 1e-9 => power_of_ten(v),
                true => String::new(),
                false => linear_tick(v, span),
            })
            // One tick per epoch up to 10 (none labelled past the last: the legend's room).
            .x_labels(((x_hi - 0.5).floor() as usize).min(10) + 1)
            .x_label_formatter(&|&x| {
                if x.fract() == 0.0 && x <= last as f64 {
                    format!("{x:.0}")
                } else {
                    String::new()
                }
            })
            .label_style(("sans-serif", 13))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(drawing)?;
        let mut drawn = Vec::new();
        for (i, (points, label)) in series.iter().zip(&labels).enumerate() {
            let look = look(i);
            let width = curve_width(i, series.len());
            drawn.push(draw_line(&chart, points.iter().copied(), look, width)?);
            chart
                .draw_series(points.iter().map(|&p| {
                    EmptyElement::at(p)
                        + Polygon::new(marker_shape(look.marker), look.color.filled())
                }))
                .map_err(drawing)?;
            legend_entry(&mut chart, label.clone(), look, true)?;
        }
        draw_legend(&mut chart, &labels, &drawn)?;
    }
    Ok(())
}

/// The tick label of `v` on a linear axis spanning `span`: two significant digits of the
/// span (`2.2`, not plotters' `2.1999999999999997`), trailing zeros dropped.
fn linear_tick(v: f64, span: f64) -> String {
    let decimals = match span > 0.0 && span.is_finite() {
        true => (2.0 - span.log10().floor()).clamp(0.0, 12.0) as usize,
        false => 3,
    };
    let text = format!("{v:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => text.as_str(),
    };
    match text {
        "-0" => "0".to_string(),
        t => t.to_string(),
    }
}

/// Whether `values` go on a log axis: all positive and spanning more than two decades.
fn log_axis(values: impl Iterator<Item = f64>) -> bool {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for v in values {
        if v <= 0.0 || !v.is_finite() {
            return false;
        }
        (lo, hi) = (lo.min(v), hi.max(v));
    }
    hi > 100.0 * lo
}

/// The tick label of `log10 = y` on a log axis: `10^y` in three significant digits, in
/// scientific notation outside 0.01..1000.
fn power_of_ten(y: f64) -> String {
    let v = 10f64.powf(y);
    if (0.01..1000.0).contains(&v) {
        let decimals = (2.0 - v.log10().floor()).max(0.0) as usize;
        let text = format!("{v:.decimals$}");
        match text.contains('.') {
            true => text.trim_end_matches('0').trim_end_matches('.').to_string(),
            false => text,
        }
    } else {
        format!("{v:.1e}")
    }
}

/// Stroke widths of `n` curves on one chart: earlier curves are wider (up to 4 px), so
/// curves that coincide (two perfect categories) stay visible under later ones.
fn curve_width(i: usize, n: usize) -> u32 {
    2 + (n - 1 - i).min(2) as u32
}

/// ROC curves of every category on one chart; `note` (what video scores are) under the
/// title when not empty.
fn plot_roc(curves: &[RocCurve], note: &str, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    png_and_svg!(stem, (640, 600), |root| draw_roc(root, curves, note))
}

/// `root` with `title` above and, when not empty, `note` in smaller text under it.
fn titled<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    note: &str,
) -> anyhow::Result<DrawingArea<DB, Shift>> {
    let area = root.titled(title, ("sans-serif", 20)).map_err(drawing)?;
    if note.is_empty() {
        return Ok(area);
    }
    area.titled(note, ("sans-serif", 13)).map_err(drawing)
}

fn draw_roc<DB: DrawingBackend + Raster>(
    root: &DrawingArea<DB, Shift>,
    curves: &[RocCurve],
    note: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let area = titled(root, "ROC per category", note)?;
    let mut chart = ChartBuilder::on(&area)
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
    let mut drawn = Vec::new();
    let mut labels = Vec::new();
    for (i, curve) in curves.iter().enumerate() {
        let look = look(i);
        let width = curve_width(i, curves.len());
        drawn.push(draw_line(
            &chart,
            curve.points.iter().copied(),
            look,
            width,
        )?);
        let label = format!("{} (AUROC {:.3})", curve.category, curve.auroc);
        legend_entry(&mut chart, label.clone(), look, false)?;
        labels.push(label);
    }
    draw_legend(&mut chart, &labels, &drawn)?;
    Ok(())
}

/// PR curves of every category on one chart, each with its positive rate dashed; `note`
/// as in [`plot_roc`].
fn plot_pr(curves: &[PrCurve], note: &str, stem: &Path) -> anyhow::Result<Vec<PathBuf>> {
    png_and_svg!(stem, (640, 600), |root| draw_pr(root, curves, note))
}

fn draw_pr<DB: DrawingBackend + Raster>(
    root: &DrawingArea<DB, Shift>,
    curves: &[PrCurve],
    note: &str,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    // The y axis starts at the tenth at or below the lowest precision or positive rate, so
    // curves that all stay high (a one-class protocol with 90% positives) are not squeezed.
    let lowest = curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.1).chain([c.positive_rate]))
        .fold(1.0f64, f64::min);
    let y_lo = ((lowest * 10.0).floor() / 10.0).clamp(0.0, 0.9) - 0.01;
    let area = titled(
        root,
        "Precision-recall per category (dashed: positive rate)",
        note,
    )?;
    let mut chart = ChartBuilder::on(&area)
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
        chart
            .draw_series(DashedLineSeries::new(
                vec![(0.0, curve.positive_rate), (1.0, curve.positive_rate)],
                6,
                6,
                look(i).color.mix(0.7).stroke_width(1),
            ))
            .map_err(drawing)?;
    }
    let mut drawn = Vec::new();
    let mut labels = Vec::new();
    for (i, curve) in curves.iter().enumerate() {
        let look = look(i);
        let width = curve_width(i, curves.len());
        drawn.push(draw_line(&chart, pr_steps(&curve.points), look, width)?);
        let label = format!(
            "{} (AP {:.3}, positives {:.0}%)",
            curve.category,
            curve.ap,
            100.0 * curve.positive_rate
        );
        legend_entry(&mut chart, label.clone(), look, false)?;
        labels.push(label);
    }
    draw_legend(&mut chart, &labels, &drawn)?;
    Ok(())
}

/// Frame scores `scores` (one per row of `s`, scored by `scoring`) over time per test video,
/// anomalous frames shaded; one figure per page of [`VIDEOS_PER_PAGE`] videos.
fn plot_frames(
    s: &Scores,
    scores: &[f64],
    scoring: &FrameScoring,
    out: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let videos = rows_by_video(&s.videos);
    let pages: Vec<&[Vec<usize>]> = videos.chunks(VIDEOS_PER_PAGE).collect();
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
            scores,
            scoring,
            page,
            (grid_rows, cols)
        ))?);
    }
    Ok(written)
}

/// The frame number of each of `rows` ([`frame_number`] of its image), or the rows'
/// positions when a file name holds no number.
fn frame_numbers(s: &Scores, rows: &[usize]) -> Vec<usize> {
    (rows.iter())
        .map(|&i| frame_number(&s.images[i]))
        .collect::<Option<Vec<usize>>>()
        .unwrap_or_else(|| (0..rows.len()).collect())
}

fn draw_frames<DB: DrawingBackend + Raster>(
    root: &DrawingArea<DB, Shift>,
    s: &Scores,
    scores: &[f64],
    scoring: &FrameScoring,
    page: &[Vec<usize>],
    grid: (usize, usize),
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let title = format!(
        "{}: {} per test video (red: anomalous frames)",
        s.category,
        scoring.describe(s)
    );
    let root = root.titled(&title, ("sans-serif", 18)).map_err(drawing)?;
    let panels = root.split_evenly(grid);
    // One scale for every video (and page): the frame AUROC ranks all frames together, so a
    // video's level against the others' is what it measures.
    let (lo, hi) = padded_range(scores.iter().copied());
    for (panel, rows) in panels.iter().zip(page.iter()) {
        let frames = frame_numbers(s, rows);
        let (range, ticks) = frame_axis(&frames);
        let mut chart = ChartBuilder::on(panel)
            .caption(&s.videos[rows[0]], ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(
                KeyAxis {
                    range,
                    keys: ticks.iter().map(|&t| t as f64).collect(),
                    labels: ticks.iter().map(|t| t.to_string()).collect(),
                },
                lo..hi,
            )
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("frame (the dataset's number)")
            .y_desc(scoring.axis_label())
            .label_style(("sans-serif", 12))
            .axis_desc_style(("sans-serif", 11))
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(drawing)?;
        let labels: Vec<bool> = rows.iter().map(|&i| s.labels[i]).collect();
        let shade = RGBColor(214, 39, 40).mix(0.18).filled();
        chart
            .draw_series(anomalous_spans(&labels).into_iter().map(|(a, b)| {
                Rectangle::new(
                    [(frames[a] as f64 - 0.5, lo), (frames[b] as f64 + 0.5, hi)],
                    shade,
                )
            }))
            .map_err(drawing)?;
        let points: Vec<(f64, f64)> = (frames.iter().zip(rows))
            .map(|(&f, &i)| (f as f64, scores[i]))
            .collect();
        let look = look(0);
        match points.len() {
            // A line needs two points: a video with one scored frame gets a marker.
            1 => chart
                .draw_series(points.iter().map(|&p| {
                    EmptyElement::at(p)
                        + Polygon::new(marker_shape(look.marker), look.color.filled())
                }))
                .map(|_| ())
                .map_err(drawing)?,
            _ => {
                draw_line(&chart, points, look, 2)?;
            }
        }
    }
    Ok(())
}

/// The x axis of a video's frame scores: the range (half a frame beyond the first and last
/// frames; one frame each side for a single frame, so it sits between its neighbours) and
/// its ticks, whole frame numbers every 1, 2 or 5 times a power of ten (about 10 of them),
/// none below frame 0.
fn frame_axis(frames: &[usize]) -> (std::ops::Range<f64>, Vec<usize>) {
    let first = frames.iter().min().copied().unwrap_or(0);
    let last = frames.iter().max().copied().unwrap_or(0);
    let pad = if first == last { 1.0 } else { 0.5 };
    let range = first as f64 - pad..last as f64 + pad;
    let raw = (range.end - range.start) / 10.0;
    let power = 10f64.powf(raw.log10().floor()).max(1.0);
    let step = [1.0, 2.0, 5.0, 10.0]
        .iter()
        .map(|m| (m * power) as usize)
        .find(|&s| s as f64 >= raw)
        .unwrap_or(10 * power as usize)
        .max(1);
    let lowest = range.start.max(0.0).ceil() as usize;
    let ticks = (lowest.div_ceil(step) * step..=range.end.floor() as usize)
        .step_by(step)
        .collect();
    (range, ticks)
}

/// A dotted key's value in a TOML document.
fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> Option<&'a toml::Value> {
    dotted.split('.').try_fold(value, |v, part| v.get(part))
}

/// Every scalar of a TOML table by dotted key, arrays as their TOML text.
pub(crate) fn flatten(value: &toml::Value, prefix: &str, out: &mut BTreeMap<String, String>) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table {
                let key = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                flatten(v, &key, out);
            }
        }
        other => {
            out.insert(
                prefix.to_string(),
                scalar(other).unwrap_or_else(|| other.to_string()),
            );
        }
    }
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

/// The range of `values` with 5% padding (a constant gets ±0.5, nothing gets 0..1). When
/// every value lies in [0, 1] (metrics, normalised scores) a constant gets ±0.05 and the
/// range stays within [0, 1] widened by 3% of its span (room for a marker on 0 or 1).
fn padded_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let unit = lo >= 0.0 && hi <= 1.0;
    let (lo, hi) = if hi - lo < 1e-12 {
        let pad = if unit { 0.05 } else { 0.5 };
        (lo - pad, hi + pad)
    } else {
        let pad = 0.05 * (hi - lo);
        (lo - pad, hi + pad)
    };
    if !unit {
        return (lo, hi);
    }
    let margin = 0.03 * (hi - lo);
    (lo.max(-margin), hi.min(1.0 + margin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_terms_across_decades_go_on_a_log_axis() {
        assert!(log_axis([0.4, 1.8e-5, 0.39].into_iter()));
        assert!(!log_axis([0.4, 0.01, 0.39].into_iter()));
        assert!(!log_axis([0.4, 0.0, 1e-6].into_iter()), "zero has no log");
        assert_eq!(power_of_ten(0.0), "1");
        assert_eq!(power_of_ten(-0.5), "0.316");
        assert_eq!(power_of_ten(2.0), "100");
        assert_eq!(power_of_ten(-5.0), "1.0e-5");
    }

    #[test]
    fn linear_ticks_are_rounded_to_the_span() {
        assert_eq!(linear_tick(2.1999999999999997, 2.0), "2.2");
        assert_eq!(linear_tick(0.6000000000000001, 2.0), "0.6");
        assert_eq!(linear_tick(2.0, 2.0), "2");
        assert_eq!(linear_tick(0.001_230_000_1, 0.004), "0.00123");
        assert_eq!(linear_tick(1250.0000001, 900.0), "1250");
        assert_eq!(linear_tick(-1e-17, 2.0), "0");
    }

    #[test]
    fn roc_area_equals_the_auroc() {
        let scores = [0.1f64, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9, 0.4];
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
        let scores = [0.1f64, 0.4, 0.35, 0.8, 0.4, 0.2, 0.9, 0.4, 0.05];
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

    #[test]
    fn frame_axes_tick_whole_frames() {
        // One frame: a frame of room each side, ticks on whole frames only.
        assert_eq!(frame_axis(&[25]), (24.0..26.0, vec![24, 25, 26]));
        assert_eq!(frame_axis(&[0]), (-1.0..1.0, vec![0, 1]));
        assert_eq!(frame_axis(&[5, 6]), (4.5..6.5, vec![5, 6]));
        assert_eq!(frame_axis(&[4, 5, 6, 7]).1, [4, 5, 6, 7]);
        assert_eq!(
            frame_axis(&(4..=180).collect::<Vec<_>>()).1,
            (20..=180).step_by(20).collect::<Vec<_>>()
        );
        assert_eq!(frame_axis(&[8, 30]).1, [10, 15, 20, 25, 30]);
    }

    /// A video with one scored frame (MNAD's prediction skips the first `frames - 1` of
    /// each video, and `--smoke` keeps few frames) is drawn as a marker, its axis ticked
    /// once per whole frame; a line needs two points.
    #[test]
    fn a_video_of_one_frame_is_a_marker_on_whole_frame_ticks() {
        register_fonts();
        let s = Scores {
            category: "ped2".into(),
            images: vec![
                "/f/01/025.jpg".into(),
                "/f/02/004.jpg".into(),
                "/f/02/005.jpg".into(),
            ],
            videos: vec!["01".into(), "02".into(), "02".into()],
            labels: vec![false, false, true],
            scores: vec![0.5, 0.2, 0.9],
            parts: Vec::new(),
        };
        let dir = tempfile::tempdir().unwrap();
        let scores: Vec<f64> = s.scores.iter().map(|&v| f64::from(v)).collect();
        plot_frames(&s, &scores, &FrameScoring::Raw, dir.path()).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("frames_ped2.svg")).unwrap();
        let label = |t: &str| svg.matches(&format!(">\n{t}\n</text>")).count();
        assert_eq!((label("24"), label("25"), label("26")), (1, 1, 1), "{svg}");
        assert!(
            !svg.contains(">\n24.5\n<") && !svg.contains(">\n25.0\n<"),
            "{svg}"
        );
        // The marker: pixels of the series colour in the left panel (video 01); plotters'
        // SVG draws the marker as a polygon filled with it.
        let blue = COLORS[0];
        let png = image::open(dir.path().join("frames_ped2.png"))
            .unwrap()
            .to_rgb8();
        let inked = (png.enumerate_pixels())
            .filter(|(x, _, p)| *x < png.width() / 2 && p.0 == [blue.0, blue.1, blue.2])
            .count();
        assert!(inked >= 20, "{inked} marker pixels");
        assert!(svg.contains("<polygon"), "{svg}");
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
    fn non_finite_losses_are_not_drawn() {
        let row = |term: &str, epoch, value| LossRow {
            category: "grid".into(),
            epoch,
            term: term.into(),
            value,
        };
        let rows = [
            row("loss", 1, 0.5),
            row("loss", 2, f64::INFINITY),
            row("loss", 3, f64::NAN),
            row("loss", 4, 0.25),
            row("entropy", 1, f64::NAN),
            row("entropy", 2, f64::NAN),
            row("recon", 1, 0.4),
            row("recon", 2, f64::NEG_INFINITY),
        ];
        assert_eq!(
            non_finite_losses(&rows),
            [
                "loss `loss` of grid is not finite at epochs 2, 3: not drawn",
                "loss `entropy` of grid is not finite at any epoch: not drawn",
                "loss `recon` of grid is not finite at epoch 2: not drawn",
            ]
        );
        // Drawn: `entropy` (no finite value) is neither a line nor a legend entry.
        register_fonts();
        let dir = tempfile::tempdir().unwrap();
        plot_losses(&rows, &dir.path().join("losses")).unwrap();
        let svg = std::fs::read_to_string(dir.path().join("losses.svg")).unwrap();
        let texts: Vec<&str> = (svg.split("<text").skip(1))
            .filter_map(|t| Some(t.split_once('>')?.1.split('<').next()?.trim()))
            .collect();
        assert!(
            texts.contains(&"recon") && texts.contains(&"loss"),
            "{texts:?}"
        );
        assert!(!texts.contains(&"entropy"), "{texts:?}");
    }

    #[test]
    fn ranges_are_padded() {
        assert_eq!(padded_range([1.0, 3.0].into_iter()), (0.9, 3.1));
        assert_eq!(padded_range([2.0].into_iter()), (1.5, 2.5));
        assert_eq!(padded_range(std::iter::empty()), (0.0, 1.0));
        // Values in [0, 1]: a single AUROC gets ±0.05, and the range stops near 1.
        let (lo, hi) = padded_range([0.95].into_iter());
        assert!(
            (lo - 0.9).abs() < 1e-12 && (hi - 1.0).abs() < 1e-12,
            "{lo} {hi}"
        );
        let (lo, hi) = padded_range([1.0].into_iter());
        assert!(
            (lo - 0.95).abs() < 1e-12 && (hi - 1.003).abs() < 1e-12,
            "{lo} {hi}"
        );
        let (lo, hi) = padded_range([0.0, 1.0].into_iter());
        assert!(
            (lo + 0.033).abs() < 1e-12 && (hi - 1.033).abs() < 1e-12,
            "{lo} {hi}"
        );
    }

    /// A video run folder: config.toml and `scores/ped.csv` with two videos whose scores
    /// live on different scales, so per-video normalisation changes the pooled AUROC.
    fn video_run(dir: &Path, config: &str, csv: &str) {
        std::fs::create_dir_all(dir.join("scores")).unwrap();
        std::fs::write(dir.join("config.toml"), config).unwrap();
        std::fs::write(dir.join("scores/ped.csv"), csv).unwrap();
    }

    /// `frame_auroc_micro` as a run computes it for `metrics.csv` (`evaluate::compute_metrics`).
    fn metric(s: &Scores, weights: &[f64], min_max: bool) -> f64 {
        use crate::experiment::VideoNormalizationConfig;
        let eval = crate::evaluate::Evaluation {
            image_scores: s.scores.clone(),
            labels: s.labels.clone(),
            maps: None,
            masks: Vec::new(),
            unmasked: Vec::new(),
            size: 1,
            videos: s.videos.iter().map(|v| Some(v.clone())).collect(),
            parts: (s.parts.iter().zip(weights))
                .map(|((name, values), &w)| (name.clone(), w, values.clone()))
                .collect(),
            class_correct: Vec::new(),
            memory_usage: Vec::new(),
            spro_regions: Vec::new(),
            anomaly_types: Vec::new(),
            timing: Default::default(),
            graph_batches: None,
        };
        let norm = if min_max {
            VideoNormalizationConfig::MinMax
        } else {
            VideoNormalizationConfig::None
        };
        let values = crate::evaluate::compute_metrics(&["frame_auroc_micro".into()], norm, &eval);
        values.unwrap()[0].1
    }

    #[test]
    fn video_legend_equals_the_frame_metric() {
        // Video a is ranked well on a high scale, video b badly on a low one; MNAD's parts:
        // score = 0.6 neg_psnr + 0.4 feature_distance.
        let rows = [
            ("a", "000", 0, -30.0f32, 1.0f32),
            ("a", "001", 0, -29.0, 1.2),
            ("a", "002", 1, -25.0, 1.1),
            ("a", "003", 1, -24.0, 1.6),
            ("b", "004", 0, -38.0, 0.2),
            ("b", "005", 1, -39.0, 0.5),
            ("b", "006", 0, -37.5, 0.1),
            ("b", "007", 1, -38.5, 0.4),
        ];
        let mut csv = String::from("image,video,defect,label,score,neg_psnr,feature_distance\n");
        for (video, frame, label, psnr, distance) in rows {
            let score = 0.6f32 * psnr + 0.4f32 * distance;
            csv += &format!(
                "/d/frames/{video}/{frame}.jpg,{video},x,{label},{score},{psnr},{distance}\n"
            );
        }
        let dir = tempfile::tempdir().unwrap();
        let mnad = "[method]\nkind = \"mnad\"\npsnr_weight = 0.6\n\
                    [eval]\nvideo_normalization = \"min_max\"\n";
        video_run(dir.path(), mnad, &csv);
        let s = read_scores(&dir.path().join("scores/ped.csv")).unwrap();
        let config: toml::Value = toml::from_str(mnad).unwrap();
        let scoring = frame_scoring(Some(&config), &s);
        assert_eq!(scoring, FrameScoring::Parts(vec![0.6, 1.0 - 0.6]));
        let legend = frame_auroc(&s, &scoring).unwrap();
        let expected = metric(&s, &[0.6, 0.4], true);
        assert_eq!(legend, expected);
        let raw = memad_metrics::auroc(&s.scores, &s.labels).unwrap();
        assert!(
            (raw - expected).abs() > 0.1,
            "raw {raw} vs normalised {expected}"
        );
        // The curve drawn is the metric's: its area is the legend's AUROC.
        let points = roc_curve(&frame_scores(&s, &scoring), &s.labels);
        let area: f64 = (points.windows(2))
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum();
        assert!((area - legend).abs() < 1e-12, "{area} vs {legend}");
        // The figure's legend prints it.
        let out = dir.path().join("plots");
        run(dir.path(), Some(&out)).unwrap();
        let svg = std::fs::read_to_string(out.join("roc.svg")).unwrap();
        assert!(svg.contains(&format!("AUROC {expected:.3}")), "{svg}");
        let frames = std::fs::read_to_string(out.join("frames_ped.svg")).unwrap();
        assert!(frames.contains("frame score (parts min-max per video)"));

        // Without parts: the score column min-max normalised per video.
        let csv = csv
            .lines()
            .map(|l| l.split(',').take(5).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join("\n");
        let memae = "[eval]\nvideo_normalization = \"min_max\"\n";
        video_run(dir.path(), memae, &csv);
        let s = read_scores(&dir.path().join("scores/ped.csv")).unwrap();
        let config: toml::Value = toml::from_str(memae).unwrap();
        let scoring = frame_scoring(Some(&config), &s);
        assert_eq!(scoring, FrameScoring::MinMax);
        assert_eq!(frame_auroc(&s, &scoring).unwrap(), metric(&s, &[], true));
        // Without normalisation: the raw score, as the metric.
        let scoring = frame_scoring(None, &s);
        assert_eq!(scoring, FrameScoring::Raw);
        assert_eq!(frame_auroc(&s, &scoring).unwrap(), metric(&s, &[], false));
    }

    #[test]
    fn frames_are_numbered_as_the_dataset_numbers_them() {
        assert_eq!(frame_number(".../frames/01/004.jpg"), Some(4));
        assert_eq!(frame_number("/v/Test001/117.tif"), Some(117));
        assert_eq!(frame_number("/v/img_0012.png"), Some(12));
        assert_eq!(frame_number("/v/frame.png"), None);
        let s = Scores {
            category: "c".into(),
            images: vec!["/f/01/004.jpg".into(), "/f/01/005.jpg".into(), "x".into()],
            videos: vec!["01".into(), "01".into(), "02".into()],
            labels: vec![false, true, false],
            scores: vec![0.0; 3],
            parts: Vec::new(),
        };
        assert_eq!(frame_numbers(&s, &[0, 1]), [4, 5]);
        // A name without a number: positions in the video.
        assert_eq!(frame_numbers(&s, &[2]), [0]);
        assert_eq!(rows_by_video(&s.videos), [vec![0, 1], vec![2]]);
    }

    #[test]
    fn a_bad_input_file_leaves_the_figures_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path();
        std::fs::write(
            run_dir.join("losses.csv"),
            "category,epoch,term,value\nc,1,loss,0.5\nc,2,loss,0.25\n",
        )
        .unwrap();
        let first = run(run_dir, None).unwrap();
        let losses_png = run_dir.join("plots/losses.png");
        assert!(first.contains(&losses_png), "{first:?}");
        let before = std::fs::read(&losses_png).unwrap();
        // A later run's loss rows and a scores file that does not parse: nothing is redrawn.
        std::fs::write(
            run_dir.join("losses.csv"),
            "category,epoch,term,value\nc,1,loss,0.9\nc,2,loss,0.1\nc,3,loss,0.05\n",
        )
        .unwrap();
        std::fs::create_dir_all(run_dir.join("scores")).unwrap();
        std::fs::write(
            run_dir.join("scores/c.csv"),
            "image,label,score\na.png,1,x\n",
        )
        .unwrap();
        let err = format!("{:#}", run(run_dir, None).unwrap_err());
        assert!(err.contains("c.csv"), "{err}");
        assert_eq!(std::fs::read(&losses_png).unwrap(), before);
    }

    #[test]
    fn line_looks_and_dashes() {
        // 30 series all look different.
        let looks: Vec<Look> = (0..30).map(look).collect();
        for (i, a) in looks.iter().enumerate() {
            assert!(looks[i + 1..].iter().all(|b| b != a), "series {i}");
        }
        assert_eq!(
            dash_pieces(&[(0, 0), (30, 0)], Dash::Solid),
            [vec![(0, 0), (30, 0)]]
        );
        // 8 px on, 5 off along a corner.
        let pieces = dash_pieces(&[(0, 0), (10, 0), (10, 20)], Dash::Dashed);
        assert_eq!(pieces[0], [(0, 0), (8, 0)]);
        assert_eq!(pieces[1], [(10, 3), (10, 11)]);
        assert_eq!(pieces[2], [(10, 16), (10, 20)]);
    }
}
