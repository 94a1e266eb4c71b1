//! The `[method.backbone]` section shared by all backbones.
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    pub kind: String,
    /// `imagenet` (the cached converted checkpoint), `random` (explicitly untrained), or a
    /// path to a `.safetensors` file.
    #[serde(default = "default_weights")]
    pub weights: String,
    /// Pyramid levels to return, finest first; the forward pass stops after the last.
    pub levels: Vec<String>,
}

fn default_weights() -> String {
    "imagenet".to_string()
}
