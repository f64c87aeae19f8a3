//! Classification metrics from a confusion matrix, with scikit-learn's definitions.

use serde::{Deserialize, Serialize};

/// Counts of (true class, predicted class) pairs; rows are true classes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    n_classes: usize,
    counts: Vec<u64>,
}

impl ConfusionMatrix {
    pub fn new(n_classes: usize) -> Self {
        Self {
            n_classes,
            counts: vec![0; n_classes * n_classes],
        }
    }

    /// # Panics
    /// If a class index is not below `n_classes` (a programming error: labels come from the
    /// data set's class map and predictions from the model's outputs).
    pub fn from_predictions(targets: &[u32], predictions: &[u32], n_classes: usize) -> Self {
        let mut m = Self::new(n_classes);
        for (&t, &p) in targets.iter().zip(predictions) {
            m.add(t as usize, p as usize);
        }
        m
    }

    pub fn add(&mut self, target: usize, prediction: usize) {
        assert!(target < self.n_classes && prediction < self.n_classes);
        self.counts[target * self.n_classes + prediction] += 1;
    }

    /// Adds another matrix's counts (e.g. batches of one epoch).
    pub fn merge(&mut self, other: &ConfusionMatrix) {
        assert_eq!(self.n_classes, other.n_classes);
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            *a += b;
        }
    }

    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// How often class `target` was predicted as `prediction`.
    pub fn count(&self, target: usize, prediction: usize) -> u64 {
        self.counts[target * self.n_classes + prediction]
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn true_count(&self, class: usize) -> u64 {
        (0..self.n_classes).map(|p| self.count(class, p)).sum()
    }

    fn predicted_count(&self, class: usize) -> u64 {
        (0..self.n_classes).map(|t| self.count(t, class)).sum()
    }

    /// Classes that occur as a target or a prediction (scikit-learn's default `labels`).
    fn present(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.n_classes).filter(|&c| self.true_count(c) + self.predicted_count(c) > 0)
    }

    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.n_classes).map(|c| self.count(c, c)).sum();
        ratio(correct, self.total())
    }

    /// Per-class recall; `None` for a class with no true samples.
    pub fn recall(&self, class: usize) -> Option<f64> {
        let n = self.true_count(class);
        (n > 0).then(|| ratio(self.count(class, class), n))
    }

    /// Per-class precision; `None` for a class never predicted.
    pub fn precision(&self, class: usize) -> Option<f64> {
        let n = self.predicted_count(class);
        (n > 0).then(|| ratio(self.count(class, class), n))
    }

    /// Mean recall over the classes that have true samples (`balanced_accuracy_score`).
    pub fn balanced_accuracy(&self) -> f64 {
        let recalls: Vec<f64> = (0..self.n_classes).filter_map(|c| self.recall(c)).collect();
        mean(&recalls)
    }

    /// Unweighted mean of per-class F1 = 2tp / (2tp + fp + fn) over the classes present as
    /// target or prediction, an undefined F1 counting as 0 (`f1_score(average="macro")`).
    pub fn macro_f1(&self) -> f64 {
        let f1: Vec<f64> = self
            .present()
            .map(|c| {
                let tp = self.count(c, c);
                let fp = self.predicted_count(c) - tp;
                let fn_ = self.true_count(c) - tp;
                ratio(2 * tp, 2 * tp + fp + fn_)
            })
            .collect();
        mean(&f1)
    }
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The numbers a fold reports for one epoch on one subset.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    pub loss: f64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub macro_f1: f64,
}

impl EpochMetrics {
    pub fn new(loss: f64, confusion: &ConfusionMatrix) -> Self {
        Self {
            loss,
            accuracy: confusion.accuracy(),
            balanced_accuracy: confusion.balanced_accuracy(),
            macro_f1: confusion.macro_f1(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_matrix() {
        // y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,2,2]
        let m = ConfusionMatrix::from_predictions(&[0, 0, 0, 1, 1, 2], &[0, 0, 1, 1, 2, 2], 3);
        assert_eq!(m.count(0, 0), 2);
        assert_eq!(m.count(0, 1), 1);
        assert_eq!(m.accuracy(), 4.0 / 6.0);
        // recalls 2/3, 1/2, 1/1
        assert!((m.balanced_accuracy() - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        // F1: class 0: 4/5, class 1: 2/4, class 2: 2/3 (scikit-learn gives 0.6555…)
        assert!((m.macro_f1() - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        assert_eq!(m.precision(1), Some(0.5));
    }

    #[test]
    fn absent_classes_follow_scikit_learn() {
        // Class 2 never occurs and is never predicted: left out of both means.
        let m = ConfusionMatrix::from_predictions(&[0, 1, 1], &[0, 1, 0], 3);
        assert!((m.balanced_accuracy() - 0.75).abs() < 1e-12);
        // F1: class 0: 2/3, class 1: 2/3.
        assert!((m.macro_f1() - 2.0 / 3.0).abs() < 1e-12);
        // A predicted class with no true samples counts in macro-F1 (as 0), not in recall.
        let m = ConfusionMatrix::from_predictions(&[0, 0], &[0, 2], 3);
        assert_eq!(m.balanced_accuracy(), 0.5);
        assert!((m.macro_f1() - (2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert_eq!(ConfusionMatrix::new(2).accuracy(), 0.0);
    }
}
