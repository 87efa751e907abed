//! Running SQL text: splitting it into statements and executing each on the session.

use super::print::{Format, render};
use anyhow::Result;
use datafusion::prelude::SessionContext;
use std::fmt;

/// A failed statement: DataFusion's message and the statement that caused it.
#[derive(Debug)]
pub struct StatementError {
    pub statement: String,
    pub message: String,
}

impl fmt::Display for StatementError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n  in statement: {}", self.message, self.statement)
    }
}

impl std::error::Error for StatementError {}

/// Splits SQL text at semicolons outside quotes and comments; empty statements are dropped.
pub fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (None, '\'' | '"') => quote = Some(c),
            (Some(q), _) if c == q => quote = None,
            (None, '-') if chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                current.push('\n');
                continue;
            }
            (None, ';') => {
                statements.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    statements.push(current);
    statements
        .into_iter()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Executes one statement and renders its result.
pub async fn run_statement(ctx: &SessionContext, statement: &str, format: Format) -> Result<Vec<u8>, StatementError> {
    let fail = |e: &dyn fmt::Display| StatementError {
        statement: statement.to_string(),
        message: e.to_string(),
    };
    let df = ctx.sql(statement).await.map_err(|e| fail(&e))?;
    let schema = df.schema().inner().clone();
    let batches = df.collect().await.map_err(|e| fail(&e))?;
    render(&schema, &batches, format).map_err(|e| fail(&e))
}

#[cfg(test)]
mod tests {
    use super::split_statements;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let sql = "SELECT 'a;b'; -- note; here\nSELECT \"x;\" FROM t;;\n";
        assert_eq!(split_statements(sql), vec!["SELECT 'a;b'", "SELECT \"x;\" FROM t"]);
    }
}
