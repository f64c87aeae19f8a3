//! Every splitter against scikit-learn 1.9.1, index for index, on the cases that
//! `tests/golden/generate.py` recorded.

use cv_split::{Fold, LabelValue, SampleIndex, SplitSpec};
use serde::Deserialize;

#[derive(Deserialize)]
struct Fixture {
    sklearn: String,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    name: String,
    params: SplitSpec,
    labels: Vec<LabelValue>,
    groups: Option<Vec<LabelValue>>,
    error: Option<String>,
    #[serde(default)]
    warnings: Vec<String>,
    assignments: Option<Vec<Vec<usize>>>,
    folds: Option<Vec<TrainTest>>,
}

#[derive(Deserialize)]
struct TrainTest {
    train: Vec<SampleIndex>,
    test: Vec<SampleIndex>,
}

/// The folds scikit-learn returned, rebuilt from each repeat's sample → fold map: test indices
/// sorted, train their sorted complement (the generator checked both).
fn folds_from_assignments(assignments: &[Vec<usize>]) -> Vec<Fold> {
    let mut folds = Vec::new();
    for row in assignments {
        let first = folds.len();
        let n_folds = row.iter().max().map_or(0, |&m| m + 1 - first);
        for f in first..first + n_folds {
            let (test, train): (Vec<SampleIndex>, Vec<SampleIndex>) =
                (0..row.len() as SampleIndex).partition(|&i| row[i as usize] == f);
            folds.push(Fold {
                fold: f,
                train,
                test,
            });
        }
    }
    folds
}

#[test]
fn every_splitter_matches_scikit_learn_index_for_index() {
    let text = include_str!("golden/cases.json");
    let fixture: Fixture = serde_json::from_str(text).expect("cases.json parses");
    assert_eq!(fixture.sklearn, "1.9.1");
    assert!(fixture.cases.len() >= 200, "too few golden cases");
    let mut failures = Vec::new();
    for case in &fixture.cases {
        let result = case.params.split(
            case.labels.len(),
            Some(&case.labels),
            case.groups.as_deref(),
        );
        let outcome = match (&case.error, result) {
            (Some(expected), Err(err)) if err.to_string() == *expected => Ok(()),
            (Some(expected), Err(err)) => Err(format!("error {err:?}, expected {expected:?}")),
            (Some(expected), Ok(_)) => Err(format!("no error, expected {expected:?}")),
            (None, Err(err)) => Err(format!("unexpected error: {err}")),
            (None, Ok(split)) => {
                let expected: Vec<Fold> = match (&case.assignments, &case.folds) {
                    (Some(assignments), _) => folds_from_assignments(assignments),
                    (None, Some(folds)) => folds
                        .iter()
                        .enumerate()
                        .map(|(fold, tt)| Fold {
                            fold,
                            train: tt.train.clone(),
                            test: tt.test.clone(),
                        })
                        .collect(),
                    (None, None) => panic!("{}: case without folds", case.name),
                };
                let mut warnings: Vec<String> =
                    split.warnings.iter().map(ToString::to_string).collect();
                warnings.sort();
                if split.folds != expected {
                    let first = split
                        .folds
                        .iter()
                        .zip(&expected)
                        .position(|(a, b)| a != b)
                        .unwrap_or(split.folds.len().min(expected.len()));
                    Err(format!(
                        "{} folds, expected {}; first difference at fold {first}",
                        split.folds.len(),
                        expected.len()
                    ))
                } else if warnings != case.warnings {
                    Err(format!(
                        "warnings {warnings:?}, expected {:?}",
                        case.warnings
                    ))
                } else {
                    split.check_leaks().map_err(|e| format!("leak check: {e}"))
                }
            }
        };
        if let Err(why) = outcome {
            failures.push(format!("{}: {why}", case.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ from scikit-learn:\n{}",
        failures.len(),
        fixture.cases.len(),
        failures.join("\n")
    );
}
