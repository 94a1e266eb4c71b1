//! Error types shared by all crates.
use std::path::PathBuf;

/// A problem with an experiment or dataset file: names the key path and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{}{}{message}", file.as_ref().map(|f| format!("{}: ", f.display())).unwrap_or_default(), if path.is_empty() { String::new() } else { format!("{path}: ") })]
pub struct ConfigError {
    /// The file, once known (filled in by the caller that read it).
    pub file: Option<PathBuf>,
    /// Dotted key path, e.g. `method.backbone.kind`.
    pub path: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            file: None,
            path: path.into(),
            message: message.into(),
        }
    }

    /// Attach the file the error came from.
    pub fn in_file(mut self, file: impl Into<PathBuf>) -> Self {
        self.file = Some(file.into());
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CoreError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        /// Not named `source`: the message already holds it, and a source would print it
        /// twice in an error chain.
        error: std::io::Error,
    },
    #[error("weights {path}: {message}")]
    Weights { path: PathBuf, message: String },
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
