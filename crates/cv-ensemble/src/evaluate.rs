//! Metrics of a model or an ensemble on a labelled set, from its [`Predictions`], with
//! scikit-learn's definitions.

use cv_model::ConfusionMatrix;
use serde::{Deserialize, Serialize};

use crate::{EnsembleError, Predictions};

/// One class's numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub class: String,
    /// Samples whose true class this is.
    pub support: u64,
    /// `None` (JSON `null`) for a class never predicted; scikit-learn reports 0 and warns.
    pub precision: Option<f64>,
    /// `None` (JSON `null`) for a class with no samples; scikit-learn reports 0 and warns.
    pub recall: Option<f64>,
}

/// How well a model or an ensemble did on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub samples: usize,
    pub accuracy: f64,
    /// `balanced_accuracy_score`: the mean recall over the classes that have samples.
    pub balanced_accuracy: f64,
    /// `f1_score(average="macro")` over the classes present as a label or a prediction.
    pub macro_f1: f64,
    /// [`log_loss`].
    pub log_loss: f64,
    /// In label order.
    pub per_class: Vec<ClassScores>,
    /// `confusion_matrix[true][predicted]`: rows are true classes, as scikit-learn's
    /// `confusion_matrix`.
    pub confusion_matrix: Vec<Vec<u64>>,
}

/// The confusion matrix of the arg-max predictions.
pub fn confusion_matrix(predictions: &Predictions) -> Result<ConfusionMatrix, EnsembleError> {
    predictions.validate()?;
    Ok(ConfusionMatrix::from_predictions(
        &predictions.labels,
        &predictions.predicted(),
        predictions.n_classes,
    ))
}

/// scikit-learn's `log_loss(labels, probabilities, labels=range(n_classes))` for `f32`
/// probabilities: the mean over samples of `-ln p[true class]`, each probability first clipped
/// to `[eps, 1 - eps]` with `eps = f32::EPSILON` (scikit-learn uses the input dtype's `eps`).
///
/// As scikit-learn 1.9, rows are not renormalised (it only warns when they do not sum to 1),
/// and a probability outside `[0, 1]` is an error. The logarithm and the mean are taken in
/// `f64`, where scikit-learn computes in `f32`: results agree to `f32` precision.
///
/// ```
/// use cv_ensemble::{log_loss, Predictions};
/// let p = Predictions::new(2, vec![0.25, 0.75, 1.0, 0.0], vec![1, 1]).unwrap();
/// // -(ln 0.75 + ln eps) / 2
/// let expected = -(0.75f64.ln() + f64::from(f32::EPSILON).ln()) / 2.0;
/// assert!((log_loss(&p).unwrap() - expected).abs() < 1e-12);
/// ```
pub fn log_loss(predictions: &Predictions) -> Result<f64, EnsembleError> {
    predictions.validate()?;
    if predictions.is_empty() {
        return Err(EnsembleError::NoSamples);
    }
    if let Some(i) = predictions
        .probabilities
        .iter()
        .position(|p| !(0.0..=1.0).contains(p))
    {
        return Err(EnsembleError::Invalid(format!(
            "sample {}: probability {} is not in [0, 1]",
            i / predictions.n_classes,
            predictions.probabilities[i]
        )));
    }
    let eps = f32::EPSILON;
    let total: f64 = predictions
        .rows()
        .zip(&predictions.labels)
        .map(|(row, &label)| -f64::from(row[label as usize].clamp(eps, 1.0 - eps)).ln())
        .sum();
    Ok(total / predictions.len() as f64)
}

/// Every metric of `predictions`, with `classes` naming the labels.
///
/// ```
/// use cv_ensemble::{evaluate, Predictions};
/// let p = Predictions::new(2, vec![0.9, 0.1, 0.4, 0.6, 0.3, 0.7], vec![0, 0, 1]).unwrap();
/// let e = evaluate(&p, &["cat".into(), "dog".into()]).unwrap();
/// assert_eq!(e.confusion_matrix, vec![vec![1, 1], vec![0, 1]]);
/// assert_eq!(e.per_class[1].precision, Some(0.5));
/// ```
pub fn evaluate(
    predictions: &Predictions,
    classes: &[String],
) -> Result<Evaluation, EnsembleError> {
    if classes.len() != predictions.n_classes {
        return Err(EnsembleError::Invalid(format!(
            "{} class names for predictions over {} classes",
            classes.len(),
            predictions.n_classes
        )));
    }
    let log_loss = log_loss(predictions)?;
    let m = confusion_matrix(predictions)?;
    let n = m.n_classes();
    let confusion: Vec<Vec<u64>> = (0..n)
        .map(|t| (0..n).map(|p| m.count(t, p)).collect())
        .collect();
    let per_class = classes
        .iter()
        .enumerate()
        .map(|(c, name)| ClassScores {
            class: name.clone(),
            support: confusion[c].iter().sum(),
            precision: m.precision(c),
            recall: m.recall(c),
        })
        .collect();
    Ok(Evaluation {
        samples: predictions.len(),
        accuracy: m.accuracy(),
        balanced_accuracy: m.balanced_accuracy(),
        macro_f1: m.macro_f1(),
        log_loss,
        per_class,
        confusion_matrix: confusion,
    })
}
