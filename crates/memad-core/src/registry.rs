//! The registry: `kind` strings in experiment files mapped to constructors.
//!
//! Each component crate exposes `register(&mut Registry)`. An entry has a `resolve`
//! function (parse + validate + fill defaults, nothing built: what `memad check` runs) and a
//! `build` function. Unknown kinds are errors listing the kinds that exist.
//!
//! Three categories: methods, backbones and memories. A memory entry is a memory a method
//! can use through the [`Memory`] trait alone, so that a method with a generic
//! `[method.memory]` section (MNAD, MemAE) takes any registered `kind` there; memories that
//! need calls beside the trait (MDD-Net's class-aware memory, MSCM's contrast memory,
//! PatchCore's bank) are fixed by their method and not registered.
use crate::error::{ConfigError, Result};
use crate::traits::{Backbone, Memory, Method};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tch::{nn, Device};

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
    /// What `data.image_size` must be a multiple of, from the resolved section, known
    /// without building (RD4AD: twice its teacher's coarsest stride; 1: any size).
    /// `memad check` refuses another size; the build checks it again.
    pub image_multiple: fn(&toml::Value) -> i64,
    /// The fewest `train.epochs` the method takes, from the resolved section, and why when
    /// more than 1 (MSCM: its stage-1 epochs and one for stage 2). `memad check` refuses
    /// fewer, and a smoke run trains this many.
    pub min_epochs: fn(&toml::Value) -> (usize, Option<String>),
    /// Whether its `score` gives `AnomalyOutput::anomaly_map`: `memad check` refuses the
    /// pixel metrics (`pixel_*`, `aupro*`, `auspro`) for a method without maps.
    pub anomaly_maps: bool,
    /// Whether its `score` can give `AnomalyOutput::class_prediction` (MDD-Net, in some
    /// configurations): `memad check` refuses `class_accuracy` for a method that never does.
    pub class_predictions: bool,
    /// Refuses a `[data]` section the method cannot run on, from the resolved method section
    /// and the resolved data section (as TOML; `data.clip` absent when there is none), with
    /// an error naming the key path (`data.batch_size`). `|_, _| Ok(())` for most methods.
    pub check_data: fn(&toml::Value, &toml::Value) -> Result<(), ConfigError>,
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

pub struct MemoryEntry {
    pub kind: &'static str,
    pub summary: &'static str,
    /// Parses, validates and fills the defaults of a memory section at `path` (for errors),
    /// given without its `kind`. The result must hold the integer `dim`, the width of the
    /// queries it reads (see [`memory_dim`]).
    pub resolve: fn(&toml::Value, &str) -> Result<toml::Value, ConfigError>,
    /// Whether [`Memory::update`] changes the memory (items updated by rule, as MNAD's).
    /// `false` for a memory learned by gradient, whose `update` is the default no-op:
    /// methods that update their memory while scoring (MNAD's `test_time_update`) refuse it.
    pub updated_by_rule: bool,
    /// Builds the memory of a resolved section (without its `kind`); variables it learns by
    /// gradient go under the given path of the method's VarStore, on that path's device.
    pub build: fn(&toml::Value, &nn::Path) -> Result<Box<dyn Memory>>,
}

#[derive(Default)]
pub struct Registry {
    methods: BTreeMap<&'static str, MethodEntry>,
    backbones: BTreeMap<&'static str, BackboneEntry>,
    memories: BTreeMap<&'static str, MemoryEntry>,
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

    pub fn add_memory(&mut self, entry: MemoryEntry) {
        assert!(
            self.memories.insert(entry.kind, entry).is_none(),
            "memory kind registered twice"
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
        // A backbone names its keys from its own section (`backbone.precision`): put them
        // where the section was found (`method.backbone.precision`).
        (entry.build)(section, ctx).map_err(|e| match e {
            crate::CoreError::Config(mut c) if c.path.split('.').next() == Some("backbone") => {
                c.path = format!("{path}{}", &c.path["backbone".len()..]);
                crate::CoreError::Config(c)
            }
            other => other,
        })
    }

    pub fn memory(&self, kind: &str, path: &str) -> Result<&MemoryEntry, ConfigError> {
        lookup(&self.memories, "memory", kind, path)
    }

    /// Resolves the memory section found at `path`: its `kind`, or `default_kind` (the
    /// method's own memory) when it names none, picks the entry. The result names its kind.
    pub fn resolve_memory(
        &self,
        section: &toml::Value,
        path: &str,
        default_kind: &str,
    ) -> Result<toml::Value, ConfigError> {
        let (kind, rest) = split_kind(section, path, default_kind)?;
        let entry = self.memory(&kind, &format!("{path}.kind"))?;
        let mut resolved = (entry.resolve)(&rest, path)?;
        if let toml::Value::Table(table) = &mut resolved {
            table.insert("kind".into(), toml::Value::String(kind));
        }
        if memory_dim(&resolved).is_none() {
            return Err(ConfigError::new(
                path,
                format!(
                    "memory kind `{}` resolves without an integer `dim`",
                    entry.kind
                ),
            ));
        }
        Ok(resolved)
    }

    /// Builds the memory of a section resolved by [`Registry::resolve_memory`] (found at
    /// `path`), its learned variables under `vs`.
    pub fn build_memory(
        &self,
        section: &toml::Value,
        path: &str,
        vs: &nn::Path,
    ) -> crate::Result<Box<dyn Memory>> {
        let (kind, rest) = split_kind(section, path, "")?;
        let entry = self.memory(&kind, &format!("{path}.kind"))?;
        (entry.build)(&rest, vs)
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
            (
                "memory",
                self.memories
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

/// The query width `dim` of a resolved memory section.
pub fn memory_dim(section: &toml::Value) -> Option<i64> {
    section.get("dim").and_then(toml::Value::as_integer)
}

/// `(kind, the section without it)`; a section without `kind` takes `default_kind`.
fn split_kind(
    section: &toml::Value,
    path: &str,
    default_kind: &str,
) -> Result<(String, toml::Value), ConfigError> {
    let toml::Value::Table(table) = section else {
        return Err(ConfigError::new(
            path,
            format!("expected a table, found {}", section.type_str()),
        ));
    };
    let mut rest = table.clone();
    let kind = match rest.remove("kind") {
        None => default_kind.to_string(),
        Some(toml::Value::String(kind)) => kind,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{path}.kind"),
                format!("expected a string, found {}", other.type_str()),
            ))
        }
    };
    Ok((kind, toml::Value::Table(rest)))
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
            image_multiple: |_| 1,
            min_epochs: |_| (1, None),
            anomaly_maps: true,
            class_predictions: false,
            check_data: |_, _| Ok(()),
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

    fn resolve_dim(v: &toml::Value, path: &str) -> Result<toml::Value, ConfigError> {
        let mut v = v.clone();
        if let Some(key) = v.as_table().unwrap().keys().find(|k| *k != "dim") {
            return Err(ConfigError::new(format!("{path}.{key}"), "unknown key"));
        }
        v.as_table_mut()
            .unwrap()
            .entry("dim")
            .or_insert(toml::Value::Integer(8));
        Ok(v)
    }
    fn build_no_memory(_: &toml::Value, _: &nn::Path) -> Result<Box<dyn Memory>> {
        unreachable!("not built in this test")
    }

    #[test]
    fn a_memory_section_takes_the_default_kind_and_names_it_when_resolved() {
        let mut r = Registry::default();
        for kind in ["mnad", "memae"] {
            r.add_memory(MemoryEntry {
                kind,
                summary: "",
                resolve: resolve_dim,
                updated_by_rule: kind == "mnad",
                build: build_no_memory,
            });
        }
        let resolve = |text: &str| {
            let v: toml::Value = toml::from_str(text).unwrap();
            r.resolve_memory(&v, "method.memory", "mnad")
        };
        let resolved = resolve("").unwrap();
        assert_eq!(resolved["kind"].as_str(), Some("mnad"));
        assert_eq!(memory_dim(&resolved), Some(8));
        let resolved = resolve("kind = \"memae\"\ndim = 4").unwrap();
        assert_eq!(resolved["kind"].as_str(), Some("memae"));
        assert_eq!(memory_dim(&resolved), Some(4));
        // The entry never sees `kind`; its own errors keep the section's path.
        assert_eq!(
            resolve("slots = 2").unwrap_err().path,
            "method.memory.slots"
        );
        let err = resolve("kind = \"memea\"").unwrap_err();
        assert_eq!(err.path, "method.memory.kind");
        assert!(
            err.message
                .contains("unknown memory kind `memea`; known: memae, mnad"),
            "{}",
            err.message
        );
        assert_eq!(resolve("kind = 3").unwrap_err().path, "method.memory.kind");
        let listing = r.listing();
        assert_eq!(listing[2].0, "memory");
        assert_eq!(listing[2].1.len(), 2);
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
