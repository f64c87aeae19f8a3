//! Greedy model soup (Wortsman et al., 2022, "Model soups", Recipe 1): a uniform average of
//! the fold models that help, chosen greedily on held-out data.

use std::collections::BTreeMap;
use std::path::PathBuf;

use candle_core::Tensor;

use crate::average::{check_compatible, Accumulator};
use crate::{EnsembleError, ModelFile};

/// A greedy soup: which models went in, the averaged weights, and every step of the choice.
#[derive(Debug, Clone)]
pub struct Soup {
    /// The models averaged, in the order they were added (best validation score first).
    pub members: Vec<PathBuf>,
    /// The uniform average of the members' tensors (see [`crate::average`]).
    pub tensors: BTreeMap<String, Tensor>,
    /// The held-out score of `tensors`.
    pub score: f64,
    /// Every model in ranking order: its path, the held-out score of the soup with it added (for
    /// the first, of the model alone), and whether it was kept.
    pub tried: Vec<(PathBuf, f64, bool)>,
}

/// Builds a greedy soup of `models`.
///
/// The models are ranked by `validation_score` (higher is better; equal scores keep the order
/// given). The soup starts as the best model; each next model is added to the running uniform
/// average if the `held_out_score` (higher is better) of the average with it is not lower than
/// the current soup's, and left out otherwise. `held_out_score` is called once per model, with
/// the candidate weights (the first model's names, shapes and dtypes): to score a ResNet with
/// BatchNorm, instantiate it, recalibrate it with [`crate::update_bn`] and evaluate it.
///
/// Refuses models that [`check_compatible`] refuses, a model without a validation score (the
/// error names it) and a NaN score.
///
/// ```no_run
/// # use cv_ensemble::{greedy_soup, ModelFile, EnsembleError};
/// # fn main() -> Result<(), EnsembleError> {
/// # let models: Vec<ModelFile> = Vec::new();
/// # let evaluate = |_: &std::collections::BTreeMap<String, candle_core::Tensor>| Ok(0.5);
/// let soup = greedy_soup(
///     &models,
///     |m| m.sidecar.metrics.get("accuracy").copied(),
///     |tensors| evaluate(tensors),
/// )?;
/// for (path, score, kept) in &soup.tried {
///     println!("{}: {score:.4} {}", path.display(), if *kept { "kept" } else { "left out" });
/// }
/// # Ok(()) }
/// ```
pub fn greedy_soup(
    models: &[ModelFile],
    validation_score: impl Fn(&ModelFile) -> Option<f64>,
    mut held_out_score: impl FnMut(&BTreeMap<String, Tensor>) -> Result<f64, EnsembleError>,
) -> Result<Soup, EnsembleError> {
    check_compatible(models)?;
    let mut ranked = Vec::with_capacity(models.len());
    for model in models {
        match validation_score(model) {
            Some(score) if !score.is_nan() => ranked.push((score, model)),
            Some(_) => {
                return Err(EnsembleError::Invalid(format!(
                    "{}: the validation score is NaN",
                    model.path.display()
                )))
            }
            None => {
                return Err(EnsembleError::NoScore {
                    path: model.path.clone(),
                })
            }
        }
    }
    // Stable, so equal scores keep the file order; no NaN is left to compare.
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut ranked = ranked.into_iter().map(|(_, m)| m);
    let best = ranked.next().ok_or(EnsembleError::NoModels)?;

    let mut score_of = |model: &ModelFile, tensors: &BTreeMap<String, Tensor>| {
        let score = held_out_score(tensors)?;
        if score.is_nan() {
            return Err(EnsembleError::Invalid(format!(
                "the held-out score of the soup with {} is NaN",
                model.path.display()
            )));
        }
        Ok(score)
    };
    let mut sum = Accumulator::new(&best.tensors)?;
    // The mean of one model, which is that model rounded through f64 and back: bit for bit.
    let mut tensors = sum.mean()?;
    let mut score = score_of(best, &tensors)?;
    let mut members = vec![best.path.clone()];
    let mut tried = vec![(best.path.clone(), score, true)];
    for model in ranked {
        let candidate = sum.mean_with(&model.tensors)?;
        let candidate_score = score_of(model, &candidate)?;
        let keep = candidate_score >= score;
        if keep {
            sum.add(&model.tensors)?;
            tensors = candidate;
            score = candidate_score;
            members.push(model.path.clone());
        }
        tried.push((model.path.clone(), candidate_score, keep));
    }
    Ok(Soup {
        members,
        tensors,
        score,
        tried,
    })
}
