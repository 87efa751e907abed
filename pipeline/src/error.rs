//! Errors about the user's input files: every one names the file, the row (1-based, as a
//! spreadsheet shows it) when there is one, and what was expected there.

use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct InputError {
    pub file: PathBuf,
    pub row: Option<usize>,
    pub message: String,
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.row {
            Some(row) => write!(f, "{}: row {}: {}", self.file.display(), row, self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for InputError {}

/// Builds an [`InputError`] as an `anyhow::Error`, the error type of the program's commands.
pub fn input_error(file: &Path, row: Option<usize>, message: impl Into<String>) -> anyhow::Error {
    InputError {
        file: file.to_path_buf(),
        row,
        message: message.into(),
    }
    .into()
}
