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
/// boundary: mirrored including the edge pixel), separably over W then H, computed in float64
/// and returned in `x`'s kind: scipy's result for float64 input (RD4AD's maps); for float32
/// input scipy rounds the intermediate pass to float32, so the two differ by that rounding
/// (PatchCore's maps). In float64 the result is the same on
/// every device: on CUDA, a float32 convolution may run in TF32 (libtorch's default for
/// cuDNN, as PyTorch's `torch.backends.cudnn.allow_tf32`), which keeps 10 bits of mantissa.
///
/// # Shapes
/// `x`: `[B, 1, H, W]` -> `[B, 1, H, W]`.
pub fn gaussian_blur(x: &Tensor, sigma: f64) -> Tensor {
    if sigma <= 0.0 {
        return x.shallow_clone();
    }
    let radius = (4.0 * sigma + 0.5) as i64;
    let name = format!("gaussian_taps:{sigma}");
    let taps = memad_core::constant::constant(&name, x.device(), Kind::Double, || {
        let taps: Vec<f64> = (-radius..=radius)
            .map(|i| (-0.5 * (i as f64 / sigma).powi(2)).exp())
            .collect();
        let sum: f64 = taps.iter().sum();
        Tensor::from_slice(&taps) / sum
    });
    let pass = if x.device().is_cuda() {
        blur_pass_convolution
    } else {
        blur_pass_shifted_sums
    };
    pass(&pass(&x.to_kind(Kind::Double), &taps, 3), &taps, 2).to_kind(x.kind())
}

/// One pass of [`gaussian_blur`] along `dim` as a convolution (cuDNN on CUDA: two kernels per
/// blur). `taps`: `[2 r + 1]` float64 on `t`'s device.
fn blur_pass_convolution(t: &Tensor, taps: &Tensor, dim: i64) -> Tensor {
    let k = taps.size()[0];
    let shape = if dim == 3 { [1, 1, 1, k] } else { [1, 1, k, 1] };
    symmetric_pad(t, k / 2, dim).conv2d(
        &taps.reshape(shape),
        None::<Tensor>,
        [1, 1],
        [0, 0],
        [1, 1],
        1,
    )
}

/// One pass of [`gaussian_blur`] along `dim` as the sum of `2 r + 1` shifted views times their
/// tap (fused multiply-adds in place), the CPU's: libtorch's CPU convolution has no float64
/// fast path (about 17x slower on 2 cores) and unfolds the batch into a `[B, 2 r + 1, H * W]`
/// buffer (277 MiB at batch 16, 256 px, sigma 4). On CUDA it would be `2 r + 1` launches.
fn blur_pass_shifted_sums(t: &Tensor, taps: &Tensor, dim: i64) -> Tensor {
    let (k, n) = (taps.size()[0], t.size()[dim as usize]);
    let padded = symmetric_pad(t, k / 2, dim);
    let mut out = t.zeros_like();
    for i in 0..k {
        let _ = out.addcmul_(&padded.narrow(dim, i, n), &taps.select(0, i));
    }
    out
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
    fn blur_equals_scipy_reflect_written_out() {
        // A 3 x 7 map at sigma 1 (radius 4 > 3, so the mirror repeats along H), against the
        // separable sum over scipy's `reflect` indices (period 2n: d c b a | a b c d | d c b a)
        // in f64.
        let (h, w, sigma) = (3usize, 7usize, 1.0);
        let v: Vec<f64> = (0..h * w).map(|i| ((i * 37 % 11) as f64).sin()).collect();
        let taps: Vec<f64> = (-4..=4)
            .map(|i: i32| (-0.5 * f64::from(i * i)).exp())
            .collect();
        let total: f64 = taps.iter().sum();
        let reflect = |j: i64, n: usize| {
            let m = j.rem_euclid(2 * n as i64) as usize;
            if m < n {
                m
            } else {
                2 * n - 1 - m
            }
        };
        let pass = |get: &dyn Fn(usize, usize) -> f64, along_w: bool| {
            let mut out = vec![0.0; h * w];
            for (r, c) in (0..h).flat_map(|r| (0..w).map(move |c| (r, c))) {
                out[r * w + c] = (taps.iter().enumerate())
                    .map(|(k, t)| {
                        let j = k as i64 - 4;
                        let value = if along_w {
                            get(r, reflect(c as i64 + j, w))
                        } else {
                            get(reflect(r as i64 + j, h), c)
                        };
                        t / total * value
                    })
                    .sum();
            }
            out
        };
        let rows = pass(&|r, c| v[r * w + c], true);
        let want = pass(&|r, c| rows[r * w + c], false);
        let x = Tensor::from_slice(&v).reshape([1, 1, h as i64, w as i64]);
        let got: Vec<f64> = Vec::try_from(gaussian_blur(&x, sigma).flatten(0, -1)).unwrap();
        for (g, e) in got.iter().zip(&want) {
            assert!((g - e).abs() < 1e-12, "{got:?} vs {want:?}");
        }
    }

    #[test]
    fn both_blur_passes_agree() {
        // The convolution (CUDA's) and the shifted sums (the CPU's), both along H and W.
        let x = (Tensor::arange(2 * 9 * 11, (Kind::Double, Device::Cpu)) * 0.37)
            .sin()
            .reshape([2, 1, 9, 11]);
        let taps = Tensor::from_slice(&[0.1f64, 0.2, 0.4, 0.2, 0.1]);
        for dim in [2, 3] {
            let a = blur_pass_convolution(&x, &taps, dim);
            let b = blur_pass_shifted_sums(&x, &taps, dim);
            assert_eq!(a.size(), [2, 1, 9, 11]);
            let diff = (a - b).abs().max().double_value(&[]);
            assert!(diff < 1e-14, "dim {dim}: {diff}");
        }
    }

    #[test]
    fn symmetric_pad_mirrors_the_edge() {
        let x = Tensor::from_slice(&[1f32, 2., 3.]).reshape([1, 1, 1, 3]);
        let p: Vec<f32> = Vec::try_from(symmetric_pad(&x, 2, 3).flatten(0, -1)).unwrap();
        assert_eq!(p, vec![2., 1., 1., 2., 3., 3., 2.]);
    }
}
