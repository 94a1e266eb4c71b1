//! The crate's error type: every degenerate input is an error, never a silent number.

use thiserror::Error;

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum MetricError {
    /// The labels contain no positive (anomalous) sample; the metric is undefined.
    #[error("no positive (anomalous) samples: the metric is undefined")]
    NoPositives,
    /// The labels contain no negative (normal) sample; the metric is undefined.
    #[error("no negative (normal) samples: the metric is undefined")]
    NoNegatives,
    /// A score is NaN or infinite.
    #[error("score at index {index} is not finite")]
    NonFinite { index: usize },
    /// Scores and labels differ in length.
    #[error("{scores} scores but {labels} labels")]
    LengthMismatch { scores: usize, labels: usize },
    /// Nothing to evaluate.
    #[error("empty input")]
    Empty,
    /// A flat buffer does not have the declared `n * h * w` shape.
    #[error("{what}: expected {expected} values for the declared shape, got {actual}")]
    Shape {
        what: &'static str,
        expected: usize,
        actual: usize,
    },
    /// The AUPRO false-positive-rate limit is outside `(0, 1]`.
    #[error("fpr_limit must be in (0, 1], got {0}")]
    InvalidFprLimit(f64),
    /// An [`crate::auspro`] region that names no pixel of the maps or has no valid
    /// saturation area.
    #[error("sPRO region {index}: {reason}")]
    InvalidRegion { index: usize, reason: String },
    /// Macro-averaged frame AUROC: no video contains both normal and abnormal frames.
    #[error("no video contains both normal and abnormal frames")]
    NoVideoWithBothClasses,
    /// An error in one item of a collection (a video, a class, an image).
    #[error("{context}: {source}")]
    In {
        context: String,
        #[source]
        source: Box<MetricError>,
    },
}

impl MetricError {
    /// Wraps `self` with the item it happened in, e.g. `"video 3"`.
    pub fn within(self, context: impl Into<String>) -> Self {
        MetricError::In {
            context: context.into(),
            source: Box::new(self),
        }
    }

    /// The innermost error, past any `In` contexts.
    pub fn root(&self) -> &MetricError {
        match self {
            MetricError::In { source, .. } => source.root(),
            other => other,
        }
    }
}

/// `Result` with [`MetricError`].
pub type Result<T> = std::result::Result<T, MetricError>;
