//! Cosine distillation (RD4AD, Deng & Li 2022, Eq. 1-2).
//!
//! Per-pixel form: `M^k(h,w) = 1 - cos(f_T^k(h,w), f_S^k(h,w))`, loss `sum_k mean_{h,w} M^k`.
//! Flattened form (the official code): `sum_k mean_b [1 - cos(vec f_T^k_b, vec f_S^k_b)]`, the
//! whole feature map of an image flattened into one vector.
use tch::Tensor;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CosineForm {
    /// One cosine per image over its flattened feature map (official RD4AD code).
    Flattened,
    /// One cosine per pixel, averaged (the paper's equations).
    PerPixel,
}

impl CosineForm {
    pub fn name(self) -> &'static str {
        match self {
            CosineForm::Flattened => "flattened",
            CosineForm::PerPixel => "per_pixel",
        }
    }
}

/// # Shapes
/// `teacher[k]`, `student[k]`: `[B, C_k, H_k, W_k]` -> scalar.
pub fn cosine_distillation(teacher: &[&Tensor], student: &[Tensor], form: CosineForm) -> Tensor {
    assert_eq!(
        teacher.len(),
        student.len(),
        "one student map per teacher level"
    );
    let terms: Vec<Tensor> = teacher
        .iter()
        .zip(student)
        .map(|(t, s)| match form {
            CosineForm::Flattened => {
                let b = t.size()[0];
                let cos =
                    Tensor::cosine_similarity(&t.reshape([b, -1]), &s.reshape([b, -1]), 1, 1e-8);
                (1f64 - cos).mean(None::<tch::Kind>)
            }
            CosineForm::PerPixel => cosine_distance_map(t, s).mean(None::<tch::Kind>),
        })
        .collect();
    Tensor::stack(&terms, 0).sum(None::<tch::Kind>)
}

/// # Shapes
/// `a`, `b`: `[B, C, H, W]` -> `[B, H, W]`, `1 - cos` over channels.
pub fn cosine_distance_map(a: &Tensor, b: &Tensor) -> Tensor {
    1f64 - Tensor::cosine_similarity(a, b, 1, 1e-8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind};

    #[test]
    fn identical_features_give_zero_and_opposite_give_two() {
        let t = Tensor::randn([2, 4, 3, 3], (Kind::Float, Device::Cpu));
        for form in [CosineForm::Flattened, CosineForm::PerPixel] {
            let same = cosine_distillation(&[&t], &[t.copy()], form).double_value(&[]);
            let opposite = cosine_distillation(&[&t, &t], &[-&t, -&t], form).double_value(&[]);
            assert!(same.abs() < 1e-6, "{}", form.name());
            assert!(
                (opposite - 4.0).abs() < 1e-5,
                "two levels of distance 2 ({})",
                form.name()
            );
        }
    }

    #[test]
    fn the_two_forms_differ_where_pixels_differ_in_norm() {
        // Pixels (1,0), (0,10) against (1,0), (10,0): per pixel 0 and 1 (mean 0.5); as
        // vectors (1,0,0,10) . (1,10,0,0) = 1 of norms 101, so 1 - 1/101.
        let t = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 10.0]).reshape([1, 2, 1, 2]);
        let s = Tensor::from_slice(&[1.0f32, 10.0, 0.0, 0.0]).reshape([1, 2, 1, 2]);
        let loss = |form| cosine_distillation(&[&t], &[s.copy()], form).double_value(&[]);
        let (flat, per_pixel) = (loss(CosineForm::Flattened), loss(CosineForm::PerPixel));
        assert!((flat - 100.0 / 101.0).abs() < 1e-6, "{flat}");
        assert!((per_pixel - 0.5).abs() < 1e-6, "{per_pixel}");
    }

    #[test]
    fn distance_map_is_per_pixel() {
        let a = Tensor::from_slice(&[1.0f32, 0.0, 0.0, 1.0]).reshape([1, 2, 1, 2]);
        let b = Tensor::from_slice(&[1.0f32, 1.0, 0.0, 0.0]).reshape([1, 2, 1, 2]);
        // pixel 0: (1,0) vs (1,0) -> 0; pixel 1: (0,1) vs (1,0) -> 1.
        let m: Vec<f32> = Vec::try_from(cosine_distance_map(&a, &b).flatten(0, -1)).unwrap();
        assert!(
            (m[0] - 0.0).abs() < 1e-6 && (m[1] - 1.0).abs() < 1e-6,
            "{m:?}"
        );
    }
}
