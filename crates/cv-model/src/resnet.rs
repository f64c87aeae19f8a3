//! Trainable ResNets: torchvision's resnet18/34/50 (same architecture, same state-dict names and
//! shapes, so torchvision weights load) and the CIFAR ResNets of He et al. (2016, §4.2).

use candle_core::{Device, Tensor};
use cv_seed::SeedNode;
use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};
use crate::init::{InitPlan, Initializer};
use crate::layers::{
    add_relu, global_avg_pool, join, max_pool_3x3_s2, BatchNorm2d, Conv2d, Dropout, Linear,
};
use crate::params::Params;

/// Which network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum Architecture {
    /// torchvision's `resnet18`: BasicBlocks [2, 2, 2, 2].
    Resnet18,
    /// torchvision's `resnet34`: BasicBlocks [3, 4, 6, 3].
    Resnet34,
    /// torchvision's `resnet50`: Bottlenecks [3, 4, 6, 3], stride on the 3×3 conv (v1.5).
    Resnet50,
    /// He et al.'s CIFAR ResNet: a 3×3 stem of `16 * width` channels, three stages of `n`
    /// BasicBlocks (`16w`, `32w`, `64w` channels, strides 1, 2, 2), no max-pool,
    /// `depth = 6n + 2` (20, 32, 44, 56, 110). Shortcuts that change shape are a 1×1
    /// convolution + BatchNorm (option B).
    CifarResnet {
        /// `6n + 2`.
        depth: usize,
        /// Channel multiplier (1 in the paper, the default).
        #[serde(default = "one")]
        width: usize,
    },
}

impl Architecture {
    /// The name as written in a config (`resnet50`, `cifar-resnet-20x1`).
    pub fn name(&self) -> String {
        match self {
            Architecture::Resnet18 => "resnet18".to_owned(),
            Architecture::Resnet34 => "resnet34".to_owned(),
            Architecture::Resnet50 => "resnet50".to_owned(),
            Architecture::CifarResnet { depth, width } => format!("cifar-resnet-{depth}x{width}"),
        }
    }

    /// Checks the parameters (CIFAR depth and width).
    pub fn validate(&self) -> Result<()> {
        if let Architecture::CifarResnet { depth, width } = *self {
            if depth < 8 || (depth - 2) % 6 != 0 {
                return Err(ModelError::BadCifarDepth(depth));
            }
            if width == 0 {
                return Err(ModelError::BadCifarWidth(width));
            }
        }
        Ok(())
    }

    /// Channels into the classifier.
    pub fn feature_dim(&self) -> usize {
        match *self {
            Architecture::Resnet18 | Architecture::Resnet34 => 512,
            Architecture::Resnet50 => 2048,
            Architecture::CifarResnet { width, .. } => 64 * width,
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name())
    }
}

/// Everything that decides a model's shape.
///
/// In TOML: `architecture = "resnet50"` or `architecture = { cifar-resnet = { depth = 20 } }`
/// (width defaults to 1), then `in_channels` (default 3), `num_classes`, `dropout` (default 0).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub architecture: Architecture,
    /// 3 for RGB, 1 for grayscale.
    #[serde(default = "default_in_channels")]
    pub in_channels: usize,
    pub num_classes: usize,
    /// Dropout probability before the classifier (0 = none, torchvision's default).
    #[serde(default)]
    pub dropout: f64,
}

fn one() -> usize {
    1
}

fn default_in_channels() -> usize {
    3
}

impl ModelConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<()> {
        self.architecture.validate()?;
        if self.in_channels == 0 {
            return Err(ModelError::NoInputChannels);
        }
        if self.num_classes == 0 {
            return Err(ModelError::NoClasses);
        }
        Dropout::new(self.dropout)?;
        Ok(())
    }
}

/// torchvision's `BasicBlock`: two 3×3 convolutions, stride on the first.
#[derive(Debug, Clone)]
struct BasicBlock {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

/// torchvision's `Bottleneck` (v1.5): 1×1 reduce, 3×3 with the stride, 1×1 expand ×4.
#[derive(Debug, Clone)]
struct Bottleneck {
    conv1: Conv2d,
    bn1: BatchNorm2d,
    conv2: Conv2d,
    bn2: BatchNorm2d,
    conv3: Conv2d,
    bn3: BatchNorm2d,
    downsample: Option<(Conv2d, BatchNorm2d)>,
}

#[derive(Debug, Clone)]
enum Block {
    Basic(BasicBlock),
    Bottleneck(Bottleneck),
}

/// The 1×1 conv + BN shortcut (`{prefix}.downsample.0` / `.1`), where the shape changes.
fn downsample(
    init: &mut Initializer,
    prefix: &str,
    in_channels: usize,
    out_channels: usize,
    stride: usize,
) -> Result<Option<(Conv2d, BatchNorm2d)>> {
    if stride == 1 && in_channels == out_channels {
        return Ok(None);
    }
    let conv = Conv2d::new(
        init,
        &join(prefix, "downsample.0"),
        in_channels,
        out_channels,
        1,
        stride,
        0,
    )?;
    let bn = BatchNorm2d::new(init, &join(prefix, "downsample.1"), out_channels)?;
    Ok(Some((conv, bn)))
}

impl BasicBlock {
    const EXPANSION: usize = 1;

    fn new(
        init: &mut Initializer,
        prefix: &str,
        in_channels: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        Ok(Self {
            conv1: Conv2d::new(
                init,
                &join(prefix, "conv1"),
                in_channels,
                planes,
                3,
                stride,
                1,
            )?,
            bn1: BatchNorm2d::new(init, &join(prefix, "bn1"), planes)?,
            conv2: Conv2d::new(init, &join(prefix, "conv2"), planes, planes, 3, 1, 1)?,
            bn2: BatchNorm2d::new(init, &join(prefix, "bn2"), planes)?,
            downsample: downsample(init, prefix, in_channels, planes, stride)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.bn1.forward_conv_t(&self.conv1, x, train, true)?;
        let out = self.bn2.forward_conv_t(&self.conv2, &out, train, false)?;
        let identity = shortcut(&self.downsample, x, train)?;
        add_relu(&out, &identity)
    }
}

impl Bottleneck {
    const EXPANSION: usize = 4;

    fn new(
        init: &mut Initializer,
        prefix: &str,
        in_channels: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let out = planes * Self::EXPANSION;
        Ok(Self {
            conv1: Conv2d::new(init, &join(prefix, "conv1"), in_channels, planes, 1, 1, 0)?,
            bn1: BatchNorm2d::new(init, &join(prefix, "bn1"), planes)?,
            conv2: Conv2d::new(init, &join(prefix, "conv2"), planes, planes, 3, stride, 1)?,
            bn2: BatchNorm2d::new(init, &join(prefix, "bn2"), planes)?,
            conv3: Conv2d::new(init, &join(prefix, "conv3"), planes, out, 1, 1, 0)?,
            bn3: BatchNorm2d::new(init, &join(prefix, "bn3"), out)?,
            downsample: downsample(init, prefix, in_channels, out, stride)?,
        })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let out = self.bn1.forward_conv_t(&self.conv1, x, train, true)?;
        let out = self.bn2.forward_conv_t(&self.conv2, &out, train, true)?;
        let out = self.bn3.forward_conv_t(&self.conv3, &out, train, false)?;
        let identity = shortcut(&self.downsample, x, train)?;
        add_relu(&out, &identity)
    }
}

fn shortcut(downsample: &Option<(Conv2d, BatchNorm2d)>, x: &Tensor, train: bool) -> Result<Tensor> {
    match downsample {
        Some((conv, bn)) => bn.forward_conv_t(conv, x, train, false),
        None => Ok(x.clone()),
    }
}

impl Block {
    /// Every BatchNorm of the block.
    fn batch_norms_mut(&mut self) -> Vec<&mut BatchNorm2d> {
        let (mut norms, downsample) = match self {
            Block::Basic(b) => (vec![&mut b.bn1, &mut b.bn2], &mut b.downsample),
            Block::Bottleneck(b) => (vec![&mut b.bn1, &mut b.bn2, &mut b.bn3], &mut b.downsample),
        };
        norms.extend(downsample.as_mut().map(|(_, bn)| bn));
        norms
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        match self {
            Block::Basic(b) => b.forward_t(x, train),
            Block::Bottleneck(b) => b.forward_t(x, train),
        }
    }
}

/// A trainable ResNet whose variables carry torchvision's state-dict names.
#[derive(Debug, Clone)]
pub struct ResNet {
    config: ModelConfig,
    conv1: Conv2d,
    bn1: BatchNorm2d,
    /// The ImageNet stem's max-pool; CIFAR ResNets have none.
    max_pool: bool,
    layers: Vec<Vec<Block>>,
    dropout: Dropout,
    fc: Linear,
    params: Params,
    plan: InitPlan,
    device: Device,
}

/// Builds the model of `config` on `device`, every variable seeded by
/// `init_node.child(variable name)` (pass e.g. `tree.child("init")`): the same node gives the
/// same weights, bit for bit, on any device and whatever order the layers are created in.
pub fn build(config: &ModelConfig, init_node: &SeedNode, device: &Device) -> Result<ResNet> {
    config.validate()?;
    let mut init = Initializer::new(init_node, device);
    let (conv1, max_pool, stem_channels) = match config.architecture {
        Architecture::CifarResnet { width, .. } => {
            let c = 16 * width;
            let conv = Conv2d::new(&mut init, "conv1", config.in_channels, c, 3, 1, 1)?;
            (conv, false, c)
        }
        _ => {
            let conv = Conv2d::new(&mut init, "conv1", config.in_channels, 64, 7, 2, 3)?;
            (conv, true, 64)
        }
    };
    let bn1 = BatchNorm2d::new(&mut init, "bn1", stem_channels)?;

    // (blocks per stage, planes of each stage, first stride of each stage, bottleneck?)
    let (blocks, planes, bottleneck): (Vec<usize>, Vec<usize>, bool) = match config.architecture {
        Architecture::Resnet18 => (vec![2, 2, 2, 2], vec![64, 128, 256, 512], false),
        Architecture::Resnet34 => (vec![3, 4, 6, 3], vec![64, 128, 256, 512], false),
        Architecture::Resnet50 => (vec![3, 4, 6, 3], vec![64, 128, 256, 512], true),
        Architecture::CifarResnet { depth, width } => {
            let n = (depth - 2) / 6;
            (vec![n; 3], vec![16 * width, 32 * width, 64 * width], false)
        }
    };
    let mut in_channels = stem_channels;
    let mut layers = Vec::with_capacity(blocks.len());
    for (stage, (&count, &width)) in blocks.iter().zip(&planes).enumerate() {
        let first_stride = if stage == 0 { 1 } else { 2 };
        let mut stage_blocks = Vec::with_capacity(count);
        for i in 0..count {
            let prefix = format!("layer{}.{i}", stage + 1);
            let stride = if i == 0 { first_stride } else { 1 };
            let block = if bottleneck {
                let b = Bottleneck::new(&mut init, &prefix, in_channels, width, stride)?;
                in_channels = width * Bottleneck::EXPANSION;
                Block::Bottleneck(b)
            } else {
                let b = BasicBlock::new(&mut init, &prefix, in_channels, width, stride)?;
                in_channels = width * BasicBlock::EXPANSION;
                Block::Basic(b)
            };
            stage_blocks.push(block);
        }
        layers.push(stage_blocks);
    }
    debug_assert_eq!(in_channels, config.architecture.feature_dim());
    let fc = Linear::new(&mut init, "fc", in_channels, config.num_classes)?;
    let (params, plan) = init.finish();
    Ok(ResNet {
        config: *config,
        conv1,
        bn1,
        max_pool,
        layers,
        dropout: Dropout::new(config.dropout)?,
        fc,
        params,
        plan,
        device: device.clone(),
    })
}

impl ResNet {
    /// Logits `[N, num_classes]` of images `[N, in_channels, H, W]`.
    ///
    /// `train = true` normalises with batch statistics and updates BatchNorm's running
    /// statistics. A model with dropout needs a seed node for the mask in train mode: use
    /// [`ResNet::forward_train`]; here such a call is an error rather than a silent skip.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        if train && self.dropout.p() > 0.0 {
            return Err(ModelError::DropoutNeedsSeed(self.dropout.p()));
        }
        let features = self.features(x, train)?;
        self.fc.forward(&features)
    }

    /// A train-mode forward whose dropout mask (if the model has dropout) is drawn from
    /// `dropout_node`, e.g. `tree.path("dropout/fold 3/epoch 7/step 12")`.
    pub fn forward_train(&self, x: &Tensor, dropout_node: &SeedNode) -> Result<Tensor> {
        let features = self.features(x, true)?;
        let features = self.dropout.forward(&features, dropout_node)?;
        self.fc.forward(&features)
    }

    /// Pooled features `[N, feature_dim]`, the classifier's input.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let dims = x.dims();
        if dims.len() != 4 || dims[1] != self.config.in_channels {
            return Err(ModelError::BadInput {
                expected_channels: self.config.in_channels,
                got: dims.to_vec(),
            });
        }
        let mut x = self.bn1.forward_conv_t(&self.conv1, x, train, true)?;
        if self.max_pool {
            x = max_pool_3x3_s2(&x)?;
        }
        for stage in &self.layers {
            for block in stage {
                x = block.forward_t(&x, train)?;
            }
        }
        global_avg_pool(&x)
    }

    /// Sets the running-statistics momentum of every BatchNorm (see
    /// [`BatchNorm2d::set_momentum`]).
    ///
    /// A clone of a model shares its variables, so a clone with another momentum updates the
    /// same running statistics while the original keeps its momentum.
    pub fn set_bn_momentum(&mut self, momentum: f64) -> Result<()> {
        self.bn1.set_momentum(momentum)?;
        for block in self.layers.iter_mut().flatten() {
            for bn in block.batch_norms_mut() {
                bn.set_momentum(momentum)?;
            }
        }
        Ok(())
    }

    /// Every variable by torchvision name.
    pub fn params(&self) -> &Params {
        &self.params
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The device the variables live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The classifier's variable names (replaced rather than loaded when fine-tuning to another
    /// number of classes).
    pub fn classifier_names(&self) -> [&'static str; 2] {
        ["fc.weight", "fc.bias"]
    }

    /// Sets variable `name` back to its seeded initial value (the same bytes `build` gave it).
    pub fn reinitialize(&self, name: &str) -> Result<()> {
        self.plan.reinitialize(&self.params, name)
    }

    /// How the variables were initialised.
    pub fn init_plan(&self) -> &InitPlan {
        &self.plan
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamKind;
    use cv_seed::SeedTree;

    fn buffers(model: &ResNet) -> Vec<(String, Vec<f32>)> {
        model
            .params()
            .iter()
            .filter(|(_, p)| p.kind == ParamKind::Buffer)
            .map(|(n, p)| {
                let v = p.var.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
                (n.to_owned(), v)
            })
            .collect()
    }

    #[test]
    fn set_bn_momentum_reaches_every_batch_norm_of_a_clone_only() {
        // resnet50 has Bottleneck blocks and downsample BatchNorms; 32x32 leaves its last stage
        // 1x1, two values per channel with a batch of two.
        let config = ModelConfig {
            architecture: Architecture::Resnet50,
            in_channels: 3,
            num_classes: 2,
            dropout: 0.0,
        };
        let model = build(&config, &SeedTree::new(1).child("init"), &Device::Cpu).unwrap();
        let x = Tensor::arange(0f32, (2 * 3 * 32 * 32) as f32, &Device::Cpu)
            .unwrap()
            .reshape((2, 3, 32, 32))
            .unwrap()
            .sin()
            .unwrap();
        let before = buffers(&model);
        let mut frozen = model.clone();
        frozen.set_bn_momentum(0.0).unwrap();
        frozen.features(&x, true).unwrap();
        assert_eq!(
            buffers(&model),
            before,
            "momentum 0 must leave every statistic alone"
        );
        // The original kept momentum 0.1; the clone shares (and so shows) its variables.
        model.features(&x, true).unwrap();
        for ((name, old), (_, new)) in before.iter().zip(buffers(&frozen)) {
            assert_ne!(old, &new, "{name} not updated");
        }
    }
}
