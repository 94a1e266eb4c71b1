//! Typed config sections.
//!
//! Every component reads its own section into a struct with `#[serde(deny_unknown_fields)]`
//! and defaults; [`parse_section`] turns serde's message into a [`ConfigError`] with the full
//! dotted key path (`method.backbone.levels[1]`), and [`to_toml_value`] serialises the
//! resolved struct back, so the run folder holds a config with every default filled in.
use crate::error::ConfigError;
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A TOML syntax error in `text` as `not valid TOML at line L, column C: message` (the
/// parser's own position is a byte offset).
pub fn toml_syntax_error(text: &str, e: &toml::de::Error) -> String {
    let Some(span) = e.span() else {
        return format!("not valid TOML: {}", e.message());
    };
    let before = text.get(..span.start).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(
        "not valid TOML at line {line}, column {column}: {}",
        e.message()
    )
}

/// Deserialize `value` (the section found at `prefix`) into `T`.
pub fn parse_section<T: DeserializeOwned>(
    value: &toml::Value,
    prefix: &str,
) -> Result<T, ConfigError> {
    // Round-trip through text so that serde_path_to_error sees a real deserializer and
    // reports the path of the failing key.
    let text = match value {
        toml::Value::Table(t) => toml::to_string(t),
        other => {
            return Err(ConfigError::new(
                prefix,
                format!("expected a table, found {}", other.type_str()),
            ))
        }
    }
    .map_err(|e| ConfigError::new(prefix, e.to_string()))?;
    let de = toml::Deserializer::new(&text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let inner = e.path().to_string();
        let path = match (prefix.is_empty(), inner == ".") {
            // A key missing from the top level: serde's path is `.`.
            (true, true) => String::new(),
            (true, false) => inner,
            (false, true) => prefix.to_string(),
            (false, false) => format!("{prefix}.{inner}"),
        };
        ConfigError::new(path, clean_message(&e.inner().to_string()))
    })
}

/// Serialize a resolved config back to a TOML value.
pub fn to_toml_value<T: Serialize>(value: &T) -> Result<toml::Value, ConfigError> {
    toml::Value::try_from(value).map_err(|e| ConfigError::new("", e.to_string()))
}

/// toml's messages embed a source excerpt of our re-serialised text; keep the last line.
fn clean_message(message: &str) -> String {
    message
        .trim()
        .lines()
        .last()
        .unwrap_or(message)
        .trim()
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize, Serialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        slots: usize,
        #[serde(default = "default_temp")]
        temperature: f64,
    }
    fn default_temp() -> f64 {
        0.1
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Outer {
        #[allow(dead_code)]
        memory: Inner,
    }

    fn value(text: &str) -> toml::Value {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn unknown_key_names_its_path_and_the_valid_keys() {
        let err = parse_section::<Outer>(&value("[memory]\nslotz = 3\n"), "method").unwrap_err();
        assert_eq!(err.path, "method.memory.slotz");
        assert!(
            err.message.contains("unknown field `slotz`"),
            "{}",
            err.message
        );
        assert!(err.message.contains("slots"), "{}", err.message);
    }

    #[test]
    fn wrong_type_names_the_key() {
        let err =
            parse_section::<Outer>(&value("[memory]\nslots = \"ten\"\n"), "method").unwrap_err();
        assert_eq!(err.path, "method.memory.slots");
        assert!(err.message.contains("invalid type"), "{}", err.message);
    }

    #[test]
    fn defaults_are_filled_in_the_resolved_value() {
        let inner: Inner = parse_section(&value("slots = 3\n"), "memory").unwrap();
        let resolved = to_toml_value(&inner).unwrap();
        assert_eq!(
            resolved.get("temperature").and_then(|v| v.as_float()),
            Some(0.1)
        );
    }
}
