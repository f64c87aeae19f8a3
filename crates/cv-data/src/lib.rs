//! Image datasets, transforms and a deterministic loader for foldwise.
//!
//! Not yet built: this crate is filled by the cv-data issue. It exists now so the workspace has its
//! final shape.
