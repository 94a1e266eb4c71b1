//! CutPaste (see the [module docs](super)): a rectangle cut from the image, optionally
//! colour-jittered, pasted elsewhere (the `scar` variant thin and rotated).
use super::SynthesisConfig;
use super::{check_image, hsv_to_rgb, rgb_to_hsv, to_u8, AnomalySynthesizer, Synthesized};
use crate::error::Result;
use crate::synthetic::Rng;
use image::{GrayImage, RgbImage};
use serde::{Deserialize, Serialize};

/// The shape of the pasted patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CutPasteVariant {
    /// A rectangle of 2–15 % of the image, aspect ratio in `[0.3, 3.3]`.
    #[default]
    Normal,
    /// A thin rectangle (2–16 × 10–25 px at 256 px) rotated by `[-45°, 45°]`.
    Scar,
}

/// CutPaste's parameters; missing keys take the paper's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CutPasteConfig {
    pub variant: CutPasteVariant,
    /// Strength of the colour jitter of the patch (brightness, contrast, saturation factors
    /// in `[1 − j, 1 + j]`, hue shift in `[−j, j]` turns); 0 turns it off.
    pub colour_jitter: f32,
}

impl Default for CutPasteConfig {
    fn default() -> Self {
        CutPasteConfig {
            variant: CutPasteVariant::Normal,
            colour_jitter: 0.1,
        }
    }
}

/// CutPaste's synthesizer; every call adds an anomaly.
#[derive(Debug, Clone)]
pub struct CutPasteSynthesizer {
    config: CutPasteConfig,
}

impl CutPasteSynthesizer {
    pub fn new(config: CutPasteConfig) -> Result<Self> {
        super::parameters_in_range(&SynthesisConfig::Cutpaste(config.clone()))?;
        Ok(CutPasteSynthesizer { config })
    }

    pub fn config(&self) -> &CutPasteConfig {
        &self.config
    }
}

impl AnomalySynthesizer for CutPasteSynthesizer {
    fn synthesize(&self, image: &RgbImage, seed: u64) -> Result<Synthesized> {
        check_image(image)?;
        let mut rng = Rng::new(seed);
        let (w, h) = image.dimensions();
        let (wf, hf) = (w as f32, h as f32);
        // Patch size (rw × rh, before rotation) and rotation.
        let (rw, rh, angle) = match self.config.variant {
            CutPasteVariant::Normal => {
                let area = rng.range(0.02, 0.15) * wf * hf;
                let aspect = rng.range(0.3f32.ln(), 3.3f32.ln()).exp();
                let rw = (area * aspect).sqrt().round().clamp(1.0, wf - 1.0);
                let rh = (area / aspect).sqrt().round().clamp(1.0, hf - 1.0);
                (rw, rh, 0.0f32)
            }
            CutPasteVariant::Scar => {
                let scale = wf.min(hf) / 256.0;
                let rw = (rng.range(2.0, 16.0) * scale).round().max(1.0);
                let rh = (rng.range(10.0, 25.0) * scale)
                    .round()
                    .clamp(2.0, hf.min(wf) - 1.0);
                (rw.min(wf - 1.0), rh, rng.range(-45.0, 45.0))
            }
        };
        let (sin, cos) = angle.to_radians().sin_cos();
        // Half extents of the rotated patch's bounding box.
        let ex = 0.5 * (rw * cos.abs() + rh * sin.abs());
        let ey = 0.5 * (rw * sin.abs() + rh * cos.abs());
        let centre = |rng: &mut Rng, half: f32, side: f32| {
            if 2.0 * half >= side {
                side / 2.0
            } else {
                // Integer offsets keep an unrotated patch on the pixel grid.
                (half + (rng.range(0.0, side - 2.0 * half + 1.0)).floor()).min(side - half)
            }
        };
        let src = (
            centre(&mut rng, rw / 2.0, wf),
            centre(&mut rng, rh / 2.0, hf),
        );
        let mut dst = (centre(&mut rng, ex, wf), centre(&mut rng, ey, hf));
        for _ in 0..8 {
            if (dst.0 - src.0).abs() >= 1.0 || (dst.1 - src.1).abs() >= 1.0 {
                break;
            }
            dst = (centre(&mut rng, ex, wf), centre(&mut rng, ey, hf));
        }
        let jitter = Jitter::draw(&mut rng, self.config.colour_jitter);

        // Pixels of the destination whose centre lies in the rotated rectangle, and where
        // they come from.
        let mut pasted = Vec::new();
        let y0 = (dst.1 - ey - 1.0).floor().max(0.0) as u32;
        let y1 = ((dst.1 + ey + 1.0).ceil().max(0.0) as u32).min(h);
        let x0 = (dst.0 - ex - 1.0).floor().max(0.0) as u32;
        let x1 = ((dst.0 + ex + 1.0).ceil().max(0.0) as u32).min(w);
        for y in y0..y1 {
            for x in x0..x1 {
                let (dx, dy) = (x as f32 + 0.5 - dst.0, y as f32 + 0.5 - dst.1);
                let u = cos * dx + sin * dy;
                let v = -sin * dx + cos * dy;
                if u.abs() < rw / 2.0 && v.abs() < rh / 2.0 {
                    let sx = (src.0 + u).floor().clamp(0.0, wf - 1.0) as u32;
                    let sy = (src.1 + v).floor().clamp(0.0, hf - 1.0) as u32;
                    pasted.push((x, y, image.get_pixel(sx, sy).0));
                }
            }
        }
        let patch: Vec<[u8; 3]> = jitter.apply(pasted.iter().map(|p| p.2).collect());
        let mut out = image.clone();
        let mut mask = GrayImage::new(w, h);
        for (&(x, y, _), colour) in pasted.iter().zip(patch) {
            out.get_pixel_mut(x, y).0 = colour;
            mask.get_pixel_mut(x, y).0 = [255];
        }
        Ok(Synthesized {
            image: out,
            has_anomaly: !pasted.is_empty(),
            mask,
        })
    }
}

/// torchvision-like `ColorJitter(j, j, j, j)` on the patch (fixed order).
struct Jitter {
    brightness: f32,
    contrast: f32,
    saturation: f32,
    hue: f32,
    enabled: bool,
}

impl Jitter {
    fn draw(rng: &mut Rng, j: f32) -> Self {
        Jitter {
            brightness: rng.range(1.0 - j, 1.0 + j),
            contrast: rng.range(1.0 - j, 1.0 + j),
            saturation: rng.range(1.0 - j, 1.0 + j),
            hue: rng.range(-j, j),
            enabled: j > 0.0,
        }
    }

    fn apply(&self, patch: Vec<[u8; 3]>) -> Vec<[u8; 3]> {
        if !self.enabled || patch.is_empty() {
            return patch;
        }
        let gray = |c: [f32; 3]| 0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2];
        let px: Vec<[f32; 3]> = patch
            .iter()
            .map(|c| c.map(|v| (v as f32 / 255.0 * self.brightness).min(1.0)))
            .collect();
        let mean = px.iter().map(|&c| gray(c)).sum::<f32>() / px.len() as f32;
        px.into_iter()
            .map(|c| {
                let c = c.map(|v| (mean + self.contrast * (v - mean)).clamp(0.0, 1.0));
                let g = gray(c);
                let c = c.map(|v| (g + self.saturation * (v - g)).clamp(0.0, 1.0));
                let [h, s, v] = rgb_to_hsv(c);
                hsv_to_rgb([h + self.hue, s, v]).map(|v| to_u8(v * 255.0))
            })
            .collect()
    }
}
