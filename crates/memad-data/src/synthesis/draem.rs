//! DRAEM's anomaly synthesis (see the [module docs](super)): Perlin mask, augmented texture
//! source, `β`-blend.
use super::perlin::{random_resolution, PerlinNoise};
use super::{
    check_image, hsv_to_rgb, rgb_to_hsv, to_u8, unchanged, AnomalySynthesizer, Synthesized,
};
use crate::error::{DataError, Result};
use crate::image_io::is_image_path;
use crate::synthetic::{render_sample, Rng, SYNTHETIC_CATEGORIES};
use image::imageops::{self, FilterType};
use image::{GrayImage, Luma, RgbImage};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// DRAEM's parameters; missing keys take the paper's values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DraemConfig {
    /// A folder of anomaly-source textures (e.g. DTD's `images`), searched recursively;
    /// `None`: the built-in source (shuffled tiles of the image or a procedural texture).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub texture_dir: Option<PathBuf>,
    /// Lattice resolutions are `2^k`, `k` in `min_perlin_scale..perlin_scale` (exclusive).
    pub perlin_scale: u32,
    pub min_perlin_scale: u32,
    /// `β ~ U[0, beta_max]`, the image's weight inside the mask (the anomaly source's is
    /// `1 - β`, at least `1 - beta_max`).
    pub beta_max: f32,
    /// Probability that an anomaly is added at all.
    pub anomaly_probability: f32,
    // f32, so `--resolved` shows `beta_max = 0.800000011920929`: an f64 would read `0.8` but
    // change the config hash of every run made so far (resume, sweep skips, tables).
}

impl Default for DraemConfig {
    fn default() -> Self {
        DraemConfig {
            texture_dir: None,
            perlin_scale: 6,
            min_perlin_scale: 0,
            beta_max: 0.8,
            anomaly_probability: 0.5,
        }
    }
}

impl DraemConfig {
    /// The first parameter out of range: its key (below `data.synthesis`) and why.
    pub(crate) fn check(&self) -> std::result::Result<(), (&'static str, String)> {
        if self.min_perlin_scale >= self.perlin_scale || self.perlin_scale > 12 {
            let key = match self.perlin_scale > 12 || self.perlin_scale == 0 {
                true => "perlin_scale",
                false => "min_perlin_scale",
            };
            let msg = format!(
                "need min_perlin_scale < perlin_scale <= 12, got {} and {}",
                self.min_perlin_scale, self.perlin_scale
            );
            return Err((key, msg));
        }
        if !(0.0..=1.0).contains(&self.beta_max) {
            return Err(("beta_max", format!("{} is outside [0, 1]", self.beta_max)));
        }
        if !(0.0..=1.0).contains(&self.anomaly_probability) {
            let msg = format!("{} is outside [0, 1]", self.anomaly_probability);
            return Err(("anomaly_probability", msg));
        }
        Ok(())
    }
}

/// What one DRAEM call drew (for tests and diagnostics).
#[derive(Debug, Clone, PartialEq)]
pub struct DraemDraw {
    /// Whether the anomaly branch was taken (before checking the mask is non-empty).
    pub anomaly_drawn: bool,
    pub resolution: (u32, u32),
    pub angle_deg: f32,
    pub beta: f32,
    /// The texture file used, `None` for the built-in sources.
    pub texture: Option<PathBuf>,
    /// The indices of the 3 augmentations applied, in order (see [`AUGMENTATIONS`]).
    pub augmentations: Vec<usize>,
}

/// The names of the augmentations, by index.
pub const AUGMENTATIONS: [&str; 10] = [
    "gamma",
    "brightness",
    "sharpness",
    "hue_saturation",
    "solarize",
    "posterize",
    "invert",
    "autocontrast",
    "equalize",
    "rotate",
];

/// DRAEM's synthesizer.
#[derive(Debug, Clone)]
pub struct DraemSynthesizer {
    config: DraemConfig,
    textures: Vec<PathBuf>,
}

impl DraemSynthesizer {
    /// Validates `config` and lists its `texture_dir` (sorted, so runs are reproducible).
    pub fn new(config: DraemConfig) -> Result<Self> {
        super::parameters_in_range(&super::SynthesisConfig::Draem(config.clone()))?;
        let textures = match &config.texture_dir {
            None => Vec::new(),
            Some(dir) => list_textures(dir)?,
        };
        Ok(DraemSynthesizer { config, textures })
    }

    pub fn config(&self) -> &DraemConfig {
        &self.config
    }

    /// The texture files found in `texture_dir`.
    pub fn textures(&self) -> &[PathBuf] {
        &self.textures
    }

    /// [`AnomalySynthesizer::synthesize`] with what was drawn.
    pub fn synthesize_with_draw(
        &self,
        image: &RgbImage,
        seed: u64,
    ) -> Result<(Synthesized, DraemDraw)> {
        check_image(image)?;
        let c = &self.config;
        let mut rng = Rng::new(seed);
        let mut draw = DraemDraw {
            anomaly_drawn: rng.chance(c.anomaly_probability),
            resolution: (1, 1),
            angle_deg: 0.0,
            beta: 0.0,
            texture: None,
            augmentations: Vec::new(),
        };
        if !draw.anomaly_drawn {
            return Ok((unchanged(image), draw));
        }
        let (w, h) = image.dimensions();
        draw.resolution = (
            random_resolution(&mut rng, c.min_perlin_scale, c.perlin_scale),
            random_resolution(&mut rng, c.min_perlin_scale, c.perlin_scale),
        );
        let noise = PerlinNoise::with_rng(draw.resolution.0, draw.resolution.1, &mut rng);
        draw.angle_deg = rng.range(-90.0, 90.0);
        let mask = perlin_mask(&noise, draw.angle_deg, w, h);
        draw.beta = rng.range(0.0, c.beta_max);

        let mut source = if self.textures.is_empty() {
            builtin_source(image, &mut rng)?
        } else {
            let path = &self.textures[(rng.next_u64() % self.textures.len() as u64) as usize];
            draw.texture = Some(path.clone());
            load_texture(path, w, h)?
        };
        draw.augmentations = augment(&mut source, &mut rng);

        let beta = draw.beta;
        let mut out = image.clone();
        let mut any = false;
        for ((o, m), a) in out.pixels_mut().zip(mask.pixels()).zip(source.pixels()) {
            if m[0] == 255 {
                any = true;
                for k in 0..3 {
                    let i = o[k] as f32;
                    o[k] = to_u8(beta * i + (1.0 - beta) * a[k] as f32);
                }
            }
        }
        let result = Synthesized {
            image: out,
            mask,
            has_anomaly: any,
        };
        Ok((result, draw))
    }
}

impl AnomalySynthesizer for DraemSynthesizer {
    fn synthesize(&self, image: &RgbImage, seed: u64) -> Result<Synthesized> {
        Ok(self.synthesize_with_draw(image, seed)?.0)
    }
}

/// `[rotate(P, angle) > 0.5]`: the noise is evaluated at the inversely rotated pixel centre;
/// pixels whose source falls outside the image get 0 (as imgaug's constant fill).
fn perlin_mask(noise: &PerlinNoise, angle_deg: f32, w: u32, h: u32) -> GrayImage {
    let (sin, cos) = angle_deg.to_radians().sin_cos();
    let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
    GrayImage::from_fn(w, h, |x, y| {
        let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
        let sx = cos * dx + sin * dy + cx;
        let sy = -sin * dx + cos * dy + cy;
        let inside = (0.0..w as f32).contains(&sx) && (0.0..h as f32).contains(&sy);
        let p = if inside {
            noise.at_pixel(sx, sy, w, h)
        } else {
            0.0
        };
        Luma([if p > 0.5 { 255 } else { 0 }])
    })
}

/// Image files under `dir` (recursively), sorted.
fn list_textures(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(DataError::InvalidArgument(format!(
            "draem synthesis: texture_dir {} does not exist or is not a folder",
            dir.display()
        )));
    }
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(|e| DataError::io(&d, e))? {
            let path = entry.map_err(|e| DataError::io(&d, e))?.path();
            if path.is_dir() {
                stack.push(path);
            } else if is_image_path(&path) {
                found.push(path);
            }
        }
    }
    if found.is_empty() {
        return Err(DataError::no_images(dir));
    }
    found.sort();
    Ok(found)
}

fn load_texture(path: &Path, w: u32, h: u32) -> Result<RgbImage> {
    let img = crate::image_io::open(path)?
        .decode()
        .map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?
        .into_rgb8();
    Ok(if img.dimensions() == (w, h) {
        img
    } else {
        imageops::resize(&img, w, h, FilterType::Triangle)
    })
}

/// Without a texture folder: the image with its 4×4 tiles shuffled, or a procedural texture.
fn builtin_source(image: &RgbImage, rng: &mut Rng) -> Result<RgbImage> {
    let (w, h) = image.dimensions();
    if rng.chance(0.5) {
        const K: u32 = 4;
        let (tw, th) = ((w / K).max(1), (h / K).max(1));
        let mut perm: Vec<u32> = (0..K * K).collect();
        for i in (1..perm.len()).rev() {
            perm.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
        }
        Ok(RgbImage::from_fn(w, h, |x, y| {
            let (tx, ty) = ((x / tw).min(K - 1), (y / th).min(K - 1));
            let src = perm[(ty * K + tx) as usize];
            let (ox, oy) = (x - tx * tw, y - ty * th);
            let sx = ((src % K) * tw + ox).min(w - 1);
            let sy = ((src / K) * th + oy).min(h - 1);
            *image.get_pixel(sx, sy)
        }))
    } else {
        let category =
            SYNTHETIC_CATEGORIES[(rng.next_u64() % SYNTHETIC_CATEGORIES.len() as u64) as usize];
        let side = w.max(h).max(16);
        let texture = render_sample(category, None, side, rng.next_u64())?.image;
        Ok(imageops::crop_imm(&texture, 0, 0, w, h).to_image())
    }
}

/// Applies 3 distinct random augmentations (DRAEM's `randAugmenter`); returns their indices.
fn augment(img: &mut RgbImage, rng: &mut Rng) -> Vec<usize> {
    let mut order: Vec<usize> = (0..AUGMENTATIONS.len()).collect();
    for i in 0..3 {
        let j = i + (rng.next_u64() % (order.len() - i) as u64) as usize;
        order.swap(i, j);
    }
    order.truncate(3);
    for &op in &order {
        apply(op, img, rng);
    }
    order
}

fn map_channels(img: &mut RgbImage, f: impl Fn(usize, u8) -> u8) {
    for p in img.pixels_mut() {
        for k in 0..3 {
            p[k] = f(k, p[k]);
        }
    }
}

fn apply(op: usize, img: &mut RgbImage, rng: &mut Rng) {
    match op {
        0 => {
            let g: [f32; 3] = std::array::from_fn(|_| rng.range(0.5, 2.0));
            map_channels(img, |k, v| to_u8(255.0 * (v as f32 / 255.0).powf(g[k])));
        }
        1 => {
            let (mul, add) = (rng.range(0.8, 1.2), rng.range(-30.0, 30.0));
            map_channels(img, |_, v| to_u8(v as f32 * mul + add));
        }
        2 => {
            let factor = rng.range(0.0, 2.0);
            let src = img.clone();
            let (w, h) = src.dimensions();
            for y in 1..h.saturating_sub(1) {
                for x in 1..w.saturating_sub(1) {
                    for k in 0..3 {
                        let mut sum = 0.0;
                        for dy in 0..3 {
                            for dx in 0..3 {
                                let weight = if dx == 1 && dy == 1 { 5.0 } else { 1.0 };
                                sum += weight * src.get_pixel(x + dx - 1, y + dy - 1)[k] as f32;
                            }
                        }
                        let smooth = sum / 13.0;
                        let orig = src.get_pixel(x, y)[k] as f32;
                        img.get_pixel_mut(x, y)[k] = to_u8(smooth + factor * (orig - smooth));
                    }
                }
            }
        }
        3 => {
            let shift = rng.range(-50.0, 50.0) / 255.0;
            let sat = rng.range(0.8, 1.2);
            for p in img.pixels_mut() {
                let [hh, s, v] = rgb_to_hsv(p.0.map(|c| c as f32 / 255.0));
                let rgb = hsv_to_rgb([hh + shift, (s * sat).min(1.0), v]);
                p.0 = rgb.map(|c| to_u8(c * 255.0));
            }
        }
        4 => {
            let threshold = rng.range(32.0, 128.0);
            map_channels(img, |_, v| if v as f32 >= threshold { 255 - v } else { v });
        }
        5 => {
            let bits = 2 + rng.u32() % 5;
            let keep = !((1u16 << (8 - bits)) - 1) as u8;
            map_channels(img, |_, v| v & keep);
        }
        6 => map_channels(img, |_, v| 255 - v),
        7 => {
            let mut lo = [255u8; 3];
            let mut hi = [0u8; 3];
            for p in img.pixels() {
                for k in 0..3 {
                    lo[k] = lo[k].min(p[k]);
                    hi[k] = hi[k].max(p[k]);
                }
            }
            map_channels(img, |k, v| {
                if hi[k] > lo[k] {
                    to_u8((v - lo[k]) as f32 * 255.0 / (hi[k] - lo[k]) as f32)
                } else {
                    v
                }
            });
        }
        8 => {
            let n = (img.width() * img.height()) as f32;
            let mut lut = [[0u8; 256]; 3];
            for (k, table) in lut.iter_mut().enumerate() {
                let mut hist = [0u32; 256];
                for p in img.pixels() {
                    hist[p[k] as usize] += 1;
                }
                let mut cum = 0u32;
                for (v, count) in hist.iter().enumerate() {
                    cum += count;
                    table[v] = to_u8(255.0 * cum as f32 / n);
                }
            }
            map_channels(img, |k, v| lut[k][v as usize]);
        }
        _ => {
            let (sin, cos) = rng.range(-45.0f32, 45.0).to_radians().sin_cos();
            let src = img.clone();
            let (w, h) = src.dimensions();
            let (cx, cy) = (w as f32 / 2.0, h as f32 / 2.0);
            for (x, y, p) in img.enumerate_pixels_mut() {
                let (dx, dy) = (x as f32 + 0.5 - cx, y as f32 + 0.5 - cy);
                let sx = (cos * dx + sin * dy + cx).floor();
                let sy = (-sin * dx + cos * dy + cy).floor();
                *p = if sx >= 0.0 && sy >= 0.0 && sx < w as f32 && sy < h as f32 {
                    *src.get_pixel(sx as u32, sy as u32)
                } else {
                    image::Rgb([0, 0, 0])
                };
            }
        }
    }
}
