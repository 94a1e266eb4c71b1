//! `datasets.toml`: the catalog of datasets that experiments name.
//!
//! ```toml
//! # Roots are relative to this file's folder unless absolute; `~` expands to $HOME.
//! [synthetic-mvtec]
//! format = "mvtec"
//! root = "data/synthetic-mvtec"
//! [synthetic-mvtec.synthetic]      # optional: generated on first use (see `synthetic`)
//! categories = ["carpet", "grid", "leather"]
//!
//! [mvtec]
//! format = "mvtec"
//! root = "~/datasets/mvtec_anomaly_detection"
//! categories = ["carpet", "bottle"]   # optional: restrict to these
//! ```
//!
//! Entries are parsed with `deny_unknown_fields`, so a misspelt key is an error naming the
//! key path, the file and the valid keys.
use crate::error::{DataError, Result};
use crate::mvtec::{self, CategorySplit};
use crate::synthetic::{ensure_generated, SyntheticSpec};
use memad_core::{parse_section, ConfigError};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The on-disk layout of a dataset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DatasetFormat {
    /// MVTec AD: `<category>/{train/good, test/<defect>, ground_truth/<defect>}`.
    Mvtec,
}

/// One dataset of the catalog, its root resolved.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetEntry {
    /// The table name in `datasets.toml`.
    pub name: String,
    pub format: DatasetFormat,
    /// Absolute, or relative to the current folder when the catalog path was relative.
    pub root: PathBuf,
    /// The categories when known without reading the disk: the entry's `categories`, else
    /// the synthetic spec's; `None` means "whatever is under `root`".
    pub categories: Option<Vec<String>>,
    /// Generated into `root` by [`DatasetEntry::prepare`] when set.
    pub synthetic: Option<SyntheticSpec>,
}

impl DatasetEntry {
    /// Makes the data available: generates a synthetic dataset unless it is already there.
    pub fn prepare(&self) -> Result<()> {
        if let Some(spec) = &self.synthetic {
            ensure_generated(&self.root, spec)?;
        }
        Ok(())
    }

    /// The categories to use: [`DatasetEntry::categories`] or those found under `root`.
    pub fn category_names(&self) -> Result<Vec<String>> {
        match (&self.categories, self.format) {
            (Some(c), _) => Ok(c.clone()),
            (None, DatasetFormat::Mvtec) => mvtec::list_categories(&self.root),
        }
    }

    /// Lists the training and test images of `category`.
    pub fn read_category(&self, category: &str) -> Result<CategorySplit> {
        match self.format {
            DatasetFormat::Mvtec => mvtec::read_category(&self.root, category),
        }
    }
}

/// An entry as written in the file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    format: DatasetFormat,
    root: String,
    categories: Option<Vec<String>>,
    synthetic: Option<SyntheticSpec>,
}

/// The datasets of a `datasets.toml`, by name.
#[derive(Debug, Clone)]
pub struct DatasetCatalog {
    path: PathBuf,
    entries: BTreeMap<String, DatasetEntry>,
}

impl DatasetCatalog {
    /// Reads and checks `path`; relative roots are resolved against its folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| DataError::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses catalog `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| DataError::Toml {
            path: path.to_path_buf(),
            message: e.to_string().trim().to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new(""));
        let mut entries = BTreeMap::new();
        for (name, value) in &table {
            let fail = |key: String, message: String| {
                DataError::from(ConfigError::new(key, message).in_file(path))
            };
            let raw: RawEntry = parse_section(value, name).map_err(|e| e.in_file(path))?;
            let root =
                resolve_root(&raw.root, base).map_err(|m| fail(format!("{name}.root"), m))?;
            if let Some(spec) = &raw.synthetic {
                spec.validate()
                    .map_err(|e| fail(format!("{name}.synthetic"), e.to_string()))?;
            }
            if let Some(categories) = &raw.categories {
                if categories.is_empty() {
                    return Err(fail(
                        format!("{name}.categories"),
                        "empty; leave it out to use every category".into(),
                    ));
                }
                if let Some(spec) = &raw.synthetic {
                    if let Some(c) = categories.iter().find(|c| !spec.categories.contains(c)) {
                        return Err(fail(
                            format!("{name}.categories"),
                            format!(
                                "`{c}` is not generated by `synthetic.categories` ({})",
                                spec.categories.join(", ")
                            ),
                        ));
                    }
                }
            }
            let categories = raw
                .categories
                .or_else(|| raw.synthetic.as_ref().map(|s| s.categories.clone()));
            let entry = DatasetEntry {
                name: name.clone(),
                format: raw.format,
                root,
                categories,
                synthetic: raw.synthetic,
            };
            entries.insert(name.clone(), entry);
        }
        Ok(DatasetCatalog {
            path: path.to_path_buf(),
            entries,
        })
    }

    /// The file the catalog was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The entry called `name`; an unknown name is an error listing the known ones.
    pub fn get(&self, name: &str) -> Result<&DatasetEntry> {
        self.entries
            .get(name)
            .ok_or_else(|| DataError::UnknownDataset {
                name: name.to_string(),
                catalog: self.path.clone(),
                known: self.names().map(String::from).collect(),
            })
    }

    /// The dataset names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// The entries, sorted by name.
    pub fn entries(&self) -> impl Iterator<Item = &DatasetEntry> {
        self.entries.values()
    }
}

/// `~` and `~/...` expand to `$HOME`; other relative roots are taken from `base`.
fn resolve_root(raw: &str, base: &Path) -> std::result::Result<PathBuf, String> {
    if raw.trim().is_empty() {
        return Err("empty path".into());
    }
    if raw == "~" || raw.starts_with("~/") {
        let home = std::env::var_os("HOME")
            .filter(|h| !h.is_empty())
            .ok_or_else(|| format!("`{raw}` uses `~` but $HOME is not set"))?;
        let home = PathBuf::from(home);
        return Ok(match raw.strip_prefix("~/") {
            Some(rest) if !rest.is_empty() => home.join(rest),
            _ => home,
        });
    }
    let path = PathBuf::from(raw);
    Ok(if path.is_absolute() {
        path
    } else {
        base.join(path)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"
[synth]
format = "mvtec"
root = "data/synth"
[synth.synthetic]
categories = ["carpet", "wood"]
image_size = 64

[real]
format = "mvtec"
root = "/abs/mvtec"
categories = ["bottle"]

[home]
format = "mvtec"
root = "~/datasets/mvtec"
"#;

    #[test]
    fn entries_resolve_roots_and_categories() {
        let catalog = DatasetCatalog::parse(TEXT, Path::new("/work/datasets.toml")).unwrap();
        assert_eq!(
            catalog.names().collect::<Vec<_>>(),
            ["home", "real", "synth"]
        );
        let synth = catalog.get("synth").unwrap();
        assert_eq!(synth.root, Path::new("/work/data/synth"));
        assert_eq!(synth.format, DatasetFormat::Mvtec);
        let spec = synth.synthetic.as_ref().unwrap();
        assert_eq!(spec.image_size, 64);
        assert_eq!(
            spec.train_per_category,
            SyntheticSpec::default().train_per_category
        );
        assert_eq!(
            synth.categories.as_deref(),
            Some(&["carpet".to_string(), "wood".into()][..])
        );
        let real = catalog.get("real").unwrap();
        assert_eq!(real.root, Path::new("/abs/mvtec"));
        assert!(real.synthetic.is_none());
        if let Some(home) = std::env::var_os("HOME") {
            let entry = catalog.get("home").unwrap();
            assert_eq!(entry.root, PathBuf::from(home).join("datasets/mvtec"));
            assert_eq!(entry.categories, None);
        }
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let catalog = DatasetCatalog::parse(TEXT, Path::new("datasets.toml")).unwrap();
        let err = catalog.get("mvtecc").unwrap_err().to_string();
        assert!(
            err.contains("`mvtecc`") && err.contains("home, real, synth"),
            "{err}"
        );
    }

    #[test]
    fn typo_in_a_key_names_the_key_the_file_and_the_valid_keys() {
        let text = "[mvtec]\nformat = \"mvtec\"\nrooot = \"x\"\n";
        let err = DatasetCatalog::parse(text, Path::new("cfg/datasets.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("cfg/datasets.toml"), "{err}");
        assert!(err.contains("mvtec.rooot"), "{err}");
        assert!(err.contains("root") && err.contains("synthetic"), "{err}");
        let text = "[s]\nformat = \"mvtec\"\nroot = \"x\"\n[s.synthetic]\nimage_sise = 3\n";
        let err = DatasetCatalog::parse(text, Path::new("d.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("s.synthetic.image_sise"), "{err}");
    }

    #[test]
    fn bad_values_are_errors_naming_the_key() {
        let cases = [
            ("[a]\nformat = \"visa\"\nroot = \"x\"\n", "a.format"),
            (
                "[a]\nformat = \"mvtec\"\nroot = \"x\"\ncategories = []\n",
                "a.categories",
            ),
            (
                "[a]\nformat = \"mvtec\"\nroot = \"x\"\ncategories = [\"tile\"]\n[a.synthetic]\n",
                "a.categories",
            ),
            (
                "[a]\nformat = \"mvtec\"\nroot = \"x\"\n[a.synthetic]\ncategories = [\"rug\"]\n",
                "a.synthetic",
            ),
        ];
        for (text, key) in cases {
            let err = DatasetCatalog::parse(text, Path::new("d.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{key}: {err}");
        }
        let err = DatasetCatalog::parse("[a\n", Path::new("broken.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("broken.toml"), "{err}");
    }
}
