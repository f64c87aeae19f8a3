//! Weight averaging and softmax ensembling of fold models for foldwise.
//!
//! Not yet built: this crate is filled by the cv-ensemble issue. It exists now so the workspace has
//! its final shape.
