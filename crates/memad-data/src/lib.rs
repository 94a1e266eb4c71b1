//! memad-data
