//! A model's variables by name, and what kind each is (which decides weight decay and which
//! ones an optimizer may touch at all).

use std::collections::BTreeMap;

use candle_core::{Tensor, Var};

/// What a variable is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamKind {
    /// Convolution and linear weights: trained, weight-decayed.
    Weight,
    /// Convolution and linear biases: trained, not decayed unless asked.
    Bias,
    /// BatchNorm scale and shift: trained, not decayed unless asked.
    Norm,
    /// BatchNorm running statistics: updated by forward passes in train mode, never by an
    /// optimizer.
    Buffer,
}

impl ParamKind {
    pub fn is_trainable(self) -> bool {
        self != ParamKind::Buffer
    }
}

/// A variable and its kind.
#[derive(Debug, Clone)]
pub struct Param {
    pub var: Var,
    pub kind: ParamKind,
}

/// Every variable of a model by its torchvision-style name (`layer1.0.conv1.weight`), in sorted
/// order, so that anything iterating them (optimizers, norms, saving) is deterministic.
#[derive(Debug, Clone, Default)]
pub struct Params {
    map: BTreeMap<String, Param>,
}

impl Params {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a variable; a second variable with the same name is a programming error.
    ///
    /// # Panics
    /// If `name` is already present.
    pub fn insert(&mut self, name: impl Into<String>, var: Var, kind: ParamKind) {
        let name = name.into();
        let previous = self.map.insert(name.clone(), Param { var, kind });
        assert!(previous.is_none(), "parameter {name} defined twice");
    }

    pub fn get(&self, name: &str) -> Option<&Param> {
        self.map.get(name)
    }

    /// All variables in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.map.iter().map(|(n, p)| (n.as_str(), p))
    }

    /// Trainable variables in name order.
    pub fn trainable(&self) -> impl Iterator<Item = (&str, &Param)> {
        self.iter().filter(|(_, p)| p.kind.is_trainable())
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Name → current value of every variable (what a checkpoint saves).
    pub fn tensors(&self) -> BTreeMap<String, Tensor> {
        self.map
            .iter()
            .map(|(n, p)| (n.clone(), p.var.as_tensor().clone()))
            .collect()
    }
}
