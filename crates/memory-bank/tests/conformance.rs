//! The shared memory conformance suite (`memad-conformance`) on the patch bank.
use memad_core::{no_progress, Memory};
use memory_bank::{PatchBank, PatchBankConfig};
use tch::{Device, Kind, Tensor};

#[test]
fn conformance() {
    let dim = 8;
    // A fitted bank: 7 rows, coreset ratio 0.5 on a 4-d projection -> int(3.5) = 3 items.
    // The suite's update + finalize (7 queries) refits it to 3 items of the same width.
    let cfg = PatchBankConfig {
        coreset_ratio: 0.5,
        projection_dim: 4,
        start: memory_bank::CoresetStart::RandomItem,
    };
    let report = memad_conformance::check_memory(
        |_path| {
            let fit = (Tensor::arange(7 * dim, (Kind::Float, Device::Cpu)) * 1.91)
                .cos()
                .reshape([7, dim]);
            let mut bank = PatchBank::new(cfg.clone(), 5);
            bank.update(&fit).expect("a [7, 8] float tensor");
            bank.finalize(&no_progress)
                .expect("features were collected");
            Box::new(bank)
        },
        dim,
        // Fitted, not updated by rule: `update` only collects (`finalize` refits). The read
        // is the nearest item, with no gradient to the query.
        memad_conformance::Expect {
            updated_by_rule: false,
            query_gradient: false,
        },
    );
    assert_eq!(report.attention_slots, None);
    assert!(report.has_distance);
    assert!(report.loss_terms.is_empty());
    assert_eq!(report.state, [("bank".to_string(), vec![3, dim])]);
    assert!(!report.learned_by_gradient, "a bank is fitted, not learned");
}
