//! memad-data: datasets on disk, for the methods and the runner.
//!
//! - [`catalog`]: `datasets.toml`, the named datasets experiments refer to.
//! - [`mvtec`]: the MVTec AD layout reader (paths and labels, nothing decoded).
//! - [`synthetic`]: a deterministic synthetic dataset in the MVTec AD layout (procedural
//!   industrial textures with realistic defects and exact masks).
//! - [`image_io`]: image and mask decoding and resizing with errors naming the file.
//! - [`error`]: [`DataError`], the one error type of the crate.
pub mod catalog;
pub mod error;
pub mod image_io;
pub mod loader;
pub mod mvtec;
pub mod synthetic;

pub use catalog::{DatasetCatalog, DatasetEntry, DatasetFormat};
pub use error::{DataError, Result};
pub use mvtec::{CategorySplit, Label, Sample};
pub use synthetic::{ensure_generated, generate, GenerateReport, SyntheticSpec};
