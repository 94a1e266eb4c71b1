//! Anomaly-map overlays: one PNG grid per category, laid out as papers show them.
//!
//! Columns are selected test samples; the first row is the input, the second the input with
//! the anomaly map alpha-blended over it in a jet colour map and the ground-truth boundary
//! drawn in [`CONTOUR`]. A header names each column's defect type, image (its video and frame
//! for videos) and score, and a colour bar gives the map range.
//!
//! - **Range.** One range per category over every pixel of all the category's test maps
//!   passed in (not only the selected ones, never per image), so colours compare across
//!   columns: from the minimum to the 99.9th percentile ([`TOP_QUANTILE`]; the maximum let
//!   a video's few hottest pixels darken every map), values mapped linearly to `[0, 1]` and
//!   those above shown red. A constant map gives `[v, v + 1]`.
//! - **Blend.** `(1 - ALPHA) * input + ALPHA * jet(v)` with [`ALPHA`] `= 0.5`; jet is the
//!   classic piecewise-linear blue-cyan-yellow-red ramp.
//! - **Contour.** Mask pixels with a non-mask pixel (or the image edge) within Chebyshev
//!   distance `max(1, tile / 128)`: an inner boundary 1 px wide on tiles under 256 px, 2 px
//!   from 256 px. An all-false mask draws nothing.
//! - **Tiles.** Each sample is shown at `tile = clamp(size, 160, 256)` px: the image resized
//!   with a triangle filter, the map bilinearly, the mask by nearest neighbour.
//! - **Selection** ([`select`]): anomalous samples first, spread over defect types, then
//!   normal ones; see there.
//!
//! `memad run` and `memad eval` call [`write_overlay_grid`] for each category
//! (`<run>/overlays/<category>.png`, `evaluate.rs`).
use crate::output::write_atomic;
use anyhow::{bail, Context};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Weight of the heat map in the blend.
pub const ALPHA: f32 = 0.5;
/// The quantile of the map values at the top of the colour range (values above are red).
pub const TOP_QUANTILE: f64 = 0.999;
/// Colour of the ground-truth boundary: pure white, which a blend with jet never produces
/// (jet has at most two saturated channels).
pub const CONTOUR: [u8; 3] = [255, 255, 255];
/// Smallest and largest tile side in pixels.
const TILE_RANGE: (usize, usize) = (160, 256);

// Layout, in pixels.
const PAD: u32 = 12;
const GAP: u32 = 6;
/// The title band of a one-line title; each further line adds [`TITLE_LINE_H`].
const TITLE_H: u32 = 34;
/// Title text size and line height.
const TITLE_SIZE: u32 = 16;
const TITLE_LINE_H: u32 = 20;
const HEADER_H: u32 = 40;
const LABEL_W: u32 = 92;
const BAR_W: u32 = 16;
const BAR_AREA_W: u32 = 84;

/// One test sample of a category.
#[derive(Debug, Clone)]
pub struct OverlaySample {
    /// The input image (any format `image` reads; grey images are shown as grey RGB).
    pub image: PathBuf,
    /// Defect type (`good` for normal samples in MVTec-style datasets), shown above the
    /// column and used to spread the selection.
    pub defect: String,
    /// `true` = anomalous.
    pub label: bool,
    /// What names the image under the defect type: its file stem, after its video for a
    /// frame (`01/045`), so that a column can be found in the dataset.
    pub name: String,
    /// The image score, shown after the name when given.
    pub score: Option<f32>,
    /// Whether the score is a video frame's before the per-video normalisation the frame
    /// metrics rank (then labelled "raw score").
    pub raw_frame_score: bool,
    /// The central share of the image side the model saw (`image_size / resize` with a
    /// centre crop, else 1): the image is cropped alike so the map lines up.
    pub crop: f64,
    /// Whether the crop is that share of the shorter side, on both axes (`[data]
    /// resize_shape = "shorter_side"`: a central square, the aspect ratio kept) rather than
    /// of each side (a square resize stretches the image first).
    pub crop_square: bool,
}

/// Writes the overlay grid of one category to `out` (a `.png` path, parent folders created,
/// written atomically), showing up to `n` of the samples chosen by [`select`].
///
/// # Shapes
/// `maps`: `[N, size, size]` f32 anomaly maps at the model's input size, row-major, in the
/// order of `samples` (`N = samples.len()`); `masks`: `[N, size, size]` ground truth (`true` =
/// defect pixel), or empty when the dataset has no masks. Non-finite map values are shown as
/// the bottom of the range.
///
/// # Errors
/// No samples, `n == 0`, `size == 0`, mismatched lengths, an unreadable image, or the write.
pub fn write_overlay_grid(
    out: &Path,
    samples: &[OverlaySample],
    maps: &[f32],
    masks: &[bool],
    size: usize,
    n: usize,
) -> anyhow::Result<()> {
    let pixels = size * size;
    if samples.is_empty() || n == 0 || size == 0 {
        bail!("overlay grid: no samples, n = 0 or size = 0");
    }
    if maps.len() != samples.len() * pixels {
        bail!(
            "overlay grid: {} map values for {} samples of {size}x{size}",
            maps.len(),
            samples.len()
        );
    }
    if !masks.is_empty() && masks.len() != maps.len() {
        bail!(
            "overlay grid: {} mask values, expected {} or none",
            masks.len(),
            maps.len()
        );
    }
    let (lo, hi) = map_range(maps);
    let chosen = select(samples, n);
    let tile = size.clamp(TILE_RANGE.0, TILE_RANGE.1);
    let t = tile as u32;
    let cols = chosen.len() as u32;
    let name = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let title = format!(
        "{name}: anomaly maps (one colour range for all {} test maps, up to their 99.9th \
         percentile; white: ground-truth boundary)",
        samples.len()
    );
    // A grid of few columns is narrower than its title: the title wraps (the canvas widens
    // only for a word wider than the grid).
    let (width, title) = title_layout(
        &title,
        PAD + LABEL_W + cols * t + (cols - 1) * GAP + BAR_AREA_W,
    )?;
    let title_h = title_height(title.len());
    let height = title_h + HEADER_H + 2 * t + GAP + PAD;
    let mut canvas = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let top = title_h + HEADER_H;
    for (c, &i) in chosen.iter().enumerate() {
        let s = &samples[i];
        let input = image::open(&s.image)
            .with_context(|| format!("reading {}", s.image.display()))?
            .to_rgb8();
        let input = centre_share(input, s.crop, s.crop_square);
        let input = if input.dimensions() == (t, t) {
            input
        } else {
            image::imageops::resize(&input, t, t, image::imageops::FilterType::Triangle)
        };
        let map = resize_bilinear(&maps[i * pixels..(i + 1) * pixels], size, tile);
        let mask = if masks.is_empty() {
            Vec::new()
        } else {
            resize_nearest(&masks[i * pixels..(i + 1) * pixels], size, tile)
        };
        let blended = blend(&input, &map, (lo, hi), &mask, tile);
        let x = PAD + LABEL_W + c as u32 * (t + GAP);
        image::imageops::replace(&mut canvas, &input, x.into(), top.into());
        image::imageops::replace(&mut canvas, &blended, x.into(), (top + t + GAP).into());
    }
    let bar_x = width - BAR_AREA_W + GAP;
    let bar_y = top + t + GAP;
    for dy in 0..t {
        let v = 1.0 - dy as f32 / (t - 1).max(1) as f32;
        for dx in 0..BAR_W {
            canvas.put_pixel(bar_x + dx, bar_y + dy, image::Rgb(jet(v)));
        }
    }

    let (w, h) = (width, height);
    let mut raw = canvas.into_raw();
    {
        let root =
            crate::glyphs::Glyphs(BitMapBackend::with_buffer(&mut raw, (w, h))).into_drawing_area();
        let text = |s: &str, size: u32, pos: (u32, u32), anchor: Pos| {
            let style = TextStyle::from(("sans-serif", size).into_font()).pos(anchor);
            root.draw_text(s, &style, (pos.0 as i32, pos.1 as i32))
                .map_err(|e| anyhow::anyhow!("drawing: {e}"))
        };
        let left_top = Pos::new(HPos::Left, VPos::Top);
        let centre = Pos::new(HPos::Center, VPos::Top);
        for (k, line) in title.iter().enumerate() {
            let y = 10 + k as u32 * TITLE_LINE_H;
            text(line, TITLE_SIZE, (PAD, y), left_top)?;
        }
        for (c, &i) in chosen.iter().enumerate() {
            let s = &samples[i];
            let x = PAD + LABEL_W + c as u32 * (t + GAP) + t / 2;
            let kind = if s.label {
                s.defect.clone()
            } else {
                format!("{} (normal)", s.defect)
            };
            text(&kind, 14, (x, title_h), centre)?;
            let score = match (s.score, s.raw_frame_score) {
                (Some(v), true) => format!(", raw score {}", short(v)),
                (Some(v), false) => format!(", score {}", short(v)),
                (None, _) => String::new(),
            };
            text(&format!("{}{score}", s.name), 12, (x, title_h + 18), centre)?;
        }
        let mid = Pos::new(HPos::Left, VPos::Center);
        text("input", 14, (PAD, top + t / 2), mid)?;
        text("anomaly map", 14, (PAD, top + t + GAP + t / 2 - 9), mid)?;
        text("+ boundary", 14, (PAD, top + t + GAP + t / 2 + 9), mid)?;
        let label_x = bar_x + BAR_W + 4;
        text(&short(hi), 12, (label_x, bar_y), left_top)?;
        text(
            &short(lo),
            12,
            (label_x, bar_y + t),
            Pos::new(HPos::Left, VPos::Bottom),
        )?;
        root.present()
            .map_err(|e| anyhow::anyhow!("drawing: {e}"))?;
    }
    let canvas = image::RgbImage::from_raw(w, h, raw).context("overlay size")?;
    let mut png = std::io::Cursor::new(Vec::new());
    canvas.write_to(&mut png, image::ImageFormat::Png)?;
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    write_atomic(out, &png.into_inner())
}

/// The title band's height for a title of `lines` lines.
fn title_height(lines: usize) -> u32 {
    TITLE_H + TITLE_LINE_H * lines.saturating_sub(1) as u32
}

/// Pixels `text` takes at the title's size.
fn title_width(text: &str) -> anyhow::Result<u32> {
    crate::plot::register_fonts();
    let font = ("sans-serif", TITLE_SIZE).into_font();
    let (w, _) = font
        .box_size(text)
        .map_err(|e| anyhow::anyhow!("measuring the title: {e}"))?;
    Ok(w)
}

/// The canvas width and the title's lines for a grid `width` px wide: the title broken at
/// spaces into lines that fit between the side margins ([`PAD`]); the width grows only
/// when one word alone is wider than that.
fn title_layout(title: &str, width: u32) -> anyhow::Result<(u32, Vec<String>)> {
    let mut widest_word = 0;
    for word in title.split(' ') {
        widest_word = widest_word.max(title_width(word)?);
    }
    let width = width.max(widest_word + 2 * PAD);
    let room = width - 2 * PAD;
    let mut lines: Vec<String> = Vec::new();
    for word in title.split(' ') {
        match lines.last_mut() {
            Some(line) if title_width(&format!("{line} {word}"))? <= room => {
                line.push(' ');
                line.push_str(word);
            }
            _ => lines.push(word.to_string()),
        }
    }
    Ok((width, lines))
}

/// The samples a grid shows, in column order (indices into `samples`), at most `n`.
///
/// Up to `min(2, n / 3)` columns are kept for normal samples (`label == false`); the others go
/// to anomalous ones, dealt round-robin over their defect types in name order (so every type
/// gets a column before any gets two), and normal samples fill what anomalies leave. Within a
/// defect type (and among normals) the `k` picks of `m` are spread evenly over the given
/// order, index `floor((j + 0.5) m / k)`, so consecutive video frames are not all shown. The
/// columns are the anomalous picks grouped by type, then the normal ones.
pub fn select(samples: &[OverlaySample], n: usize) -> Vec<usize> {
    let normals: Vec<usize> = (0..samples.len()).filter(|&i| !samples[i].label).collect();
    let mut by_defect: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, s) in samples.iter().enumerate().filter(|(_, s)| s.label) {
        by_defect.entry(&s.defect).or_default().push(i);
    }
    let reserved = normals.len().min(2).min(n / 3);
    let mut budget = n - reserved;
    let mut quota = vec![0usize; by_defect.len()];
    while budget > 0 {
        let mut dealt = false;
        for (q, items) in quota.iter_mut().zip(by_defect.values()) {
            if budget > 0 && *q < items.len() {
                *q += 1;
                budget -= 1;
                dealt = true;
            }
        }
        if !dealt {
            break;
        }
    }
    let mut chosen: Vec<usize> = Vec::new();
    for (&k, items) in quota.iter().zip(by_defect.values()) {
        chosen.extend(spread(items, k));
    }
    let k = (n - chosen.len()).min(normals.len());
    chosen.extend(spread(&normals, k));
    chosen
}

/// `k` of `items`, evenly spaced.
fn spread(items: &[usize], k: usize) -> Vec<usize> {
    let m = items.len();
    (0..k.min(m))
        .map(|j| items[((2 * j + 1) * m) / (2 * k)])
        .collect()
}

/// The colour range of `maps`: from the smallest finite value to the [`TOP_QUANTILE`] of
/// the finite values (the largest when that is the smallest), so that a few outlying pixels
/// do not leave every map dark blue (a video's hottest frame against 2,000 others). The
/// quantile is taken over at most 2^20 values spread evenly through `maps`. A constant (or
/// empty) input gets a unit-wide range.
fn map_range(maps: &[f32]) -> (f32, f32) {
    let stride = maps.len().div_ceil(1 << 20).max(1);
    let mut values: Vec<f32> = (maps.iter().step_by(stride))
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    let lo = maps
        .iter()
        .filter(|v| v.is_finite())
        .fold(f32::INFINITY, |a, &v| a.min(v));
    if values.is_empty() || !lo.is_finite() {
        return (0.0, 1.0);
    }
    let k = ((values.len() - 1) as f64 * TOP_QUANTILE).round() as usize;
    let (_, &mut top, _) = values.select_nth_unstable_by(k, f32::total_cmp);
    let hi = if top > lo {
        top
    } else {
        maps.iter()
            .filter(|v| v.is_finite())
            .fold(lo, |a, &v| a.max(v))
    };
    if hi - lo <= f32::EPSILON * lo.abs().max(1.0) {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    }
}

/// The jet colour of `v` in `[0, 1]` (blue, cyan, yellow, red).
pub fn jet(v: f32) -> [u8; 3] {
    let v = if v.is_finite() {
        v.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let ch = |centre: f32| ((1.5 - (4.0 * v - centre).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// The input with the map blended over it and the mask's boundary drawn; `mask` is empty
/// or `tile * tile`.
fn blend(
    input: &image::RgbImage,
    map: &[f32],
    (lo, hi): (f32, f32),
    mask: &[bool],
    tile: usize,
) -> image::RgbImage {
    let mut out = input.clone();
    let edge = if mask.is_empty() {
        Vec::new()
    } else {
        boundary(mask, tile, (tile / 128).max(1))
    };
    for (k, px) in out.pixels_mut().enumerate() {
        if edge.get(k).copied().unwrap_or(false) {
            px.0 = CONTOUR;
            continue;
        }
        let c = jet((map[k] - lo) / (hi - lo));
        for (v, heat) in px.0.iter_mut().zip(c) {
            // At most 254, so a blend is never the contour's white.
            let blended = (1.0 - ALPHA) * f32::from(*v) + ALPHA * f32::from(heat);
            *v = blended.round().clamp(0.0, 254.0) as u8;
        }
    }
    out
}

/// Mask pixels with a non-mask pixel, or the edge, within Chebyshev distance `width`.
pub fn boundary(mask: &[bool], side: usize, width: usize) -> Vec<bool> {
    let w = width as isize;
    let s = side as isize;
    let inside =
        |y: isize, x: isize| y >= 0 && x >= 0 && y < s && x < s && mask[(y * s + x) as usize];
    (0..side * side)
        .map(|k| {
            let (y, x) = ((k / side) as isize, (k % side) as isize);
            mask[k] && (-w..=w).any(|dy| (-w..=w).any(|dx| !inside(y + dy, x + dx)))
        })
        .collect()
}

/// The central `share` of `image` (both sides; with `square`, `share` of the shorter side on
/// both axes), as the loader's centre crop; `share >= 1` keeps it whole (with `square`: the
/// central square of the shorter side).
fn centre_share(image: image::RgbImage, share: f64, square: bool) -> image::RgbImage {
    let (w, h) = image.dimensions();
    if share >= 1.0 && (!square || w == h) {
        return image;
    }
    let (cw, ch) = match square {
        false => (
            ((w as f64 * share).round() as u32).max(1),
            ((h as f64 * share).round() as u32).max(1),
        ),
        true => {
            let side = ((w.min(h) as f64 * share.min(1.0)).round() as u32).max(1);
            (side, side)
        }
    };
    image::imageops::crop_imm(&image, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image()
}

/// Bilinear resize of a `side x side` map to `to x to` (pixel centres aligned, the taps of
/// `image_io::bilinear_taps`).
fn resize_bilinear(map: &[f32], side: usize, to: usize) -> Vec<f32> {
    if side == to {
        return map.to_vec();
    }
    let taps = memad_data::image_io::bilinear_taps(side as u32, to as u32);
    let mut out = Vec::with_capacity(to * to);
    for &(y0, y1, fy) in &taps {
        for &(x0, x1, fx) in &taps {
            let at = |yy: usize, xx: usize| map[yy * side + xx];
            let top = at(y0, x0) * (1.0 - fx) + at(y0, x1) * fx;
            let bottom = at(y1, x0) * (1.0 - fx) + at(y1, x1) * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// Nearest-neighbour resize of a `side x side` mask to `to x to`.
fn resize_nearest(mask: &[bool], side: usize, to: usize) -> Vec<bool> {
    let src = |d: usize| ((d * side) / to).min(side - 1);
    (0..to * to)
        .map(|k| mask[src(k / to) * side + src(k % to)])
        .collect()
}

/// A number with 3 significant digits, without trailing zeros' clutter.
fn short(v: f32) -> String {
    if v != 0.0 && (v.abs() >= 1e4 || v.abs() < 1e-3) {
        format!("{v:.2e}")
    } else {
        format!("{}", (v as f64 * 1000.0).round() / 1000.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_colour_range_ends_at_the_top_quantile_not_an_outlier() {
        // 10,000 values 0..1 and one hot pixel at 50: the range stops near 1.
        let mut maps: Vec<f32> = (0..10_000).map(|i| i as f32 / 10_000.0).collect();
        maps.push(50.0);
        let (lo, hi) = map_range(&maps);
        assert_eq!(lo, 0.0);
        assert!((hi - 0.999).abs() < 2e-3, "{hi}");
        // Mostly constant with a few larger values: the largest, not an empty range.
        let mut flat = vec![2.0f32; 5_000];
        flat[7] = 3.0;
        assert_eq!(map_range(&flat), (2.0, 3.0));
        assert_eq!(map_range(&[4.0, 4.0]), (4.0, 5.0));
        assert_eq!(map_range(&[f32::NAN]), (0.0, 1.0));
    }

    use super::*;

    /// The title `write_overlay_grid` gives `<category>.png` of `n` samples.
    fn title(category: &str, n: usize) -> String {
        format!(
            "{category}: anomaly maps (one colour range for all {n} test maps, up to their \
             99.9th percentile; white: ground-truth boundary)"
        )
    }

    /// With `eval.overlays = 1` or 2 the grid is narrower than its title, which was cut
    /// ("...one colour range for all 10 t"): it wraps onto lines that fit, every word kept,
    /// and its last line is drawn inside the canvas.
    #[test]
    fn a_narrow_grid_wraps_its_title() {
        let dir = tempfile::tempdir().unwrap();
        let size = 28;
        let samples: Vec<OverlaySample> = (0..10)
            .map(|i| {
                let s = sample(dir.path(), &format!("{i}"), "digit", i < 3);
                image::GrayImage::from_pixel(28, 28, image::Luma([200]))
                    .save(&s.image)
                    .unwrap();
                s
            })
            .collect();
        let maps = vec![0.5f32; 10 * size * size];
        for n in [1, 2] {
            let out = dir.path().join(format!("cols{n}.png"));
            write_overlay_grid(&out, &samples, &maps, &[], size, n).unwrap();
            let png = image::open(&out).unwrap().to_rgb8();
            let n = n as u32;
            let width = PAD + LABEL_W + n * 160 + (n - 1) * GAP + BAR_AREA_W;
            assert_eq!(png.width(), width, "the grid keeps its width");
            let full = title(&format!("cols{n}"), 10);
            let (_, lines) = title_layout(&full, width).unwrap();
            assert!(lines.len() >= 2, "{lines:?}");
            assert_eq!(lines.join(" "), full);
            for line in &lines {
                assert!(title_width(line).unwrap() <= width - 2 * PAD, "{line}");
            }
            // The header and tiles move down by the extra lines; the last title line has
            // ink, and no ink runs into the right margin.
            let title_h = title_height(lines.len());
            assert_eq!(png.height(), title_h + HEADER_H + 2 * 160 + GAP + PAD);
            let dark = |x: u32, y: u32| png.get_pixel(x, y).0.iter().all(|&c| c < 128);
            let last_line = 10 + (lines.len() as u32 - 1) * TITLE_LINE_H;
            assert!(
                (last_line..last_line + TITLE_LINE_H)
                    .any(|y| (PAD..width - PAD).any(|x| dark(x, y))),
                "no ink on the last title line"
            );
            assert!((0..title_h).all(|y| (width - PAD + 2..width).all(|x| !dark(x, y))));
        }
        // A wide grid keeps a one-line title.
        let wide = PAD + LABEL_W + 8 * 256 + 7 * GAP + BAR_AREA_W;
        assert_eq!(title_layout(&title("carpet", 10), wide).unwrap().1.len(), 1);
        // A word wider than the grid widens the canvas.
        let long = "x".repeat(80);
        let (w, lines) = title_layout(&format!("{long} y"), 100).unwrap();
        assert!(w >= title_width(&long).unwrap() + 2 * PAD, "{w}");
        assert_eq!(lines[0], long);
    }

    #[test]
    fn the_shown_image_is_cropped_as_the_model_input() {
        // 90 x 60 with a bright column at x = 45: a square resize keeps 7/8 of each side
        // (79 x 53), a shorter-side resize a central square of 7/8 of the height (53 x 53).
        let image = image::RgbImage::from_fn(90, 60, |x, _| image::Rgb([(x == 45) as u8 * 255; 3]));
        let stretched = centre_share(image.clone(), 0.875, false);
        assert_eq!(stretched.dimensions(), (79, 53));
        let square = centre_share(image.clone(), 0.875, true);
        assert_eq!(square.dimensions(), (53, 53));
        assert_eq!(
            square.get_pixel(27, 0)[0],
            255,
            "the centre stays the centre"
        );
        assert_eq!(
            centre_share(image.clone(), 1.0, true).dimensions(),
            (60, 60)
        );
        assert_eq!(centre_share(image, 1.0, false).dimensions(), (90, 60));
    }

    fn sample(dir: &Path, name: &str, defect: &str, label: bool) -> OverlaySample {
        OverlaySample {
            image: dir.join(format!("{name}.png")),
            defect: defect.into(),
            label,
            name: name.into(),
            crop: 1.0,
            crop_square: false,
            score: Some(0.5),
            raw_frame_score: false,
        }
    }

    #[test]
    fn selection_spreads_over_defects_then_adds_normals() {
        let d = Path::new("/x");
        let mut s: Vec<OverlaySample> = (0..10)
            .map(|i| sample(d, &i.to_string(), "good", false))
            .collect();
        for _ in 0..6 {
            s.push(sample(d, "c", "crack", true)); // 10..16
        }
        s.push(sample(d, "h", "hole", true)); // 16
                                              // n = 8: 2 normals reserved; crack and hole alternate until hole runs out.
        let chosen = select(&s, 8);
        assert_eq!(chosen.len(), 8);
        let crack: Vec<usize> = chosen
            .iter()
            .copied()
            .filter(|&i| (10..16).contains(&i))
            .collect();
        // 5 of 6 cracks, evenly spread: floor((2j+1)*6/10) = 0, 1, 3, 4, 5.
        assert_eq!(crack, [10, 11, 13, 14, 15]);
        assert_eq!(&chosen[5..], [16, 2, 7]);
        // Few anomalies: normals fill the rest.
        let only = [
            sample(d, "a", "hole", true),
            sample(d, "b", "good", false),
            sample(d, "c", "good", false),
        ];
        assert_eq!(select(&only, 8), [0, 1, 2]);
        // n = 1: an anomaly, no normal.
        assert_eq!(select(&s, 1), [13]);
    }

    #[test]
    fn jet_runs_blue_to_red() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(f32::NAN), jet(0.0));
    }

    #[test]
    fn grid_has_its_size_and_the_contour_on_the_mask_boundary() {
        let dir = tempfile::tempdir().unwrap();
        let size = 192; // within the tile range: shown 1:1
        let mut samples = Vec::new();
        let (mut maps, mut masks) = (Vec::new(), Vec::new());
        for i in 0..5 {
            let label = i >= 2;
            let s = sample(
                dir.path(),
                &format!("{i}"),
                if label { "scratch" } else { "good" },
                label,
            );
            let img = image::RgbImage::from_fn(size as u32, size as u32, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, 100])
            });
            img.save(&s.image).unwrap();
            samples.push(s);
            for y in 0..size {
                for x in 0..size {
                    let inside = label && (40..100).contains(&y) && (60..120).contains(&x);
                    masks.push(inside);
                    maps.push(if inside {
                        3.0
                    } else {
                        (x as f32) / size as f32
                    });
                }
            }
        }
        let out = dir.path().join("overlays/carpet.png");
        write_overlay_grid(&out, &samples, &maps, &masks, size, 4).unwrap();
        let png = image::open(&out).unwrap().to_rgb8();
        // 4 columns: 3 anomalies, 1 normal (n / 3 = 1 reserved).
        let t = size as u32;
        let width = PAD + LABEL_W + 4 * t + 3 * GAP + BAR_AREA_W;
        assert_eq!(png.width(), width);
        let title_h = title_height(title_layout(&title("carpet", 5), width).unwrap().1.len());
        assert_eq!(png.height(), title_h + HEADER_H + 2 * t + GAP + PAD);
        let (x0, y0) = (PAD + LABEL_W, title_h + HEADER_H + t + GAP);
        let at = |x: u32, y: u32| png.get_pixel(x0 + x, y0 + y).0;
        // Boundary pixels (1 px wide at 192 px) carry the contour colour ...
        for (x, y) in [(60, 40), (119, 40), (60, 99), (119, 99), (90, 40), (60, 70)] {
            assert_eq!(at(x, y), CONTOUR, "({x}, {y})");
        }
        // ... pixels just inside and outside do not; inside is the top of the range (red).
        for (x, y) in [(61, 41), (90, 70), (59, 40), (90, 39), (120, 70)] {
            assert_ne!(at(x, y), CONTOUR, "({x}, {y})");
        }
        // (input (90, 70, 100) + jet(1) = (128, 0, 0)) / 2.
        assert_eq!(at(90, 70), [109, 35, 50]);
        // The input row is the image itself.
        assert_eq!(
            png.get_pixel(x0 + 10, title_h + HEADER_H + 20).0,
            [10, 20, 100]
        );
        // The normal column (the last) has no contour anywhere.
        let xn = x0 + 3 * (t + GAP);
        assert!((0..t).all(|y| (0..t).all(|x| png.get_pixel(xn + x, y0 + y).0 != CONTOUR)));
    }

    #[test]
    fn small_inputs_are_scaled_up_and_masks_are_optional() {
        let dir = tempfile::tempdir().unwrap();
        let size = 28;
        let samples: Vec<OverlaySample> = (0..3)
            .map(|i| {
                let s = sample(dir.path(), &format!("{i}"), "digit", i == 0);
                image::GrayImage::from_pixel(28, 28, image::Luma([200]))
                    .save(&s.image)
                    .unwrap();
                s
            })
            .collect();
        let maps: Vec<f32> = (0..3 * size * size).map(|k| k as f32).collect();
        let out = dir.path().join("mnist.png");
        write_overlay_grid(&out, &samples, &maps, &[], size, 8).unwrap();
        let png = image::open(&out).unwrap();
        let width = PAD + LABEL_W + 3 * 160 + 2 * GAP + BAR_AREA_W;
        let lines = title_layout(&title("mnist", 3), width).unwrap().1.len();
        assert_eq!(
            png.height(),
            title_height(lines) + HEADER_H + 2 * 160 + GAP + PAD
        );
        let err = write_overlay_grid(&out, &samples, &maps[1..], &[], size, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("overlay grid: 2351 map values for 3 samples of 28x28"),
            "{err}"
        );
        let err = write_overlay_grid(&out, &samples, &maps, &[true; 5], size, 8)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("overlay grid: 5 mask values, expected 2352 or none"),
            "{err}"
        );
    }

    #[test]
    fn boundary_is_the_inner_edge() {
        // A 3x3 block in a 5x5 mask: its 8 outer pixels are boundary, the centre is not.
        let mut m = vec![false; 25];
        for y in 1..4 {
            for x in 1..4 {
                m[y * 5 + x] = true;
            }
        }
        let b = boundary(&m, 5, 1);
        assert_eq!(b.iter().filter(|&&v| v).count(), 8);
        assert!(!b[12]);
        // The image edge closes a mask that touches it.
        assert!(boundary(&[true; 9], 3, 1)[0]);
        assert!(!boundary(&[true; 9], 3, 1)[4]);
    }
}
