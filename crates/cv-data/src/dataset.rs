//! Where images and labels come from: an image folder (`root/<class>/<image>`) or a CSV manifest
//! (`path,label[,group]`), and the class list saved with a run.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::check::{Location, Problem, ProblemKind};
use crate::DataError;

/// File extensions read from an image folder (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 7] = ["jpg", "jpeg", "png", "bmp", "webp", "tif", "tiff"];

/// The classes of a data set in a stable order (sorted by name); a class's index is its position.
///
/// ```
/// use cv_data::ClassMap;
/// let classes = ClassMap::new(["dog", "cat", "dog"]);
/// assert_eq!(classes.names(), ["cat", "dog"]);
/// assert_eq!(classes.index_of("dog"), Some(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ClassMap {
    names: Vec<String>,
}

impl ClassMap {
    pub fn new<S: Into<String>>(names: impl IntoIterator<Item = S>) -> Self {
        let mut names: Vec<String> = names.into_iter().map(Into::into).collect();
        names.sort();
        names.dedup();
        Self { names }
    }

    pub fn names(&self) -> &[String] {
        &self.names
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.names.binary_search_by(|n| n.as_str().cmp(name)).ok()
    }

    pub fn name(&self, index: usize) -> Option<&str> {
        self.names.get(index).map(String::as_str)
    }
}

/// Where a sample was listed, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// Line `line` of a manifest (the header is line 1).
    Row { manifest: PathBuf, line: usize },
    /// Found by walking an image folder.
    Folder,
}

/// One labelled image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    /// The file, as listed joined to the manifest's folder (or the folder root).
    pub path: PathBuf,
    /// Index into the data set's [`ClassMap`].
    pub label: usize,
    pub group: Option<String>,
    pub origin: Origin,
}

impl Sample {
    /// Where this sample came from, for a [`Problem`].
    pub fn location(&self) -> Location {
        match &self.origin {
            Origin::Row { manifest, line } => Location::Row {
                manifest: manifest.clone(),
                line: *line,
                path: Some(self.path.clone()),
            },
            Origin::Folder => Location::File(self.path.clone()),
        }
    }
}

/// Names of a manifest's columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ManifestColumns {
    pub path: String,
    pub label: String,
    /// The group column; used when the manifest has it.
    pub group: String,
}

impl Default for ManifestColumns {
    fn default() -> Self {
        Self {
            path: "path".into(),
            label: "label".into(),
            group: "group".into(),
        }
    }
}

/// A labelled image set, plus the problems found while listing it (rows whose label is empty or
/// unknown, duplicate paths). Those rows are left out of `samples`; [`crate::check::check`]
/// reports them with the problems it finds in the files themselves.
#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub samples: Vec<Sample>,
    pub classes: ClassMap,
    pub listing_problems: Vec<Problem>,
}

impl Dataset {
    /// Every image below `root/<class>/` (sub-folders of a class included), classes and files in
    /// sorted order. Files with other extensions are ignored.
    pub fn from_image_folder(root: &Path) -> Result<Self, DataError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| DataError::Io { path, source }
        };
        let mut class_dirs: Vec<(String, PathBuf)> = Vec::new();
        for entry in std::fs::read_dir(root).map_err(io(root))? {
            let entry = entry.map_err(io(root))?;
            if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !name.starts_with('.') {
                    class_dirs.push((name, entry.path()));
                }
            }
        }
        if class_dirs.is_empty() {
            return Err(DataError::Invalid(format!(
                "{}: no class folders (expected root/<class>/<image>)",
                root.display()
            )));
        }
        let classes = ClassMap::new(class_dirs.iter().map(|(n, _)| n.clone()));
        let mut samples = Vec::new();
        for (name, dir) in &class_dirs {
            let label = classes.index_of(name).unwrap_or_default();
            let mut files = Vec::new();
            collect_images(dir, &mut files)?;
            files.sort();
            samples.extend(files.into_iter().map(|path| Sample {
                path,
                label,
                group: None,
                origin: Origin::Folder,
            }));
        }
        samples.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Self {
            samples,
            classes,
            listing_problems: vec![],
        })
    }

    /// The rows of a CSV manifest with a header. Paths are relative to the manifest's folder.
    /// With `known_classes`, labels outside it are reported as unknown (as for a test set that
    /// must use the training classes); without, the classes are the labels found.
    pub fn from_manifest(
        manifest: &Path,
        columns: &ManifestColumns,
        known_classes: Option<&ClassMap>,
    ) -> Result<Self, DataError> {
        let bad = |message: String| DataError::Manifest {
            path: manifest.to_path_buf(),
            message,
        };
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .flexible(true)
            .from_path(manifest)
            .map_err(|e| bad(e.to_string()))?;
        let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
        let column = |name: &str| headers.iter().position(|h| h == name);
        let missing = |name: &str| {
            let found: Vec<&str> = headers.iter().collect();
            bad(format!(
                "no column named {name:?} in the header (columns: {})",
                found.join(", ")
            ))
        };
        let path_at = column(&columns.path).ok_or_else(|| missing(&columns.path))?;
        let label_at = column(&columns.label).ok_or_else(|| missing(&columns.label))?;
        let group_at = column(&columns.group);
        let base = manifest.parent().unwrap_or(Path::new("")).to_path_buf();

        struct Row {
            line: usize,
            path: PathBuf,
            label: String,
            group: Option<String>,
        }
        let mut rows = Vec::new();
        let mut problems = Vec::new();
        let mut first_line_of: HashMap<PathBuf, usize> = HashMap::new();
        for (i, record) in reader.records().enumerate() {
            let line = i + 2;
            let at = |path: Option<PathBuf>| Location::Row {
                manifest: manifest.to_path_buf(),
                line,
                path,
            };
            let record = match record {
                Ok(record) => record,
                Err(e) => {
                    problems.push(Problem::new(
                        at(None),
                        ProblemKind::MalformedRow(e.to_string()),
                    ));
                    continue;
                }
            };
            let cell = |i: usize| record.get(i).unwrap_or("").to_owned();
            let listed = cell(path_at);
            if listed.is_empty() {
                problems.push(Problem::new(at(None), ProblemKind::EmptyPath));
                continue;
            }
            let path = base.join(&listed);
            let label = cell(label_at);
            if label.is_empty() {
                problems.push(Problem::new(at(Some(path)), ProblemKind::EmptyLabel));
                continue;
            }
            if let Some(&first) = first_line_of.get(&path) {
                problems.push(Problem::new(
                    at(Some(path)),
                    ProblemKind::DuplicatePath { first_line: first },
                ));
                continue;
            }
            first_line_of.insert(path.clone(), line);
            let group = group_at.map(cell).filter(|g| !g.is_empty());
            rows.push(Row {
                line,
                path,
                label,
                group,
            });
        }
        let classes = match known_classes {
            Some(classes) => classes.clone(),
            None => ClassMap::new(rows.iter().map(|r| r.label.clone())),
        };
        let mut samples = Vec::with_capacity(rows.len());
        for row in rows {
            let Some(label) = classes.index_of(&row.label) else {
                problems.push(Problem::new(
                    Location::Row {
                        manifest: manifest.to_path_buf(),
                        line: row.line,
                        path: Some(row.path),
                    },
                    ProblemKind::UnknownLabel(row.label),
                ));
                continue;
            };
            samples.push(Sample {
                path: row.path,
                label,
                group: row.group,
                origin: Origin::Row {
                    manifest: manifest.to_path_buf(),
                    line: row.line,
                },
            });
        }
        if samples.is_empty() && problems.is_empty() {
            return Err(bad("the manifest has a header but no rows".into()));
        }
        Ok(Self {
            samples,
            classes,
            listing_problems: problems,
        })
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Each sample's class index.
    pub fn labels(&self) -> Vec<usize> {
        self.samples.iter().map(|s| s.label).collect()
    }

    /// Images per class, by class index.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.classes.len()];
        for s in &self.samples {
            counts[s.label] += 1;
        }
        counts
    }
}

fn collect_images(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), DataError> {
    let io = |source| DataError::Io {
        path: dir.to_path_buf(),
        source,
    };
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        if path.is_dir() {
            collect_images(&path, out)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            out.push(path);
        }
    }
    Ok(())
}
