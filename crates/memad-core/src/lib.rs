//! memad-core: the contracts every other crate builds on.
//!
//! - [`Backbone`]: an encoder returning a [`FeaturePyramid`] (levels finest first).
//! - [`Memory`]: a memory module (learned by gradient, updated by rule, or fitted once).
//! - [`Method`]: an anomaly-detection method; the runner owns the loop, optimizer and seed.
//! - [`Registry`]: `kind = "..."` strings in experiment files mapped to constructors of
//!   methods, backbones and memories; each component crate exposes `register(&mut Registry)`.
//! - [`config`]: typed section parsing with `deny_unknown_fields` and key-path errors.
//! - [`device`]: device selection (really loading libtorch's CUDA backend) and seeding.
//! - [`precision`]: bf16 autocast and channels-last memory for a whole run.
//! - [`constant`]: small constant tensors made once per device (no host copy per call).
pub mod config;
pub mod constant;
pub mod device;
pub mod error;
pub mod io;
pub mod optim;
pub mod precision;
pub mod registry;
pub mod traits;

pub use config::{parse_section, to_toml_value, toml_syntax_error};
pub use error::{ConfigError, CoreError, Result};
pub use registry::{memory_dim, BackboneEntry, BuildContext, MemoryEntry, MethodEntry, Registry};
pub use traits::{
    no_progress, state_prefixed, state_under, AnomalyOutput, Backbone, Batch, FeatureLevel,
    FeaturePyramid, LevelSpec, LossTerm, Memory, MemoryRead, MemoryUsage, Method, Progress,
    ScorePart, SyntheticAnomalies, TrainOutput, Training,
};
