//! `naics-pipeline sql`: a thin shell over a DataFusion session, in the manner of
//! datafusion-cli. One query, a file of queries, or an interactive prompt with history,
//! multi-line statements and `\d`.

pub mod commands;
pub mod exec;
pub mod print;

use anyhow::{Context, Result};
use commands::Command;
use datafusion::prelude::SessionContext;
use print::Format;
use rustyline::error::ReadlineError;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Runs every statement of `sql` in order and stops at the first failure. Results go to
/// standard output; with `output`, the last statement's result goes to that file instead.
pub async fn run_batch(ctx: &SessionContext, sql: &str, format: Format, output: Option<&Path>) -> Result<()> {
    print::check_destination(format, output.is_some())?;
    let statements = exec::split_statements(sql);
    if statements.is_empty() {
        anyhow::bail!("no SQL statement given");
    }
    let last = statements.len() - 1;
    for (i, statement) in statements.iter().enumerate() {
        let bytes = exec::run_statement(ctx, statement, format).await?;
        match output {
            Some(path) if i == last => crate::atomic::write_atomically(path, |tmp| Ok(std::fs::write(tmp, &bytes)?))
                .with_context(|| format!("writing {}", path.display()))?,
            _ => std::io::stdout().write_all(&bytes)?,
        }
    }
    Ok(())
}

/// Answers a backslash command; the error is a message for the user, the shell goes on.
pub async fn run_command(ctx: &SessionContext, command: &Command) -> Result<String, String> {
    let Some(query) = command.query() else {
        return Ok(format!("{}\n", commands::HELP));
    };
    let batches = ctx
        .sql(&query)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    if let Command::Describe(name) = command
        && batches.iter().all(|b| b.num_rows() == 0)
    {
        return Err(format!("no table or view named `{name}`; \\d lists them"));
    }
    arrow::util::pretty::pretty_format_batches(&batches)
        .map(|t| format!("{t}\n"))
        .map_err(|e| e.to_string())
}

/// The interactive prompt. Statements end with `;`; errors are printed and the shell goes on.
pub async fn interactive(ctx: &SessionContext, format: Format, history: PathBuf) -> Result<()> {
    print::check_destination(format, false)?;
    let mut editor = rustyline::DefaultEditor::new()?;
    let _ = editor.load_history(&history);
    println!("naics-pipeline sql: \\d lists tables, \\? helps, \\q quits");
    let mut pending = String::new();
    loop {
        let prompt = if pending.is_empty() { "naics> " } else { "   ..> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                pending.clear();
                continue;
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(e.into()),
        };
        let trimmed = line.trim();
        if pending.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            match Command::parse(trimmed) {
                Ok(Command::Quit) => break,
                Ok(command) => match run_command(ctx, &command).await {
                    Ok(text) => print!("{text}"),
                    Err(message) => eprintln!("Error: {message}"),
                },
                Err(message) => eprintln!("Error: {message}"),
            }
            continue;
        }
        pending.push_str(&line);
        pending.push('\n');
        if !trimmed.ends_with(';') {
            continue;
        }
        let text = std::mem::take(&mut pending);
        let _ = editor.add_history_entry(text.trim());
        for statement in exec::split_statements(&text) {
            match exec::run_statement(ctx, &statement, format).await {
                Ok(bytes) => std::io::stdout().write_all(&bytes)?,
                Err(e) => eprintln!("Error: {e}"),
            }
        }
    }
    let _ = editor.save_history(&history);
    Ok(())
}
