//! The registry: `kind` strings in experiment files mapped to constructors.
//!
//! Each component crate exposes `register(&mut Registry)`. An entry has a `resolve`
//! function (parse + validate + fill defaults, nothing built: what `memad check` runs) and a
//! `build` function. Unknown kinds are errors listing the kinds that exist.
use crate::error::{ConfigError, Result};
use crate::traits::{Backbone, Method};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::Device;

/// What constructors get besides their config section.
#[derive(Debug, Clone)]
pub struct BuildContext {
    pub device: Device,
    /// Folder of converted weights (`~/.cache/memad/weights` unless overridden).
    pub weights_dir: PathBuf,
    /// Side of the square input images.
    pub image_size: i64,
    /// Classes (categories) the model is trained on: 1 in the one-class setting, the
    /// dataset's categories in the multi-class unified one (`Batch::class` indexes them).
    pub classes: usize,
}

/// Resolves a config section: `(section, key path) -> resolved section`.
pub type ResolveFn = fn(&toml::Value, &str, &Registry) -> Result<toml::Value, ConfigError>;

pub struct MethodEntry {
    pub kind: &'static str,
    pub summary: &'static str,
    /// Whether training batches must carry `Batch::synthetic` (anomalies pasted into the
    /// training images): an experiment then needs a `[data.synthesis]` section, and one
    /// without this flag must not have it.
    pub synthetic_anomalies: bool,
    pub resolve: ResolveFn,
    /// Builds from a section already resolved.
    pub build: fn(&toml::Value, &Registry, &BuildContext) -> Result<Box<dyn Method>>,
}

pub struct BackboneEntry {
    pub kind: &'static str,
    pub summary: &'static str,
    pub resolve: ResolveFn,
    /// Builds the encoder in a VarStore of its own (variables named as the checkpoint's keys),
    /// loads the weights the section names, and freezes it.
    pub build: fn(&toml::Value, &BuildContext) -> Result<Box<dyn Backbone>>,
}

#[derive(Default)]
pub struct Registry {
    methods: BTreeMap<&'static str, MethodEntry>,
    backbones: BTreeMap<&'static str, BackboneEntry>,
}

impl Registry {
    pub fn add_method(&mut self, entry: MethodEntry) {
        assert!(
            self.methods.insert(entry.kind, entry).is_none(),
            "method kind registered twice"
        );
    }

    pub fn add_backbone(&mut self, entry: BackboneEntry) {
        assert!(
            self.backbones.insert(entry.kind, entry).is_none(),
            "backbone kind registered twice"
        );
    }

    /// Looks up a method; `path` is the key path of the `kind` for the error.
    pub fn method(&self, kind: &str, path: &str) -> Result<&MethodEntry, ConfigError> {
        lookup(&self.methods, "method", kind, path)
    }

    pub fn backbone(&self, kind: &str, path: &str) -> Result<&BackboneEntry, ConfigError> {
        lookup(&self.backbones, "backbone", kind, path)
    }

    /// Resolves the backbone section found at `path` (its `kind` picks the entry).
    pub fn resolve_backbone(
        &self,
        section: &toml::Value,
        path: &str,
    ) -> Result<toml::Value, ConfigError> {
        let entry = self.backbone(kind_of(section, path)?, &format!("{path}.kind"))?;
        (entry.resolve)(section, path, self)
    }

    /// Builds the backbone of a resolved section found at `path`.
    pub fn build_backbone(
        &self,
        section: &toml::Value,
        path: &str,
        ctx: &BuildContext,
    ) -> crate::Result<Box<dyn crate::Backbone>> {
        let entry = self.backbone(kind_of(section, path)?, &format!("{path}.kind"))?;
        (entry.build)(section, ctx)
    }

    /// `(category, [(kind, summary)])` for `memad list`.
    pub fn listing(&self) -> Vec<(&'static str, Vec<(&'static str, &'static str)>)> {
        vec![
            (
                "method",
                self.methods.values().map(|e| (e.kind, e.summary)).collect(),
            ),
            (
                "backbone",
                self.backbones
                    .values()
                    .map(|e| (e.kind, e.summary))
                    .collect(),
            ),
        ]
    }
}

fn lookup<'a, E>(
    map: &'a BTreeMap<&'static str, E>,
    category: &str,
    kind: &str,
    path: &str,
) -> Result<&'a E, ConfigError> {
    map.get(kind).ok_or_else(|| {
        let known: Vec<_> = map.keys().copied().collect();
        ConfigError::new(
            path,
            format!(
                "unknown {category} kind `{kind}`; known: {}",
                known.join(", ")
            ),
        )
    })
}

/// Reads the `kind` string of a section.
pub fn kind_of<'a>(section: &'a toml::Value, path: &str) -> Result<&'a str, ConfigError> {
    match section.get("kind") {
        Some(toml::Value::String(s)) => Ok(s),
        Some(other) => Err(ConfigError::new(
            format!("{path}.kind"),
            format!("expected a string, found {}", other.type_str()),
        )),
        None => Err(ConfigError::new(path, "missing key `kind`")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_ok(v: &toml::Value, _: &str, _: &Registry) -> Result<toml::Value, ConfigError> {
        Ok(v.clone())
    }
    fn build_never(_: &toml::Value, _: &Registry, _: &BuildContext) -> Result<Box<dyn Method>> {
        unreachable!("not built in this test")
    }

    #[test]
    fn unknown_kind_lists_the_known_ones() {
        let mut r = Registry::default();
        r.add_method(MethodEntry {
            kind: "rd4ad",
            summary: "",
            synthetic_anomalies: false,
            resolve: resolve_ok,
            build: build_never,
        });
        let err = r.method("rd4da", "method.kind").err().unwrap();
        assert_eq!(err.path, "method.kind");
        assert!(
            err.message
                .contains("unknown method kind `rd4da`; known: rd4ad"),
            "{}",
            err.message
        );
    }

    #[test]
    fn kind_of_reports_a_missing_kind() {
        let v: toml::Value = toml::from_str("lr = 1").unwrap();
        assert_eq!(
            kind_of(&v, "method").unwrap_err().message,
            "missing key `kind`"
        );
    }
}
