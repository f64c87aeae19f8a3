//! Trainable candle ResNets, the training loop and checkpoints for foldwise.
//!
//! Not yet built: this crate is filled by the cv-model issue. It exists now so the workspace has its
//! final shape.
