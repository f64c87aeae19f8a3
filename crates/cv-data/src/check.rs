//! The dataset check (being written).

/// Every problem found in a dataset.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckReport {
    pub problems: Vec<String>,
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.problems {
            writeln!(f, "{p}")?;
        }
        Ok(())
    }
}
