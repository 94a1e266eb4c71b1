//! A synthetic dataset in the MVTec AD layout: procedural industrial textures with
//! realistic defects and exact masks, deterministic from a seed.
//!
//! Textures (each image is a fresh sample: random phase, offset, small rotation, scale and
//! colour jitter, illumination gradient, sensor noise):
//! - `carpet`: rows of rounded woven tufts with fibre noise;
//! - `grid`: a woven metal wire mesh over a dark background;
//! - `leather`: fine cellular grain with creases;
//! - `tile`: terrazzo-like stone with irregular chips;
//! - `wood`: grain rings with warped late-wood bands, fibres and pores.
//!
//! Defects, each blended as `lerp(texture, target, alpha)`, mask = `alpha >= 0.5`, covering
//! 0.5–5 % of the image ([`MIN_DEFECT_AREA`], [`MAX_DEFECT_AREA`]):
//! - `scratch`: a thin curved, tapered bright or dark line;
//! - `hole`: a dark irregular ellipse with a shaded rim;
//! - `stain`: a soft irregular blob with a colour shift;
//! - `missing`: an irregular piece cut out, showing a flat background.
//!
//! [`generate`] renders images in parallel (rayon), each from its own seed (so image `k` of a
//! category does not depend on the counts), writes every file atomically and writes
//! `memad-synthetic.toml` last; [`ensure_generated`] regenerates only when that marker is
//! missing or differs.
use crate::error::{DataError, Result};
use image::codecs::png::PngEncoder;
use image::{ExtendedColorType, GrayImage, ImageEncoder, Luma, Rgb, RgbImage};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::f32::consts::{FRAC_1_SQRT_2 as D, PI};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The textures the generator knows.
pub const SYNTHETIC_CATEGORIES: [&str; 5] = ["carpet", "grid", "leather", "tile", "wood"];
/// The defect types the generator knows.
pub const SYNTHETIC_DEFECTS: [&str; 4] = ["scratch", "hole", "stain", "missing"];
/// The completion marker in the root: the spec, written last.
pub const MARKER_FILE: &str = "memad-synthetic.toml";
/// Present while a generation is under way (marks the folder as the generator's).
const INCOMPLETE_FILE: &str = "memad-synthetic.incomplete";
/// Bumped whenever the rendering changes, so old folders are regenerated.
const GENERATOR_VERSION: u32 = 1;
/// Smallest fraction of the image a defect mask covers.
pub const MIN_DEFECT_AREA: f32 = 0.005;
/// Largest fraction of the image a defect mask covers.
pub const MAX_DEFECT_AREA: f32 = 0.05;

/// What to generate. Missing keys take the [`Default`] (the quickstart set).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SyntheticSpec {
    /// Names from [`SYNTHETIC_CATEGORIES`].
    pub categories: Vec<String>,
    /// Side of the square images in pixels (32 to 4096).
    pub image_size: u32,
    pub train_per_category: usize,
    pub test_good_per_category: usize,
    /// Anomalous test images per defect type and category.
    pub test_per_defect: usize,
    /// Names from [`SYNTHETIC_DEFECTS`].
    pub defects: Vec<String>,
    pub seed: u64,
}

impl Default for SyntheticSpec {
    fn default() -> Self {
        SyntheticSpec {
            categories: ["carpet", "grid", "leather"].map(String::from).to_vec(),
            image_size: 128,
            train_per_category: 60,
            test_good_per_category: 10,
            test_per_defect: 5,
            defects: SYNTHETIC_DEFECTS.map(String::from).to_vec(),
            seed: 0,
        }
    }
}

impl SyntheticSpec {
    /// Checks names, counts and size.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(DataError::InvalidSpec(m));
        if self.categories.is_empty() {
            return bad("`categories` is empty".into());
        }
        for (key, names, known) in [
            ("categories", &self.categories, &SYNTHETIC_CATEGORIES[..]),
            ("defects", &self.defects, &SYNTHETIC_DEFECTS[..]),
        ] {
            for (i, name) in names.iter().enumerate() {
                if !known.contains(&name.as_str()) {
                    let known: Vec<String> = known.iter().map(|k| k.to_string()).collect();
                    return bad(format!(
                        "unknown {key} entry `{name}`{}; known: {}",
                        crate::error::did_you_mean(name, &known),
                        known.join(", ")
                    ));
                }
                if names[..i].contains(name) {
                    return bad(format!("`{name}` appears twice in `{key}`"));
                }
            }
        }
        if !(32..=4096).contains(&self.image_size) {
            return bad(format!(
                "`image_size` = {} is outside 32..=4096",
                self.image_size
            ));
        }
        if self.train_per_category == 0 {
            return bad("`train_per_category` must be at least 1".into());
        }
        Ok(())
    }

    /// Images (not masks) the spec describes.
    pub fn image_count(&self) -> usize {
        self.categories.len()
            * (self.train_per_category
                + self.test_good_per_category
                + self.defects.len() * self.test_per_defect)
    }
}

/// What [`generate`] wrote.
#[derive(Debug, Clone)]
pub struct GenerateReport {
    pub root: PathBuf,
    pub images: usize,
    pub masks: usize,
    pub elapsed: Duration,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    generator: u32,
    spec: SyntheticSpec,
}

/// Whether `root` holds a complete generation of exactly `spec`.
pub fn is_generated(root: &Path, spec: &SyntheticSpec) -> bool {
    std::fs::read_to_string(root.join(MARKER_FILE))
        .ok()
        .and_then(|text| toml::from_str::<Marker>(&text).ok())
        .is_some_and(|m| m.generator == GENERATOR_VERSION && m.spec == *spec)
}

/// Generates `spec` into `root` unless it is already there; returns whether it generated.
pub fn ensure_generated(root: &Path, spec: &SyntheticSpec) -> Result<bool> {
    spec.validate()?;
    if is_generated(root, spec) {
        return Ok(false);
    }
    generate(root, spec)?;
    Ok(true)
}

/// Writes the dataset `spec` describes into `root`, replacing an earlier generation there.
///
/// `root` must be missing, empty, or an earlier (possibly interrupted) generation; other
/// folders are refused. Same spec → byte-identical files.
pub fn generate(root: &Path, spec: &SyntheticSpec) -> Result<GenerateReport> {
    spec.validate()?;
    let start = Instant::now();
    clear_root(root)?;
    write_atomic(&root.join(INCOMPLETE_FILE), b"generation in progress\n")?;

    let size = spec.image_size;
    let mut jobs = Vec::with_capacity(spec.image_count());
    for category in &spec.categories {
        let texture = Texture::parse(category).expect("validated");
        let cat_dir = root.join(category);
        // `split` is the folder under the category: train/good, test/good, test/<defect>.
        let mut add = |split: &str, defect: Option<(Defect, &str)>, count: usize| {
            let folder = cat_dir.join(split);
            create_dir(&folder)?;
            let mask_dir = defect.map(|(_, name)| cat_dir.join("ground_truth").join(name));
            if let Some(dir) = &mask_dir {
                create_dir(dir)?;
            }
            for index in 0..count {
                jobs.push(Job {
                    texture,
                    image: folder.join(format!("{index:03}.png")),
                    defect: defect
                        .zip(mask_dir.as_ref())
                        .map(|((d, _), dir)| (d, dir.join(format!("{index:03}_mask.png")))),
                    seed: job_seed(spec.seed, &format!("{category}/{split}/{index}")),
                });
            }
            Ok::<(), DataError>(())
        };
        add("train/good", None, spec.train_per_category)?;
        add("test/good", None, spec.test_good_per_category)?;
        for name in &spec.defects {
            let defect = Defect::parse(name).expect("validated");
            add(
                &format!("test/{name}"),
                Some((defect, name)),
                spec.test_per_defect,
            )?;
        }
    }

    jobs.par_iter().try_for_each(|job| {
        let rendered = render(
            job.texture,
            job.defect.as_ref().map(|d| d.0),
            size,
            job.seed,
        );
        write_atomic(&job.image, &encode_rgb(&rendered.image, &job.image)?)?;
        if let (Some((_, path)), Some(mask)) = (&job.defect, &rendered.mask) {
            write_atomic(path, &encode_gray(mask, path)?)?;
        }
        Ok::<(), DataError>(())
    })?;

    let marker = Marker {
        generator: GENERATOR_VERSION,
        spec: spec.clone(),
    };
    let text = format!(
        "# Written last by the memad synthetic generator: this folder is complete.\n{}",
        toml::to_string(&marker).map_err(|e| DataError::InvalidSpec(e.to_string()))?
    );
    write_atomic(&root.join(MARKER_FILE), text.as_bytes())?;
    let incomplete = root.join(INCOMPLETE_FILE);
    std::fs::remove_file(&incomplete).map_err(|e| DataError::io(&incomplete, e))?;
    Ok(GenerateReport {
        root: root.to_path_buf(),
        images: jobs.len(),
        masks: jobs.iter().filter(|j| j.defect.is_some()).count(),
        elapsed: start.elapsed(),
    })
}

/// One image (and mask) to render.
struct Job {
    texture: Texture,
    image: PathBuf,
    defect: Option<(Defect, PathBuf)>,
    seed: u64,
}

/// The seed of one image from the spec's seed and `key` (category/split/index), so an
/// image does not depend on the other images of the spec nor on where `root` is.
fn job_seed(seed: u64, key: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for b in key.bytes() {
        h = (h ^ b as u64).wrapping_mul(0x0100_0000_01b3);
    }
    Rng::new(seed ^ h).next_u64()
}

fn create_dir(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| DataError::io(dir, e))
}

/// Makes `root` an empty folder, refusing folders the generator did not make.
fn clear_root(root: &Path) -> Result<()> {
    if !root.exists() {
        return create_dir(root);
    }
    let read = std::fs::read_dir(root).map_err(|e| DataError::io(root, e))?;
    let children: Vec<PathBuf> = read
        .map(|e| e.map(|e| e.path()).map_err(|err| DataError::io(root, err)))
        .collect::<Result<_>>()?;
    let ours = root.join(MARKER_FILE).is_file() || root.join(INCOMPLETE_FILE).is_file();
    if !children.is_empty() && !ours {
        return Err(DataError::NotSynthetic {
            path: root.to_path_buf(),
        });
    }
    // The markers go last, so an interrupted clean-up still leaves the folder recognisable.
    let is_marker = |p: &PathBuf| p.ends_with(MARKER_FILE) || p.ends_with(INCOMPLETE_FILE);
    let (markers, rest): (Vec<PathBuf>, Vec<PathBuf>) = children.into_iter().partition(is_marker);
    for child in rest.into_iter().chain(markers) {
        let removed = if child.is_dir() && !child.is_symlink() {
            std::fs::remove_dir_all(&child)
        } else {
            std::fs::remove_file(&child)
        };
        removed.map_err(|e| DataError::io(&child, e))?;
    }
    Ok(())
}

/// [`memad_core::io::write_atomic`] with the crate's error.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    memad_core::io::write_atomic(path, bytes).map_err(|e| DataError::io(path, e))
}

fn encode_rgb(img: &RgbImage, path: &Path) -> Result<Vec<u8>> {
    encode(
        img.as_raw(),
        img.dimensions(),
        ExtendedColorType::Rgb8,
        path,
    )
}

fn encode_gray(img: &GrayImage, path: &Path) -> Result<Vec<u8>> {
    encode(img.as_raw(), img.dimensions(), ExtendedColorType::L8, path)
}

fn encode(
    raw: &[u8],
    (w, h): (u32, u32),
    color: ExtendedColorType,
    path: &Path,
) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    PngEncoder::new(&mut out)
        .write_image(raw, w, h, color)
        .map_err(|e| DataError::Image {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    Ok(out)
}

/// One rendered sample: the clean texture, the image (with the defect, if any) and its mask.
#[derive(Debug, Clone)]
pub struct RenderedSample {
    /// The texture before the defect was applied (equal to `image` for normal samples).
    pub clean: RgbImage,
    pub image: RgbImage,
    /// 0/255, `Some` exactly when a defect was asked for.
    pub mask: Option<GrayImage>,
}

/// Renders one `size`x`size` sample of `category` with an optional `defect` from `seed`
/// (what [`generate`] writes, for previews and tests).
pub fn render_sample(
    category: &str,
    defect: Option<&str>,
    size: u32,
    seed: u64,
) -> Result<RenderedSample> {
    let texture = Texture::parse(category).ok_or_else(|| {
        DataError::InvalidSpec(format!(
            "unknown category `{category}`; known: {}",
            SYNTHETIC_CATEGORIES.join(", ")
        ))
    })?;
    let defect = defect
        .map(|d| {
            Defect::parse(d).ok_or_else(|| {
                DataError::InvalidSpec(format!(
                    "unknown defect `{d}`; known: {}",
                    SYNTHETIC_DEFECTS.join(", ")
                ))
            })
        })
        .transpose()?;
    if size < 16 {
        return Err(DataError::InvalidSpec(format!(
            "image size {size} is below 16"
        )));
    }
    Ok(render(texture, defect, size, seed).into_images(size))
}

struct Rendered {
    clean: Vec<[f32; 3]>,
    image: RgbImage,
    mask: Option<GrayImage>,
}

impl Rendered {
    fn into_images(self, size: u32) -> RenderedSample {
        RenderedSample {
            clean: to_rgb(&self.clean, size),
            image: self.image,
            mask: self.mask,
        }
    }
}

fn render(texture: Texture, defect: Option<Defect>, size: u32, seed: u64) -> Rendered {
    let mut rng = Rng::new(seed);
    let clean = render_texture(texture, size as usize, &mut rng);
    let Some(defect) = defect else {
        let image = to_rgb(&clean, size);
        return Rendered {
            clean,
            image,
            mask: None,
        };
    };
    let overlay = render_defect(defect, &clean, size as usize, &mut rng);
    let blended: Vec<[f32; 3]> = clean
        .iter()
        .zip(&overlay.alpha)
        .zip(&overlay.target)
        .map(|((c, &a), t)| std::array::from_fn(|k| c[k] + a * (t[k] - c[k])))
        .collect();
    let mask = GrayImage::from_fn(size, size, |x, y| {
        let a = overlay.alpha[(y * size + x) as usize];
        Luma([if a >= 0.5 { 255 } else { 0 }])
    });
    Rendered {
        image: to_rgb(&blended, size),
        clean,
        mask: Some(mask),
    }
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

fn to_rgb(px: &[[f32; 3]], size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let p = px[(y * size + x) as usize];
        Rgb([to_u8(p[0]), to_u8(p[1]), to_u8(p[2])])
    })
}

// ---------------------------------------------------------------------------------------
// Randomness and noise
// ---------------------------------------------------------------------------------------

/// SplitMix64.
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub(crate) fn u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    pub(crate) fn chance(&mut self, p: f32) -> bool {
        self.unit() < p
    }
}

/// Integer lattice hash.
fn hash(x: i32, y: i32, seed: u32) -> u32 {
    let mut h = (x as u32).wrapping_mul(0x8da6_b343)
        ^ (y as u32).wrapping_mul(0xd816_3841)
        ^ seed.wrapping_mul(0xcb1a_b31f);
    h ^= h >> 16;
    h = h.wrapping_mul(0x7feb_352d);
    h ^= h >> 15;
    h = h.wrapping_mul(0x846c_a68b);
    h ^ (h >> 16)
}

/// A hash as a value in `[0, 1)`.
fn unit(h: u32) -> f32 {
    (h >> 8) as f32 / (1u32 << 24) as f32
}

const GRADIENTS: [(f32, f32); 8] = [
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 1.0),
    (0.0, -1.0),
    (D, D),
    (-D, D),
    (D, -D),
    (-D, -D),
];

/// 2-D gradient noise, roughly in `[-1, 1]`.
fn perlin(x: f32, y: f32, seed: u32) -> f32 {
    let (x0, y0) = (x.floor(), y.floor());
    let (ix, iy) = (x0 as i32, y0 as i32);
    let (fx, fy) = (x - x0, y - y0);
    let g = |i: i32, j: i32, dx: f32, dy: f32| {
        let (gx, gy) = GRADIENTS[(hash(i, j, seed) & 7) as usize];
        gx * dx + gy * dy
    };
    let fade = |t: f32| t * t * t * (t * (t * 6.0 - 15.0) + 10.0);
    let (u, v) = (fade(fx), fade(fy));
    let a = lerp(g(ix, iy, fx, fy), g(ix + 1, iy, fx - 1.0, fy), u);
    let b = lerp(
        g(ix, iy + 1, fx, fy - 1.0),
        g(ix + 1, iy + 1, fx - 1.0, fy - 1.0),
        u,
    );
    1.4 * lerp(a, b, v)
}

/// Fractal sum of `octaves` of [`perlin`], roughly in `[-1, 1]`.
fn fbm(x: f32, y: f32, seed: u32, octaves: u32) -> f32 {
    let (mut sum, mut amp, mut freq, mut norm) = (0.0, 1.0, 1.0, 0.0);
    for o in 0..octaves {
        sum += amp * perlin(x * freq, y * freq, seed.wrapping_add(o * 7919));
        norm += amp;
        amp *= 0.5;
        freq *= 2.03;
    }
    sum / norm
}

/// Cellular noise: distances to the nearest and second-nearest feature points, and the
/// nearest point's cell hash.
fn worley(x: f32, y: f32, seed: u32) -> (f32, f32, u32) {
    let (ix, iy) = (x.floor() as i32, y.floor() as i32);
    let (mut f1, mut f2, mut id) = (f32::MAX, f32::MAX, 0);
    for j in -1..=1 {
        for i in -1..=1 {
            let (cx, cy) = (ix + i, iy + j);
            let h = hash(cx, cy, seed);
            let px = cx as f32 + 0.1 + 0.8 * unit(h);
            let py = cy as f32 + 0.1 + 0.8 * unit(hash(cx, cy, seed ^ 0x5bd1_e995));
            let d = ((px - x).powi(2) + (py - y).powi(2)).sqrt();
            if d < f1 {
                f2 = f1;
                f1 = d;
                id = h;
            } else if d < f2 {
                f2 = d;
            }
        }
    }
    (f1, f2, id)
}

fn lerp(a: f32, b: f32, t: f32) -> f32 {
    a + (b - a) * t
}

fn smoothstep(e0: f32, e1: f32, x: f32) -> f32 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

fn mix3(a: [f32; 3], b: [f32; 3], t: f32) -> [f32; 3] {
    std::array::from_fn(|k| lerp(a[k], b[k], t))
}

fn scale3(a: [f32; 3], s: f32) -> [f32; 3] {
    a.map(|v| v * s)
}

fn luminance(c: [f32; 3]) -> f32 {
    0.299 * c[0] + 0.587 * c[1] + 0.114 * c[2]
}

fn mean_luminance(img: &[[f32; 3]]) -> f32 {
    img.iter().map(|&c| luminance(c)).sum::<f32>() / img.len() as f32
}

// ---------------------------------------------------------------------------------------
// Textures
// ---------------------------------------------------------------------------------------

/// Feature sizes are in pixels of a 128-px image and scale with the image size.
const REFERENCE_SIZE: f32 = 128.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Texture {
    Carpet,
    Grid,
    Leather,
    Tile,
    Wood,
}

impl Texture {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "carpet" => Texture::Carpet,
            "grid" => Texture::Grid,
            "leather" => Texture::Leather,
            "tile" => Texture::Tile,
            "wood" => Texture::Wood,
            _ => return None,
        })
    }
}

/// Per-image parameters of a texture.
struct Params {
    seeds: [u32; 6],
    period: f32,
    base: [f32; 3],
    /// Height-to-slope factor for the lighting.
    bump: f32,
    /// Texture-specific extra parameters.
    extra: [f32; 4],
}

/// Maps pixel centres to texture coordinates: rotation, scale and offset.
struct Frame {
    centre: f32,
    cos: f32,
    sin: f32,
    scale: f32,
    offset: (f32, f32),
}

impl Frame {
    fn at(&self, x: f32, y: f32) -> (f32, f32) {
        let (dx, dy) = (
            (x - self.centre) * self.scale,
            (y - self.centre) * self.scale,
        );
        (
            self.cos * dx - self.sin * dy + self.offset.0,
            self.sin * dx + self.cos * dy + self.offset.1,
        )
    }
}

fn render_texture(texture: Texture, n: usize, rng: &mut Rng) -> Vec<[f32; 3]> {
    let max_rotation_deg = match texture {
        Texture::Carpet => 6.0,
        Texture::Grid => 4.0,
        Texture::Wood => 5.0,
        Texture::Leather | Texture::Tile => 180.0,
    };
    let angle = rng.range(-max_rotation_deg, max_rotation_deg).to_radians();
    let frame = Frame {
        centre: n as f32 / 2.0,
        cos: angle.cos(),
        sin: angle.sin(),
        scale: REFERENCE_SIZE / n as f32 * rng.range(0.93, 1.07),
        offset: (rng.range(0.0, 400.0), rng.range(0.0, 400.0)),
    };
    let jitter = |rng: &mut Rng, c: [f32; 3], amount: f32| {
        let bright = rng.range(1.0 - amount, 1.0 + amount);
        c.map(|v| v * bright * rng.range(1.0 - amount / 2.0, 1.0 + amount / 2.0))
    };
    let seeds = std::array::from_fn(|_| rng.u32());
    let params = match texture {
        Texture::Carpet => Params {
            seeds,
            period: rng.range(4.3, 4.9),
            base: jitter(rng, [0.66, 0.60, 0.53], 0.06),
            bump: 1.1,
            extra: [0.0; 4],
        },
        Texture::Grid => Params {
            seeds,
            period: rng.range(10.5, 11.5),
            base: jitter(rng, [0.74, 0.74, 0.73], 0.05),
            bump: 0.35,
            extra: [rng.range(0.16, 0.2), 0.0, 0.0, 0.0],
        },
        Texture::Leather => Params {
            seeds,
            period: rng.range(2.9, 3.4),
            base: jitter(rng, [0.62, 0.38, 0.22], 0.07),
            bump: 0.9,
            extra: [rng.range(0.3, 0.6), 0.0, 0.0, 0.0],
        },
        Texture::Tile => Params {
            seeds,
            period: rng.range(8.0, 9.5),
            base: jitter(rng, [0.70, 0.69, 0.66], 0.04),
            bump: 0.25,
            extra: [rng.range(0.4, 0.55), 0.0, 0.0, 0.0],
        },
        Texture::Wood => Params {
            seeds,
            period: rng.range(13.0, 18.0),
            base: jitter(rng, [0.74, 0.52, 0.33], 0.06),
            bump: 0.25,
            extra: [rng.range(-0.1, 0.1), 0.0, 0.0, 0.0],
        },
    };
    let sample = match texture {
        Texture::Carpet => carpet,
        Texture::Grid => grid,
        Texture::Leather => leather,
        Texture::Tile => tile,
        Texture::Wood => wood,
    };
    let mut albedo = Vec::with_capacity(n * n);
    let mut height = Vec::with_capacity(n * n);
    for y in 0..n {
        for x in 0..n {
            let (tx, ty) = frame.at(x as f32 + 0.5, y as f32 + 0.5);
            let (a, h) = sample(&params, tx, ty);
            albedo.push(a);
            height.push(h);
        }
    }

    // Lighting from the upper left on the height field, an illumination gradient, noise.
    let light = {
        let l = [-0.45f32, -0.55, 0.7];
        let norm = (l[0] * l[0] + l[1] * l[1] + l[2] * l[2]).sqrt();
        l.map(|v| v / norm)
    };
    let slope = params.bump / frame.scale / 2.0;
    let gradient = (rng.range(-0.08, 0.08), rng.range(-0.08, 0.08));
    let noise_seed = rng.u32();
    let mut out = Vec::with_capacity(n * n);
    for y in 0..n {
        for x in 0..n {
            let h = |xx: usize, yy: usize| height[yy * n + xx];
            let dx = (h((x + 1).min(n - 1), y) - h(x.saturating_sub(1), y)) * slope;
            let dy = (h(x, (y + 1).min(n - 1)) - h(x, y.saturating_sub(1))) * slope;
            let norm = (dx * dx + dy * dy + 1.0).sqrt();
            let lambert = (-dx * light[0] - dy * light[1] + light[2]) / norm / light[2];
            let shade = (0.35 + 0.65 * lambert).clamp(0.25, 1.5);
            let (u, v) = (x as f32 / n as f32 - 0.5, y as f32 / n as f32 - 0.5);
            let illumination = 1.0 + gradient.0 * u + gradient.1 * v;
            let grain = 0.012 * (unit(hash(x as i32, y as i32, noise_seed)) - 0.5);
            let a = albedo[y * n + x];
            out.push(a.map(|c| (c * shade * illumination + grain).clamp(0.03, 0.9)));
        }
    }
    out
}

/// Rows of rounded tufts, offset every other row, with fibres.
fn carpet(p: &Params, x: f32, y: f32) -> ([f32; 3], f32) {
    let [s0, s1, s2, s3, ..] = p.seeds;
    let wx = x + 0.9 * perlin(x / 17.0, y / 17.0, s0);
    let wy = y + 0.9 * perlin(x / 17.0 + 31.7, y / 17.0 - 12.3, s0);
    let v = wy / p.period;
    let row = v.floor();
    let fv = v - row;
    let u = wx / (p.period * 1.2) + 0.5 * row.rem_euclid(2.0);
    let col = u.floor();
    let fu = u - col;
    let tuft = ((PI * fu).sin() * (PI * fv).sin()).max(0.0).powf(0.55);
    let variation = unit(hash(col as i32, row as i32, s1));
    let fibre = perlin(x * 1.1, y * 2.6, s2);
    let low = fbm(x / 40.0, y / 40.0, s3, 3);
    let h = tuft * (0.85 + 0.15 * fibre);
    let lum =
        (0.45 + 0.55 * tuft) * (0.88 + 0.22 * variation) * (1.0 + 0.1 * fibre) * (1.0 + 0.1 * low);
    (scale3(p.base, lum), h)
}

/// A woven wire mesh: cylindrical wires going over and under each other.
fn grid(p: &Params, x: f32, y: f32) -> ([f32; 3], f32) {
    let [s0, s1, s2, ..] = p.seeds;
    let period = p.period;
    let half_width = p.extra[0] * period;
    let (u, v) = (x / period, y / period);
    let (cu, cv) = (u.round(), v.round());
    let (du, dv) = ((u - cu) * period, (v - cv) * period);
    // Each wire undulates as it alternately passes over and under the crossing wires.
    let z_vertical = 0.5 * (PI * (v + cu)).cos();
    let z_horizontal = -0.5 * (PI * (u + cv)).cos();
    let wobble = 0.08 * perlin(x / 9.0, y / 9.0, s0);
    let mut best: Option<(f32, f32, f32)> = None; // (height, profile, along-wire shading)
    for (d, z) in [(du, z_vertical), (dv, z_horizontal)] {
        let t = d / half_width + wobble;
        if t.abs() < 1.0 {
            let profile = (1.0 - t * t).sqrt();
            let h = z + profile;
            if best.is_none_or(|b| h > b.0) {
                best = Some((h, profile, z));
            }
        }
    }
    let background = 0.16 + 0.05 * fbm(x / 6.0, y / 6.0, s1, 2);
    match best {
        Some((h, profile, z)) => {
            let metal =
                (0.45 + 0.35 * profile + 0.25 * z) * (1.0 + 0.08 * perlin(x / 3.0, y / 3.0, s2));
            let specular = 0.35 * profile.powi(12);
            let c = p.base.map(|b| (b * metal + specular).max(background));
            (c, 1.2 * h)
        }
        None => ([background * 0.98, background, background * 1.03], -1.2),
    }
}

/// Fine cellular grain: rounded cells separated by creases, with longer folds.
fn leather(p: &Params, x: f32, y: f32) -> ([f32; 3], f32) {
    let [s0, s1, s2, s3, ..] = p.seeds;
    let wx = x + 1.2 * perlin(x / 11.0, y / 11.0, s3);
    let wy = y + 1.2 * perlin(x / 11.0 - 5.3, y / 11.0 + 2.1, s3);
    let (f1, f2, id) = worley(wx / p.period, wy / p.period, s0);
    let pebble = smoothstep(0.0, 0.3, f2 - f1);
    let dome = (1.0 - f1 * f1).max(0.0);
    let ridge = 1.0 - perlin(x / 34.0, y / 34.0, s1).abs();
    let fold = p.extra[0]
        * smoothstep(0.95, 0.995, ridge)
        * (0.5 + 0.5 * perlin(x / 20.0, y / 20.0, s1 ^ 0x3c));
    let low = fbm(x / 45.0, y / 45.0, s2, 3);
    let h = 0.55 * pebble + 0.45 * dome - 0.8 * fold;
    let lum = (0.78 + 0.22 * pebble)
        * (0.94 + 0.12 * unit(id))
        * (1.0 - 0.25 * fold)
        * (1.0 + 0.14 * low);
    (scale3(p.base, lum), h)
}

/// Terrazzo-like stone: a speckled matrix with irregular polygonal chips of a few colours.
fn tile(p: &Params, x: f32, y: f32) -> ([f32; 3], f32) {
    let [s0, s1, s2, s3, s4, _] = p.seeds;
    const PALETTE: [[f32; 3]; 5] = [
        [0.30, 0.30, 0.31],
        [0.45, 0.44, 0.42],
        [0.88, 0.87, 0.84],
        [0.62, 0.58, 0.52],
        [0.55, 0.55, 0.57],
    ];
    let matrix_noise = fbm(x / 2.5, y / 2.5, s2, 2);
    let mut c = scale3(
        p.base,
        1.0 + 0.06 * matrix_noise + 0.05 * fbm(x / 30.0, y / 30.0, s3, 2),
    );
    let mut h = 0.0;
    for (layer, (size, density, seed)) in [(p.period, p.extra[0], s0), (p.period * 0.45, 0.35, s1)]
        .into_iter()
        .enumerate()
    {
        let wx = x + 0.25 * size * perlin(x / (0.6 * size), y / (0.6 * size), s4);
        let wy = y + 0.25 * size * perlin(x / (0.6 * size) + 3.3, y / (0.6 * size), s4);
        let (f1, f2, id) = worley(wx / size, wy / size, seed);
        if unit(id.rotate_left(7)) < density {
            let threshold = 0.08 + 0.25 * unit(id.rotate_left(13));
            let inside = smoothstep(threshold, threshold + 0.06, f2 - f1);
            if inside > 0.0 {
                let shade = PALETTE[(id % PALETTE.len() as u32) as usize];
                let speck = 1.0 + 0.08 * perlin(x / 1.5, y / 1.5, seed ^ 0x77);
                let chip = scale3(shade, speck * (0.92 + 0.16 * unit(id.rotate_left(21))));
                c = mix3(c, chip, inside);
                h += inside * (0.3 - 0.1 * layer as f32) * (1.0 - f1);
            }
        }
    }
    (c, h)
}

/// Grain rings warped by noise, dark late-wood bands, fibres and pores.
fn wood(p: &Params, x: f32, y: f32) -> ([f32; 3], f32) {
    let [s0, s1, s2, s3, s4, _] = p.seeds;
    let across = x + p.extra[0] * y;
    let warp =
        9.0 * fbm(across / 70.0, y / 260.0, s0, 3) + 1.5 * perlin(across / 14.0, y / 90.0, s1);
    let ring = (across + warp) / p.period;
    let r = ring - ring.floor();
    let late = smoothstep(0.5, 0.85, r) * (1.0 - smoothstep(0.92, 1.0, r));
    let fibre = perlin(across * 0.8, y * 0.045, s2);
    let pores = smoothstep(0.45, 0.75, perlin(across * 0.9, y * 0.14, s3));
    let low = fbm(across / 35.0, y / 140.0, s4, 3);
    let dark = [p.base[0] * 0.55, p.base[1] * 0.48, p.base[2] * 0.42];
    let t = (0.55 * late + 0.12 * fibre + 0.15 * low + 0.35 * pores).clamp(0.0, 1.0);
    let c = mix3(p.base, dark, t);
    (c, 0.4 * fibre - 0.6 * pores)
}

// ---------------------------------------------------------------------------------------
// Defects
// ---------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Defect {
    Scratch,
    Hole,
    Stain,
    Missing,
}

impl Defect {
    fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "scratch" => Defect::Scratch,
            "hole" => Defect::Hole,
            "stain" => Defect::Stain,
            "missing" => Defect::Missing,
            _ => return None,
        })
    }
}

/// Per-pixel blend weight and target colour of a defect.
struct Overlay {
    alpha: Vec<f32>,
    target: Vec<[f32; 3]>,
}

impl Overlay {
    fn new(n: usize) -> Self {
        Overlay {
            alpha: vec![0.0; n * n],
            target: vec![[0.0; 3]; n * n],
        }
    }

    fn area(&self) -> f32 {
        self.alpha.iter().filter(|&&a| a >= 0.5).count() as f32 / self.alpha.len() as f32
    }
}

/// Renders `defect` over `img`, redrawing until its mask covers a plausible area.
fn render_defect(defect: Defect, img: &[[f32; 3]], n: usize, rng: &mut Rng) -> Overlay {
    let (lo, hi) = (MIN_DEFECT_AREA + 0.002, MAX_DEFECT_AREA - 0.005);
    let mut last = None;
    for _ in 0..64 {
        let overlay = match defect {
            Defect::Scratch => scratch(img, n, rng),
            Defect::Hole => hole(img, n, rng),
            Defect::Stain => stain(img, n, rng),
            Defect::Missing => missing(img, n, rng),
        };
        if (lo..=hi).contains(&overlay.area()) {
            return overlay;
        }
        last = Some(overlay);
    }
    last.expect("at least one attempt")
}

/// A target area (fraction of the image) for blob-like defects.
fn target_area(rng: &mut Rng) -> f32 {
    rng.range(0.008, 0.035)
}

/// A thin curved line (quadratic Bezier), tapered at both ends, bright or dark.
fn scratch(img: &[[f32; 3]], n: usize, rng: &mut Rng) -> Overlay {
    let s = n as f32;
    let mut o = Overlay::new(n);
    let length = s * rng.range(0.3, 0.65);
    let angle = rng.range(0.0, 2.0 * PI);
    let (dx, dy) = (angle.cos(), angle.sin());
    let centre = (s * rng.range(0.3, 0.7), s * rng.range(0.3, 0.7));
    let bend = length * rng.range(-0.3, 0.3);
    let p0 = (centre.0 - dx * length / 2.0, centre.1 - dy * length / 2.0);
    let p2 = (centre.0 + dx * length / 2.0, centre.1 + dy * length / 2.0);
    let p1 = (centre.0 - dy * bend, centre.1 + dx * bend);
    let width = (s * rng.range(0.016, 0.03)).max(1.6);
    // Bright scratches show best on dark materials and dark ones on light materials.
    let mean = mean_luminance(img);
    let bright = rng.chance(if mean > 0.55 {
        0.2
    } else if mean < 0.4 {
        0.8
    } else {
        0.5
    });
    let strength = rng.range(0.85, 0.95);
    let seed = rng.u32();
    const STEPS: usize = 48;
    let points: Vec<(f32, f32)> = (0..=STEPS)
        .map(|i| {
            let t = i as f32 / STEPS as f32;
            let (a, b, c) = ((1.0 - t) * (1.0 - t), 2.0 * t * (1.0 - t), t * t);
            (
                a * p0.0 + b * p1.0 + c * p2.0,
                a * p0.1 + b * p1.1 + c * p2.1,
            )
        })
        .collect();
    let pad = width + 2.0;
    let (x0, x1) = bounds(points.iter().map(|p| p.0), pad, n);
    let (y0, y1) = bounds(points.iter().map(|p| p.1), pad, n);
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let (mut best, mut best_t) = (f32::MAX, 0.0);
            for (i, w) in points.windows(2).enumerate() {
                let (d, t) = segment_distance((px, py), w[0], w[1]);
                if d < best {
                    best = d;
                    best_t = (i as f32 + t) / STEPS as f32;
                }
            }
            let taper = (PI * best_t).sin().max(0.0).powf(0.4);
            let half = 0.5 * width * taper * (1.0 + 0.25 * perlin(best_t * 12.0, 0.5, seed));
            let a = strength * (half + 0.5 - best).clamp(0.0, 1.0);
            if a > 0.0 {
                let i = y * n + x;
                let c = img[i];
                o.alpha[i] = a;
                o.target[i] = if bright {
                    c.map(|v| 0.3 * v + 0.72)
                } else {
                    c.map(|v| 0.2 * v)
                };
            }
        }
    }
    o
}

fn segment_distance(p: (f32, f32), a: (f32, f32), b: (f32, f32)) -> (f32, f32) {
    let (abx, aby) = (b.0 - a.0, b.1 - a.1);
    let len2 = abx * abx + aby * aby;
    let t = if len2 > 0.0 {
        (((p.0 - a.0) * abx + (p.1 - a.1) * aby) / len2).clamp(0.0, 1.0)
    } else {
        0.0
    };
    let (cx, cy) = (a.0 + t * abx, a.1 + t * aby);
    (((p.0 - cx).powi(2) + (p.1 - cy).powi(2)).sqrt(), t)
}

/// Pixel range `[lo, hi)` covering `values` ± `pad`, inside the image.
fn bounds(values: impl Iterator<Item = f32>, pad: f32, n: usize) -> (usize, usize) {
    let (mut lo, mut hi) = (f32::MAX, f32::MIN);
    for v in values {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    let lo = (lo - pad).floor().max(0.0) as usize;
    let hi = ((hi + pad).ceil().max(0.0) as usize).min(n);
    (lo.min(hi), hi)
}

/// A dark irregular ellipse with a darkened rim and a lit inner wall.
fn hole(img: &[[f32; 3]], n: usize, rng: &mut Rng) -> Overlay {
    let s = n as f32;
    let mut o = Overlay::new(n);
    let area = target_area(rng) * s * s / 1.25;
    let aspect = rng.range(0.55, 1.0);
    let rx = (area / (PI * aspect)).sqrt();
    let ry = rx * aspect;
    let phi = rng.range(0.0, PI);
    let (c, sn) = (phi.cos(), phi.sin());
    let margin = rx * 1.6 + 2.0;
    let centre = (rng.range(margin, s - margin), rng.range(margin, s - margin));
    let seed = rng.u32();
    let depth = [
        rng.range(0.03, 0.06),
        rng.range(0.03, 0.05),
        rng.range(0.03, 0.05),
    ];
    let reach = rx * 1.7 + 2.0;
    let (x0, x1) = bounds([centre.0 - reach, centre.0 + reach].into_iter(), 1.0, n);
    let (y0, y1) = bounds([centre.1 - reach, centre.1 + reach].into_iter(), 1.0, n);
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5 - centre.0, y as f32 + 0.5 - centre.1);
            let (lx, ly) = (c * px + sn * py, -sn * px + c * py);
            let r = ((lx / rx).powi(2) + (ly / ry).powi(2)).sqrt();
            let r = r / (1.0 + 0.15 * perlin(lx / (0.6 * rx), ly / (0.6 * rx), seed));
            // Distance to the edge in pixels (positive inside) for antialiasing.
            let edge = (1.0 - r) * ry;
            let i = y * n + x;
            let orig = img[i];
            let rim = 1.0 - ((r - 1.0) / 0.3).clamp(0.0, 1.0);
            let inside = (edge + 0.5).clamp(0.0, 1.0);
            if rim <= 0.0 && inside <= 0.0 {
                continue;
            }
            // The inner wall on the far side from the light (upper left) is slightly lit.
            let facing = (px * 0.6 + py * 0.8) / (px * px + py * py).sqrt().max(1.0);
            let wall = smoothstep(0.5, 1.0, r) * (0.5 + 0.5 * facing);
            let dark = depth.map(|d| d + 0.08 * wall);
            let shaded = orig.map(|v| 0.45 * v);
            o.target[i] = mix3(shaded, dark, inside);
            o.alpha[i] = rim.max(inside);
        }
    }
    o
}

/// A soft irregular blob shifting the colour (dirt, oil, rust or a whitish deposit).
fn stain(img: &[[f32; 3]], n: usize, rng: &mut Rng) -> Overlay {
    let s = n as f32;
    let mut o = Overlay::new(n);
    // The mask (alpha >= 0.5) is about r < 0.85 of the soft blob.
    let radius = (target_area(rng) * s * s / (0.72 * PI)).sqrt();
    let margin = radius * 1.9 + 2.0;
    let centre = (rng.range(margin, s - margin), rng.range(margin, s - margin));
    let stretch = rng.range(0.7, 1.0);
    let phi = rng.range(0.0, PI);
    let (c, sn) = (phi.cos(), phi.sin());
    let seed = rng.u32();
    let strength = rng.range(0.8, 0.95);
    let (x0, x1) = bounds([centre.0 - margin, centre.0 + margin].into_iter(), 1.0, n);
    let (y0, y1) = bounds([centre.1 - margin, centre.1 + margin].into_iter(), 1.0, n);
    let mut covered = Vec::new(); // (pixel, alpha, mottle)
    for y in y0..y1 {
        for x in x0..x1 {
            let (px, py) = (x as f32 + 0.5 - centre.0, y as f32 + 0.5 - centre.1);
            let (lx, ly) = (c * px + sn * py, (-sn * px + c * py) / stretch);
            let r = (lx * lx + ly * ly).sqrt() / radius;
            let wobble = fbm(lx / (0.7 * radius), ly / (0.7 * radius), seed, 3);
            let r = r * (1.0 + 0.35 * wobble);
            let a = strength * (1.0 - smoothstep(0.55, 1.2, r));
            if a > 0.0 {
                let mottle = 1.0 + 0.08 * perlin(lx / 3.0, ly / 3.0, seed ^ 0x51);
                covered.push((y * n + x, a, mottle));
            }
        }
    }
    // Brown dirt, oil, rust or a whitish deposit: one of those that show on this material.
    let colour = |kind: usize, v: [f32; 3], mottle: f32| -> [f32; 3] {
        let t = match kind {
            0 => [0.72 * v[0], 0.55 * v[1], 0.32 * v[2]],
            1 => v.map(|c| 0.4 * c),
            2 => [0.5 * v[0] + 0.3, 0.5 * v[1] + 0.1, 0.3 * v[2] + 0.02],
            _ => [0.4 * v[0] + 0.55, 0.4 * v[1] + 0.53, 0.4 * v[2] + 0.48],
        };
        t.map(|c| c * mottle)
    };
    let contrast: Vec<f32> = (0..4)
        .map(|kind| {
            covered
                .iter()
                .map(|&(i, a, m)| {
                    let t = colour(kind, img[i], m);
                    a * (0..3).map(|k| (t[k] - img[i][k]).abs()).sum::<f32>()
                })
                .sum()
        })
        .collect();
    let best = contrast.iter().copied().fold(0.0, f32::max);
    let visible: Vec<usize> = (0..4).filter(|&k| contrast[k] >= 0.6 * best).collect();
    let kind = visible[(rng.u32() % visible.len() as u32) as usize];
    for (i, a, mottle) in covered {
        o.alpha[i] = a;
        o.target[i] = colour(kind, img[i], mottle);
    }
    o
}

/// An irregular polygonal piece cut out, showing a flat background with a shadowed edge.
fn missing(img: &[[f32; 3]], n: usize, rng: &mut Rng) -> Overlay {
    let s = n as f32;
    let mut o = Overlay::new(n);
    let radius = (target_area(rng) * s * s / (0.8 * PI)).sqrt();
    let margin = radius * 1.3 + 2.0;
    let centre = (rng.range(margin, s - margin), rng.range(margin, s - margin));
    let corners = 5 + (rng.u32() % 4) as usize;
    let start = rng.range(0.0, 2.0 * PI);
    let polygon: Vec<(f32, f32)> = (0..corners)
        .map(|k| {
            let angle = start + 2.0 * PI * (k as f32 + rng.range(-0.3, 0.3)) / corners as f32;
            let r = radius * rng.range(0.7, 1.25);
            (centre.0 + r * angle.cos(), centre.1 + r * angle.sin())
        })
        .collect();
    let (x0, x1) = bounds(polygon.iter().map(|p| p.0), 2.0, n);
    let (y0, y1) = bounds(polygon.iter().map(|p| p.1), 2.0, n);
    let mut covered = Vec::new(); // (pixel, alpha, shade)
    for y in y0..y1 {
        for x in x0..x1 {
            let p = (x as f32 + 0.5, y as f32 + 0.5);
            let mut d = f32::MAX;
            let mut shadow = 0.0f32;
            for k in 0..corners {
                let (a, b) = (polygon[k], polygon[(k + 1) % corners]);
                let (dist, _) = segment_distance(p, a, b);
                if dist < d {
                    d = dist;
                    // Edges on the upper-left side cast the cut's shadow into it.
                    let (mx, my) = ((a.0 + b.0) / 2.0 - centre.0, (a.1 + b.1) / 2.0 - centre.1);
                    let facing = -(mx * 0.6 + my * 0.8) / (mx * mx + my * my).sqrt().max(1e-6);
                    shadow = facing.max(0.0);
                }
            }
            let signed = if inside_polygon(p, &polygon) { d } else { -d };
            let a = (signed + 0.5).clamp(0.0, 1.0);
            if a > 0.0 {
                let shade = 1.0 - 0.35 * shadow * (1.0 - smoothstep(0.0, 2.5, signed));
                covered.push((y * n + x, a, shade));
            }
        }
    }
    // A flat background contrasting with the material: dark behind light materials, light
    // behind dark ones; if some covered pixel would be left (nearly) unchanged, the next
    // candidate colour that changes every pixel.
    let mean = mean_luminance(img);
    let dark = [0.04, 0.04, 0.05].map(|v| v * rng.range(0.9, 1.2));
    let light = [0.86, 0.86, 0.84].map(|v| v * rng.range(0.95, 1.03));
    let mut candidates = if mean > 0.42 {
        [dark, light]
    } else {
        [light, dark]
    }
    .to_vec();
    candidates.extend([[0.22, 0.13, 0.08], [0.10, 0.13, 0.22], [0.5, 0.5, 0.5]]);
    let contrast = |colour: [f32; 3]| {
        covered
            .iter()
            .filter(|c| c.1 >= 0.5)
            .map(|&(i, _, shade)| {
                (0..3)
                    .map(|k| (colour[k] * shade - img[i][k]).abs())
                    .fold(0.0, f32::max)
            })
            .fold(f32::MAX, f32::min)
    };
    let background = candidates
        .iter()
        .copied()
        .find(|&c| contrast(c) >= 0.025)
        .unwrap_or(candidates[0]);
    for (i, a, shade) in covered {
        o.alpha[i] = a;
        o.target[i] = background.map(|v| v * shade);
    }
    o
}

fn inside_polygon(p: (f32, f32), polygon: &[(f32, f32)]) -> bool {
    let mut inside = false;
    let mut j = polygon.len() - 1;
    for i in 0..polygon.len() {
        let (a, b) = (polygon[i], polygon[j]);
        if (a.1 > p.1) != (b.1 > p.1) && p.0 < (b.0 - a.0) * (p.1 - a.1) / (b.1 - a.1) + a.0 {
            inside = !inside;
        }
        j = i;
    }
    inside
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_deterministic_and_seed_dependent() {
        let a = render_sample("carpet", Some("scratch"), 48, 3).unwrap();
        let b = render_sample("carpet", Some("scratch"), 48, 3).unwrap();
        let c = render_sample("carpet", Some("scratch"), 48, 4).unwrap();
        assert_eq!(a.image, b.image);
        assert_eq!(a.mask, b.mask);
        assert_ne!(a.image, c.image);
    }

    #[test]
    fn masks_are_exactly_the_strongly_changed_pixels_and_plausibly_sized() {
        for category in SYNTHETIC_CATEGORIES {
            for defect in SYNTHETIC_DEFECTS {
                for seed in 0..4 {
                    let texture = Texture::parse(category).unwrap();
                    let d = Defect::parse(defect).unwrap();
                    let size = if seed % 2 == 0 { 32 } else { 96 };
                    let mut rng = Rng::new(seed);
                    let clean = render_texture(texture, size, &mut rng);
                    let overlay = render_defect(d, &clean, size, &mut rng);
                    let out = render(texture, Some(d), size as u32, seed).into_images(size as u32);
                    let mask = out.mask.unwrap();
                    let what = format!("{category}/{defect} seed {seed}");
                    let mut masked = 0;
                    for (i, (m, (c, p))) in mask
                        .pixels()
                        .zip(out.clean.pixels().zip(out.image.pixels()))
                        .enumerate()
                    {
                        let alpha = overlay.alpha[i];
                        assert_eq!(m[0] == 255, alpha >= 0.5, "{what}: pixel {i}");
                        if m[0] == 255 {
                            masked += 1;
                            assert_ne!(c, p, "{what}: masked pixel {i} is unchanged");
                        }
                        if alpha == 0.0 {
                            assert_eq!(c, p, "{what}: pixel {i} changed outside the defect");
                        }
                    }
                    let area = masked as f32 / (size * size) as f32;
                    assert!(
                        (MIN_DEFECT_AREA..=MAX_DEFECT_AREA).contains(&area),
                        "{what}: area {area}"
                    );
                }
            }
        }
    }

    #[test]
    fn spec_validation_names_the_problem() {
        let spec = SyntheticSpec {
            categories: vec!["carpett".into()],
            ..SyntheticSpec::default()
        };
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("carpett") && err.contains("leather"), "{err}");
        let spec = SyntheticSpec {
            defects: vec!["hole".into(), "hole".into()],
            ..SyntheticSpec::default()
        };
        assert!(spec.validate().unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn default_spec_round_trips_through_toml() {
        let spec = SyntheticSpec::default();
        let text = toml::to_string(&spec).unwrap();
        assert_eq!(toml::from_str::<SyntheticSpec>(&text).unwrap(), spec);
        let partial: SyntheticSpec = toml::from_str("image_size = 64").unwrap();
        assert_eq!(partial.image_size, 64);
        assert_eq!(partial.categories, spec.categories);
        assert!(toml::from_str::<SyntheticSpec>("image_sise = 64").is_err());
    }
}
