//! `naics-trainer classify`: a file of free texts coded row by row. Rows stream through in
//! batches (memory does not grow with the file); every input column is kept and the coder's
//! answer added ([`output`]). A row without a usable text (null, empty, not UTF-8, longer than
//! the model takes) is written with an `error` saying why and the run goes on; a missing file or
//! column stops it before anything is written. The output appears whole or not at all
//! (temporary name, then rename).

pub mod input;
pub mod output;

use crate::coder::{Coder, Policy};
use anyhow::{Context, Result};
use arrow::array::RecordBatch;
use arrow::datatypes::Schema;
use indicatif::{ProgressBar, ProgressStyle};
use input::Format;
use naics_common::atomic::write_atomically;
use naics_common::tokenizer::encode_checked;
use output::RowAnswer;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

pub struct Options {
    pub input: PathBuf,
    pub format: Option<Format>,
    pub text_column: String,
    /// Must exist when given; rows with errors are reported by it.
    pub id_column: Option<String>,
    /// `.csv`: CSV; anything else: Parquet.
    pub output: PathBuf,
    pub policy: Policy,
    /// Code the first tokens of a text longer than the model takes, instead of an error row.
    pub truncate: bool,
    pub batch_rows: usize,
}

/// What a run did.
#[derive(Debug, Default)]
pub struct Summary {
    pub rows: usize,
    pub errors: usize,
    pub abstained: usize,
    /// Answered rows per level of the level-wise answer (digits for NAICS).
    pub per_level: BTreeMap<u8, usize>,
    /// Answered rows with no level confident enough, not even a sector.
    pub no_level: usize,
    /// Tokens the encoder read (special tokens included): rows/s set against the encoder's speed.
    pub tokens: usize,
    pub seconds: f64,
    /// The first few rows with errors: (row, id, why).
    pub first_errors: Vec<(usize, Option<String>, String)>,
}

impl Summary {
    pub fn text(&self, options: &Options) -> String {
        let levels: Vec<String> = self.per_level.iter().map(|(l, n)| format!("level {l}: {n}")).collect();
        let mut out = format!(
            "wrote {} rows to {} in {:.1} s ({:.0} rows/s, {:.0} tokens/s): {}; no level: {}; abstained: {}; errors: {}\n",
            self.rows,
            options.output.display(),
            self.seconds,
            self.rows as f64 / self.seconds.max(1e-9),
            self.tokens as f64 / self.seconds.max(1e-9),
            if levels.is_empty() {
                "none answered".to_string()
            } else {
                levels.join(", ")
            },
            self.no_level,
            self.abstained,
            self.errors,
        );
        for (row, id, why) in &self.first_errors {
            let id = id.as_ref().map(|i| format!(" (id {i})")).unwrap_or_default();
            out.push_str(&format!("  row {row}{id}: {why}\n"));
        }
        if self.errors > self.first_errors.len() {
            out.push_str(&format!(
                "  ... and {} more: see the `error` column\n",
                self.errors - self.first_errors.len()
            ));
        }
        out
    }
}

/// Errors the summary lists by row.
const LISTED_ERRORS: usize = 5;

/// Reads, codes and writes every row of `options.input`.
pub fn run(coder: &Coder, options: &Options) -> Result<Summary> {
    let started = std::time::Instant::now();
    let format = Format::of(&options.input, options.format)?;
    let input = input::open(&options.input, format, &options.text_column, options.batch_rows)?;
    let text = input.schema.index_of(&options.text_column)?;
    let id = match &options.id_column {
        Some(name) => Some(
            input
                .schema
                .index_of(name)
                .map_err(|_| anyhow::anyhow!("{}: no id column `{name}`", options.input.display()))?,
        ),
        None => None,
    };
    let schema = output::schema(&input.schema, options.policy.k)?;
    let csv = options
        .output
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let bar = progress(input.rows)?;
    let mut summary = Summary::default();
    write_atomically(&options.output, |tmp| {
        let mut writer = output::Writer::create(tmp, csv, schema.clone())?;
        for rows in input.batches {
            let rows = rows.with_context(|| format!("reading {}", options.input.display()))?;
            let (answers, tokens) = code_rows(coder, &input::texts(&rows, text), &options.policy, options.truncate)?;
            summary.tokens += tokens;
            for (r, answer) in answers.iter().enumerate() {
                summary.count(answer, coder, || row_id(&rows.batch, id, r), summary.rows + r + 1);
            }
            summary.rows += answers.len();
            let mut columns = rows.batch.columns().to_vec();
            columns.extend(output::answer_columns(coder, &answers, options.policy.k));
            writer.write(&RecordBatch::try_new(schema.clone(), columns)?)?;
            bar.inc(answers.len() as u64);
        }
        writer.close()
    })?;
    bar.finish_and_clear();
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

impl Summary {
    fn count(&mut self, answer: &RowAnswer, coder: &Coder, id: impl Fn() -> Option<String>, row: usize) {
        match answer {
            Err(why) => {
                self.errors += 1;
                if self.first_errors.len() < LISTED_ERRORS {
                    self.first_errors.push((row, id(), why.clone()));
                }
            }
            Ok(a) if a.abstained => self.abstained += 1,
            Ok(a) => match a.level {
                Some(l) => *self.per_level.entry(coder.codes().level[l.code]).or_default() += 1,
                None => self.no_level += 1,
            },
        }
    }
}

/// The id of row `r`, as text.
fn row_id(batch: &RecordBatch, id: Option<usize>, r: usize) -> Option<String> {
    let column = batch.column(id?);
    arrow::util::display::array_value_to_string(column, r).ok()
}

/// The answer's columns ([`output::answer_fields`]) for texts already in hand, each a text or
/// why the row has none: what `classify` adds to each batch, for the Python package.
pub fn answer_batch(
    coder: &Coder,
    texts: &[Result<String, String>],
    policy: &Policy,
    truncate: bool,
) -> Result<RecordBatch> {
    let (answers, _) = code_rows(coder, texts, policy, truncate)?;
    let schema = Arc::new(Schema::new(output::answer_fields(policy.k)));
    Ok(RecordBatch::try_new(
        schema,
        output::answer_columns(coder, &answers, policy.k),
    )?)
}

/// Answers for one batch's texts (rows without a usable text keep their reason), and the tokens
/// coded.
fn code_rows(
    coder: &Coder,
    texts: &[Result<String, String>],
    policy: &Policy,
    truncate: bool,
) -> Result<(Vec<RowAnswer>, usize)> {
    let readable: Vec<String> = texts.iter().filter_map(|t| t.as_ref().ok().cloned()).collect();
    let checked = encode_checked(coder.tokenizer(), &readable)?;
    let max = coder.max_tokens();
    let mut good_texts = Vec::new();
    let mut good_ids = Vec::new();
    let mut why: Vec<Option<String>> = Vec::with_capacity(readable.len());
    for (text, (ids, cut)) in readable.into_iter().zip(checked) {
        if cut && !truncate {
            why.push(Some(format!(
                "the text is longer than the model's {max} tokens; pass --truncate to code its beginning"
            )));
        } else {
            why.push(None);
            good_texts.push(text);
            good_ids.push(ids);
        }
    }
    let tokens = good_ids.iter().map(Vec::len).sum();
    let policies = vec![*policy; good_texts.len()];
    let mut answers = coder.code_each(&good_texts, &good_ids, &policies)?.into_iter();
    let mut why = why.into_iter();
    let answers = texts
        .iter()
        .map(|t| match t {
            Err(e) => Err(e.clone()),
            Ok(_) => match why.next().flatten() {
                Some(e) => Err(e),
                None => Ok(answers.next().expect("one answer per coded text")),
            },
        })
        .collect();
    Ok((answers, tokens))
}

/// Rows and rows/s; a bar where the row count is known up front (Parquet), else a counter.
fn progress(rows: Option<u64>) -> Result<ProgressBar> {
    Ok(match rows {
        Some(n) => ProgressBar::new(n).with_style(ProgressStyle::with_template(
            "{bar:40} {human_pos}/{human_len} rows coded {per_sec} {eta}",
        )?),
        None => ProgressBar::new_spinner().with_style(ProgressStyle::with_template(
            "{spinner} {human_pos} rows coded {per_sec} {elapsed}",
        )?),
    })
}
