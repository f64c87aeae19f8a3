//! Weight averaging and softmax ensembling of fold models for foldwise.

mod average;
mod compare;
mod error;
mod evaluate;
mod model_file;
mod oof;
mod recalibrate;
mod softmax;
mod soup;

pub use average::{
    average, check_compatible, common_init_hash, save_averaged, AverageWarning, Averaged,
    MIXED_INIT,
};
pub use compare::{Comparison, ComparisonRow, Scores};
pub use error::EnsembleError;
pub use evaluate::{confusion_matrix, evaluate, log_loss, ClassScores, Evaluation};
pub use model_file::ModelFile;
pub use oof::{FoldPredictions, OutOfFold};
pub use recalibrate::{update_bn, BnReport};
pub use softmax::{
    ensemble_probabilities, ensemble_probabilities_from_files, predict_probabilities, Combine,
    Predictions,
};
pub use soup::{greedy_soup, Soup};
