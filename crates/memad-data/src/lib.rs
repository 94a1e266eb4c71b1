//! memad-data: datasets on disk, for the methods and the runner.
//!
//! - [`catalog`]: `datasets.toml`, the named datasets experiments refer to.
//! - [`mvtec`]: the MVTec AD layout reader (paths and labels, nothing decoded).
//! - [`folder`]: a generic MVTec-like folder format with optional masks.
//! - [`visa`]: the VisA reader (its `split_csv/1cls.csv`).
//! - [`mvtec_loco`]: MVTec LOCO AD (logical and structural anomalies, OR-ed mask folders).
//! - [`btad`]: BTAD (beanTech, `ok`/`ko`).
//! - [`video`]: video frame datasets (UCSD Ped1/Ped2, Avenue, ShanghaiTech) in the MNAD and
//!   original UCSD layouts, frame labels, and clips for prediction and 3D models;
//!   [`shanghaitech`] (`.npy` frame labels and pixel masks) and [`avenue`] (the official
//!   `.mat` ground truth, read with [`matv5`]).
//! - [`idx`]: MNIST / Fashion-MNIST IDX files; [`cifar10`]: CIFAR-10 (binary and python);
//!   [`one_class`]: the one-class protocol on such labelled datasets.
//! - [`arrays`]: in-memory images (IDX, CIFAR-10) as one-class samples for the runner.
//! - [`check`]: validation of a catalogued dataset with a readable report.
//! - [`synthetic`]: a deterministic synthetic dataset in the MVTec AD layout (procedural
//!   industrial textures with realistic defects and exact masks).
//! - [`image_io`]: image and mask decoding and resizing with errors naming the file;
//!   [`mask`]: where a mask is ([`MaskRef`]: files, OR-ed files, frames of volumes);
//!   [`npy`]: `.npy` headers, labels and in-place frames.
//! - [`error`]: [`DataError`], the one error type of the crate.
pub mod arrays;
pub mod avenue;
pub mod btad;
pub mod catalog;
pub mod check;
pub mod cifar10;
pub mod error;
pub mod folder;
pub mod idx;
pub mod image_io;
pub mod loader;
pub mod mask;
pub mod matv5;
pub mod mvtec;
pub mod mvtec_loco;
pub mod npy;
pub mod one_class;
pub mod shanghaitech;
pub mod synthesis;
pub mod synthetic;
pub mod video;
pub mod visa;

pub use catalog::{DatasetCatalog, DatasetEntry, DatasetFormat};
pub use check::{
    check_dataset, file_problems, spro_problem, test_set_problem, unread_images, unused_files,
    CheckReport,
};
pub use error::{did_you_mean, DataError, Result};
pub use mask::MaskRef;
pub use mvtec::{CategorySplit, Label, Sample};
pub use one_class::{one_class_split, one_class_split_with_anomalies, OneClassSplit};
pub use synthetic::{ensure_generated, generate, GenerateReport, SyntheticSpec};
pub use video::{Video, VideoDataset};
