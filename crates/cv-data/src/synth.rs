//! Synthetic labelled image sets (being written).
