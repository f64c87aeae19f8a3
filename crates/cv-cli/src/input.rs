//! Reading label and group columns from the files a user hands the CLI.

use std::path::Path;

use anyhow::{bail, Context, Result};
use cv_split::LabelValue;

/// One value per line. Blank lines at the end of the file are ignored; a blank line anywhere
/// else is an error naming it.
pub fn read_column_file(path: &Path, what: &str) -> Result<Vec<LabelValue>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    let lines: Vec<&str> = text.trim_end().lines().collect();
    if lines.is_empty() || (lines.len() == 1 && lines[0].trim().is_empty()) {
        bail!("{}: the {what} file is empty", path.display());
    }
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            bail!("{}:{}: blank {what} value", path.display(), i + 1);
        }
    }
    Ok(LabelValue::parse_column(&lines))
}

/// A dataset manifest: CSV with a header naming its columns (`path,label[,group]`). Returns the
/// label column and, when `group_column` is given, the group column.
pub fn read_manifest(
    path: &Path,
    label_column: &str,
    group_column: Option<&str>,
) -> Result<(Vec<LabelValue>, Option<Vec<LabelValue>>)> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_path(path)
        .with_context(|| format!("cannot read the manifest {}", path.display()))?;
    let headers = reader
        .headers()
        .with_context(|| format!("{}: cannot read the header row", path.display()))?
        .clone();
    let find = |name: &str| {
        headers.iter().position(|h| h == name).with_context(|| {
            let names: Vec<&str> = headers.iter().collect();
            format!(
                "{}: no column named {name:?} in the header (columns: {})",
                path.display(),
                names.join(", ")
            )
        })
    };
    let label_at = find(label_column)?;
    let group_at = group_column.map(find).transpose()?;
    let mut labels = Vec::new();
    let mut groups = Vec::new();
    for (i, record) in reader.records().enumerate() {
        // Row numbers count the header as line 1, as a spreadsheet shows them.
        let line = i + 2;
        let record = record.with_context(|| format!("{}:{line}: malformed row", path.display()))?;
        let cell = |at: usize, name: &str| -> Result<String> {
            match record.get(at) {
                Some(v) if !v.is_empty() => Ok(v.to_owned()),
                _ => bail!("{}:{line}: empty {name:?} value", path.display()),
            }
        };
        labels.push(cell(label_at, label_column)?);
        if let (Some(at), Some(name)) = (group_at, group_column) {
            groups.push(cell(at, name)?);
        }
    }
    if labels.is_empty() {
        bail!("{}: the manifest has a header but no rows", path.display());
    }
    let groups = group_at.map(|_| LabelValue::parse_column(&groups));
    Ok((LabelValue::parse_column(&labels), groups))
}
