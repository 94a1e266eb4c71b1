//! memad-metrics
