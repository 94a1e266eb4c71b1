//! Golden parity: scikit-learn (`roc_auc_score`, `average_precision_score`,
//! `precision_recall_curve`-derived F1-max) and the MVTec AD AUPRO reference code.
//! Values in `data.rs` are made by `tools/golden_metrics.py`.

mod data;

use data::{BINARY, PRO};
use memad_metrics::{
    aupro, aupro_per_image, aupro_rd4ad, auroc, average_precision, f1_max, RankedScores,
};

const TOL: f64 = 1e-9;

fn bits(s: &str) -> Vec<bool> {
    s.bytes().map(|b| b == b'1').collect()
}

#[test]
fn binary_metrics_match_sklearn() {
    for case in BINARY {
        let labels = bits(case.labels);
        let name = case.name;
        let a = auroc(case.scores, &labels).unwrap();
        assert!(
            (a - case.auroc).abs() < TOL,
            "{name}: auroc {a} vs {}",
            case.auroc
        );
        let ap = average_precision(case.scores, &labels).unwrap();
        assert!((ap - case.ap).abs() < TOL, "{name}: ap {ap} vs {}", case.ap);
        let f = f1_max(case.scores, &labels).unwrap();
        assert!(
            (f.f1 - case.f1_max).abs() < TOL,
            "{name}: f1 {} vs {}",
            f.f1,
            case.f1_max
        );
        assert_eq!(f.threshold, case.f1_threshold, "{name}: f1 threshold");
        // One ranking, three metrics: the same numbers.
        let ranked = RankedScores::new(case.scores, &labels).unwrap();
        assert_eq!(
            (ranked.auroc(), ranked.average_precision(), ranked.f1_max()),
            (a, ap, f)
        );
    }
}

#[test]
fn aupro_matches_mvtec_reference() {
    for case in PRO {
        let masks = bits(case.masks);
        let (n, h, w) = (case.n, case.h, case.w);
        for &(limit, mvtec_f64, mvtec_official, per_image) in case.aupro {
            let name = case.name;
            let a = aupro(case.maps, &masks, n, h, w, limit).unwrap();
            assert!(
                (a - mvtec_f64).abs() < TOL,
                "{name} @ {limit}: {a} vs {mvtec_f64}"
            );
            // The official code rounds FPRs to f32; that alone moves the value by ~1e-8.
            assert!(
                (a - mvtec_official).abs() < 1e-6,
                "{name} @ {limit}: {a} vs {mvtec_official}"
            );
            let p = aupro_per_image(case.maps, &masks, n, h, w, limit).unwrap();
            assert!(
                (p - per_image).abs() < TOL,
                "{name} @ {limit}: per image {p} vs {per_image}"
            );
        }
        let r = aupro_rd4ad(case.maps, &masks, n, h, w).unwrap();
        assert!(
            (r - case.rd4ad_pro).abs() < TOL,
            "{}: RD4AD's PRO {r} vs {}",
            case.name,
            case.rd4ad_pro
        );
    }
}
