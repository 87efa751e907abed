//! Any taxonomy (issue "Any classification tree"): the generic table from CSV and Parquet, its
//! errors, the ICD-10-CM adapter on a small XML, and a generic tree through `build` and
//! `build-shards`, its views and counts checked against the all-pairs SQL.

mod common;

use arrow::array::{ArrayRef, ListBuilder, RecordBatch, StringArray, StringBuilder};
use common::{build_and_open, counts, rows};
use naics_pipeline::ingest::{self, generic};
use naics_pipeline::session::DataDir;
use std::path::Path;
use std::sync::Arc;

/// Rows out of pre-order on purpose: a child before its parent, two roots (B listed first, so
/// B's subtree comes first).
const TABLE: &str = "code,parent,title,description,examples,excluded,excluded_codes
A1,A,Apples,Orchards of apples,apple orchard|cider apples,,
B,,Beverages,,,,
A,,Agriculture,Growing things,,beverages are in B (B1),B1
A2,A,Apricots,,apricot farm,,
A11,A1,Red apples,,,,
B1,B,Cider,Fermented apple juice,,apples are in A1,A1
";

const ENTRIES: &str = "code,text
A11,red delicious apple grower
A2,apricot orchard
B1,hard cider maker
A1,apple farm
";

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn generic_csv_and_parquet_give_one_table_in_preorder() {
    let dir = tempfile::tempdir().unwrap();
    let table = write(dir.path(), "tree.csv", TABLE);
    let entries = write(dir.path(), "entries.csv", ENTRIES);
    let out = dir.path().join("csv");
    let s = ingest::run_generic(&table, Some(&entries), &out, 0.5).unwrap();
    assert_eq!((s.codes, s.index_entries, s.exclusion_pairs), (6, 4, 2));
    let ctx = common::open(&out, &dir.path().join("o")).await;
    let got = rows(
        &ctx,
        r#"SELECT "index", code, level, depth, sector, coalesce(parent, '-') FROM naics_codes ORDER BY "index""#,
    )
    .await;
    let expected = [
        ("0", "B", "1", "0", "B", "-"),
        ("1", "B1", "2", "1", "B", "B"),
        ("2", "A", "1", "0", "A", "-"),
        ("3", "A1", "2", "1", "A", "A"),
        ("4", "A11", "3", "2", "A", "A1"),
        ("5", "A2", "2", "1", "A", "A"),
    ];
    let expected: Vec<Vec<String>> = expected
        .iter()
        .map(|r| [r.0, r.1, r.2, r.3, r.4, r.5].iter().map(|s| s.to_string()).collect())
        .collect();
    assert_eq!(got, expected);
    // Entries either held out or appended to their code's examples, never both, never lost.
    let held = counts(&ctx, "SELECT 'n', count(*) FROM naics_index_holdout").await[0].1;
    let examples = counts(
        &ctx,
        "SELECT 'n', CAST(sum(array_length(examples)) AS BIGINT) FROM naics_codes",
    )
    .await[0]
        .1;
    assert_eq!(held as usize, s.held_out);
    assert_eq!(examples + held, 3 + 4);

    // The same table as Parquet with list columns.
    let list = |items: &[&[&str]]| -> ArrayRef {
        let mut b = ListBuilder::new(StringBuilder::new());
        for l in items {
            for s in *l {
                b.values().append_value(s);
            }
            b.append(true);
        }
        Arc::new(b.finish())
    };
    let text = |items: &[Option<&str>]| -> ArrayRef { Arc::new(StringArray::from(items.to_vec())) };
    let batch = RecordBatch::try_from_iter(vec![
        (
            "code",
            text(&[Some("A1"), Some("B"), Some("A"), Some("A2"), Some("A11"), Some("B1")]),
        ),
        (
            "parent",
            text(&[Some("A"), None, None, Some("A"), Some("A1"), Some("B")]),
        ),
        (
            "title",
            text(&[
                Some("Apples"),
                Some("Beverages"),
                Some("Agriculture"),
                Some("Apricots"),
                Some("Red apples"),
                Some("Cider"),
            ]),
        ),
        (
            "description",
            text(&[
                Some("Orchards of apples"),
                None,
                Some("Growing things"),
                None,
                None,
                Some("Fermented apple juice"),
            ]),
        ),
        (
            "examples",
            list(&[
                &["apple orchard", "cider apples"],
                &[],
                &[],
                &["apricot farm"],
                &[],
                &[],
            ]),
        ),
        (
            "excluded",
            text(&[
                None,
                None,
                Some("beverages are in B (B1)"),
                None,
                None,
                Some("apples are in A1"),
            ]),
        ),
        ("excluded_codes", list(&[&[], &[], &["B1"], &[], &[], &["A1"]])),
    ])
    .unwrap();
    let parquet = dir.path().join("tree.parquet");
    naics_pipeline::parquet_io::write_batch(&parquet, &batch).unwrap();
    let from_parquet = generic::into_codes(&parquet, generic::read_table(&parquet).unwrap()).unwrap();
    let from_csv = generic::into_codes(&table, generic::read_table(&table).unwrap()).unwrap();
    assert_eq!(from_parquet, from_csv);

    // The tree through build: group counts and views agree with the all-pairs SQL.
    let ctx = build_and_open(&out, 1_000).await;
    let d = rows(
        &ctx,
        "SELECT code_i, code_j, CAST(distance AS VARCHAR), relation, CAST(excluded AS VARCHAR) FROM distances \
         WHERE code_i = 'A11' ORDER BY idx_j",
    )
    .await;
    let d: Vec<String> = d.iter().map(|r| r.join(" ")).collect();
    // Unrelated: 2 x (max depth 2 + 1) = 6.
    assert_eq!(
        d,
        vec![
            "A11 B 6.0 unrelated false",
            "A11 B1 6.0 unrelated false",
            "A11 A 1.5 grandparent false",
            "A11 A1 0.5 parent false",
            "A11 A2 3.0 ancestor_sibling false",
        ]
    );
    let enumerated = counts(
        &ctx,
        "SELECT CAST(hardness AS VARCHAR), count(*) FROM triplets GROUP BY 1 ORDER BY 1",
    )
    .await;
    let computed = counts(
        &ctx,
        "SELECT CAST(hardness AS VARCHAR), CAST(triplets AS BIGINT) FROM triplet_counts ORDER BY 1",
    )
    .await;
    assert_eq!(computed, enumerated);
    assert!(computed.iter().any(|(h, _)| h == "8"), "{computed:?}");

    // Past --all-pairs-max-codes the all-pairs tables are views giving the same rows.
    let ctx = build_and_open(&out, 3).await;
    assert!(!DataDir(out.clone()).table("distances").exists());
    let view = rows(
        &ctx,
        "SELECT code_i, code_j, CAST(distance AS VARCHAR), relation, CAST(excluded AS VARCHAR) FROM distances \
         WHERE code_i = 'A11' ORDER BY idx_j",
    )
    .await;
    assert_eq!(view.iter().map(|r| r.join(" ")).collect::<Vec<_>>(), d);
    let through_view = counts(
        &ctx,
        "SELECT CAST(hardness AS VARCHAR), count(*) FROM triplets GROUP BY 1 ORDER BY 1",
    )
    .await;
    assert_eq!(through_view, enumerated);
}

/// Runs the generic ingest on `table` and returns its error; nothing may be written.
fn generic_error(table: &str, entries: Option<&str>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "tree.csv", table);
    let entries = entries.map(|e| write(dir.path(), "entries.csv", e));
    let out = dir.path().join("out");
    let err = ingest::run_generic(&path, entries.as_deref(), &out, 0.1).unwrap_err();
    assert!(!out.exists() || std::fs::read_dir(&out).unwrap().next().is_none());
    format!("{err:#}")
}

#[test]
fn generic_errors_name_the_row() {
    let e = generic_error("code,parent,title\nA,,Apples\nA1,A,Red\nA1,A,Again\n", None);
    assert!(
        e.ends_with("tree.csv: row 4: duplicate code A1 (first seen on row 3)"),
        "{e}"
    );
    let e = generic_error("code,parent,title\nA,,Apples\nA1,X,Red\n", None);
    assert!(
        e.ends_with("row 3: code A1 has no parent: X is not in the table"),
        "{e}"
    );
    let e = generic_error("code,parent,title\nR,,Root\nA,B,Apples\nB,A,Bananas\n", None);
    assert!(
        e.ends_with("row 3: code A is on a cycle of parents (A -> B -> A): no root above it"),
        "{e}"
    );
    let e = generic_error("code,parent,title\nA,A,Apples\n", None);
    assert!(e.contains("row 2: code A is on a cycle of parents (A -> A)"), "{e}");
    let e = generic_error("code,parent,title\nA,,Apples\nA1,A,\n", None);
    assert!(e.ends_with("row 3: expected a title for code A1"), "{e}");
    let e = generic_error("code,parent,title\n,,Apples\n", None);
    assert!(e.ends_with("row 2: empty code"), "{e}");
    let e = generic_error("code,parent,title,excluded_codes\nA,,Apples,Z\n", None);
    assert!(
        e.ends_with("row 2: code A excludes Z, which is not in the table"),
        "{e}"
    );
    let e = generic_error("code,title\nA,Apples\n", None);
    assert!(e.contains("expected a column `parent`"), "{e}");
    let e = generic_error("code,parent,title\nA,,Apples\n", Some("code,text\nA,ok\nQ,apple\n"));
    assert!(
        e.ends_with("entries.csv: row 3: unknown code Q: it is not in the taxonomy"),
        "{e}"
    );
    let e = generic_error("code,parent,title\nA,,Apples\n", Some("code,text\nA,\n"));
    assert!(e.ends_with("entries.csv: row 2: empty text for code A"), "{e}");
}

/// A small tabular list with what the adapter must handle: a one-category section, a range and
/// a `.-` citation, inclusion terms, seventh characters defined on a category.
const ICD_XML: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<ICD10CM.tabular>
  <version>2026</version>
  <chapter>
    <name>1</name>
    <desc>Certain infectious diseases (A00-A09)</desc>
    <sectionIndex><sectionRef first="A00" last="A01" id="A00-A01">Intestinal</sectionRef></sectionIndex>
    <section id="A00-A01">
      <desc>Intestinal infectious diseases (A00-A01)</desc>
      <diag>
        <name>A00</name>
        <desc>Cholera</desc>
        <excludes1><note>typhoid (A01.-) and other (S10-S11)</note></excludes1>
        <diag>
          <name>A00.0</name>
          <desc>Cholera due to Vibrio cholerae 01</desc>
          <inclusionTerm><note>Classical cholera</note><note>Cholera &amp; gravis</note></inclusionTerm>
        </diag>
      </diag>
      <diag>
        <name>A01</name>
        <desc>Typhoid fever</desc>
        <includes><note>infection due to Salmonella typhi</note></includes>
      </diag>
    </section>
    <section id="A09">
      <desc>Other gastroenteritis (A09)</desc>
      <diag><name>A09</name><desc>Infectious gastroenteritis</desc></diag>
    </section>
  </chapter>
  <chapter>
    <name>19</name>
    <desc>Injury (S00-S19)</desc>
    <section id="S10-S11">
      <desc>Injuries to the neck (S10-S11)</desc>
      <diag>
        <name>S10</name>
        <desc>Superficial injury of throat</desc>
        <sevenChrDef><extension char="A">initial encounter</extension><extension char="S">sequela</extension></sevenChrDef>
        <diag><name>S10.0</name><desc>Contusion of throat</desc></diag>
      </diag>
    </section>
  </chapter>
</ICD10CM.tabular>
"#;

#[tokio::test(flavor = "multi_thread")]
async fn icd10cm_adapter_reads_the_tabular_list() {
    let dir = tempfile::tempdir().unwrap();
    let xml = write(dir.path(), "tabular.xml", ICD_XML);
    let out = dir.path().join("icd");
    let s = ingest::run_icd10cm(&xml, &out, 0.0).unwrap();
    assert_eq!((s.codes, s.index_entries, s.cross_reference_rows), (11, 2, 2));
    let ctx = common::open(&out, &dir.path().join("o")).await;
    let got = rows(
        &ctx,
        r#"SELECT code, CAST(level AS VARCHAR), coalesce(parent, '-'), title, description,
                  array_to_string(examples, '|'), CAST(cited_examples AS VARCHAR),
                  array_to_string(excluded_codes, '|')
           FROM naics_codes ORDER BY "index""#,
    )
    .await;
    let got: Vec<String> = got.iter().map(|r| r.join(" ; ")).collect();
    assert_eq!(
        got,
        vec![
            "A00-A09 ; 1 ; - ; Certain infectious diseases (A00-A09) ;  ;  ; 0 ; ",
            "A00-A01 ; 2 ; A00-A09 ; Intestinal infectious diseases (A00-A01) ;  ;  ; 0 ; ",
            "A00 ; 3 ; A00-A01 ; Cholera ;  ;  ; 0 ; A01|S10-S11",
            "A00.0 ; 4 ; A00 ; Cholera due to Vibrio cholerae 01 ;  ; Classical cholera|Cholera & gravis ; 0 ; ",
            // The exclusion note's phrase, an entry of each code it cites (a cross-reference).
            "A01 ; 3 ; A00-A01 ; Typhoid fever ; infection due to Salmonella typhi ; typhoid and other ; 1 ; ",
            "A09-A09 ; 2 ; A00-A09 ; Other gastroenteritis (A09) ;  ;  ; 0 ; ",
            "A09 ; 3 ; A09-A09 ; Infectious gastroenteritis ;  ;  ; 0 ; ",
            "S00-S19 ; 1 ; - ; Injury (S00-S19) ;  ;  ; 0 ; ",
            "S10-S11 ; 2 ; S00-S19 ; Injuries to the neck (S10-S11) ;  ; typhoid and other ; 1 ; ",
            "S10 ; 3 ; S10-S11 ; Superficial injury of throat ; Seventh character: A initial encounter; S sequela. ;  ; 0 ; ",
            "S10.0 ; 4 ; S10 ; Contusion of throat ; Seventh character: A initial encounter; S sequela. ;  ; 0 ; ",
        ]
    );
}

/// A generic tree seven levels deep whose leaves sit at two depths: two roots, every code with
/// two children down to depth 6, except that the second child of each depth-2 code is a leaf
/// (8 of the 72 leaves at depth 3: more than 5%, so the leaf band starts there).
fn deep_tree() -> String {
    let mut csv = String::from("code,parent,title\n");
    let mut open: Vec<(String, u8)> = vec![("A".into(), 0), ("B".into(), 0)];
    for (code, _) in &open {
        csv.push_str(&format!("{code},,Group {code}\n"));
    }
    while let Some((code, depth)) = open.pop() {
        let shallow_leaf = depth == 3 && code.ends_with('1');
        if depth == 6 || shallow_leaf {
            continue;
        }
        for child in 0..2 {
            let c = format!("{code}{child}");
            csv.push_str(&format!("{c},{code},Kind {c} of {code}\n"));
            open.push((c, depth + 1));
        }
    }
    csv
}

/// The default curriculum (conf/curriculum/) on two generic trees of different depths: each
/// stage selects pairs, easy ones from the leaf band with distant negatives, medium one level
/// above it too with harder negatives, hard every level and bucket.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_curriculum_selects_by_depth_relative_to_the_leaves() {
    use naics_common::layout::samples_file;
    use naics_common::samples::{SamplesFile, Split};
    let scratch = tempfile::tempdir().unwrap();
    let deep = write(scratch.path(), "deep.csv", &deep_tree());
    // (tree, the depth of its leaf band, its deepest depth)
    let trees = [(common::fixtures().join("generic/tree.csv"), 4, 4), (deep, 3, 6)];
    for (table, band, deepest) in trees {
        let dir = tempfile::tempdir().unwrap();
        ingest::run_generic(&table, None, dir.path(), 0.0).unwrap();
        let ctx = build_and_open(dir.path(), naics_pipeline::build::ALL_PAIRS_MAX_CODES).await;
        let depth: Vec<u8> = rows(&ctx, r#"SELECT depth FROM naics_codes ORDER BY "index""#)
            .await
            .iter()
            .map(|r| r[0].parse().unwrap())
            .collect();
        assert_eq!(depth.iter().max(), Some(&deepest));
        let mut pairs = Vec::new();
        for (stage, from, buckets) in [
            ("01_stage_easy", band, 2),
            ("02_stage_medium", band - 1, 6),
            ("03_stage_hard", 0, 8),
        ] {
            let loaded = common::config(dir.path(), stage, &[]);
            let s = naics_pipeline::shards::run(&loaded).await.unwrap();
            assert!(s.train_pairs > 0, "{stage} of {} selects no pair", table.display());
            let file = SamplesFile::open(&s.out_dir.join(samples_file(Split::Train, 0)), None).unwrap();
            let samples: Vec<_> = (0..file.len()).map(|i| file.get(i).to_sample()).collect();
            let positive_depths: std::collections::BTreeSet<u8> =
                samples.iter().map(|s| depth[s.positive as usize]).collect();
            let hardest = samples.iter().flat_map(|s| s.hardness.iter().copied()).max().unwrap();
            assert_eq!(
                (positive_depths.first(), positive_depths.last()),
                (Some(&from), Some(&deepest)),
                "{stage} of {}: the depths of its positives",
                table.display()
            );
            assert!(hardest <= buckets, "{stage}: bucket {hardest} drawn");
            pairs.push(s.train_pairs + s.validation_pairs);
        }
        assert!(pairs[0] < pairs[1] && pairs[1] < pairs[2], "{pairs:?}");
    }
}
