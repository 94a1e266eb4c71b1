//! memad-methods: one file per method, composing backbones, decoders, memories and losses.
//!
//! | kind | method | file |
//! |---|---|---|
//! | `rd4ad` | Reverse distillation (Deng & Li, CVPR 2022) | [`rd4ad`] |
//! | `mddnet` | Memory-augmented dual-decoder reverse distillation (Xing et al., arXiv 2504.14884) | [`mddnet`] |
//! | `patchcore` | Patch-feature memory bank with coreset (Roth et al., CVPR 2022) | [`patchcore`] |
//! | `mnad` | Memory-guided frame prediction / reconstruction (Park et al., CVPR 2020) | [`mnad`] |
//! | `memae` | Memory-augmented autoencoder, 3D (video) or 2D (images) (Gong et al., ICCV 2019) | [`memae`] |
//! | `mscm`, `contrastive` | Multi-scale contrasted memory, two stages; its no-memory ablation (Jezequel et al., arXiv 2211.09041) | [`mscm`] |
pub mod anomaly_map;
pub mod mddnet;
pub mod memae;
pub mod mnad;
pub mod mscm;
pub mod patchcore;
pub mod rd4ad;

use memad_core::{MethodEntry, Registry};

/// Registers every method kind of this crate, and the memory kinds MNAD's and MemAE's
/// `[method.memory]` take (a new memory crate: its dependency line in this crate's
/// `Cargo.toml` and its `register` call here).
pub fn register(registry: &mut Registry) {
    memory_memae::register(registry);
    memory_mnad::register(registry);
    registry.add_method(MethodEntry {
        kind: "rd4ad",
        summary: "Reverse distillation: frozen teacher, OCBE bottleneck, student decoder (Deng & Li, CVPR 2022)",
        synthetic_anomalies: false,
        resolve: rd4ad::resolve,
        image_multiple: rd4ad::image_multiple,
        min_epochs: |_| (1, None),
        anomaly_maps: true,
        class_predictions: false,
        check_data: |_, _| Ok(()),
        build: rd4ad::build,
    });
    registry.add_method(MethodEntry {
        kind: "mddnet",
        summary: "MDD-Net: reverse distillation with restoration + identity decoders and a class-aware memory, trained on synthetic anomalies (Xing et al., arXiv 2504.14884)",
        synthetic_anomalies: true,
        resolve: mddnet::resolve,
        image_multiple: rd4ad::image_multiple,
        min_epochs: |_| (1, None),
        anomaly_maps: true,
        class_predictions: true,
        check_data: |_, _| Ok(()),
        build: mddnet::build,
    });
    registry.add_method(MethodEntry {
        kind: "patchcore",
        summary: "PatchCore: frozen backbone, locally aware patch features, coreset memory bank (Roth et al., CVPR 2022)",
        synthetic_anomalies: false,
        resolve: patchcore::resolve,
        image_multiple: |_| 1,
        min_epochs: |_| (1, None),
        anomaly_maps: true,
        class_predictions: false,
        check_data: |_, _| Ok(()),
        build: patchcore::build,
    });
    registry.add_method(MethodEntry {
        kind: "mnad",
        summary: "MNAD: U-Net with a rule-updated memory, frame prediction or reconstruction (Park et al., CVPR 2020)",
        synthetic_anomalies: false,
        resolve: mnad::resolve,
        image_multiple: mnad::image_multiple,
        min_epochs: |_| (1, None),
        anomaly_maps: true,
        class_predictions: false,
        check_data: mnad::check_data,
        build: mnad::build,
    });
    registry.add_method(MethodEntry {
        kind: "memae",
        summary: "MemAE: autoencoder with a sparse-addressed memory and entropy loss, 3D clips or 2D images (Gong et al., ICCV 2019)",
        synthetic_anomalies: false,
        resolve: memae::resolve,
        image_multiple: |_| 1,
        min_epochs: |_| (1, None),
        anomaly_maps: true,
        class_predictions: false,
        check_data: memae::check_data,
        build: memae::build,
    });
    registry.add_method(MethodEntry {
        kind: mscm::KIND_MSCM,
        summary: "MSCM: from-scratch encoder, per-scale prototype memories learned with NT-Xent + memory contrast, then a detector on deviation maps (Jezequel et al., arXiv 2211.09041)",
        synthetic_anomalies: false,
        resolve: mscm::resolve,
        image_multiple: |_| 1,
        min_epochs: mscm::min_epochs,
        anomaly_maps: false,
        class_predictions: false,
        check_data: mscm::check_data,
        build: mscm::build,
    });
    registry.add_method(MethodEntry {
        kind: mscm::KIND_CONTRASTIVE,
        summary: "MSCM's no-memory ablation: the same encoder, NT-Xent stage 1, detector on deviations from the mean normal feature",
        synthetic_anomalies: false,
        resolve: mscm::resolve,
        image_multiple: |_| 1,
        min_epochs: mscm::min_epochs,
        anomaly_maps: false,
        class_predictions: false,
        check_data: mscm::check_data,
        build: mscm::build,
    });
}
