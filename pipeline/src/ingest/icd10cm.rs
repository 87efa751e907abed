//! ICD-10-CM's tabular list (CMS/NCHS's XML, as `scripts/fetch_icd10cm.sh` fetches it) -> the
//! generic taxonomy rows: chapters (roots, coded by their range, `A00-B99`) -> sections (their
//! `id`; a one-category section `B10` becomes `B10-B10`, since the category is also `B10`) ->
//! categories -> subcategories.
//!
//! The texts: title = `desc`; description = the `includes`, `codeFirst`, `useAdditionalCode`
//! and `codeAlso` notes, and the seventh characters in force (`sevenChrDef`, defined on a code
//! and inherited by the codes under it) as one sentence: seventh characters are text, not codes
//! (as leaves they would multiply the leaves' count for no new text); the `inclusionTerm` notes
//! are the free-text entries (examples, a share held out); `excludes1` and `excludes2` notes are
//! the exclusion text, and the codes they cite are its excluded codes ([`cited_codes`]).
//!
//! Notes that cite codes (`excludes1`, `excludes2`, `codeFirst`, `useAdditionalCode`,
//! `codeAlso`: "tuberculosis of intestine (A18.32)") name, in their phrase, what the cited code
//! is about: each becomes a cross-reference entry of every code it cites
//! ([`cross_reference`]), extra training text that is never held out.

use super::generic::{Entry, Row};
use crate::error::input_error;
use anyhow::Result;
use quick_xml::events::Event;
use regex::Regex;
use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

/// Where `scripts/fetch_icd10cm.sh` puts the XML, in ICD-10-CM's data folder (`data/icd10cm`).
pub const DEFAULT_FILE: &str = "icd10cm-tabular-April-1-2026.xml";

/// A chapter, section or diag being read.
#[derive(Default)]
struct Node {
    line: usize,
    code: String,
    title: String,
    notes: Vec<String>,
    excluded: Vec<String>,
    inclusion: Vec<String>,
    seventh: Option<String>,
    extensions: Vec<String>,
    /// Notes that may cite codes (exclusions and coding instructions).
    citing: Vec<String>,
}

/// What the XML holds: the rows (in document order of their closing tags: children before
/// parents; the generic path orders them), the inclusion terms as entries, and the
/// cross-reference entries (phrase, cited code) of the notes that cite codes.
pub struct Tabular {
    pub rows: Vec<Row>,
    pub entries: Vec<Entry>,
    pub cross_references: Vec<Entry>,
}

/// Reads the tabular list.
pub fn read(path: &Path) -> Result<Tabular> {
    super::sources::require_file(path)?;
    let xml = std::fs::read_to_string(path)
        .map_err(|e| input_error(path, None, format!("cannot read as UTF-8 text: {e}")))?;
    let newlines: Vec<usize> = xml.match_indices('\n').map(|(i, _)| i).collect();
    let line_at = |pos: u64| newlines.partition_point(|&n| (n as u64) < pos) + 1;
    let mut reader = quick_xml::Reader::from_str(&xml);
    let mut path_names: Vec<String> = Vec::new();
    let mut nodes: Vec<Node> = Vec::new();
    let mut rows: Vec<Row> = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut citing: Vec<(usize, String)> = Vec::new();
    let mut extension_char = String::new();
    let mut text = String::new();
    loop {
        let position = reader.buffer_position();
        let event = reader
            .read_event()
            .map_err(|e| input_error(path, Some(line_at(position)), format!("malformed XML: {e}")))?;
        match event {
            Event::Start(e) => {
                let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
                if matches!(name.as_str(), "chapter" | "section" | "diag") {
                    let mut node = Node {
                        line: line_at(position),
                        seventh: nodes.last().and_then(|n| n.seventh.clone()),
                        ..Default::default()
                    };
                    if name == "section" {
                        let id = attribute(&e, "id")
                            .ok_or_else(|| input_error(path, Some(node.line), "a section without an id"))?;
                        node.code = if id.contains('-') { id } else { format!("{id}-{id}") };
                    }
                    nodes.push(node);
                }
                if name == "extension" {
                    extension_char = attribute(&e, "char").unwrap_or_default();
                }
                path_names.push(name);
                text.clear();
            }
            Event::End(_) => {
                if !text.trim().is_empty() {
                    let clean = text.split_whitespace().collect::<Vec<_>>().join(" ");
                    take_text(&path_names, nodes.last_mut(), clean, &extension_char);
                }
                text.clear();
                let name = path_names.pop().unwrap_or_default();
                if name == "sevenChrDef"
                    && let Some(node) = nodes.last_mut()
                {
                    node.seventh = Some(format!("Seventh character: {}.", node.extensions.join("; ")));
                    node.extensions.clear();
                }
                if matches!(name.as_str(), "chapter" | "section" | "diag") {
                    let node = nodes.pop().expect("opened above");
                    if node.code.is_empty() {
                        return Err(input_error(path, Some(node.line), format!("a {name} without a code")));
                    }
                    let mut description = node.notes.clone();
                    description.extend(node.seventh.clone());
                    entries.extend(node.inclusion.iter().map(|t| Entry {
                        row: node.line,
                        code: node.code.clone(),
                        text: t.clone(),
                    }));
                    citing.extend(node.citing.iter().map(|t| (node.line, t.clone())));
                    rows.push(Row {
                        row: node.line,
                        code: node.code,
                        parent: nodes.last().map(|p| p.code.clone()),
                        title: node.title,
                        description: description.join(" "),
                        examples: Vec::new(),
                        excluded: node.excluded.join("; "),
                        excluded_codes: Vec::new(),
                    });
                }
            }
            // An element's text may come in pieces around entity references (`&amp;`).
            Event::Text(t) => {
                let piece = t
                    .decode()
                    .map_err(|e| input_error(path, Some(line_at(position)), format!("bad text: {e}")))?;
                text.push_str(&piece);
            }
            Event::GeneralRef(r) => {
                let bad = |e: String| input_error(path, Some(line_at(position)), format!("bad entity: {e}"));
                if let Some(c) = r.resolve_char_ref().map_err(|e| bad(e.to_string()))? {
                    text.push(c);
                } else {
                    let name = r.decode().map_err(|e| bad(e.to_string()))?;
                    let resolved =
                        quick_xml::escape::resolve_predefined_entity(&name).ok_or_else(|| bad(format!("&{name};")))?;
                    text.push_str(resolved);
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    let known: BTreeSet<String> = rows.iter().map(|r| r.code.clone()).collect();
    for r in &mut rows {
        r.excluded_codes = cited_codes(&r.excluded, &known)
            .into_iter()
            .filter(|c| *c != r.code)
            .collect();
    }
    let cross_references = citing
        .iter()
        .filter_map(|(line, note)| Some((line, cross_reference(note, &known)?)))
        .flat_map(|(&row, (phrase, codes))| {
            codes.into_iter().map(move |code| Entry {
                row,
                code,
                text: phrase.clone(),
            })
        })
        .collect();
    Ok(Tabular {
        rows,
        entries,
        cross_references,
    })
}

/// An attribute's value, if the element has it.
fn attribute(e: &quick_xml::events::BytesStart, name: &str) -> Option<String> {
    let a = e.try_get_attribute(name).ok()??;
    Some(String::from_utf8_lossy(&a.value).into_owned())
}

/// Files a text under the node it belongs to, by the elements around it.
fn take_text(path: &[String], node: Option<&mut Node>, text: String, extension_char: &str) {
    let Some(node) = node else { return };
    let names: Vec<&str> = path.iter().rev().take(3).map(String::as_str).collect();
    match names.as_slice() {
        ["name", "diag", ..] => node.code = text,
        ["desc", "chapter", ..] => {
            node.code = chapter_range(&text).unwrap_or_default();
            node.title = text;
        }
        ["desc", "section" | "diag", ..] => node.title = text,
        ["note", "inclusionTerm", "chapter" | "section" | "diag"] => node.inclusion.push(text),
        ["note", "excludes1" | "excludes2", "chapter" | "section" | "diag"] => {
            node.citing.push(text.clone());
            node.excluded.push(text);
        }
        [
            "note",
            "codeFirst" | "useAdditionalCode" | "codeAlso",
            "chapter" | "section" | "diag",
        ] => {
            node.citing.push(text.clone());
            node.notes.push(text);
        }
        ["note", "includes", "chapter" | "section" | "diag"] => node.notes.push(text),
        ["extension", "sevenChrDef", ..] => node.extensions.push(format!("{extension_char} {text}")),
        _ => {}
    }
}

/// `Certain infectious and parasitic diseases (A00-B99)` -> `A00-B99`.
fn chapter_range(desc: &str) -> Option<String> {
    let open = desc.rfind('(')?;
    let inner = desc[open + 1..].strip_suffix(')')?;
    inner.contains('-').then(|| inner.to_string())
}

static NAMES_A_CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b[A-Z][0-9][0-9A-Z]\b").expect("valid"));
static CODE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[A-Z][0-9][0-9A-Z](\.[0-9A-Z]{1,4})?$").expect("valid"));
static PARENTHESES: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\(([^()]+)\)").expect("valid"));

/// The codes a note cites in parentheses, in order of first mention: `(Z16.-)` the category
/// Z16 (`.-`: any code under it), `(A00.0)` that code, `(K50-K52)` the section of that range if
/// there is one, else every code of the same length from K50 to K52; several separated by
/// commas. Codes not in the tree (seventh-character codes, typos) are left out.
pub fn cited_codes(text: &str, known: &BTreeSet<String>) -> Vec<String> {
    let clean = |s: &str| s.trim().trim_end_matches(['-', '.']).trim().to_string();
    let mut out: Vec<String> = Vec::new();
    let push = |c: String, out: &mut Vec<String>| {
        if !out.contains(&c) {
            out.push(c);
        }
    };
    for group in PARENTHESES.captures_iter(text) {
        for item in group[1].split(',') {
            let item = clean(item);
            if CODE.is_match(&item) {
                if known.contains(&item) {
                    push(item, &mut out);
                }
                continue;
            }
            let Some((first, last)) = item.split_once('-').map(|(a, b)| (clean(a), clean(b))) else {
                continue;
            };
            if !(CODE.is_match(&first) && CODE.is_match(&last)) {
                continue;
            }
            let range = format!("{first}-{last}");
            if known.contains(&range) {
                push(range, &mut out);
                continue;
            }
            for c in known
                .range(first.clone()..=last.clone())
                .filter(|c| c.len() == first.len())
            {
                push(c.clone(), &mut out);
            }
        }
    }
    out
}

/// A note that cites codes as a cross-reference entry: its phrase (the note less the
/// parentheses that name codes, trimmed of the punctuation around them) and the codes it cites
/// ([`cited_codes`]). None for a note that cites no code of the tree, or whose phrase is only an
/// instruction ("code to identify the organism (B95.-)") or empty.
pub fn cross_reference(note: &str, known: &BTreeSet<String>) -> Option<(String, Vec<String>)> {
    let codes = cited_codes(note, known);
    if codes.is_empty() {
        return None;
    }
    let phrase = PARENTHESES.replace_all(note, |group: &regex::Captures| {
        if NAMES_A_CODE.is_match(&group[1]) {
            String::new()
        } else {
            group[0].to_string()
        }
    });
    let phrase = phrase.split_whitespace().collect::<Vec<_>>().join(" ");
    let phrase = phrase.trim_matches(|c: char| c.is_whitespace() || ",;:-".contains(c));
    let phrase = phrase.strip_prefix("if applicable,").unwrap_or(phrase).trim();
    let instruction = phrase.to_lowercase().starts_with("code ");
    if instruction || !phrase.chars().any(char::is_alphabetic) {
        return None;
    }
    Some((phrase.to_string(), codes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cross_references_are_a_phrase_and_the_codes_it_cites() {
        let known: BTreeSet<String> = ["A04", "A04.0", "A04.1", "A04.2", "A04.7", "A05", "A18.32", "B95"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = |note: &str| cross_reference(note, &known);
        let pair =
            |phrase: &str, codes: &[&str]| Some((phrase.to_string(), codes.iter().map(|c| c.to_string()).collect()));
        // A phrase and one cited code.
        assert_eq!(
            got("tuberculosis of intestine (A18.32)"),
            pair("tuberculosis of intestine", &["A18.32"])
        );
        // `.-`: the category; `-` after a code: the code.
        assert_eq!(
            got("bacterial foodborne intoxications, NEC (A05.-)"),
            pair("bacterial foodborne intoxications, NEC", &["A05"])
        );
        assert_eq!(
            got("Clostridium difficile infection (A04.7-)"),
            pair("Clostridium difficile infection", &["A04.7"])
        );
        // A range: every code of its length from one end to the other (no section spans it).
        assert_eq!(
            got("Escherichia coli infection (A04.0-A04.2)"),
            pair("Escherichia coli infection", &["A04.0", "A04.1", "A04.2"])
        );
        // Parentheses that name no code stay part of the phrase; leading punctuation goes.
        assert_eq!(
            got(", if applicable, school (private) (public) as the place (A04.1)"),
            pair("school (private) (public) as the place", &["A04.1"])
        );
        // Uncited notes, codes outside the tree, and instructions are no entries.
        assert_eq!(got("underlying disease, such as:"), None);
        assert_eq!(
            got("certain localized infections - see body system-related chapters"),
            None
        );
        assert_eq!(got("gastroenteritis NOS (K52.9)"), None);
        assert_eq!(got("code to identify the organism, if known (B95.-)"), None);
    }

    /// A small tabular list: the cross-reference entries come out of its notes, cited codes
    /// resolved, uncited notes left out.
    #[test]
    fn cross_references_are_read_from_the_xml() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.tabular>
  <chapter>
    <name>1</name>
    <desc>Certain infectious and parasitic diseases (A00-A09)</desc>
    <section id="A00-A09">
      <desc>Intestinal infectious diseases (A00-A09)</desc>
      <diag>
        <name>A00</name>
        <desc>Cholera</desc>
        <excludes1>
          <note>other intestinal infections (A01.-)</note>
          <note>see body system-related chapters</note>
        </excludes1>
        <diag>
          <name>A00.0</name>
          <desc>Cholera due to Vibrio cholerae 01, biovar cholerae</desc>
          <inclusionTerm><note>Classical cholera</note></inclusionTerm>
          <codeAlso><note>typhoid with cholera (A01.0-A01.1)</note></codeAlso>
        </diag>
      </diag>
      <diag>
        <name>A01</name>
        <desc>Typhoid and paratyphoid fevers</desc>
        <diag><name>A01.0</name><desc>Typhoid fever</desc></diag>
        <diag><name>A01.1</name><desc>Paratyphoid fever A</desc></diag>
      </diag>
    </section>
  </chapter>
</ICD10CM.tabular>
"#;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tabular.xml");
        std::fs::write(&path, xml).unwrap();
        let t = read(&path).unwrap();
        assert_eq!(t.entries.len(), 1);
        let got: Vec<(&str, &str)> = t
            .cross_references
            .iter()
            .map(|e| (e.code.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("A01.0", "typhoid with cholera"),
                ("A01.1", "typhoid with cholera"),
                ("A01", "other intestinal infections")
            ]
        );
    }

    #[test]
    fn cited_codes_resolve_ranges_and_dashes() {
        let known: BTreeSet<String> = ["K50", "K50.0", "K51", "K52", "K53", "K50-K52", "Z16", "A00.0", "A00"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let got = cited_codes(
            "see (K50-K52) and (Z16.-, A00.0) or (K51-K53) (T36.0X1) (nothing)",
            &known,
        );
        assert_eq!(got, vec!["K50-K52", "Z16", "A00.0", "K51", "K52", "K53"]);
        assert_eq!(
            chapter_range("Certain infectious diseases (A00-B99)").as_deref(),
            Some("A00-B99")
        );
    }
}
