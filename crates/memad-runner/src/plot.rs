//! `memad plot RUN_FOLDER`: PNG and SVG figures of a run, with `plotters`.
//!
//! - `losses.{png,svg}`: each loss term per epoch (`losses.csv`), one panel per category;
//! - `roc.{png,svg}`: the ROC curve of each category (`scores/<category>.csv`), its AUROC in
//!   the legend: `image_auroc`, or for video categories `frame_auroc_micro`, as in
//!   `metrics.csv`;
//! - `pr.{png,svg}`: the precision-recall curve of each category as steps (their area is the
//!   legend's AP, `memad_metrics::average_precision`), its positive rate (a random scorer's
//!   precision) dashed in the same colour;
//! - `frames_<category>.{png,svg}` for video runs (a non-empty `video` column): each test
//!   video's frame score against the dataset's frame number, anomalous frames shaded (12
//!   videos a page; more pages are `frames_<category>_<page>.*`);
//! - `memory_<category>.{png,svg}` for methods with a memory (`memory/<category>.csv`): a heat
//!   map per memory, rows normal / anomalous test images, a column per item (or per bin of
//!   items, showing the largest share, where items are narrower than 2 px), colour = the
//!   item's share of the addressing weight (colour bar in percent, the uniform share marked:
//!   of a class's own items where each class reads only its own, as in MDD-Net);
//!   `memory_all.{png,svg}` in a multi-class run: a row per category.
//!
//! Video categories are plotted with the frame scores the `frame_auroc_*` metrics rank
//! ([`FrameScoring`], from the run's `config.toml`): with `video_normalization = "min_max"`
//! each video's scores (or each score part, summed with the method's weights) min-max
//! normalised, so ROC, PR and frame curves show what the metric measures.
//!
//! `memad plot ablation --runs R --param KEY --metric M [--group G[,G2]]` ([`ablation`]):
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
        false => (std::fs::read_dir(run_dir)?.flatten())
            .map(|e| e.path())
            .filter(|p| crate::run_folders::is_complete(p))
            .collect(),
    };
    if let Some(latest) = runs_inside.iter().max() {
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
    let config = read_config(run_dir);
    // Every input is read before the first figure is written, so that a bad file leaves
    // the folder's figures as they were instead of half replaced.
    let losses_path = run_dir.join("losses.csv");
    let losses = match losses_path.is_file() {
        true => read_losses(&losses_path)?,
        false => Vec::new(),
    };
    let scores = read_scores_dir(&run_dir.join("scores"))?;
    let usage = read_usage_dir(&run_dir.join("memory"))?;
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
    if !losses.is_empty() {
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

/// The run's `config.toml`, `None` when it is missing or does not parse.
fn read_config(run_dir: &Path) -> Option<toml::Value> {
    let text = std::fs::read_to_string(run_dir.join("config.toml")).ok()?;
    toml::from_str(&text).ok()
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

/// ROC points `(false-positive rate, true-positive rate)` from `(0, 0)` to `(1, 1)`, one per
/// distinct score (ties form one step, as in scikit-learn's `roc_curve`); `labels[i]` marks
/// an anomaly, higher scores are more anomalous. Empty without positives or negatives.
pub fn roc_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
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
pub fn pr_curve(scores: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
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

fn draw_losses<DB: DrawingBackend + Raster>(
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
        let build = |hi: f64| {
            ChartBuilder::on(&area)
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0.5f64..last as f64 + 0.5, lo..hi)
                .map_err(drawing)
        };
        // Where the legend would cover a curve wherever it goes, the y range grows upwards
        // until the curves fit below it (nothing is drawn until the range is settled).
        let mut chart = build(hi)?;
        let pixels = |chart: &ChartContext<'_, DB, _>| -> Vec<Vec<BackendCoord>> {
            (series.iter())
                .map(|points| to_pixels(chart.plotting_area(), points.iter().copied()))
                .collect()
        };
        if legend_position(&chart, &labels, &pixels(&chart))?.1 > 0 {
            let (_, legend_h) = legend_size(&labels)?;
            let plot_h = f64::from(chart.plotting_area().dim_in_pixel().1.max(1));
            let free = (f64::from(legend_h + 12) / plot_h).min(0.6);
            chart = build(lo + (hi - lo) / (1.0 - free))?;
        }
        chart
            .configure_mesh()
            .x_desc("epoch")
            .y_desc(match log {
                true => "mean over the epoch (log scale)",
                false => "mean over the epoch",
            })
            .y_label_formatter(&|&v| match log {
                true => power_of_ten(v),
                false => format!("{v}"),
            })
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
        let first = frames.iter().min().copied().unwrap_or(0) as f64;
        let last = frames.iter().max().copied().unwrap_or(0) as f64;
        let mut chart = ChartBuilder::on(panel)
            .caption(&s.videos[rows[0]], ("sans-serif", 15))
            .margin(8)
            .x_label_area_size(30)
            .y_label_area_size(55)
            .build_cartesian_2d(first - 0.5..last + 0.5, lo..hi)
            .map_err(drawing)?;
        chart
            .configure_mesh()
            .x_desc("frame (the dataset's number)")
            .y_desc(scoring.axis_label())
            .x_label_formatter(&|x| format!("{x:.0}"))
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
        let points = (frames.iter().zip(rows)).map(|(&f, &i)| (f as f64, scores[i]));
        draw_line(&chart, points, look(0), 2)?;
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
    /// the values of those the run has, each as `<last key segment>=<value>`
    /// (`method,method.memory.init`: `method=rd4ad`, `method=mddnet, init=features`), at
    /// least one.
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
    /// Distinct seeds averaged.
    pub seeds: usize,
}

/// The lines of an ablation figure, ready to draw.
#[derive(Debug, Clone)]
pub struct Ablation {
    pub spec: AblationSpec,
    /// `(label, points in x order)`, sorted by label. A line is one configuration: runs that
    /// differ only in seed and the parameter. Where a group holds several, each line's label
    /// adds the keys in which its configuration differs from the group's most common values.
    pub lines: Vec<(String, Vec<AblationPoint>)>,
    /// Every parameter value is a number (else the axis is categorical, values in name order).
    pub numeric: bool,
}

/// `memad plot ablation`: reads the runs, writes `ablation_<param>_<metric>.{png,svg}` into
/// `out` (the legend to the right of the plot, the figure widened for it); returns the
/// files written.
pub fn ablation(spec: &AblationSpec, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    register_fonts();
    let data = read_ablation(spec)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let stem = out.join(format!("ablation_{}_{}", spec.param, spec.metric));
    let labels = ablation_labels(&data);
    let (legend_w, _) = legend_size(&labels)?;
    let size = (760 + legend_w as u32 + 10, 520);
    png_and_svg!(&stem, size, |root| draw_ablation(root, &data, &labels))
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

/// `key=value` for each pair, the key as its last dotted segment unless another key of
/// `pairs` ends alike (then in full).
fn key_values(pairs: &[(String, String)]) -> Vec<String> {
    let last = |k: &str| k.rsplit('.').next().unwrap_or(k).to_string();
    (pairs.iter())
        .map(|(k, v)| {
            let short = last(k);
            let clash = (pairs.iter()).any(|(other, _)| other != k && last(other) == short);
            format!("{}={v}", if clash { k.as_str() } else { &short })
        })
        .collect()
}

/// What one run gives an ablation.
struct AblationRun {
    /// `(key, value)` of the group keys the run has.
    group: Vec<(String, String)>,
    /// The rest of its configuration: every config key but `name`, `seed`, the parameter and
    /// the group's keys.
    config: BTreeMap<String, String>,
    value: String,
    seed: String,
    stamp: String,
    /// The metric's mean over the run's categories.
    mean: f64,
}

/// Reads the runs into lines. Per run: the metric's mean over categories. Runs are grouped
/// by `spec.group`; within a group each configuration (the config but seed and parameter)
/// is its own line, so runs of different experiments are never averaged as if they were
/// seeds (a note names the keys that split a group). Per line and parameter value, among
/// runs of one seed the latest counts (a re-run); a point is the mean and sample std over
/// the distinct seeds. Runs without the key or the metric are left out with a note.
///
/// # Errors
/// No complete run; the key holding a table or array; no run with both key and metric; a
/// run with none of the group keys.
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
    let mut runs: Vec<AblationRun> = Vec::new();
    let mut raw_values: Vec<toml::Value> = Vec::new();
    let (mut no_key, mut no_metric, mut smoke) = (Vec::new(), Vec::new(), Vec::new());
    let group_keys: Vec<&str> = spec.group.split(',').map(str::trim).collect();
    // Every dotted key of the configs (and metrics.csv column of the runs read), for the
    // did-you-mean of a parameter or group key no run has.
    let mut keys_seen = BTreeMap::new();
    let mut group_keys_found = std::collections::BTreeSet::new();
    for folder in &folders {
        let config_path = folder.join("config.toml");
        // With the defaults config.toml leaves out, so that their runs are not left out.
        let config = crate::run_folders::read_config(folder)?
            .with_context(|| format!("reading {}: no such file", config_path.display()))?;
        if crate::run_folders::is_smoke_run(&config) {
            smoke.push(folder.display().to_string());
            continue;
        }
        let Some(raw) = lookup(&config, &spec.param) else {
            flatten(&config, "", &mut keys_seen);
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
        let group: Vec<(String, String)> = (group_keys.iter())
            .filter_map(|&key| {
                let value = (first.fields.get(key).cloned())
                    .or_else(|| lookup(&config, key).and_then(scalar))?;
                Some((key.to_string(), value))
            })
            .collect();
        if group.is_empty() {
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
        let mut rest = BTreeMap::new();
        flatten(&config, "", &mut rest);
        for (key, _) in &group {
            group_keys_found.insert(key.clone());
        }
        keys_seen.extend(rest.clone());
        keys_seen.extend(first.fields.clone());
        for key in ["name", "seed", spec.param.as_str()]
            .into_iter()
            .chain(group_keys.iter().copied())
        {
            rest.remove(key);
        }
        runs.push(AblationRun {
            group,
            config: rest,
            value,
            seed: field("seed"),
            stamp: field("_stamp"),
            mean: records.iter().map(|r| r.value).sum::<f64>() / records.len() as f64,
        });
        raw_values.push(raw.clone());
    }
    if !smoke.is_empty() {
        let what = crate::run_folders::smoke_runs_note(&smoke);
        anyhow::ensure!(smoke.len() < folders.len(), "{what}; no other run matches");
        eprintln!("note: {what}");
    }
    if no_key.len() + smoke.len() == folders.len() {
        let keys: Vec<String> = keys_seen.into_keys().collect();
        anyhow::bail!(
            "{patterns}: none of the {} run(s) has `{}` in its config.toml{}",
            folders.len(),
            spec.param,
            crate::table::did_you_mean(&spec.param, &keys)
        );
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
    // A group key no run has is a typo (`method,method.memory.int`), not a key some runs
    // lack: it would be dropped from every label without a word.
    if !runs.is_empty() {
        let keys: Vec<String> = keys_seen.keys().cloned().collect();
        for key in &group_keys {
            anyhow::ensure!(
                group_keys_found.contains(*key),
                "{patterns}: --group `{key}`: no run has it as a metrics.csv column or a \
                 config.toml value{}",
                crate::table::did_you_mean(key, &keys)
            );
        }
    }
    anyhow::ensure!(
        !runs.is_empty(),
        "{patterns}: no complete run has both `{}` in config.toml and `{}` in metrics.csv",
        spec.param,
        spec.metric
    );
    let numeric = raw_values
        .iter()
        .all(|v| matches!(v, toml::Value::Integer(_) | toml::Value::Float(_)));
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&AblationRun>> = BTreeMap::new();
    for run in &runs {
        groups.entry(run.group.clone()).or_default().push(run);
    }
    // label -> (value, seed) -> (stamp, mean): the latest run of a seed counts.
    type Line = BTreeMap<(String, String), (String, f64)>;
    let mut cells: BTreeMap<String, Line> = BTreeMap::new();
    for (group, members) in &groups {
        let labels = configuration_labels(group, members);
        for (run, label) in members.iter().zip(labels) {
            let line = cells.entry(label).or_default();
            let key = (run.value.clone(), run.seed.clone());
            if line.get(&key).is_none_or(|old| old.0 < run.stamp) {
                line.insert(key, (run.stamp.clone(), run.mean));
            }
        }
    }
    let mut lines: Vec<(String, Vec<AblationPoint>)> = Vec::new();
    for (label, line) in cells {
        let mut by_value: BTreeMap<String, Vec<f64>> = BTreeMap::new();
        for ((value, _), (_, mean)) in line {
            by_value.entry(value).or_default().push(mean);
        }
        let mut points: Vec<AblationPoint> = (by_value.into_iter())
            .map(|(value, v)| {
                let n = v.len() as f64;
                let mean = v.iter().sum::<f64>() / n;
                let std = (v.len() > 1).then(|| {
                    (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
                });
                AblationPoint {
                    value,
                    mean,
                    std,
                    seeds: v.len(),
                }
            })
            .collect();
        if numeric {
            points.sort_by(|a, b| number(&a.value).total_cmp(&number(&b.value)));
        }
        lines.push((label, points));
    }
    Ok(Ablation {
        spec: spec.clone(),
        lines,
        numeric,
    })
}

/// The line label of each of a group's runs: the group's `key=value`s and, where the runs
/// hold several configurations, the keys in which the run's configuration differs from the
/// value most of the group's runs have (ties: the smaller as text; a key a configuration
/// lacks counts as `(unset)`). Prints a note naming the keys that split the group.
fn configuration_labels(group: &[(String, String)], members: &[&AblationRun]) -> Vec<String> {
    let mut configs: Vec<&BTreeMap<String, String>> = Vec::new();
    for run in members {
        if !configs.contains(&&run.config) {
            configs.push(&run.config);
        }
    }
    let unset = String::from("(unset)");
    let keys: std::collections::BTreeSet<&String> = configs.iter().flat_map(|c| c.keys()).collect();
    // (key, most common value among the runs) of the keys whose value differs between
    // configurations.
    let mut common: Vec<(String, String)> = Vec::new();
    for key in keys {
        let mut counts: BTreeMap<&String, usize> = BTreeMap::new();
        for run in members {
            *counts
                .entry(run.config.get(key).unwrap_or(&unset))
                .or_default() += 1;
        }
        if counts.len() > 1 {
            let most = counts.values().max().copied().unwrap_or(0);
            let value = counts.iter().find(|(_, &n)| n == most).map(|(v, _)| *v);
            common.push((key.clone(), value.cloned().unwrap_or_default()));
        }
    }
    if !common.is_empty() {
        let keys: Vec<&str> = common.iter().map(|(k, _)| k.as_str()).collect();
        eprintln!(
            "note: {}: runs of {} configurations (they differ in {}): one line each, labelled \
             where it differs from the most common values ({}); add keys to --group to choose \
             the lines",
            key_values(group).join(", "),
            configs.len(),
            keys.join(", "),
            key_values(&common).join(", ")
        );
    }
    members
        .iter()
        .map(|run| {
            let mut pairs = group.to_vec();
            for (key, value) in &common {
                let mine = run.config.get(key).unwrap_or(&unset);
                if mine != value {
                    pairs.push((key.clone(), mine.clone()));
                }
            }
            key_values(&pairs).join(", ")
        })
        .collect()
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

/// The legend label of each line: its label and the seeds its points average.
fn ablation_labels(data: &Ablation) -> Vec<String> {
    (data.lines.iter())
        .map(|(label, points)| {
            let (lo, hi) = points.iter().fold((usize::MAX, 0), |(a, b), p| {
                (a.min(p.seeds), b.max(p.seeds))
            });
            let seeds = if lo == hi {
                format!("{lo} seed{}", if lo == 1 { "" } else { "s" })
            } else {
                format!("{lo}-{hi} seeds")
            };
            format!("{label} ({seeds})")
        })
        .collect()
}

fn draw_ablation<DB: DrawingBackend + Raster>(
    root: &DrawingArea<DB, Shift>,
    data: &Ablation,
    labels: &[String],
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
    // Where two lines have bars at one value, the lines are nudged apart (`step` each,
    // within 60% of the closest gap between values) so their bars do not hide each other;
    // otherwise every point sits on its tick. The x range is padded by 6% of the span plus
    // the widest nudge, so no point sits on the border.
    let (first, last) = (xs[0], xs[xs.len() - 1]);
    let span = if last > first { last - first } else { 1.0 };
    let gap = xs.windows(2).map(|w| w[1] - w[0]).fold(span, f64::min);
    let lines = data.lines.len();
    let with_bar = |value: &String| {
        (data.lines.iter())
            .filter(|(_, points)| points.iter().any(|p| &p.value == value && p.std.is_some()))
            .count()
    };
    let bars_meet = values.iter().any(|v| with_bar(v) > 1);
    let step = match bars_meet {
        true => (0.6 * gap / lines as f64).min(0.012 * span),
        false => 0.0,
    };
    let nudge = |i: usize| (i as f64 - (lines as f64 - 1.0) / 2.0) * step;
    let pad = 0.06 * span + nudge(lines - 1);
    let (x_lo, x_hi) = (first - pad, last + pad);
    let (y_lo, y_hi) = padded_range(data.lines.iter().flat_map(|(_, points)| {
        points.iter().flat_map(|p| {
            let s = p.std.unwrap_or(0.0);
            [p.mean - s, p.mean + s]
        })
    }));
    let spec = &data.spec;
    // The legend goes outside the plot, to its right: lines fill an ablation plot's width.
    let (legend_w, _) = legend_size(labels)?;
    let (main, side) = root.split_horizontally(root.dim_in_pixel().0 as i32 - legend_w - 10);
    let mut chart = ChartBuilder::on(&main)
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
            "{} (mean over categories{})",
            spec.metric,
            match (data.lines.iter()).any(|(_, points)| points.iter().any(|p| p.std.is_some())) {
                true => "; bars: ±1 std over seeds",
                false => "",
            }
        ))
        .label_style(("sans-serif", 14))
        .axis_desc_style(("sans-serif", 15))
        .light_line_style(WHITE.mix(0.0))
        .bold_line_style(BLACK.mix(0.08))
        .draw()
        .map_err(drawing)?;
    // An empty chart beside the plot that holds the legend.
    let mut legend = ChartBuilder::on(&side)
        .margin_top(50)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(drawing)?;
    for (i, ((_, points), label)) in data.lines.iter().zip(labels).enumerate() {
        let look = look(i);
        let at = |p: &AblationPoint| x_of(&p.value) + nudge(i);
        draw_line(&chart, points.iter().map(|p| (at(p), p.mean)), look, 2)?;
        for p in points {
            let Some(s) = p.std else { continue };
            let x = at(p);
            let (a, b) = (p.mean - s, p.mean + s);
            let bar = look.color.stroke_width(2);
            chart
                .draw_series([PathElement::new(vec![(x, a), (x, b)], bar)])
                .map_err(drawing)?;
            chart
                .draw_series([a, b].map(|y| {
                    EmptyElement::at((x, y)) + PathElement::new(vec![(-6, 0), (6, 0)], bar)
                }))
                .map_err(drawing)?;
        }
        chart
            .draw_series(points.iter().map(|p| {
                EmptyElement::at((at(p), p.mean))
                    + Polygon::new(marker_shape(look.marker), look.color.filled())
            }))
            .map_err(drawing)?;
        legend_entry(&mut legend, label.clone(), look, true)?;
    }
    draw_legend_at(&mut legend, SeriesLabelPosition::Coordinate(0, 0))
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

/// `memory_<category>.{png,svg}` per category and, for a multi-class run,
/// `memory_all.{png,svg}` (a row per category). `per_class`: the items each class reads
/// (MDD-Net's `method.memory.items_per_class`: a class reads only its own items), which
/// sets the uniform share.
fn plot_memory_usage(
    all: &[CategoryUsage],
    multi_class: bool,
    per_class: Option<usize>,
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
            per_class,
            &out.join(format!("memory_{}", usage.category)),
        )?);
    }
    if multi_class && all.len() > 1 {
        let title = "memory usage per category (one model; normal test images)";
        written.extend(plot_heat_panels(
            &class_panels(all),
            title,
            per_class,
            &out.join("memory_all"),
        )?);
    }
    Ok(written)
}

fn plot_heat_panels(
    panels: &[HeatPanel],
    title: &str,
    per_class: Option<usize>,
    stem: &Path,
) -> anyhow::Result<Vec<PathBuf>> {
    let heights: Vec<u32> = panels.iter().map(|p| heat_height(p.rows.len())).collect();
    let size = (1100, 40 + heights.iter().sum::<u32>());
    png_and_svg!(stem, size, |root| draw_heat_panels(
        root, panels, &heights, title, per_class
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

/// `share` in percent with two significant digits below 10% (0.05%, 0.12%, 5%, 5.5%),
/// whole above, trailing zeros dropped.
fn percent(share: f64) -> String {
    let p = share * 100.0;
    if p == 0.0 || !p.is_finite() {
        return "0%".into();
    }
    let decimals = if p >= 10.0 {
        0
    } else {
        (1.0 - p.log10().floor()).max(0.0) as usize
    };
    let text = format!("{p:.decimals$}");
    let text = match text.contains('.') {
        true => text.trim_end_matches('0').trim_end_matches('.'),
        false => &text,
    };
    format!("{text}%")
}

fn draw_heat_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    panels: &[HeatPanel],
    heights: &[u32],
    title: &str,
    per_class: Option<usize>,
) -> anyhow::Result<()> {
    root.fill(&WHITE).map_err(drawing)?;
    let root = root.titled(title, ("sans-serif", 20)).map_err(drawing)?;
    let mut area = root;
    for (panel, &h) in panels.iter().zip(heights) {
        let (this, rest) = area.split_vertically(h);
        draw_heat_panel(&this, panel, per_class)?;
        area = rest;
    }
    Ok(())
}

/// A heat map (rows x items, colour = share on the panel's [`ShareScale`]) and its
/// colour bar, the uniform share marked on the bar: `1 / items`, or `1 / per_class` where
/// each class reads only its own `per_class` items (fewer than the panel's). With more
/// items than half the map's pixel columns, items are drawn in bins of about 2 px showing
/// the largest share of their items ([`bin_max`]), so a heavy item always shows.
fn draw_heat_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    panel: &HeatPanel,
    per_class: Option<usize>,
) -> anyhow::Result<()> {
    let slots = panel
        .rows
        .iter()
        .filter_map(|(_, r)| r.as_ref().map(Vec::len))
        .max()
        .unwrap_or(0);
    let scale = ShareScale::of(
        panel
            .rows
            .iter()
            .filter_map(|(_, r)| r.as_ref())
            .flatten()
            .copied(),
    );
    let (map_area, bar_area) = area.split_horizontally(area.dim_in_pixel().0 - 130);
    let n = panel.rows.len();
    let label_width = panel.rows.iter().map(|(l, _)| l.len()).max().unwrap_or(4) as u32 * 9 + 16;
    let items = item_ticks(slots);
    // The map's width in pixels: the area less the 10 px margins and the row labels.
    let map_px = map_area.dim_in_pixel().0.saturating_sub(20 + label_width) as usize;
    let bins = slots.min(map_px / 2).max(1);
    let binned = bins < slots;
    let readable = per_class.filter(|&k| k > 0 && k < slots);
    let uniform = 1.0 / readable.unwrap_or(slots).max(1) as f64;
    let mut caption = format!("{} ({slots} items", panel.memory);
    if let Some(k) = readable {
        caption += &format!(", {k} per class");
    }
    if binned {
        caption += &format!(
            ", about {} per bin, coloured by its largest share",
            slots.div_ceil(bins)
        );
    }
    caption += &format!(
        "; uniform use{} = {} each, the white line on the colour bar)",
        if readable.is_some() {
            " of a class's own items"
        } else {
            ""
        },
        percent(uniform)
    );
    let mut chart = ChartBuilder::on(&map_area)
        .caption(caption, ("sans-serif", 16))
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
                    .draw_series(bin_max(shares, bins).into_iter().map(|(a, b, s)| {
                        Rectangle::new(
                            [(a as f64, y), (b as f64, y + 1.0)],
                            viridis(scale.position(s)).filled(),
                        )
                    }))
                    .map_err(drawing)?;
                if cell_px >= 44.0 {
                    chart
                        .draw_series(shares.iter().enumerate().map(|(i, &s)| {
                            let ink = if scale.position(s) > 0.6 {
                                BLACK
                            } else {
                                WHITE
                            };
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
    // Colour bar over the scale's range (log10 of the share on a log scale), ticks in
    // percent, the uniform share as a line.
    let (bar_lo, bar_hi) = scale.bar_range();
    let ticks = scale.ticks();
    let mut bar = ChartBuilder::on(&bar_area)
        .margin_top(36)
        .margin_bottom(52)
        .margin_right(8)
        .y_label_area_size(62)
        .build_cartesian_2d(
            0.0..1.0,
            KeyAxis {
                range: bar_lo..bar_hi,
                keys: ticks.iter().map(|&t| scale.bar_y(t)).collect(),
                labels: ticks.iter().map(|&t| percent(t)).collect(),
            },
        )
        .map_err(drawing)?;
    let what = if binned { "share (bin max)" } else { "share" };
    let desc = match scale {
        ShareScale::Linear { .. } => what.to_string(),
        ShareScale::Log { .. } => format!("{what}, log scale"),
    };
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc(desc)
        .label_style(("sans-serif", 12))
        .axis_desc_style(("sans-serif", 13))
        .draw()
        .map_err(drawing)?;
    let steps = 64;
    let at = |t: f64| bar_lo + t * (bar_hi - bar_lo);
    bar.draw_series((0..steps).map(|k| {
        let (a, b) = (k as f64 / steps as f64, (k + 1) as f64 / steps as f64);
        Rectangle::new(
            [(0.0, at(a)), (1.0, at(b))],
            viridis((a + b) / 2.0).filled(),
        )
    }))
    .map_err(drawing)?;
    let uniform_y = scale.bar_y(uniform);
    if (bar_lo..=bar_hi).contains(&uniform_y) {
        bar.draw_series([PathElement::new(
            vec![(0.0, uniform_y), (1.0, uniform_y)],
            WHITE.stroke_width(2),
        )])
        .map_err(drawing)?;
    }
    Ok(())
}

/// A heat map's colour scale. Linear from 0 to the largest share; logarithmic when the
/// non-zero shares span more than two decades (one item taking most of the weight would
/// leave every other item the colour of zero), over at most four decades below the
/// largest share, smaller shares (and zero) at its bottom colour.
#[derive(Debug, Clone, Copy, PartialEq)]
enum ShareScale {
    Linear { hi: f64 },
    Log { lo: f64, hi: f64 },
}

impl ShareScale {
    /// Decades a log scale spans at most.
    const DECADES: f64 = 4.0;

    fn of(shares: impl Iterator<Item = f64>) -> Self {
        let (lo, hi) = shares
            .filter(|s| s.is_finite() && *s > 0.0)
            .fold((f64::INFINITY, 0.0f64), |(lo, hi), s| {
                (lo.min(s), hi.max(s))
            });
        if hi <= 0.0 {
            ShareScale::Linear { hi: 1.0 }
        } else if hi > 100.0 * lo {
            let lo = lo.max(hi / 10f64.powf(Self::DECADES));
            ShareScale::Log { lo, hi }
        } else {
            ShareScale::Linear { hi }
        }
    }

    /// The colour position of `share` in `[0, 1]`.
    fn position(&self, share: f64) -> f64 {
        match *self {
            ShareScale::Linear { hi } => (share / hi).clamp(0.0, 1.0),
            ShareScale::Log { lo, hi } if share > 0.0 => {
                ((share.log10() - lo.log10()) / (hi.log10() - lo.log10())).clamp(0.0, 1.0)
            }
            ShareScale::Log { .. } => 0.0,
        }
    }

    /// The colour bar's y of `share`: the share, or its log10 on a log scale.
    fn bar_y(&self, share: f64) -> f64 {
        match self {
            ShareScale::Linear { .. } => share,
            ShareScale::Log { .. } => share.max(f64::MIN_POSITIVE).log10(),
        }
    }

    fn bar_range(&self) -> (f64, f64) {
        match *self {
            ShareScale::Linear { hi } => (0.0, hi),
            ShareScale::Log { lo, hi } => (lo.log10(), hi.log10()),
        }
    }

    /// The colour bar's tick shares: 1, 2 and 5 times the powers of ten on a log scale
    /// (only the powers when there are at least three of them).
    fn ticks(&self) -> Vec<f64> {
        match *self {
            ShareScale::Linear { hi } => nice_ticks(hi, 5),
            ShareScale::Log { lo, hi } => {
                let inside = |v: &f64| *v >= lo * (1.0 - 1e-9) && *v <= hi * (1.0 + 1e-9);
                let decades = lo.log10().floor() as i32..=hi.log10().ceil() as i32;
                let powers: Vec<f64> = decades
                    .clone()
                    .map(|k| 10f64.powi(k))
                    .filter(inside)
                    .collect();
                if powers.len() >= 3 {
                    return powers;
                }
                decades
                    .flat_map(|k| [1.0, 2.0, 5.0].map(|m| m * 10f64.powi(k)))
                    .filter(inside)
                    .collect()
            }
        }
    }
}

/// `shares` in `bins` bins of consecutive items: `(first item, end item, largest share)`
/// per bin, one bin per item when `bins` is the number of items.
fn bin_max(shares: &[f64], bins: usize) -> Vec<(usize, usize, f64)> {
    let n = shares.len();
    (0..bins.min(n))
        .map(|b| {
            let (start, end) = (b * n / bins.min(n), (b + 1) * n / bins.min(n));
            let max = shares[start..end].iter().fold(0.0f64, |m, &v| m.max(v));
            (start, end, max)
        })
        .collect()
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
    fn percents_keep_two_significant_digits() {
        let shown: Vec<String> = [0.0, 0.0005, 0.0002, 0.0006, 0.00123, 0.05, 0.055, 0.1, 0.78]
            .iter()
            .map(|&s| percent(s))
            .collect();
        assert_eq!(
            shown,
            ["0%", "0.05%", "0.02%", "0.06%", "0.12%", "5%", "5.5%", "10%", "78%"]
        );
    }

    use super::*;

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
        assert_eq!(groups, ["method=memae", "method=mnad"]);
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
            svg.contains("kind=memae (3 seeds)") && svg.contains("kind=mnad (1 seed)"),
            "{svg}"
        );
        assert!(svg.contains("(log scale)") && svg.contains("\n1000\n</text>"));
        // Widened for the legend beside the plot.
        assert!(image::open(&files[0]).unwrap().width() > 760);

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

    /// A default that config.toml leaves out (PatchCore's `method.memory.start`) is the
    /// baseline arm of its ablation, not a run without the key.
    #[test]
    fn ablation_reads_the_defaults_config_toml_leaves_out() {
        let dir = tempfile::tempdir().unwrap();
        let patchcore = "[method]\nkind = \"patchcore\"\n[method.memory]\ncoreset_ratio = 0.1\n";
        let approximate = format!("{patchcore}start = \"approximate\"\n");
        for (name, cfg, v) in [
            ("s_random", patchcore, 0.25),
            ("s_approx", &approximate, 0.5),
        ] {
            fake_run(dir.path(), name, "2026-01-01T00-00-00", cfg, 0, &[v]);
        }
        let spec = AblationSpec {
            runs: vec![format!("{}/s_*/*", dir.path().display())],
            param: "method.memory.start".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let a = read_ablation(&spec).unwrap();
        let values: Vec<&str> = a.lines[0].1.iter().map(|p| p.value.as_str()).collect();
        assert_eq!(values, ["approximate", "random_item"]);
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
        assert_eq!(groups, ["method=mnad", "method=mnad, use_memory=false"]);
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
        let files = plot_memory_usage(&usage, true, None, &out).unwrap();
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
    fn heat_map_scale_turns_log_when_one_item_dominates() {
        // Shares within two decades: linear from 0 to the largest.
        let linear = ShareScale::of([0.0, 0.2, 0.5, 0.3].into_iter());
        assert_eq!(linear, ShareScale::Linear { hi: 0.5 });
        assert!((linear.position(0.25) - 0.5).abs() < 1e-12);
        // One item at 78%, the rest near 0.1%: log, so a 1% item is not the colour of zero.
        let log = ShareScale::of([0.78, 0.01, 0.0012, 0.0].into_iter());
        assert_eq!(
            log,
            ShareScale::Log {
                lo: 0.0012,
                hi: 0.78
            }
        );
        assert!(log.position(0.01) > 0.3, "{}", log.position(0.01));
        assert_eq!(log.position(0.0), 0.0);
        assert_eq!(log.position(0.78), 1.0);
        assert_eq!(
            log.ticks().iter().map(|&t| percent(t)).collect::<Vec<_>>(),
            ["0.2%", "0.5%", "1%", "2%", "5%", "10%", "20%", "50%"]
        );
        // At most four decades below the largest share.
        let deep = ShareScale::of([1.0, 1e-9].into_iter());
        assert_eq!(deep, ShareScale::Log { lo: 1e-4, hi: 1.0 });
        assert_eq!(deep.ticks(), [1e-4, 1e-3, 1e-2, 1e-1, 1.0]);
        assert_eq!(deep.position(1e-9), 0.0);
        assert_eq!(
            ShareScale::of(std::iter::empty()),
            ShareScale::Linear { hi: 1.0 }
        );
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
    fn ablation_splits_configurations_instead_of_pooling_them() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let t1 = "2026-01-01T00-00-00";
        let cfg = |epochs: i64, init: &str, seed: u64| {
            format!(
                "name = \"x\"\nseed = {seed}\n[method]\nkind = \"mddnet\"\n\
                 [method.memory]\ninit = \"{init}\"\n[train]\nepochs = {epochs}\n"
            )
        };
        for seed in 0..3u64 {
            for epochs in [10, 30] {
                let e = format!("syn_epochs-{epochs}_seed-{seed}");
                fake_run(&runs, &e, t1, &cfg(epochs, "random", seed), seed, &[0.9]);
            }
            // A second experiment at 30 epochs with another init; the same config under a
            // second name (a re-run of seed 0, later) replaces the first, not a new seed.
            let e = format!("feat_epochs-30_seed-{seed}");
            fake_run(&runs, &e, t1, &cfg(30, "features", seed), seed, &[0.7]);
        }
        fake_run(
            &runs,
            "feat_again_seed-0",
            "2026-01-02T00-00-00",
            &cfg(30, "features", 0),
            0,
            &[0.5],
        );
        let spec = AblationSpec {
            runs: vec![runs.display().to_string()],
            param: "train.epochs".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let a = read_ablation(&spec).unwrap();
        let labels: Vec<&str> = a.lines.iter().map(|(l, _)| l.as_str()).collect();
        // `random` is the init most runs have (6 of 10).
        assert_eq!(labels, ["method=mnad", "method=mnad, init=features"]);
        let base = &a.lines[0].1;
        assert_eq!(base.len(), 2);
        assert!(base
            .iter()
            .all(|p| p.seeds == 3 && (p.mean - 0.9).abs() < 1e-12));
        let features = &a.lines[1].1;
        assert_eq!(features.len(), 1);
        assert_eq!(features[0].seeds, 3);
        assert!((features[0].mean - (0.5 + 0.7 + 0.7) / 3.0).abs() < 1e-12);
        assert_eq!(
            ablation_labels(&a)[1],
            "method=mnad, init=features (3 seeds)"
        );
    }

    #[test]
    fn a_parameter_no_run_has_and_an_experiment_folder_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let runs = dir.path().join("runs");
        let stamp = "2026-01-01T00-00-00";
        fake_run(&runs, "x", stamp, &config("mnad", 10), 0, &[0.9]);
        let spec = AblationSpec {
            runs: vec![runs.display().to_string()],
            param: "method.memory.slot".into(),
            metric: "image_auroc".into(),
            group: "method".into(),
        };
        let msg = read_ablation(&spec).unwrap_err().to_string();
        assert!(
            msg.contains("none of the 1 run(s) has `method.memory.slot`")
                && msg.contains("did you mean `method.memory.slots`?"),
            "{msg}"
        );
        // A misspelled second group key is an error, not a key every run lacks.
        let spec = AblationSpec {
            param: "method.memory.slots".into(),
            group: "method,method.memory.slot".into(),
            ..spec
        };
        let msg = read_ablation(&spec).unwrap_err().to_string();
        assert!(
            msg.contains("--group `method.memory.slot`: no run has it")
                && msg.contains("did you mean `method.memory.slots`?"),
            "{msg}"
        );
        // An experiment's folder instead of one of its runs: named, and no plots folder.
        let msg = run(&runs.join("x"), None).unwrap_err().to_string();
        assert!(
            msg.contains("is an experiment's folder, not a run")
                && msg.contains(&format!(
                    "memad plot {}",
                    runs.join("x").join(stamp).display()
                )),
            "{msg}"
        );
        assert!(!runs.join("x/plots").exists());
        // An unfinished run: only with --out, so no stale plots move with it when it ends.
        let partial = runs.join("x/2026-01-02T00-00-00.partial");
        std::fs::create_dir_all(&partial).unwrap();
        let msg = run(&partial, None).unwrap_err().to_string();
        assert!(
            msg.contains("is an unfinished run") && msg.contains("--out"),
            "{msg}"
        );
        assert!(!partial.join("plots").exists());
    }

    #[test]
    fn labels_use_the_last_key_segment_unless_two_end_alike() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        assert_eq!(
            key_values(&pairs(&[
                ("method.memory.addressing", "cosine"),
                ("train.epochs", "2")
            ])),
            ["addressing=cosine", "epochs=2"]
        );
        assert_eq!(
            key_values(&pairs(&[("method.frames", "5"), ("data.clip.frames", "5")])),
            ["method.frames=5", "data.clip.frames=5"]
        );
    }

    #[test]
    fn heavy_items_survive_binning() {
        let mut shares = vec![0.0; 2000];
        shares[682] = 0.5;
        shares[1999] = 0.2;
        let bins = bin_max(&shares, 400);
        assert_eq!(bins.len(), 400);
        assert_eq!(bins[0].0, 0);
        assert_eq!(bins[399].1, 2000);
        assert!(
            bins.windows(2).all(|w| w[0].1 == w[1].0),
            "bins tile the items"
        );
        let heavy: Vec<f64> = bins.iter().map(|b| b.2).filter(|&m| m > 0.0).collect();
        assert_eq!(heavy, [0.5, 0.2]);
        // Fewer items than bins: one bin per item.
        assert_eq!(bin_max(&[0.1, 0.9], 5), [(0, 1, 0.1), (1, 2, 0.9)]);
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
