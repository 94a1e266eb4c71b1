//! The crate's error type: one enum whose variants name the file or folder they are about.
use memad_core::ConfigError;
use std::path::PathBuf;

/// Everything that can go wrong reading, generating or cataloguing a dataset.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// `error` is not a source: the message holds it, and a chain would print it twice.
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error(
        "dataset root {path} does not exist or is not a folder (put the dataset there or fix `root` in datasets.toml)"
    )]
    RootMissing { path: PathBuf },
    #[error("category `{category}` not found in {root}; categories there: {}", list(.available))]
    CategoryMissing {
        root: PathBuf,
        category: String,
        available: Vec<String>,
    },
    #[error("{path} is missing: a category keeps its normal training images in train/good")]
    TrainMissing { path: PathBuf },
    #[error("{path} holds no images (png, jpg, jpeg, bmp, tif, tiff)")]
    NoImages { path: PathBuf },
    /// `hint`: what else the user can do (empty, or starting with "; ").
    #[error(
        "anomalous test image {image} has no ground-truth mask: expected mask at {expected}{hint}"
    )]
    MaskMissing {
        image: PathBuf,
        expected: PathBuf,
        hint: &'static str,
    },
    #[error("unexpected dataset layout at {path}: {message}")]
    Layout { path: PathBuf, message: String },
    #[error("{path}: corrupt or unreadable image: {message}")]
    Image { path: PathBuf, message: String },
    #[error(
        "mask {mask} is {}x{} but its image{} is {}x{}",
        .mask_size.0, .mask_size.1,
        .image.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default(),
        .image_size.0, .image_size.1
    )]
    MaskSize {
        mask: PathBuf,
        mask_size: (u32, u32),
        image: Option<PathBuf>,
        image_size: (u32, u32),
    },
    #[error("{path}: {message}")]
    Toml { path: PathBuf, message: String },
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("unknown dataset `{name}` in {catalog}; known: {}", list(.known))]
    UnknownDataset {
        name: String,
        catalog: PathBuf,
        known: Vec<String>,
    },
    #[error("invalid synthetic dataset spec: {0}")]
    InvalidSpec(String),
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    #[error("{path}: frame labels do not match the frames: {message}")]
    FrameLabels { path: PathBuf, message: String },
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    #[error("{path} is not empty and was not made by the synthetic generator (no memad-synthetic.toml); refusing to overwrite it; delete it or choose another root")]
    NotSynthetic { path: PathBuf },
}

fn list(items: &[String]) -> String {
    if items.is_empty() {
        "(none)".to_string()
    } else {
        items.join(", ")
    }
}

impl DataError {
    /// An I/O error about `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            error: source,
        }
    }
}

pub type Result<T, E = DataError> = std::result::Result<T, E>;
