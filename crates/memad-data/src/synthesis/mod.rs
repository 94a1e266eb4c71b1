//! Anomaly synthesis for self-supervised methods (DRAEM, MDD-Net, CutPaste-style training):
//! turn a normal image into an anomalous one with an exact ground-truth mask.
//!
//! A method holds a `Box<dyn` [`AnomalySynthesizer`]`>` built from a typed
//! [`SynthesisConfig`] (`kind = "draem"` or `kind = "cutpaste"`) by [`build`]; every call of
//! [`AnomalySynthesizer::synthesize`] is a pure function of the image and the seed.
//!
//! # DRAEM (Zavrtanik, Kristan, Skočaj, *DRAEM — A discriminatively trained reconstruction
//! embedding for surface anomaly detection*, ICCV 2021, Sec. 3.3) — [`draem`]
//!
//! 1. Perlin noise `P` ([`perlin`], quintic fade, as `rand_perlin_2d_np`) on a lattice of
//!    `2^kx` × `2^ky` cells, `kx, ky` uniform in `min_perlin_scale..perlin_scale` (upper bound
//!    excluded, as `torch.randint` in the reference code: 1 to 32 cells by default);
//! 2. rotated by an angle uniform in `[-90°, 90°]` (outside the rotated noise is 0);
//! 3. `M = [P > 0.5]`;
//! 4. the anomaly source `A`: a random image of `texture_dir` (e.g. DTD, searched
//!    recursively), resized to the image; without `texture_dir`, a built-in source: with
//!    probability ½ the image itself with its 4×4 tiles shuffled, otherwise a procedural
//!    texture of [`crate::synthetic`] (a random category);
//! 5. `A` augmented by 3 distinct random operations of DRAEM's imgaug set;
//! 6. `I_a = (1 − M) ⊙ I + β (M ⊙ I) + (1 − β)(M ⊙ A)`, `β ~ U[0, beta_max]` (0.8): the
//!    official `data_loader.py` (`beta = rand * 0.8`, `(1 - beta) * img_thr + beta * image`),
//!    so the source's opacity is in `[0.2, 1]`; the paper's Eq. 2 names the weights the
//!    other way round, with its `β` in `[0.1, 1]`;
//! 7. with probability `1 − anomaly_probability` (0.5, DRAEM's `has_anomaly`) the image is
//!    returned unchanged with an empty mask; `has_anomaly` is also false when `M` is empty.
//!
//! Augmentations implemented (DRAEM's list, simply): per-channel gamma `[0.5, 2]`;
//! brightness `× [0.8, 1.2] + [-30, 30]` (on RGB, not on the Y of YCbCr); sharpness (PIL's
//! 3×3 smoothing kernel, factor `[0, 2]`); hue shift `[-50, 50]` of 255 (≈ ±70°) with a
//! saturation scale `[0.8, 1.2]`; solarize (threshold `[32, 128]`); posterize (2–6 bits);
//! invert; autocontrast (per channel); equalize (per-channel histogram equalisation);
//! rotate `[-45°, 45°]` (nearest, black fill). Deviations: imgaug's exact colour spaces and
//! interpolation, and DRAEM's extra random 90° image rotation, are not reproduced.
//!
//! # CutPaste (Li, Sohn, Yoon, Pfister, *CutPaste: Self-supervised learning for anomaly
//! detection and localization*, CVPR 2021) — [`cutpaste`]
//!
//! - `normal`: a rectangle of area `[0.02, 0.15]` of the image, aspect ratio log-uniform in
//!   `[0.3, 3.3]`, cut at a random place, optionally colour-jittered (brightness, contrast,
//!   saturation, hue: ±0.1 as the reference code's `ColorJitter(0.1, 0.1, 0.1, 0.1)`), and
//!   pasted at another random place;
//! - `scar`: a thin rectangle, width 2–16 and height 10–25 px at 256 px (scaled with the
//!   image's shorter side), rotated by `[-45°, 45°]` before pasting (nearest).
//!
//! The mask is exactly the pasted pixels (pixel centres inside the pasted, possibly rotated,
//! rectangle); pixels outside it are never changed.
pub mod cutpaste;
pub mod draem;
pub mod perlin;

use crate::error::{DataError, Result};
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

pub use cutpaste::{CutPasteConfig, CutPasteSynthesizer, CutPasteVariant};
pub use draem::{DraemConfig, DraemDraw, DraemSynthesizer};
pub use perlin::PerlinNoise;

/// A synthesized training sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthesized {
    /// The (possibly) anomalous image, the size of the input.
    pub image: RgbImage,
    /// 0/255, 255 exactly where pixels were replaced; all 0 when `has_anomaly` is false.
    pub mask: GrayImage,
    /// Whether an anomaly was added (the mask is non-empty).
    pub has_anomaly: bool,
}

/// Makes an anomalous image and its mask from a normal image, deterministically from `seed`.
pub trait AnomalySynthesizer: Send + Sync {
    fn synthesize(&self, image: &RgbImage, seed: u64) -> Result<Synthesized>;
}

/// Which synthesizer, with its parameters (paper defaults for missing keys).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SynthesisConfig {
    Draem(DraemConfig),
    Cutpaste(CutPasteConfig),
}

impl Default for SynthesisConfig {
    fn default() -> Self {
        SynthesisConfig::Draem(DraemConfig::default())
    }
}

/// The first parameter of `config` out of range: its key (`data.synthesis.<key>`) and why;
/// the texture folder is checked when the synthesizer is built.
pub fn check_parameters(config: &SynthesisConfig) -> std::result::Result<(), (String, String)> {
    let checked = match config {
        SynthesisConfig::Draem(c) => c.check(),
        SynthesisConfig::Cutpaste(c) => match (0.0..=0.5).contains(&c.colour_jitter) {
            true => Ok(()),
            false => Err((
                "colour_jitter",
                format!("{} is outside [0, 0.5]", c.colour_jitter),
            )),
        },
    };
    checked.map_err(|(key, msg)| (format!("data.synthesis.{key}"), msg))
}

/// [`check_parameters`] as this crate's error.
fn parameters_in_range(config: &SynthesisConfig) -> Result<()> {
    check_parameters(config)
        .map_err(|(key, msg)| DataError::InvalidArgument(format!("{key}: {msg}")))
}

/// Builds the synthesizer `config` describes (a DRAEM `texture_dir` is listed here: a missing
/// folder or one without images is an error naming it).
pub fn build(config: &SynthesisConfig) -> Result<Box<dyn AnomalySynthesizer>> {
    Ok(match config {
        SynthesisConfig::Draem(c) => Box::new(DraemSynthesizer::new(c.clone())?),
        SynthesisConfig::Cutpaste(c) => Box::new(CutPasteSynthesizer::new(c.clone())?),
    })
}

/// An empty mask, the input unchanged.
pub(crate) fn unchanged(image: &RgbImage) -> Synthesized {
    Synthesized {
        image: image.clone(),
        mask: GrayImage::new(image.width(), image.height()),
        has_anomaly: false,
    }
}

pub(crate) fn check_image(image: &RgbImage) -> Result<()> {
    if image.width() < 8 || image.height() < 8 {
        return Err(DataError::InvalidArgument(format!(
            "anomaly synthesis needs an image of at least 8x8 pixels, got {}x{}",
            image.width(),
            image.height()
        )));
    }
    Ok(())
}

/// RGB in `[0, 1]` to HSV (hue in `[0, 1)`).
pub(crate) fn rgb_to_hsv(c: [f32; 3]) -> [f32; 3] {
    let max = c[0].max(c[1]).max(c[2]);
    let min = c[0].min(c[1]).min(c[2]);
    let d = max - min;
    let h = if d <= 0.0 {
        0.0
    } else if max == c[0] {
        ((c[1] - c[2]) / d).rem_euclid(6.0) / 6.0
    } else if max == c[1] {
        ((c[2] - c[0]) / d + 2.0) / 6.0
    } else {
        ((c[0] - c[1]) / d + 4.0) / 6.0
    };
    let s = if max <= 0.0 { 0.0 } else { d / max };
    [h, s, max]
}

/// HSV (hue in turns) to RGB in `[0, 1]`.
pub(crate) fn hsv_to_rgb([h, s, v]: [f32; 3]) -> [f32; 3] {
    let h = h.rem_euclid(1.0) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h % 2.0) - 1.0).abs());
    let (r, g, b) = match h as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

pub(crate) fn to_u8(v: f32) -> u8 {
    v.round().clamp(0.0, 255.0) as u8
}
