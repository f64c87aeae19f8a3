//! Seeded weight initialisation, torchvision's scheme, drawn on the host.
//!
//! candle's own initialisers draw from its CPU generator, which cannot be seeded, so every value
//! here comes from a [`SeedNode`] stream and is uploaded with `Tensor::from_vec`. Each variable
//! has its own stream, `init_node.child(name)`, keyed by the variable's name: the order in which
//! a model creates its variables never changes their values, and adding a layer never shifts
//! another layer's weights. CPU and CUDA start from the same bytes.

use std::collections::BTreeMap;

use candle_core::{Device, Tensor, Var};
use cv_seed::{Draw, SeedNode};

use crate::error::{ModelError, Result};
use crate::params::{ParamKind, Params};

/// How one variable starts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// Kaiming (He) normal, mode `fan_out`, gain for ReLU: `std = sqrt(2 / fan_out)` with
    /// `fan_out = shape[0] * prod(shape[2..])` (torchvision's ResNet convolutions).
    KaimingNormalFanOut,
    /// Every element `bound`-uniform with `bound = 1 / sqrt(fan_in)`, `fan_in = prod(shape[1..])`
    /// for a weight (PyTorch's `nn.Linear` default, which torchvision's ResNet `fc` keeps).
    /// A bias of a layer whose weight has fan-in `fan_in` uses the same bound: give it here.
    UniformFanIn {
        /// The fan-in of the layer (the bias has none of its own).
        fan_in: usize,
    },
    /// Every element the same value (BatchNorm: weight 1, bias 0, mean 0, variance 1).
    Constant(f64),
}

impl Init {
    /// The values of a variable of `shape` seeded by `node` (`init_node.child(name)`), in
    /// row-major order.
    pub fn values(self, node: &SeedNode, shape: &[usize]) -> Vec<f32> {
        let count: usize = shape.iter().product();
        match self {
            Init::KaimingNormalFanOut => {
                let fan_out =
                    shape.first().copied().unwrap_or(1) * shape.iter().skip(2).product::<usize>();
                let std = (2.0 / fan_out.max(1) as f64).sqrt();
                let mut rng = node.rng();
                (0..count).map(|_| (std * rng.normal()) as f32).collect()
            }
            Init::UniformFanIn { fan_in } => {
                let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
                let mut rng = node.rng();
                (0..count)
                    .map(|_| rng.uniform_in(-bound, bound) as f32)
                    .collect()
            }
            Init::Constant(value) => vec![value as f32; count],
        }
    }
}

/// Creates a model's variables, each seeded by its name, and records how each was made so that
/// any of them can be initialised again (a pretrained start re-initialises the classifier).
#[derive(Debug)]
pub struct Initializer {
    node: SeedNode,
    device: Device,
    params: Params,
    plan: BTreeMap<String, (Init, Vec<usize>)>,
}

impl Initializer {
    /// Variables will be seeded by `node.child(name)` and live on `device`.
    pub fn new(node: &SeedNode, device: &Device) -> Self {
        Self {
            node: node.clone(),
            device: device.clone(),
            params: Params::new(),
            plan: BTreeMap::new(),
        }
    }

    /// Creates the variable `name` (f32) and registers it in the model's [`Params`].
    ///
    /// # Panics
    /// If `name` was already created (a bug in the model definition, not a user error).
    pub fn var(&mut self, name: &str, shape: &[usize], init: Init, kind: ParamKind) -> Result<Var> {
        let var = make_var(&self.node, name, shape, init, &self.device)?;
        self.params.insert(name, var.clone(), kind);
        self.plan.insert(name.to_owned(), (init, shape.to_vec()));
        Ok(var)
    }

    /// The variables and the plan that made them.
    pub fn finish(self) -> (Params, InitPlan) {
        (
            self.params,
            InitPlan {
                node: self.node,
                plan: self.plan,
            },
        )
    }
}

/// How every variable of a model was initialised, to do it again.
#[derive(Debug, Clone)]
pub struct InitPlan {
    node: SeedNode,
    plan: BTreeMap<String, (Init, Vec<usize>)>,
}

impl InitPlan {
    /// The node whose children seed the variables.
    pub fn node(&self) -> &SeedNode {
        &self.node
    }

    /// The rule and shape of variable `name`.
    pub fn get(&self, name: &str) -> Option<(Init, &[usize])> {
        self.plan.get(name).map(|(i, s)| (*i, s.as_slice()))
    }

    /// Sets variable `name` of `params` back to its seeded initial value.
    pub fn reinitialize(&self, params: &Params, name: &str) -> Result<()> {
        let (init, shape) = self
            .plan
            .get(name)
            .ok_or_else(|| ModelError::UnknownParam(name.to_owned()))?;
        let param = params
            .get(name)
            .ok_or_else(|| ModelError::UnknownParam(name.to_owned()))?;
        let values = init.values(&self.node.child(name), shape);
        let tensor = Tensor::from_vec(values, shape.as_slice(), param.var.device())?;
        param.var.set(&tensor)?;
        Ok(())
    }
}

/// One seeded variable: `init` drawn from `node.child(name)`, uploaded to `device` as f32.
pub fn make_var(
    node: &SeedNode,
    name: &str,
    shape: &[usize],
    init: Init,
    device: &Device,
) -> Result<Var> {
    let values = init.values(&node.child(name), shape);
    Ok(Var::from_vec(values, shape, device)?)
}
