//! A comparison of the fold models and the models made from them on one held-out set.

use serde::{Deserialize, Serialize};

use crate::{EnsembleError, Evaluation};

/// The four headline numbers of a model on the held-out set.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub macro_f1: f64,
    pub log_loss: f64,
}

impl From<&Evaluation> for Scores {
    fn from(e: &Evaluation) -> Self {
        Self {
            accuracy: e.accuracy,
            balanced_accuracy: e.balanced_accuracy,
            macro_f1: e.macro_f1,
            log_loss: e.log_loss,
        }
    }
}

impl Scores {
    fn values(&self) -> [f64; 4] {
        [
            self.accuracy,
            self.balanced_accuracy,
            self.macro_f1,
            self.log_loss,
        ]
    }

    fn from_values(v: [f64; 4]) -> Self {
        Self {
            accuracy: v[0],
            balanced_accuracy: v[1],
            macro_f1: v[2],
            log_loss: v[3],
        }
    }
}

/// What the caller has measured on the held-out set; every row is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// Each fold model, `folds[i]` being fold `i`.
    pub folds: Vec<Scores>,
    /// The averaged-weights model, before BatchNorm recalibration.
    pub averaged: Option<Scores>,
    /// The averaged-weights model after BatchNorm recalibration.
    pub recalibrated: Option<Scores>,
    /// The greedy soup.
    pub soup: Option<Scores>,
    /// The softmax ensemble of the fold models.
    pub ensemble: Option<Scores>,
}

/// One row of the rendered table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparisonRow {
    /// `fold 0`, …, `fold mean ± std`, `averaged weights`, `averaged weights + BN recalibration`,
    /// `greedy soup`, `softmax ensemble`.
    pub model: String,
    /// The model's scores; for the fold summary row, the mean over the folds.
    #[serde(flatten)]
    pub scores: Scores,
    /// Only on the fold summary row, with two folds or more: the sample standard deviation over
    /// the folds (divisor `n - 1`, as pandas' `std`; left out of the JSON when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Scores>,
}

impl Comparison {
    /// The rows of the table: each fold, the folds' mean ± sample std (when there are folds),
    /// then whichever of averaged, recalibrated, soup and ensemble are present.
    pub fn rows(&self) -> Vec<ComparisonRow> {
        let row = |model: String, scores: Scores| ComparisonRow {
            model,
            scores,
            std: None,
        };
        let mut rows: Vec<ComparisonRow> = self
            .folds
            .iter()
            .enumerate()
            .map(|(i, s)| row(format!("fold {i}"), *s))
            .collect();
        if let Some((mean, std)) = mean_std(&self.folds) {
            rows.push(ComparisonRow {
                model: "fold mean ± std".into(),
                scores: mean,
                std,
            });
        }
        let named = [
            ("averaged weights", self.averaged),
            ("averaged weights + BN recalibration", self.recalibrated),
            ("greedy soup", self.soup),
            ("softmax ensemble", self.ensemble),
        ];
        rows.extend(
            named
                .into_iter()
                .filter_map(|(name, s)| s.map(|s| row(name.into(), s))),
        );
        rows
    }

    /// The table as Markdown, numbers to 4 decimals; the fold summary row reads `mean ± std`
    /// (the mean alone with a single fold).
    ///
    /// ```
    /// use cv_ensemble::{Comparison, Scores};
    /// let s = |a| Scores { accuracy: a, balanced_accuracy: a, macro_f1: a, log_loss: 1.0 - a };
    /// let c = Comparison { folds: vec![s(0.8)], ensemble: Some(s(0.9)), ..Default::default() };
    /// assert_eq!(
    ///     c.to_markdown(),
    ///     "| model | accuracy | balanced accuracy | macro-F1 | log-loss |\n\
    ///      |---|---:|---:|---:|---:|\n\
    ///      | fold 0 | 0.8000 | 0.8000 | 0.8000 | 0.2000 |\n\
    ///      | fold mean ± std | 0.8000 | 0.8000 | 0.8000 | 0.2000 |\n\
    ///      | softmax ensemble | 0.9000 | 0.9000 | 0.9000 | 0.1000 |\n"
    /// );
    /// ```
    pub fn to_markdown(&self) -> String {
        let mut out = String::from(
            "| model | accuracy | balanced accuracy | macro-F1 | log-loss |\n\
             |---|---:|---:|---:|---:|\n",
        );
        for row in self.rows() {
            out.push_str("| ");
            out.push_str(&row.model);
            let std = row.std.map(|s| s.values());
            for (k, v) in row.scores.values().iter().enumerate() {
                match std {
                    Some(std) => out.push_str(&format!(" | {v:.4} ± {:.4}", std[k])),
                    None => out.push_str(&format!(" | {v:.4}")),
                }
            }
            out.push_str(" |\n");
        }
        out
    }

    /// The table as pretty JSON: `{"rows": [{"model": …, "accuracy": …, "balanced_accuracy": …,
    /// "macro_f1": …, "log_loss": …}, …]}`, the fold summary row with a `std` object as well
    /// (with two folds or more). A non-finite number is written `null`.
    pub fn to_json(&self) -> Result<String, EnsembleError> {
        #[derive(Serialize)]
        struct Table {
            rows: Vec<ComparisonRow>,
        }
        serde_json::to_string_pretty(&Table { rows: self.rows() }).map_err(|e| {
            EnsembleError::Invalid(format!("cannot write the comparison as JSON: {e}"))
        })
    }
}

/// The mean and the sample standard deviation (`n - 1`) of each score; no std below 2 folds.
fn mean_std(folds: &[Scores]) -> Option<(Scores, Option<Scores>)> {
    if folds.is_empty() {
        return None;
    }
    let n = folds.len() as f64;
    let mut mean = [0f64; 4];
    for s in folds {
        for (m, v) in mean.iter_mut().zip(s.values()) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let std = (folds.len() > 1).then(|| {
        let mut var = [0f64; 4];
        for s in folds {
            for ((acc, v), m) in var.iter_mut().zip(s.values()).zip(mean) {
                *acc += (v - m) * (v - m);
            }
        }
        Scores::from_values(var.map(|v| (v / (n - 1.0)).sqrt()))
    });
    Some((Scores::from_values(mean), std))
}
