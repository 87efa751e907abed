//! The tree and the exclusion lists read from the tables (`naics_codes`, `exclusions`), and the
//! two tables written from them rather than by SQL: `ancestors` (every code's path) and
//! `anchor_groups` (what [`crate::groups`] counts).

use crate::groups;
use crate::parquet_io::writer_properties;
use crate::tree::Tree;
use anyhow::{Context, Result, bail};
use arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Int32Type, Schema};
use datafusion::prelude::SessionContext;
use parquet::arrow::ArrowWriter;
use std::path::Path;
use std::sync::Arc;

async fn int_rows(ctx: &SessionContext, sql: &str) -> Result<Vec<Vec<Option<i32>>>> {
    let mut rows = Vec::new();
    for batch in ctx.sql(sql).await?.collect().await? {
        let columns: Vec<_> = batch.columns().iter().map(|c| c.as_primitive::<Int32Type>()).collect();
        for r in 0..batch.num_rows() {
            rows.push(columns.iter().map(|c| (!c.is_null(r)).then(|| c.value(r))).collect());
        }
    }
    Ok(rows)
}

/// The code tree with each code's level (the taxonomy's own numbering: NAICS's digits).
pub struct CodeTree {
    pub tree: Tree,
    pub level: Vec<i32>,
    pub code: Vec<String>,
}

/// `naics_codes` as a pre-order tree; an error if its `index` is not one.
pub async fn code_tree(ctx: &SessionContext) -> Result<CodeTree> {
    let sql = r#"SELECT c."index", p."index", c.level FROM naics_codes c
                 LEFT JOIN naics_codes p ON p.code = c.parent ORDER BY c."index""#;
    let rows = int_rows(ctx, sql).await?;
    let parents = rows.iter().map(|r| r[1].map(|p| p as u32)).collect();
    let tree = Tree::from_parents(parents).context("naics_codes: `index` must number the codes in pre-order")?;
    let mut code = Vec::with_capacity(rows.len());
    for batch in ctx
        .sql(r#"SELECT code FROM naics_codes ORDER BY "index""#)
        .await?
        .collect()
        .await?
    {
        let col = arrow::compute::cast(batch.column(0), &DataType::Utf8)?;
        code.extend(col.as_string::<i32>().iter().map(|c| c.unwrap_or_default().to_string()));
    }
    Ok(CodeTree {
        tree,
        level: rows.iter().map(|r| r[2].unwrap_or_default()).collect(),
        code,
    })
}

/// Each code's exclusion partners in both directions (from the `exclusions` table).
pub async fn exclusions(ctx: &SessionContext, n: usize) -> Result<Vec<Vec<u32>>> {
    let rows = int_rows(ctx, "SELECT idx, excluded_idx FROM exclusions").await?;
    Ok(groups::symmetric_exclusions(
        n,
        rows.iter().filter_map(|r| Some((r[0]? as u32, r[1]? as u32))),
    ))
}

fn anchor_groups_schema() -> Schema {
    Schema::new(vec![
        Field::new("anchor_idx", DataType::Int32, false),
        Field::new("anchor", DataType::Utf8, false),
        Field::new("anchor_level", DataType::Int32, false),
        Field::new("up", DataType::Int32, true),
        Field::new("down", DataType::Int32, true),
        Field::new("level", DataType::Int32, true),
        Field::new("distance", DataType::Float64, false),
        Field::new("relation", DataType::Utf8, false),
        Field::new("excluded", DataType::Boolean, false),
        Field::new("codes", DataType::Int64, false),
    ])
}

/// Writes `ancestors`: (code, ancestor) for every code and each code on its path to the root,
/// itself at generation 0, ordered by code then generation.
pub fn write_ancestors(path: &Path, codes: &CodeTree) -> Result<usize> {
    let tree = &codes.tree;
    let schema = Arc::new(Schema::new(vec![
        Field::new("idx", DataType::Int32, false),
        Field::new("code", DataType::Utf8, false),
        Field::new("ancestor_idx", DataType::Int32, false),
        Field::new("ancestor", DataType::Utf8, false),
        Field::new("ancestor_depth", DataType::Int32, false),
        Field::new("generations", DataType::Int64, false),
    ]));
    write_in_batches(path, schema.clone(), tree.len(), |range| {
        let pairs: Vec<(usize, u32, i64)> = range
            .flat_map(|i| tree.ancestors(i as u32).enumerate().map(move |(g, a)| (i, a, g as i64)))
            .collect();
        let columns: Vec<ArrayRef> = vec![
            Arc::new(pairs.iter().map(|p| p.0 as i32).collect::<Int32Array>()),
            Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| &codes.code[p.0]))),
            Arc::new(pairs.iter().map(|p| p.1 as i32).collect::<Int32Array>()),
            Arc::new(StringArray::from_iter_values(
                pairs.iter().map(|p| &codes.code[p.1 as usize]),
            )),
            Arc::new(
                pairs
                    .iter()
                    .map(|p| tree.depth[p.1 as usize] as i32)
                    .collect::<Int32Array>(),
            ),
            Arc::new(pairs.iter().map(|p| p.2).collect::<Int64Array>()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    })
}

/// Writes one batch per `ANCHORS_PER_BATCH` codes, `batch` making each; returns the rows.
fn write_in_batches(
    path: &Path,
    schema: Arc<Schema>,
    n: usize,
    mut batch: impl FnMut(std::ops::Range<usize>) -> Result<RecordBatch>,
) -> Result<usize> {
    crate::atomic::write_atomically(path, |tmp| {
        let file = std::fs::File::create(tmp).with_context(|| format!("creating {}", tmp.display()))?;
        let mut writer = ArrowWriter::try_new(file, schema, Some(writer_properties()))?;
        let mut rows = 0;
        for start in (0..n).step_by(ANCHORS_PER_BATCH) {
            let b = batch(start..(start + ANCHORS_PER_BATCH).min(n))?;
            rows += b.num_rows();
            writer.write(&b)?;
        }
        writer.close()?;
        Ok(rows)
    })
    .with_context(|| format!("writing {}", path.display()))
}

/// Anchors per written batch: bounds memory on trees of millions of codes.
const ANCHORS_PER_BATCH: usize = 1 << 14;

/// Writes `anchor_groups` (per anchor, per relation and exclusion flag: how many codes), in
/// anchor order; returns the rows written and the triplets per shape, summed on the way. The
/// level of a cell's codes is the anchor's level moved by the depth difference (levels and depths differ by one constant, checked here).
pub fn write_anchor_groups(path: &Path, codes: &CodeTree, excluded: &[Vec<u32>]) -> Result<(usize, groups::Shapes)> {
    let tree = &codes.tree;
    let offset = codes.level.first().copied().unwrap_or(0) - tree.depth.first().copied().unwrap_or(0) as i32;
    if let Some(i) = (0..tree.len()).find(|&i| codes.level[i] - tree.depth[i] as i32 != offset) {
        bail!(
            "naics_codes: code {} has level {} at depth {}, but levels must be depth + {offset} everywhere",
            codes.code[i],
            codes.level[i],
            tree.depth[i]
        );
    }
    let schema = Arc::new(anchor_groups_schema());
    let mut shapes = groups::Shapes::new();
    let rows = write_in_batches(path, schema.clone(), tree.len(), |range| {
        let mut counts: Vec<groups::CellCount> = Vec::new();
        for a in range {
            let rows = groups::cell_counts(tree, a as u32, &excluded[a]);
            groups::add_shapes(&rows, &mut shapes);
            counts.extend(rows);
        }
        let level = |c: &groups::CellCount| {
            let anchor_depth = tree.depth[c.anchor as usize] as i32;
            c.up.map(|up| anchor_depth - up as i32 + c.down as i32 + offset)
        };
        let columns: Vec<ArrayRef> = vec![
            Arc::new(counts.iter().map(|c| c.anchor as i32).collect::<Int32Array>()),
            Arc::new(StringArray::from_iter_values(
                counts.iter().map(|c| &codes.code[c.anchor as usize]),
            )),
            Arc::new(
                counts
                    .iter()
                    .map(|c| codes.level[c.anchor as usize])
                    .collect::<Int32Array>(),
            ),
            Arc::new(counts.iter().map(|c| c.up.map(i32::from)).collect::<Int32Array>()),
            Arc::new(
                counts
                    .iter()
                    .map(|c| c.up.map(|_| c.down as i32))
                    .collect::<Int32Array>(),
            ),
            Arc::new(counts.iter().map(level).collect::<Int32Array>()),
            Arc::new(counts.iter().map(|c| c.distance).collect::<Float64Array>()),
            Arc::new(StringArray::from_iter_values(counts.iter().map(|c| c.relation))),
            Arc::new(counts.iter().map(|c| Some(c.excluded)).collect::<BooleanArray>()),
            Arc::new(counts.iter().map(|c| c.codes as i64).collect::<Int64Array>()),
        ];
        Ok(RecordBatch::try_new(schema.clone(), columns)?)
    })?;
    Ok((rows, shapes))
}

/// Writes `triplet_shapes`: how many triplets each (positive distance, negative distance,
/// excluded, unrelated) has, the only inputs of hardness.
pub fn write_triplet_shapes(path: &Path, shapes: &groups::Shapes) -> Result<usize> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("positive_distance", DataType::Float64, false),
        Field::new("negative_distance", DataType::Float64, false),
        Field::new("excluded", DataType::Boolean, false),
        Field::new("unrelated", DataType::Boolean, false),
        Field::new("triplets", DataType::Int64, false),
    ]));
    let triplets = shapes
        .values()
        .map(|&t| i64::try_from(t).context("more than 2^63 triplets of one shape"))
        .collect::<Result<Int64Array>>()?;
    let columns: Vec<ArrayRef> = vec![
        Arc::new(shapes.keys().map(|k| k.0 as f64 / 2.0).collect::<Float64Array>()),
        Arc::new(shapes.keys().map(|k| k.1 as f64 / 2.0).collect::<Float64Array>()),
        Arc::new(shapes.keys().map(|k| Some(k.2)).collect::<BooleanArray>()),
        Arc::new(shapes.keys().map(|k| Some(k.3)).collect::<BooleanArray>()),
        Arc::new(triplets),
    ];
    crate::parquet_io::write_batch(path, &RecordBatch::try_new(schema, columns)?)?;
    Ok(shapes.len())
}
