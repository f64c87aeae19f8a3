//! Out-of-fold predictions: each sample predicted by the one fold model that did not train on
//! it, assembled in sample order, written as CSV and evaluated over the whole data set.

use std::path::Path;

use cv_model::checkpoint::write_atomic;

use crate::{evaluate, EnsembleError, Evaluation, Predictions};

/// One fold model's predictions on that fold's test (validation) samples.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldPredictions {
    /// The fold's number, written in the CSV's `fold` column.
    pub fold: usize,
    /// The data set indices of the samples predicted, in the order of `predictions`' rows.
    pub indices: Vec<usize>,
    pub predictions: Predictions,
}

/// Every sample of a data set with its out-of-fold prediction, in sample order.
#[derive(Debug, Clone, PartialEq)]
pub struct OutOfFold {
    /// Class names in label order.
    pub classes: Vec<String>,
    /// Each sample's path, as written in the CSV.
    pub paths: Vec<String>,
    /// The fold that predicted each sample.
    pub folds: Vec<usize>,
    /// Each sample's probabilities and label.
    pub predictions: Predictions,
}

impl OutOfFold {
    /// Assembles the folds' predictions into one row per sample of the data set whose paths and
    /// labels are `paths` and `labels` (in sample order).
    ///
    /// Every sample must be predicted exactly once, and with the label the data set gives it
    /// (a different one means the indices and the predictions are out of step).
    ///
    /// ```
    /// use cv_ensemble::{FoldPredictions, OutOfFold, Predictions};
    /// let fold = |fold, indices: Vec<usize>, probabilities, labels| FoldPredictions {
    ///     fold,
    ///     indices,
    ///     predictions: Predictions::new(2, probabilities, labels).unwrap(),
    /// };
    /// let oof = OutOfFold::assemble(
    ///     &["a.png", "b.png", "c.png"],
    ///     &[0, 1, 1],
    ///     &["cat".into(), "dog".into()],
    ///     &[fold(0, vec![1], vec![0.25, 0.75], vec![1]),
    ///       fold(1, vec![2, 0], vec![0.5, 0.5, 0.875, 0.125], vec![1, 0])],
    /// )
    /// .unwrap();
    /// assert_eq!(
    ///     oof.to_csv().unwrap(),
    ///     "path,label,fold,prob_cat,prob_dog\n\
    ///      a.png,cat,1,0.875,0.125\n\
    ///      b.png,dog,0,0.25,0.75\n\
    ///      c.png,dog,1,0.5,0.5\n"
    /// );
    /// ```
    pub fn assemble<P: AsRef<Path>>(
        paths: &[P],
        labels: &[u32],
        classes: &[String],
        folds: &[FoldPredictions],
    ) -> Result<Self, EnsembleError> {
        let n = paths.len();
        let c = classes.len();
        if labels.len() != n {
            return Err(EnsembleError::Invalid(format!(
                "{n} sample paths but {} labels",
                labels.len()
            )));
        }
        let paths = paths
            .iter()
            .map(|p| {
                let p = p.as_ref();
                p.to_str().map(str::to_owned).ok_or_else(|| {
                    EnsembleError::Invalid(format!(
                        "{} is not UTF-8 and cannot be written to the CSV",
                        p.display()
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut source: Vec<Option<(usize, usize)>> = vec![None; n];
        for (f, fold) in folds.iter().enumerate() {
            fold.predictions.validate()?;
            if fold.predictions.n_classes != c {
                return Err(EnsembleError::Invalid(format!(
                    "fold {}: predictions over {} classes, but there are {c} class names",
                    fold.fold, fold.predictions.n_classes
                )));
            }
            if fold.indices.len() != fold.predictions.len() {
                return Err(EnsembleError::Invalid(format!(
                    "fold {}: {} test indices but {} predictions",
                    fold.fold,
                    fold.indices.len(),
                    fold.predictions.len()
                )));
            }
            for (row, &sample) in fold.indices.iter().enumerate() {
                let slot = source.get_mut(sample).ok_or_else(|| {
                    EnsembleError::Invalid(format!(
                        "fold {}: test index {sample} is not a sample (there are {n})",
                        fold.fold
                    ))
                })?;
                if let Some((first, _)) = *slot {
                    return Err(EnsembleError::OofDuplicate {
                        sample,
                        path: paths[sample].clone(),
                        first: folds[first].fold,
                        second: fold.fold,
                    });
                }
                let predicted = fold.predictions.labels[row];
                if predicted != labels[sample] {
                    return Err(EnsembleError::Invalid(format!(
                        "fold {}: sample {sample} ({}) has label {predicted} in the fold's \
                         batches but {} in the data set: indices and predictions are out of step",
                        fold.fold, paths[sample], labels[sample]
                    )));
                }
                *slot = Some((f, row));
            }
        }
        if n == 0 {
            return Err(EnsembleError::NoSamples);
        }
        let mut probabilities = Vec::with_capacity(n * c);
        let mut fold_of = Vec::with_capacity(n);
        for (sample, slot) in source.iter().enumerate() {
            let (f, row) = slot.ok_or_else(|| EnsembleError::OofMissing {
                sample,
                path: paths[sample].clone(),
            })?;
            probabilities.extend_from_slice(folds[f].predictions.row(row));
            fold_of.push(folds[f].fold);
        }
        Ok(Self {
            classes: classes.to_vec(),
            paths,
            folds: fold_of,
            predictions: Predictions::new(c, probabilities, labels.to_vec())?,
        })
    }

    /// The CSV text: a header `path,label,fold,prob_<class>…`, then one row per sample in sample
    /// order, the label as its class name, probabilities as the shortest decimal that reads back
    /// as the same `f32`.
    pub fn to_csv(&self) -> Result<String, EnsembleError> {
        let csv_error =
            |e: csv::Error| EnsembleError::Invalid(format!("cannot format the CSV: {e}"));
        let mut writer = csv::Writer::from_writer(Vec::new());
        let mut header = vec!["path".to_owned(), "label".to_owned(), "fold".to_owned()];
        header.extend(self.classes.iter().map(|c| format!("prob_{c}")));
        writer.write_record(&header).map_err(csv_error)?;
        for (i, row) in self.predictions.rows().enumerate() {
            let label = self
                .classes
                .get(self.predictions.labels[i] as usize)
                .ok_or_else(|| {
                    EnsembleError::Invalid(format!(
                        "{} class names are too few",
                        self.classes.len()
                    ))
                })?;
            let mut record = vec![
                self.paths[i].clone(),
                label.clone(),
                self.folds[i].to_string(),
            ];
            // Rust's `{}` of an f32 is the shortest decimal that parses back to the same bits.
            record.extend(row.iter().map(|p| format!("{p}")));
            writer.write_record(&record).map_err(csv_error)?;
        }
        let bytes = writer
            .into_inner()
            .map_err(|e| EnsembleError::Invalid(format!("cannot format the CSV: {e}")))?;
        String::from_utf8(bytes)
            .map_err(|e| EnsembleError::Invalid(format!("the CSV is not UTF-8: {e}")))
    }

    /// Writes [`OutOfFold::to_csv`] to `path` atomically (a temporary file in the same folder,
    /// then a rename).
    pub fn write_csv(&self, path: &Path) -> Result<(), EnsembleError> {
        let text = self.to_csv()?;
        write_atomic(path, |tmp| std::fs::write(tmp, text.as_bytes()))?;
        Ok(())
    }

    /// The out-of-fold metrics over the whole data set.
    pub fn evaluate(&self) -> Result<Evaluation, EnsembleError> {
        evaluate(&self.predictions, &self.classes)
    }
}
