//! Cleaning rules for the Census texts (see the README's "Ingest rules").

use regex::Regex;
use std::sync::LazyLock;

static SECTOR_RANGE: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(31-33|44-45|48-49)\b").unwrap());
static HTML_TAG: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"<[^>]*>").unwrap());
static POINTER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^See industry description for (\d{2,6})\.?$").unwrap());
static CODE_NUMBER: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"\b(\d{2,6})(?:-\d{2})?\b").unwrap());
static SENTENCE_END: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"[.;]\s+").unwrap());
/// Abbreviations whose full stop does not end a sentence ("classified in U.S. Industry 111191").
const ABBREVIATIONS: [&str; 5] = ["U.S.", "i.e.", "e.g.", "etc.", "No."];

const CROSS_REFERENCES: &str = "Cross-References.";
const SECTOR_HEADING: &str = "The Sector as a Whole";
const EXAMPLES_HEADING: &str = "Illustrative Examples:";

/// `31-33`, `44-45`, `48-49` are single sectors, named by their first number everywhere.
pub fn normalize_sector_ranges(text: &str) -> String {
    SECTOR_RANGE
        .replace_all(text, |c: &regex::Captures| c[1][..2].to_string())
        .into_owned()
}

/// Removes HTML tags and the few entities the Census files use, and collapses white space
/// (non-breaking spaces included) to single spaces.
pub fn clean(text: &str) -> String {
    let text = HTML_TAG.replace_all(text, " ");
    let text = text
        .replace("&nbsp;", " ")
        .replace('\u{a0}', " ")
        .replace("&amp;", "&")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A description cut into its parts: the running text (cleaned) and the lines of its
/// `Illustrative Examples:` block. Everything from the `Cross-References.` heading on is dropped
/// (the sentences themselves come from the cross-reference file).
#[derive(Debug, Default, PartialEq)]
pub struct DescriptionParts {
    pub text: String,
    pub examples: Vec<String>,
}

pub fn split_description(raw: &str) -> DescriptionParts {
    let raw = normalize_sector_ranges(raw);
    let raw = if raw.trim() == "NULL" { "" } else { raw.as_str() };
    let body = raw.split(CROSS_REFERENCES).next().unwrap_or("");
    let (body, examples) = match body.split_once(EXAMPLES_HEADING) {
        Some((before, block)) => {
            let lines = block.lines().map(clean).filter(|l| !l.is_empty()).collect();
            (before, lines)
        }
        None => (body, Vec::new()),
    };
    let body = body.replacen(SECTOR_HEADING, "", 1);
    DescriptionParts {
        text: clean(&body),
        examples,
    }
}

/// The code a description defers to ("See industry description for 111110."), if that is all it says.
pub fn pointer_target(description: &str) -> Option<&str> {
    POINTER.captures(description).and_then(|c| c.get(1)).map(|m| m.as_str())
}

/// Sentences of `text` that state an exclusion ("... are classified in Industry 111191 ...").
pub fn exclusion_sentences(text: &str) -> Vec<String> {
    let mut sentences = Vec::new();
    let mut start = 0;
    let ends = SENTENCE_END
        .find_iter(text)
        .filter(|m| !ABBREVIATIONS.iter().any(|a| text[..m.start() + 1].ends_with(a)))
        .map(|m| (m.start() + 1, m.end()))
        .chain([(text.len(), text.len())]);
    for (end, next) in ends {
        let sentence = text[start..end].trim();
        if sentence.contains("classified in") {
            sentences.push(sentence.to_string());
        }
        start = next;
    }
    sentences
}

/// Every 2- to 6-digit number in `text`, a range like `44-45` counting as its first number.
pub fn code_numbers(text: &str) -> impl Iterator<Item = &str> {
    CODE_NUMBER
        .captures_iter(text)
        .filter_map(|c| c.get(1))
        .map(|m| m.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sector_ranges_become_their_first_sector() {
        assert_eq!(
            normalize_sector_ranges("Sector 44-45, Retail; 31-33 and 48-49."),
            "Sector 44, Retail; 31 and 48."
        );
        assert_eq!(normalize_sector_ranges("Industry 311111"), "Industry 311111");
    }

    #[test]
    fn descriptions_lose_headings_html_and_cross_reference_heading() {
        let raw = "The Sector as a Whole\n\nMakes <b>things</b>&nbsp;and\u{a0}more.  Twice.\n\nCross-References. Establishments primarily engaged in--";
        assert_eq!(split_description(raw).text, "Makes things and more. Twice.");
    }

    #[test]
    fn illustrative_examples_become_lines() {
        let raw = "Grows grain.\n\nIllustrative Examples:\n\nBarley farming\nRye  farming\n\n\nCross-References. X";
        let parts = split_description(raw);
        assert_eq!(parts.text, "Grows grain.");
        assert_eq!(parts.examples, vec!["Barley farming", "Rye farming"]);
    }

    #[test]
    fn null_and_pointers() {
        assert_eq!(split_description("NULL").text, "");
        assert_eq!(pointer_target("See industry description for 111110."), Some("111110"));
        assert_eq!(pointer_target("This industry comprises 111110."), None);
    }

    #[test]
    fn exclusion_sentences_and_codes() {
        let text = "Makes tea. Logging is classified in Sector 11, Agriculture; 2. Selling is classified in \
                    Sector 44-45, Retail. Growing corn is classified in U.S. Industry 111150, Corn. Done.";
        let found = exclusion_sentences(text);
        assert_eq!(
            found,
            vec![
                "Logging is classified in Sector 11, Agriculture;",
                "Selling is classified in Sector 44-45, Retail.",
                "Growing corn is classified in U.S. Industry 111150, Corn."
            ]
        );
        let joined = found.join(" ");
        let codes: Vec<_> = code_numbers(&joined).collect();
        assert_eq!(codes, vec!["11", "44", "111150"]);
    }
}
