//! The dataset check: read every image once and report every problem together, each naming
//! the file and, for a manifest, the row.

use std::fmt;
use std::path::PathBuf;

use rayon::prelude::*;

use crate::decode::decode_file;
use crate::Dataset;

/// Where a problem is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// Line `line` of a manifest (the header is line 1), and the file it lists if any.
    Row {
        manifest: PathBuf,
        line: usize,
        path: Option<PathBuf>,
    },
    File(PathBuf),
    Class(String),
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::Row {
                manifest,
                line,
                path: Some(path),
            } => write!(f, "{}:{line} ({})", manifest.display(), path.display()),
            Location::Row {
                manifest,
                line,
                path: None,
            } => write!(f, "{}:{line}", manifest.display()),
            Location::File(path) => write!(f, "{}", path.display()),
            Location::Class(name) => write!(f, "class {name:?}"),
        }
    }
}

/// What is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProblemKind {
    MissingFile,
    EmptyFile,
    Undecodable(String),
    EmptyPath,
    EmptyLabel,
    UnknownLabel(String),
    DuplicatePath { first_line: usize },
    MalformedRow(String),
    TooFewImages { count: usize, needed: usize },
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProblemKind::MissingFile => f.write_str("file not found"),
            ProblemKind::EmptyFile => f.write_str("empty file (0 bytes)"),
            ProblemKind::Undecodable(why) => write!(f, "cannot decode the image: {why}"),
            ProblemKind::EmptyPath => f.write_str("empty path"),
            ProblemKind::EmptyLabel => f.write_str("empty label"),
            ProblemKind::UnknownLabel(label) => write!(f, "unknown label {label:?}"),
            ProblemKind::DuplicatePath { first_line } => {
                write!(f, "duplicate path (first listed on line {first_line})")
            }
            ProblemKind::MalformedRow(why) => write!(f, "malformed row: {why}"),
            ProblemKind::TooFewImages { count, needed } => write!(
                f,
                "only {count} usable image{}, fewer than the {needed} the requested folds need",
                if *count == 1 { "" } else { "s" }
            ),
        }
    }
}

/// One problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub location: Location,
    pub kind: ProblemKind,
}

impl Problem {
    pub fn new(location: Location, kind: ProblemKind) -> Self {
        Self { location, kind }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.kind)
    }
}

/// Every problem found in a data set, listing problems first, then file problems in sample
/// order, then class problems.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub n_samples: usize,
    pub problems: Vec<Problem>,
}

impl CheckReport {
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.problems.is_empty() {
            return write!(f, "{} images checked, no problems", self.n_samples);
        }
        writeln!(
            f,
            "{} problem{} in {} images:",
            self.problems.len(),
            if self.problems.len() == 1 { "" } else { "s" },
            self.n_samples
        )?;
        for problem in &self.problems {
            writeln!(f, "  {problem}")?;
        }
        Ok(())
    }
}

/// Reads and decodes every image of `dataset` (in parallel) and reports every problem:
/// the listing's (empty or unknown labels, duplicate paths), missing, empty or undecodable
/// files, and classes with fewer than `min_per_class` images (e.g. the number of folds of a
/// stratified split).
pub fn check(dataset: &Dataset, min_per_class: usize) -> CheckReport {
    let mut problems = dataset.listing_problems.clone();
    let file_problems: Vec<(usize, Problem)> = dataset
        .samples
        .par_iter()
        .enumerate()
        .filter_map(|(index, sample)| {
            let kind = match std::fs::metadata(&sample.path) {
                Err(_) => ProblemKind::MissingFile,
                Ok(meta) if meta.len() == 0 => ProblemKind::EmptyFile,
                Ok(_) => match decode_file(&sample.path, 3) {
                    Ok(_) => return None,
                    Err(crate::DataError::Decode { message, .. }) => {
                        ProblemKind::Undecodable(message)
                    }
                    Err(e) => ProblemKind::Undecodable(e.to_string()),
                },
            };
            Some((index, Problem::new(sample.location(), kind)))
        })
        .collect();
    // Classes are judged by the images that can actually be used.
    let mut usable = dataset.class_counts();
    for (index, problem) in file_problems {
        usable[dataset.samples[index].label] -= 1;
        problems.push(problem);
    }
    for (class, count) in dataset.classes.names().iter().zip(usable) {
        if count < min_per_class {
            problems.push(Problem::new(
                Location::Class(class.clone()),
                ProblemKind::TooFewImages {
                    count,
                    needed: min_per_class,
                },
            ));
        }
    }
    CheckReport {
        n_samples: dataset.samples.len() + dataset.listing_problems.len(),
        problems,
    }
}
