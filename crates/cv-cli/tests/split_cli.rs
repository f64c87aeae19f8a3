//! `cv split` end to end: the binary, real files, its output and its refusals.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::cv;

use cv_split::{GroupKFold, StratifiedKFold, StratifiedShuffleSplit};

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "cv failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Fails with a message containing `needle`, and prints nothing on standard output.
fn assert_refused(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "expected a failure, got success");
    assert!(out.stdout.is_empty(), "printed to stdout on failure");
    assert!(
        stderr.contains(needle),
        "stderr {stderr:?} lacks {needle:?}"
    );
}

#[test]
fn json_output_is_the_library_split() {
    let dir = tempfile::tempdir().unwrap();
    let y: Vec<i64> = (0..40).map(|i| (i * 7 % 3) as i64).collect();
    let text: String = y.iter().map(|v| format!("{v}\n")).collect();
    let labels = write(dir.path(), "y.txt", &text);
    let out = cv(&[
        "split",
        "--labels",
        labels.to_str().unwrap(),
        "--n-splits",
        "4",
        "--seed",
        "42",
    ]);
    let expected = StratifiedKFold::new(4)
        .unwrap()
        .shuffle(42)
        .split(&y)
        .unwrap();
    assert_eq!(
        stdout(&out),
        serde_json::to_string(&expected.folds).unwrap() + "\n"
    );
}

#[test]
fn integer_labels_sort_numerically_and_text_labels_as_text() {
    let dir = tempfile::tempdir().unwrap();
    // "10" < "9" as text but 9 < 10 as numbers; StratifiedShuffleSplit sorts its classes.
    let y: Vec<i64> = (0..30).map(|i| if i % 3 == 0 { 10 } else { 9 }).collect();
    let text: String = y.iter().map(|v| format!("{v}\n")).collect();
    let labels = write(dir.path(), "y.txt", &text);
    let args = |path: &Path| {
        cv(&[
            "split",
            "--labels",
            path.to_str().unwrap(),
            "--method",
            "stratified-shuffle-split",
            "--n-splits",
            "3",
            "--seed",
            "1",
            "--test-size",
            "0.3",
        ])
    };
    let numeric = StratifiedShuffleSplit::new(3, 1)
        .unwrap()
        .test_size(cv_split::Size::Fraction(0.3))
        .split(&y)
        .unwrap();
    assert_eq!(
        stdout(&args(&labels)),
        serde_json::to_string(&numeric.folds).unwrap() + "\n"
    );
    // The same values ordered as text give other folds, so the typing above decided the result.
    let as_text: Vec<String> = y.iter().map(ToString::to_string).collect();
    let textual = StratifiedShuffleSplit::new(3, 1)
        .unwrap()
        .test_size(cv_split::Size::Fraction(0.3))
        .split(&as_text)
        .unwrap();
    assert_ne!(numeric.folds, textual.folds);
    // A column with any non-integer value is text throughout.
    let mixed: Vec<String> = as_text
        .iter()
        .map(|v| if v == "9" { "nine".into() } else { v.clone() })
        .collect();
    let labels = write(dir.path(), "mixed.txt", &(mixed.join("\n") + "\n"));
    let expected = StratifiedShuffleSplit::new(3, 1)
        .unwrap()
        .test_size(cv_split::Size::Fraction(0.3))
        .split(&mixed)
        .unwrap();
    assert_eq!(
        stdout(&args(&labels)),
        serde_json::to_string(&expected.folds).unwrap() + "\n"
    );
}

#[test]
fn csv_output_lists_each_samples_fold() {
    let dir = tempfile::tempdir().unwrap();
    let labels = write(dir.path(), "y.txt", "a\nb\na\nb\n");
    let out = cv(&[
        "split",
        "--labels",
        labels.to_str().unwrap(),
        "--method",
        "kfold",
        "--n-splits",
        "2",
        "--format",
        "csv",
    ]);
    assert_eq!(stdout(&out), "sample,fold\n0,0\n1,0\n2,1\n3,1\n");
    let out = cv(&[
        "split",
        "--labels",
        labels.to_str().unwrap(),
        "--method",
        "shuffle-split",
        "--seed",
        "0",
        "--format",
        "csv",
    ]);
    assert_refused(&out, "use --format json");
}

#[test]
fn manifest_columns_feed_group_methods() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = write(
        dir.path(),
        "manifest.csv",
        "path,label,plant\na.png,healthy,p1\nb.png,cmd,p1\nc.png,cmd,p2\nd.png,healthy,p3\ne.png,cmd,p3\n",
    );
    let out = cv(&[
        "split",
        "--manifest",
        manifest.to_str().unwrap(),
        "--method",
        "group-kfold",
        "--group-column",
        "plant",
        "--n-splits",
        "3",
    ]);
    let expected = GroupKFold::new(3)
        .unwrap()
        .split(&["p1", "p1", "p2", "p3", "p3"])
        .unwrap();
    assert_eq!(
        stdout(&out),
        serde_json::to_string(&expected.folds).unwrap() + "\n"
    );

    let out = cv(&[
        "split",
        "--manifest",
        manifest.to_str().unwrap(),
        "--label-column",
        "class",
    ]);
    assert_refused(&out, "no column named \"class\"");
    let broken = write(dir.path(), "broken.csv", "path,label\na.png,cmd\nb.png,\n");
    let out = cv(&["split", "--manifest", broken.to_str().unwrap()]);
    assert_refused(&out, "broken.csv:3: empty \"label\" value");
}

#[test]
fn bad_input_names_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let empty = write(dir.path(), "empty.txt", "");
    assert_refused(
        &cv(&["split", "--labels", empty.to_str().unwrap()]),
        "empty.txt: the labels file is empty",
    );
    let blank = write(dir.path(), "blank.txt", "a\nb\n \na\n");
    assert_refused(
        &cv(&["split", "--labels", blank.to_str().unwrap()]),
        "blank.txt:3: blank labels value",
    );
    let labels = write(dir.path(), "y.txt", "a\nb\na\nb\na\nb\n");
    let groups = write(dir.path(), "g.txt", "1\n2\n3\n");
    assert_refused(
        &cv(&[
            "split",
            "--labels",
            labels.to_str().unwrap(),
            "--groups",
            groups.to_str().unwrap(),
            "--method",
            "group-kfold",
            "--n-splits",
            "2",
        ]),
        "g.txt has 3 values but",
    );
    assert_refused(
        &cv(&[
            "split",
            "--labels",
            labels.to_str().unwrap(),
            "--n-splits",
            "4",
        ]),
        "n_splits=4 cannot be greater than the number of members in each class.",
    );
    assert_refused(
        &cv(&[
            "split",
            "--labels",
            labels.to_str().unwrap(),
            "--method",
            "shuffle-split",
        ]),
        "needs a seed",
    );
    assert_refused(
        &cv(&[
            "split",
            "--labels",
            labels.to_str().unwrap(),
            "--seed",
            "-3",
        ]),
        "Seed must be between 0 and 2**32 - 1",
    );
    assert_refused(
        &cv(&[
            "split",
            "--labels",
            dir.path().join("missing.txt").to_str().unwrap(),
        ]),
        "missing.txt",
    );
}

#[test]
fn warnings_go_to_stderr_and_output_files_are_whole() {
    let dir = tempfile::tempdir().unwrap();
    let labels = write(dir.path(), "y.txt", "a\na\na\nb\na\na\n");
    let target = dir.path().join("folds.json");
    let out = cv(&[
        "split",
        "--labels",
        labels.to_str().unwrap(),
        "--n-splits",
        "3",
        "--output",
        target.to_str().unwrap(),
    ]);
    assert!(out.status.success());
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("warning: The least populated class in y has only 1 members"),
        "{stderr}"
    );
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&target).unwrap()).unwrap();
    assert_eq!(written.as_array().unwrap().len(), 3);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        2,
        "temporary files left behind: {leftovers:?}"
    );
}
