//! The fold trainer: epochs of training and validation, the best epoch's weights, early
//! stopping, a stop with a clear error on a non-finite loss, and an epoch checkpoint from which
//! an interrupted fold continues to byte-identical final weights.
//!
//! The trainer knows nothing of folds or images: it is handed a model and, for each epoch,
//! batches of `(images [N, C, H, W], labels [N] u32)`. Everything random it does (dropout)
//! comes from the seed node it is given, keyed by epoch and step.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use cv_seed::SeedNode;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{load_tensors, write_atomic};
use crate::{
    clip_grad_norm, ConfusionMatrix, CrossEntropyLoss, Ema, EmaConfig, EpochMetrics, LossConfig,
    ModelError, Optimizer, OptimizerConfig, ResNet, ScheduleConfig,
};

/// A batch: images `[N, C, H, W]` f32 and labels `[N]` u32.
pub type BatchResult = Result<(Tensor, Tensor), Box<dyn std::error::Error + Send + Sync>>;
/// The batches of one epoch.
pub type Batches<'a> = Box<dyn Iterator<Item = BatchResult> + 'a>;

/// The metric that picks the best epoch (and drives early stopping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SelectBy {
    #[default]
    Accuracy,
    BalancedAccuracy,
    MacroF1,
    /// Validation loss (lower is better).
    Loss,
}

impl SelectBy {
    /// Higher is better.
    fn score(self, m: &EpochMetrics) -> f64 {
        match self {
            SelectBy::Accuracy => m.accuracy,
            SelectBy::BalancedAccuracy => m.balanced_accuracy,
            SelectBy::MacroF1 => m.macro_f1,
            SelectBy::Loss => -m.loss,
        }
    }
}

/// How a fold is trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Base learning rate (the schedule scales it).
    pub lr: f64,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub loss: LossConfig,
    /// Clip the global gradient norm to this value.
    #[serde(default)]
    pub clip_grad_norm: Option<f64>,
    /// Keep an exponential moving average of the weights; it is what gets validated and saved.
    #[serde(default)]
    pub ema: Option<EmaConfig>,
    #[serde(default)]
    pub select_by: SelectBy,
    /// Stop after this many epochs without a better validation score.
    #[serde(default)]
    pub early_stopping_patience: Option<usize>,
}

/// One epoch's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Learning rate at the epoch's first step.
    pub lr: f64,
    pub train: EpochMetrics,
    pub valid: EpochMetrics,
}

/// What training a fold produced.
#[derive(Debug, Clone)]
pub struct FoldOutcome {
    pub history: Vec<EpochRecord>,
    /// The epoch whose validation score was best (the first, on ties).
    pub best_epoch: usize,
    /// Weights of the best epoch (the EMA weights when EMA is on), by name.
    pub best_weights: BTreeMap<String, Tensor>,
    pub stopped_early: bool,
}

/// Why training stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error(
        "the training loss became {value} at epoch {epoch}, step {step}; lower the learning rate \
         or clip gradients (the last good epoch's checkpoint is kept)"
    )]
    NonFiniteLoss {
        epoch: usize,
        step: usize,
        value: f32,
    },
    #[error("epoch {epoch}: the {which} data gave no batches")]
    NoBatches { epoch: usize, which: &'static str },
    #[error("epoch {epoch}: cannot read a batch: {source}")]
    Data {
        epoch: usize,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error(transparent)]
    Model(#[from] ModelError),
    #[error(transparent)]
    Tensor(#[from] candle_core::Error),
    #[error(transparent)]
    File(#[from] crate::checkpoint::CheckpointError),
}

/// A progress report after each training step and each epoch.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    Step {
        epoch: usize,
        step: usize,
        loss: f32,
    },
    Epoch {
        epoch: usize,
        train: EpochMetrics,
        valid: EpochMetrics,
        best: bool,
    },
}

/// The trainer's position, saved after every epoch beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainState {
    /// The first epoch still to train.
    next_epoch: usize,
    best_epoch: Option<usize>,
    best_score: Option<f64>,
    epochs_without_improvement: usize,
    history: Vec<EpochRecord>,
    /// The tensors file holding the weights, optimizer and EMA state, and best weights.
    tensors: String,
}

const STATE_FILE: &str = "checkpoint.json";

/// Trains `model` (already initialised) for one fold.
///
/// `train_batches(epoch)` and `valid_batches(epoch)` give each epoch's batches. `dropout` seeds
/// the dropout masks (`dropout/epoch E/step S` below it). With `checkpoint_dir`, the trainer's
/// full state is written there atomically after every epoch, and a state found there is resumed
/// (the caller rebuilds the model from the same config; its weights are overwritten).
pub fn train_fold<'a>(
    model: &ResNet,
    config: &TrainConfig,
    mut train_batches: impl FnMut(usize) -> Batches<'a>,
    mut valid_batches: impl FnMut(usize) -> Batches<'a>,
    dropout: &SeedNode,
    checkpoint_dir: Option<&Path>,
    mut progress: impl FnMut(Progress),
) -> Result<FoldOutcome, TrainError> {
    let params = model.params();
    let device = model.device().clone();
    let loss_fn = CrossEntropyLoss::from_config(&config.loss, &device)?;
    let schedule = config.schedule.resolve(config.epochs)?;
    let mut optimizer = Optimizer::new(&config.optimizer)?;
    let mut ema = config
        .ema
        .as_ref()
        .map(|c| Ema::new(c, params))
        .transpose()?;
    let n_classes = model.config().num_classes;

    let mut state = TrainState {
        next_epoch: 0,
        best_epoch: None,
        best_score: None,
        epochs_without_improvement: 0,
        history: vec![],
        tensors: String::new(),
    };
    let mut best_weights: BTreeMap<String, Tensor> = BTreeMap::new();
    if let Some(dir) = checkpoint_dir {
        if let Some(saved) = read_state(dir)? {
            best_weights = restore(dir, &saved, model, &mut optimizer, ema.as_mut())?;
            state = saved;
        }
    }

    let mut stopped_early = false;
    for epoch in state.next_epoch..config.epochs {
        // Train.
        let mut confusion = ConfusionMatrix::new(n_classes);
        let mut loss_sum = 0f64;
        let mut seen = 0usize;
        let batches: Vec<BatchResult> = train_batches(epoch).collect();
        let steps = batches.len();
        if steps == 0 {
            return Err(TrainError::NoBatches {
                epoch,
                which: "training",
            });
        }
        let first_lr = schedule.lr_at(config.lr, epoch, 0, steps);
        for (step, batch) in batches.into_iter().enumerate() {
            let (images, labels) = batch.map_err(|source| TrainError::Data { epoch, source })?;
            let node = dropout
                .indexed("epoch", epoch as u64)
                .indexed("step", step as u64);
            let logits = model.forward_train(&images, &node)?;
            let loss = loss_fn.forward(&logits, &labels)?;
            let value = loss.to_dtype(DType::F32)?.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(TrainError::NonFiniteLoss { epoch, step, value });
            }
            let mut grads = loss.backward()?;
            if let Some(max_norm) = config.clip_grad_norm {
                clip_grad_norm(params, &mut grads, max_norm)?;
            }
            let lr = schedule.lr_at(config.lr, epoch, step, steps);
            optimizer.step(params, &grads, lr)?;
            if let Some(ema) = ema.as_mut() {
                ema.update(params)?;
            }
            let n = labels.dims()[0];
            loss_sum += f64::from(value) * n as f64;
            seen += n;
            confusion.merge(&confusion_of(&logits, &labels, n_classes)?);
            progress(Progress::Step {
                epoch,
                step,
                loss: value,
            });
        }
        let train_metrics = EpochMetrics::new(loss_sum / seen as f64, &confusion);

        // Validate the weights that would be saved (the EMA's when on).
        let swapped = match &ema {
            Some(ema) => Some(swap_in(model, ema.tensors())?),
            None => None,
        };
        let valid = evaluate(model, &loss_fn, valid_batches(epoch), epoch, n_classes);
        let current = copy_weights(model)?;
        if let Some(original) = swapped {
            restore_weights(model, &original)?;
        }
        let valid_metrics = valid?;

        let score = config.select_by.score(&valid_metrics);
        let improved = state.best_score.is_none_or(|best| score > best);
        if improved {
            state.best_score = Some(score);
            state.best_epoch = Some(epoch);
            state.epochs_without_improvement = 0;
            best_weights = current;
        } else {
            state.epochs_without_improvement += 1;
        }
        state.history.push(EpochRecord {
            epoch,
            lr: first_lr,
            train: train_metrics,
            valid: valid_metrics,
        });
        state.next_epoch = epoch + 1;
        progress(Progress::Epoch {
            epoch,
            train: train_metrics,
            valid: valid_metrics,
            best: improved,
        });
        if let Some(dir) = checkpoint_dir {
            save_checkpoint(
                dir,
                &mut state,
                model,
                &optimizer,
                ema.as_ref(),
                &best_weights,
            )?;
        }
        if config
            .early_stopping_patience
            .is_some_and(|patience| state.epochs_without_improvement >= patience)
        {
            stopped_early = state.next_epoch < config.epochs;
            break;
        }
    }
    Ok(FoldOutcome {
        best_epoch: state.best_epoch.unwrap_or(0),
        history: state.history,
        best_weights,
        stopped_early,
    })
}

/// Loss and metrics of `model` in eval mode over `batches`.
pub fn evaluate(
    model: &ResNet,
    loss_fn: &CrossEntropyLoss,
    batches: Batches<'_>,
    epoch: usize,
    n_classes: usize,
) -> Result<EpochMetrics, TrainError> {
    let mut confusion = ConfusionMatrix::new(n_classes);
    let mut loss_sum = 0f64;
    let mut seen = 0usize;
    for batch in batches {
        let (images, labels) = batch.map_err(|source| TrainError::Data { epoch, source })?;
        let logits = model.forward_t(&images, false)?;
        let loss = loss_fn.forward(&logits, &labels)?;
        let n = labels.dims()[0];
        loss_sum += f64::from(loss.to_dtype(DType::F32)?.to_scalar::<f32>()?) * n as f64;
        seen += n;
        confusion.merge(&confusion_of(&logits, &labels, n_classes)?);
    }
    if seen == 0 {
        return Err(TrainError::NoBatches {
            epoch,
            which: "validation",
        });
    }
    Ok(EpochMetrics::new(loss_sum / seen as f64, &confusion))
}

fn confusion_of(
    logits: &Tensor,
    labels: &Tensor,
    n_classes: usize,
) -> Result<ConfusionMatrix, TrainError> {
    let predictions = logits.argmax(1)?.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    let targets = labels.to_dtype(DType::U32)?.to_vec1::<u32>()?;
    Ok(ConfusionMatrix::from_predictions(
        &targets,
        &predictions,
        n_classes,
    ))
}

/// A deep copy of every variable (a `Tensor` clone would share the storage that training
/// updates in place).
fn copy_weights(model: &ResNet) -> Result<BTreeMap<String, Tensor>, TrainError> {
    model
        .params()
        .iter()
        .map(|(name, p)| Ok((name.to_owned(), p.var.as_tensor().copy()?)))
        .collect()
}

fn restore_weights(model: &ResNet, weights: &BTreeMap<String, Tensor>) -> Result<(), TrainError> {
    for (name, p) in model.params().iter() {
        if let Some(t) = weights.get(name) {
            p.var.set(t)?;
        }
    }
    Ok(())
}

/// Puts `weights` into the model and returns what was there.
fn swap_in(
    model: &ResNet,
    weights: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>, TrainError> {
    let original = copy_weights(model)?;
    restore_weights(model, weights)?;
    Ok(original)
}

fn read_state(dir: &Path) -> Result<Option<TrainState>, TrainError> {
    let path = dir.join(STATE_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Checkpoint {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let state = serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint {
        path,
        message: e.to_string(),
    })?;
    Ok(Some(state))
}

/// Sets the model, optimizer and EMA from a checkpoint; returns the best weights so far.
fn restore(
    dir: &Path,
    state: &TrainState,
    model: &ResNet,
    optimizer: &mut Optimizer,
    ema: Option<&mut Ema>,
) -> Result<BTreeMap<String, Tensor>, TrainError> {
    let path = dir.join(&state.tensors);
    let device = model.device();
    let mut tensors = load_tensors(&path)?;
    let mut take = |prefix: &str| -> Result<Vec<(String, Tensor)>, TrainError> {
        let names: Vec<String> = tensors
            .keys()
            .filter(|k| k.starts_with(prefix))
            .cloned()
            .collect();
        names
            .into_iter()
            .map(|k| {
                let t = tensors
                    .remove(&k)
                    .unwrap_or_else(|| unreachable!("listed above"));
                Ok((k[prefix.len()..].to_owned(), t.to_device(device)?))
            })
            .collect()
    };
    let weights: BTreeMap<String, Tensor> = take("model/")?.into_iter().collect();
    restore_weights(model, &weights)?;
    optimizer.load_state(model.params(), take("optim/")?)?;
    let ema_state = take("ema/")?;
    if let Some(ema) = ema {
        ema.load_state(model.params(), ema_state)?;
    }
    Ok(take("best/")?.into_iter().collect())
}

/// Writes the epoch's tensors to a file named by epoch, then the state pointing at it, each
/// atomically; only then removes the previous epoch's file. A crash at any point leaves a
/// state that names a complete file.
fn save_checkpoint(
    dir: &Path,
    state: &mut TrainState,
    model: &ResNet,
    optimizer: &Optimizer,
    ema: Option<&Ema>,
    best: &BTreeMap<String, Tensor>,
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| TrainError::Checkpoint {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let mut tensors: std::collections::HashMap<String, Tensor> = std::collections::HashMap::new();
    for (name, p) in model.params().iter() {
        tensors.insert(format!("model/{name}"), p.var.as_tensor().clone());
    }
    for (name, t) in optimizer.state()? {
        tensors.insert(format!("optim/{name}"), t);
    }
    if let Some(ema) = ema {
        for (name, t) in ema.state()? {
            tensors.insert(format!("ema/{name}"), t);
        }
    }
    for (name, t) in best {
        tensors.insert(format!("best/{name}"), t.clone());
    }
    let previous = std::mem::take(&mut state.tensors);
    state.tensors = format!("checkpoint-epoch-{}.safetensors", state.next_epoch - 1);
    let tensors_path = dir.join(&state.tensors);
    write_atomic(&tensors_path, |tmp| {
        candle_core::safetensors::save(&tensors, tmp).map_err(std::io::Error::other)
    })?;
    let json = serde_json::to_vec_pretty(state).map_err(|e| TrainError::Checkpoint {
        path: dir.join(STATE_FILE),
        message: e.to_string(),
    })?;
    write_atomic(&dir.join(STATE_FILE), |tmp| std::fs::write(tmp, &json))?;
    if !previous.is_empty() && previous != state.tensors {
        let _ = std::fs::remove_file(dir.join(previous));
    }
    Ok(())
}
