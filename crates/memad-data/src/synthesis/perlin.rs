//! 2-D Perlin noise as in DRAEM's `rand_perlin_2d_np`: one random unit gradient per lattice
//! point (angle uniform in `[0, 2π)`), dot products with the offsets to the four corners,
//! interpolated with the quintic fade `6t⁵ − 15t⁴ + 10t³`, scaled by `√2` (values in about
//! `[-1, 1]`, mostly within `[-0.7, 0.7]`).
use crate::synthetic::Rng;

/// Perlin noise on a `res_x` × `res_y` lattice cell grid.
#[derive(Debug, Clone)]
pub struct PerlinNoise {
    res_x: u32,
    res_y: u32,
    /// `(res_y + 1) * (res_x + 1)` unit gradients, row-major.
    gradients: Vec<(f32, f32)>,
}

impl PerlinNoise {
    /// Noise with `res_x` × `res_y` cells (each at least 1), gradients drawn from `seed`.
    pub fn new(res_x: u32, res_y: u32, seed: u64) -> Self {
        Self::with_rng(res_x, res_y, &mut Rng::new(seed))
    }

    pub(crate) fn with_rng(res_x: u32, res_y: u32, rng: &mut Rng) -> Self {
        let (res_x, res_y) = (res_x.max(1), res_y.max(1));
        let gradients = (0..(res_x + 1) * (res_y + 1))
            .map(|_| {
                let angle = rng.range(0.0, std::f32::consts::TAU);
                (angle.cos(), angle.sin())
            })
            .collect();
        PerlinNoise {
            res_x,
            res_y,
            gradients,
        }
    }

    /// The lattice resolution `(res_x, res_y)`.
    pub fn resolution(&self) -> (u32, u32) {
        (self.res_x, self.res_y)
    }

    /// The noise at lattice coordinates `(u, v)`, `u` in `[0, res_x]`, `v` in `[0, res_y]`
    /// (clamped).
    pub fn at(&self, u: f32, v: f32) -> f32 {
        let u = u.clamp(0.0, self.res_x as f32);
        let v = v.clamp(0.0, self.res_y as f32);
        let ix = (u.floor() as u32).min(self.res_x - 1);
        let iy = (v.floor() as u32).min(self.res_y - 1);
        let (fx, fy) = (u - ix as f32, v - iy as f32);
        let stride = self.res_x + 1;
        let g = |i: u32, j: u32, dx: f32, dy: f32| {
            let (gx, gy) = self.gradients[(j * stride + i) as usize];
            gx * dx + gy * dy
        };
        let n00 = g(ix, iy, fx, fy);
        let n10 = g(ix + 1, iy, fx - 1.0, fy);
        let n01 = g(ix, iy + 1, fx, fy - 1.0);
        let n11 = g(ix + 1, iy + 1, fx - 1.0, fy - 1.0);
        let (tx, ty) = (fade(fx), fade(fy));
        let a = n00 + tx * (n10 - n00);
        let b = n01 + tx * (n11 - n01);
        std::f32::consts::SQRT_2 * (a + ty * (b - a))
    }

    /// The noise at pixel centre `(x, y)` of a `width` × `height` image spanning the lattice.
    pub fn at_pixel(&self, x: f32, y: f32, width: u32, height: u32) -> f32 {
        self.at(
            x * self.res_x as f32 / width as f32,
            y * self.res_y as f32 / height as f32,
        )
    }

    /// The whole `width` × `height` noise image, row-major.
    pub fn render(&self, width: u32, height: u32) -> Vec<f32> {
        let mut out = Vec::with_capacity((width * height) as usize);
        for y in 0..height {
            for x in 0..width {
                out.push(self.at_pixel(x as f32 + 0.5, y as f32 + 0.5, width, height));
            }
        }
        out
    }
}

/// The quintic fade `6t⁵ − 15t⁴ + 10t³`.
pub fn fade(t: f32) -> f32 {
    t * t * t * (t * (t * 6.0 - 15.0) + 10.0)
}

/// A lattice resolution `2^k` with `k` uniform in `min_scale..max_scale` (DRAEM:
/// `2 ** torch.randint(min_perlin_scale, perlin_scale)`, upper bound excluded); `max_scale`
/// ≤ `min_scale` gives `2^min_scale`.
pub(crate) fn random_resolution(rng: &mut Rng, min_scale: u32, max_scale: u32) -> u32 {
    let span = max_scale.saturating_sub(min_scale).max(1);
    1 << (min_scale + rng.u32() % span)
}
