//! Anomaly-map post-processing shared by the feature-comparison methods.
use tch::{Kind, Tensor};

/// Upsamples per-level distance maps to the input size and combines them by sum (RD4AD's
/// `add` mode).
///
/// # Shapes
/// `maps[k]`: `[B, H_k, W_k]` -> `[B, 1, size.0, size.1]`.
pub fn upsample_and_sum(maps: &[Tensor], size: [i64; 2]) -> Tensor {
    let up: Vec<Tensor> = maps
        .iter()
        .map(|m| m.unsqueeze(1).upsample_bilinear2d(size, true, None, None))
        .collect();
    Tensor::stack(&up, 0).sum_dim_intlist(0, false, None)
}

/// Gaussian smoothing as `scipy.ndimage.gaussian_filter(x, sigma)` (truncate 4.0, `reflect`
/// boundary: mirrored including the edge pixel), separably over H and W, computed in float64
/// as scipy computes it and returned in `x`'s kind. In float64 the result is the same on
/// every device: on CUDA, a float32 convolution runs in TF32 (libtorch's default for cuDNN,
/// as PyTorch's `torch.backends.cudnn.allow_tf32`), which keeps 10 bits of mantissa.
///
/// # Shapes
/// `x`: `[B, 1, H, W]` -> `[B, 1, H, W]`.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    if sigma <= 0.0 {
        return x.shallow_clone();
    }
    let radius = (4.0 * sigma + 0.5) as i64;
    let name = format!("gaussian_taps:{sigma}");
    let kernel = memad_core::constant::constant(&name, x.device(), Kind::Double, || {
        let taps: Vec<f64> = (-radius..=radius)
            .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
            .collect();
        let sum: f64 = taps.iter().sum();
        Tensor::from_slice(&taps) / sum
    });
    let k = 2 * radius + 1;
    let h = symmetric_pad(&x.to_kind(Kind::Double), radius, 3).conv2d(
        &kernel.reshape([1, 1, 1, k]),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    );
    symmetric_pad(&h, radius, 2)
        .conv2d(
            &kernel.reshape([1, 1, k, 1]),
            None::<Tensor>,
            [1, 1],
            [0, 0],
            [1, 1],
            1,
        )
        .to_kind(x.kind())
}

/// Pads `r` pixels on both sides of `dim` by mirroring including the edge (scipy `reflect`);
/// repeats the mirror when `r` exceeds the size.
fn symmetric_pad(x: &Tensor, r: i64, dim: i64) -> Tensor {
    let mut out = x.shallow_clone();
    let mut remaining = r;
    while remaining > 0 {
        let n = out.size()[dim as usize];
        let step = remaining.min(x.size()[dim as usize]).min(n);
        let before = out.narrow(dim, 0, step).flip([dim]);
        let after = out.narrow(dim, n - step, step).flip([dim]);
        out = Tensor::cat(&[before, out, after], dim);
        remaining -= step;
    }
    out
}

/// Image score = maximum of the map. `[B, 1, H, W]` -> `[B]`.
pub fn max_score(map: &Tensor) -> Tensor {
    map.flatten(1, -1)
        .amax([1i64].as_slice(), false)
        .to_kind(Kind::Float)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Device;

    #[test]
    fn blur_keeps_mass_and_constants() {
        let x = Tensor::ones([1, 1, 9, 7], (Kind::Float, Device::Cpu));
        let y = gaussian_blur(&x, 4.0);
        assert_eq!(y.size(), [1, 1, 9, 7]);
        assert!((y - 1.0).abs().max().double_value(&[]) < 1e-5);
    }

    #[test]
    fn blur_matches_scipy_on_an_impulse() {
        // scipy.ndimage.gaussian_filter1d(np.eye(1, 11, 5)[0], 1.0): the normalised taps at
        // radius 4, computed in float64: 0.39894346935609776 at the centre,
        // 0.24197144565660073 beside it (rounded to f32 here, as the input is f32).
        let mut v = vec![0f32; 11];
        v[5] = 1.0;
        let x = Tensor::from_slice(&v).reshape([1, 1, 1, 11]);
        let y = gaussian_blur(&x, 1.0);
        assert_eq!(y.kind(), Kind::Float);
        let row: Vec<f32> = Vec::try_from(y.flatten(0, -1)).unwrap();
        assert_eq!(row[5], 0.398_943_47_f64 as f32, "{row:?}");
        assert_eq!(row[4], 0.241_971_45_f64 as f32, "{row:?}");
        assert_eq!(row[4], row[6]);
    }

    #[test]
    fn symmetric_pad_mirrors_the_edge() {
        let x = Tensor::from_slice(&[1f32, 2., 3.]).reshape([1, 1, 1, 3]);
        let p: Vec<f32> = Vec::try_from(symmetric_pad(&x, 2, 3).flatten(0, -1)).unwrap();
        assert_eq!(p, vec![2., 1., 1., 2., 3., 3., 2.]);
    }
}
