//! `naics-pipeline ingest`: a taxonomy -> `naics_codes.parquet` (one row per code, whatever the
//! taxonomy: the table keeps its first taxonomy's name) and `naics_index_holdout.parquet`
//! (free-text entries kept out of every training text). Three adapters: NAICS's four Census
//! files (this module), the generic table ([`generic`]) and ICD-10-CM's XML ([`icd10cm`]).

pub mod codes;
pub mod generic;
pub mod icd10cm;
pub mod sources;
pub mod text;
mod write;

use crate::error::input_error;
use anyhow::Result;
use codes::TreeCode;
use naics_common::layout::{CODES_TABLE, HOLDOUT_TABLE};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// File names of the Census release, relative to the input folder.
pub const CODES_FILE: &str = "2-6 digit_2022_Codes.xlsx";
pub const DESCRIPTIONS_FILE: &str = "2022_NAICS_Descriptions.xlsx";
pub const INDEX_FILE: &str = "2022_NAICS_Index_File.xlsx";
pub const CROSS_REFERENCES_FILE: &str = "2022_NAICS_Cross_References_by_code.csv";

/// Where ingest reads and writes.
#[derive(Debug, Clone)]
pub struct IngestPaths {
    pub codes: PathBuf,
    pub descriptions: PathBuf,
    pub index: PathBuf,
    pub cross_references: PathBuf,
    pub out_dir: PathBuf,
}

impl IngestPaths {
    /// The Census file names under `input_dir`, outputs under `out_dir`.
    pub fn in_folder(input_dir: &Path, out_dir: &Path) -> Self {
        IngestPaths {
            codes: input_dir.join(CODES_FILE),
            descriptions: input_dir.join(DESCRIPTIONS_FILE),
            index: input_dir.join(INDEX_FILE),
            cross_references: input_dir.join(CROSS_REFERENCES_FILE),
            out_dir: out_dir.to_path_buf(),
        }
    }
}

/// One row of `naics_codes`, for any taxonomy.
#[derive(Debug, Clone, PartialEq)]
pub struct NaicsCode {
    pub tree: TreeCode,
    pub description: String,
    pub examples: Vec<String>,
    /// How many of `examples`, at the end, are phrases of other codes' notes that cite this
    /// code (ICD-10-CM's cross-references) rather than the taxonomy's own entries for it. The
    /// trainer fits its fusion on own entries only: they are the kind of text that is coded.
    pub cited_examples: usize,
    pub excluded: String,
    pub excluded_codes: Vec<String>,
}

/// An index entry held out of training for the retrieval evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldOut {
    pub code: String,
    pub text: String,
}

#[derive(Debug, Default)]
pub struct IngestSummary {
    pub codes: usize,
    pub index_entries: usize,
    pub held_out: usize,
    pub skipped_index_rows: usize,
    pub skipped_description_rows: usize,
    /// NAICS: rows of the cross-reference file; ICD-10-CM: cross-reference entries added.
    pub cross_reference_rows: usize,
    pub exclusion_pairs: usize,
    pub codes_with_exclusions: usize,
    pub inherited_descriptions: usize,
}

/// Reads, cleans and writes everything; the summary is what the command prints.
pub fn run(paths: &IngestPaths, holdout_fraction: f64) -> Result<IngestSummary> {
    let (codes, held_out, summary) = read_all(paths, holdout_fraction)?;
    write_all(&paths.out_dir, codes, held_out, summary)
}

/// `ingest --taxonomy generic`: the taxonomy table and, optionally, free-text entries, of which
/// a deterministic `holdout_fraction` is held out and the rest join their code's examples.
pub fn run_generic(
    table: &Path,
    entries: Option<&Path>,
    out_dir: &Path,
    holdout_fraction: f64,
) -> Result<IngestSummary> {
    check_fraction(holdout_fraction)?;
    let codes = generic::into_codes(table, generic::read_table(table)?)?;
    let entries = match entries {
        Some(path) => checked_entries(path, generic::read_entries(path)?, &codes)?,
        None => Vec::new(),
    };
    let summary = IngestSummary {
        index_entries: entries.len(),
        ..Default::default()
    };
    let (codes, held_out) = hold_out(codes, entries, holdout_fraction);
    write_all(out_dir, codes, held_out, summary)
}

/// `ingest --taxonomy icd10cm`: ICD-10-CM's tabular XML, its inclusion terms as the entries
/// (a share held out), and the phrases of the notes that cite codes as further entries of the
/// codes they cite: never held out, and none that repeats a held-out text.
pub fn run_icd10cm(xml: &Path, out_dir: &Path, holdout_fraction: f64) -> Result<IngestSummary> {
    check_fraction(holdout_fraction)?;
    let tabular = icd10cm::read(xml)?;
    let codes = generic::into_codes(xml, tabular.rows)?;
    let mut summary = IngestSummary {
        index_entries: tabular.entries.len(),
        ..Default::default()
    };
    let entries = checked_entries(xml, tabular.entries, &codes)?;
    let (mut codes, held_out) = hold_out(codes, entries, holdout_fraction);
    let held: HashSet<String> = held_out.iter().map(|h| h.text.to_lowercase()).collect();
    for (pos, text) in checked_entries(xml, tabular.cross_references, &codes)? {
        let examples = &mut codes[pos].examples;
        if !held.contains(&text.to_lowercase()) && !examples.contains(&text) {
            examples.push(text);
            codes[pos].cited_examples += 1;
            summary.cross_reference_rows += 1;
        }
    }
    write_all(out_dir, codes, held_out, summary)
}

fn check_fraction(holdout_fraction: f64) -> Result<()> {
    if !(0.0..1.0).contains(&holdout_fraction) {
        anyhow::bail!("--holdout-fraction must be in [0, 1), got {holdout_fraction}");
    }
    Ok(())
}

/// Entries whose code is in the table and whose text is not empty, as (position, text).
fn checked_entries(path: &Path, entries: Vec<generic::Entry>, codes: &[NaicsCode]) -> Result<Vec<(usize, String)>> {
    let position: HashMap<&str, usize> = codes
        .iter()
        .enumerate()
        .map(|(i, c)| (c.tree.code.as_str(), i))
        .collect();
    entries
        .into_iter()
        .map(|e| {
            let pos = *position.get(e.code.as_str()).ok_or_else(|| {
                input_error(
                    path,
                    Some(e.row),
                    format!("unknown code {}: it is not in the taxonomy", e.code),
                )
            })?;
            if e.text.is_empty() {
                return Err(input_error(
                    path,
                    Some(e.row),
                    format!("empty text for code {}", e.code),
                ));
            }
            Ok((pos, e.text))
        })
        .collect()
}

/// Splits entries into held-out ones and the rest, which join their code's examples (once).
fn hold_out(mut codes: Vec<NaicsCode>, entries: Vec<(usize, String)>, fraction: f64) -> (Vec<NaicsCode>, Vec<HeldOut>) {
    let mut held_out = Vec::new();
    for (pos, text) in entries {
        let code = &mut codes[pos];
        if is_held_out(&code.tree.code, &text, fraction) {
            held_out.push(HeldOut {
                code: code.tree.code.clone(),
                text,
            });
        } else if !code.examples.contains(&text) {
            code.examples.push(text);
        }
    }
    (codes, held_out)
}

fn write_all(
    out_dir: &Path,
    codes: Vec<NaicsCode>,
    held_out: Vec<HeldOut>,
    mut summary: IngestSummary,
) -> Result<IngestSummary> {
    write::write_codes(&out_dir.join(CODES_TABLE), &codes)?;
    write::write_holdout(&out_dir.join(HOLDOUT_TABLE), &held_out)?;
    summary.codes = codes.len();
    summary.held_out = held_out.len();
    summary.exclusion_pairs = codes.iter().map(|c| c.excluded_codes.len()).sum();
    summary.codes_with_exclusions = codes.iter().filter(|c| !c.excluded_codes.is_empty()).count();
    Ok(summary)
}

/// The in-memory result of ingest, before anything is written.
pub fn read_all(paths: &IngestPaths, holdout_fraction: f64) -> Result<(Vec<NaicsCode>, Vec<HeldOut>, IngestSummary)> {
    check_fraction(holdout_fraction)?;
    for p in [&paths.codes, &paths.descriptions, &paths.index, &paths.cross_references] {
        sources::require_file(p)?;
    }
    let code_rows = sources::read_xlsx(
        &paths.codes,
        Some("tbl_2022_title_description_coun"),
        &["Seq. No.", "2022 NAICS US Code", "2022 NAICS US Title"],
    )?;
    let tree = codes::build_tree(&paths.codes, &code_rows)?;
    let position: HashMap<String, usize> = tree.iter().enumerate().map(|(i, c)| (c.code.clone(), i)).collect();
    let mut summary = IngestSummary::default();

    let descriptions = read_descriptions(&paths.descriptions, &position, &mut summary)?;
    let (entries, skipped) = read_index(&paths.index, &tree, &position)?;
    summary.index_entries = entries.len();
    summary.skipped_index_rows = skipped;
    let xrefs = read_cross_references(&paths.cross_references, &position, &mut summary)?;

    let parts: Vec<text::DescriptionParts> = tree
        .iter()
        .map(|c| text::split_description(descriptions.get(&c.code).map_or("", String::as_str)))
        .collect();
    let (texts, inherited) = resolve_descriptions(&tree, &position, &parts);
    summary.inherited_descriptions = inherited;

    let mut examples: Vec<Vec<String>> = vec![Vec::new(); tree.len()];
    let mut held_out = Vec::new();
    for (pos, entry) in entries {
        if is_held_out(&tree[pos].code, &entry, holdout_fraction) {
            held_out.push(HeldOut {
                code: tree[pos].code.clone(),
                text: entry,
            });
        } else {
            examples[pos].push(entry);
        }
    }
    let codes = tree
        .into_iter()
        .enumerate()
        .map(|(pos, tree)| {
            let mut list = std::mem::take(&mut examples[pos]);
            for e in &parts[pos].examples {
                if !list.contains(e) {
                    list.push(e.clone());
                }
            }
            let mut excluded: Vec<String> = xrefs.get(&pos).into_iter().cloned().collect();
            excluded.extend(text::exclusion_sentences(&parts[pos].text));
            let excluded = excluded.join(" ");
            let excluded_codes = excluded_codes(&excluded, &tree.code, &position);
            NaicsCode {
                tree,
                description: texts[pos].clone(),
                examples: list,
                cited_examples: 0,
                excluded,
                excluded_codes,
            }
        })
        .collect();
    Ok((codes, held_out, summary))
}

/// Code -> raw description. Titles here carry stray `T`s and are ignored (the codes file has them).
/// The published file ends with two stale rows for codes that NAICS 2022 no longer has (322121,
/// 45431, "Added by ecmb ..."): rows of well-formed codes missing from the codes file are skipped
/// and counted, not errors.
fn read_descriptions(
    path: &Path,
    position: &HashMap<String, usize>,
    summary: &mut IngestSummary,
) -> Result<HashMap<String, String>> {
    let rows = sources::read_xlsx(path, Some("2022_NAICS_Descriptions"), &["Code", "Title", "Description"])?;
    let mut out = HashMap::new();
    for r in rows {
        if codes::parse_code(&r.cells[0]).is_some_and(|(c, _)| !position.contains_key(&c)) {
            summary.skipped_description_rows += 1;
            continue;
        }
        let code = known_code(path, r.row, &r.cells[0], position)?;
        if out.insert(code.clone(), r.cells[2].clone()).is_some() {
            return Err(input_error(
                path,
                Some(r.row),
                format!("duplicate description for code {code}"),
            ));
        }
    }
    Ok(out)
}

/// Index entries as (code position, text). Rows whose code is `******` are Census pointers
/// ("Consultants -- see specific activity"), not entries, and are skipped.
fn read_index(
    path: &Path,
    tree: &[TreeCode],
    position: &HashMap<String, usize>,
) -> Result<(Vec<(usize, String)>, usize)> {
    let rows = sources::read_xlsx(path, Some("2022NAICS"), &["NAICS22", "INDEX ITEM DESCRIPTION"])?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut skipped = 0;
    for r in rows {
        if r.cells[0].trim().chars().all(|c| c == '*') {
            skipped += 1;
            continue;
        }
        let code = known_code(path, r.row, &r.cells[0], position)?;
        let pos = position[&code];
        if tree[pos].level != 6 {
            return Err(input_error(
                path,
                Some(r.row),
                format!("expected a six-digit industry, found {code}"),
            ));
        }
        let entry = text::clean(&text::normalize_sector_ranges(&r.cells[1]));
        if entry.is_empty() {
            return Err(input_error(
                path,
                Some(r.row),
                format!("empty index entry for code {code}"),
            ));
        }
        entries.push((pos, entry));
    }
    Ok((entries, skipped))
}

/// Code position -> cross-reference text, sentences of one code joined by one space (the
/// official xlsx has one sentence per row; the shipped CSV one row per code).
fn read_cross_references(
    path: &Path,
    position: &HashMap<String, usize>,
    summary: &mut IngestSummary,
) -> Result<HashMap<usize, String>> {
    let rows = sources::read_cross_references(path)?;
    summary.cross_reference_rows = rows.len();
    let mut out: HashMap<usize, String> = HashMap::new();
    for r in rows {
        let code = known_code(path, r.row, &r.cells[0], position)?;
        let sentence = text::clean(&text::normalize_sector_ranges(&r.cells[1]));
        let entry = out.entry(position[&code]).or_default();
        if !entry.is_empty() {
            entry.push(' ');
        }
        entry.push_str(&sentence);
    }
    Ok(out)
}

fn known_code(path: &Path, row: usize, cell: &str, position: &HashMap<String, usize>) -> Result<String> {
    let (code, _) = codes::parse_code(cell).ok_or_else(|| {
        input_error(
            path,
            Some(row),
            format!("expected a 2- to 6-digit NAICS code, found `{cell}`"),
        )
    })?;
    if !position.contains_key(&code) {
        return Err(input_error(
            path,
            Some(row),
            format!("unknown code {code}: it is not in the codes file"),
        ));
    }
    Ok(code)
}

/// Final description texts. A code whose own text is empty or only points elsewhere takes the
/// (already resolved) description of the child it points to, else of its first child; codes are
/// resolved deepest level first so that chains of pointers settle. Returns the texts and how many
/// were inherited.
fn resolve_descriptions(
    tree: &[TreeCode],
    position: &HashMap<String, usize>,
    parts: &[text::DescriptionParts],
) -> (Vec<String>, usize) {
    let mut first_child: HashMap<&str, usize> = HashMap::new();
    for (pos, c) in tree.iter().enumerate() {
        if let Some(p) = &c.parent {
            first_child.entry(p.as_str()).or_insert(pos);
        }
    }
    let mut texts: Vec<String> = parts.iter().map(|p| p.text.clone()).collect();
    let mut order: Vec<usize> = (0..tree.len()).collect();
    order.sort_by_key(|&pos| std::cmp::Reverse(tree[pos].level));
    let mut inherited = 0;
    for pos in order {
        let own = &parts[pos].text;
        let pointer = text::pointer_target(own);
        if !own.is_empty() && pointer.is_none() {
            continue;
        }
        let is_child = |p: &&usize| tree[**p].parent.as_deref() == Some(tree[pos].code.as_str());
        let source = pointer
            .and_then(|t| position.get(t))
            .filter(is_child)
            .or(first_child.get(tree[pos].code.as_str()));
        if let Some(&src) = source {
            texts[pos] = texts[src].clone();
            inherited += 1;
        }
    }
    (texts, inherited)
}

/// Every code named in the exclusion text that is a known code other than the code itself, in
/// order of first mention.
fn excluded_codes(excluded: &str, code: &str, position: &HashMap<String, usize>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for n in text::code_numbers(excluded) {
        if n != code && position.contains_key(n) && !out.iter().any(|o| o == n) {
            out.push(n.to_string());
        }
    }
    out
}

/// Whether an index entry is held out: a deterministic share (`naics_common::share`), the same
/// entries on every machine and every run.
pub fn is_held_out(code: &str, text: &str, fraction: f64) -> bool {
    naics_common::share::in_share("", code, text, fraction)
}
