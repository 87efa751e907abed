//! The pipeline's Parquet tables the trainer reads, with the parquet crate alone (DataFusion
//! stays in naics-pipeline): codes, tree distances and held-out index entries. Where they are:
//! `naics_common::layout`.

use anyhow::{Context, Result, bail};
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Int32Type};
use candle_core::{Device, Tensor};
use naics_common::layout::DataDir;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::HashMap;
use std::path::Path;

fn read(path: &Path) -> Result<Vec<RecordBatch>> {
    let file = std::fs::File::open(path).with_context(|| {
        format!(
            "{}: missing; run `naics-pipeline ingest && naics-pipeline build`",
            path.display()
        )
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?.build()?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

fn strings(batch: &RecordBatch, name: &str) -> Result<Vec<Option<String>>> {
    let col = arrow::compute::cast(
        batch
            .column_by_name(name)
            .with_context(|| format!("no column {name}"))?,
        &DataType::Utf8,
    )?;
    let col = col.as_string::<i32>();
    Ok((0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i).to_string()))
        .collect())
}

fn string_lists(batch: &RecordBatch, name: &str) -> Result<Vec<Vec<String>>> {
    let col = batch
        .column_by_name(name)
        .with_context(|| format!("no column {name}"))?;
    let lists = col
        .as_list_opt::<i32>()
        .with_context(|| format!("column {name}: expected a list of strings"))?;
    (0..lists.len())
        .map(|i| {
            let items = arrow::compute::cast(&lists.value(i), &DataType::Utf8)?;
            let items = items.as_string::<i32>();
            Ok((0..items.len()).map(|k| items.value(k).to_string()).collect())
        })
        .collect()
}

fn ints(batch: &RecordBatch, name: &str) -> Result<Vec<i32>> {
    let col = batch
        .column_by_name(name)
        .with_context(|| format!("no column {name}"))?;
    Ok(col.as_primitive::<Int32Type>().values().to_vec())
}

/// The code tree in Census order.
pub struct Codes {
    pub code: Vec<String>,
    pub title: Vec<String>,
    pub description: Vec<String>,
    pub level: Vec<u8>,
    pub sector: Vec<String>,
    pub parent: Vec<Option<usize>>,
    /// The code's training index entries (the held-out ones are not in this table).
    pub examples: Vec<Vec<String>>,
    pub position: HashMap<String, usize>,
}

impl Codes {
    pub fn read(data_dir: &Path) -> Result<Codes> {
        let (mut code, mut title, mut level, mut sector, mut parent_code) = (vec![], vec![], vec![], vec![], vec![]);
        let (mut description, mut examples) = (vec![], vec![]);
        for b in read(&DataDir(data_dir.to_path_buf()).codes())? {
            code.extend(strings(&b, "code")?.into_iter().flatten());
            title.extend(strings(&b, "title")?.into_iter().flatten());
            description.extend(strings(&b, "description")?.into_iter().map(Option::unwrap_or_default));
            sector.extend(strings(&b, "sector")?.into_iter().flatten());
            level.extend(ints(&b, "level")?.into_iter().map(|l| l as u8));
            parent_code.extend(strings(&b, "parent")?);
            examples.extend(string_lists(&b, "examples")?);
        }
        let position: HashMap<String, usize> = code.iter().enumerate().map(|(i, c)| (c.clone(), i)).collect();
        let parent = parent_code
            .iter()
            .map(|p| p.as_ref().and_then(|p| position.get(p).copied()))
            .collect();
        Ok(Codes {
            code,
            title,
            description,
            level,
            sector,
            parent,
            examples,
            position,
        })
    }

    pub fn len(&self) -> usize {
        self.code.len()
    }

    pub fn is_empty(&self) -> bool {
        self.code.is_empty()
    }

    /// The codes from the sector down to `i`.
    pub fn path(&self, i: usize) -> Vec<usize> {
        let mut path = vec![i];
        while let Some(p) = self.parent[*path.last().expect("non-empty")] {
            path.push(p);
        }
        path.reverse();
        path
    }
}

/// The n x n tree-distance matrix (zero diagonal) from `tables/distances.parquet`.
pub fn tree_distances(data_dir: &Path, n: usize) -> Result<Vec<f64>> {
    let mut m = vec![0.0; n * n];
    let mut rows = 0;
    for b in read(&DataDir(data_dir.to_path_buf()).table("distances"))? {
        let (i, j) = (ints(&b, "idx_i")?, ints(&b, "idx_j")?);
        let d = b
            .column_by_name("distance")
            .context("no column distance")?
            .as_primitive::<Float64Type>();
        for k in 0..b.num_rows() {
            m[i[k] as usize * n + j[k] as usize] = d.value(k);
        }
        rows += b.num_rows();
    }
    if rows != n * (n - 1) {
        bail!(
            "tables/distances.parquet has {rows} rows, expected {} for {n} codes: rebuild with `naics-pipeline build`",
            n * (n - 1)
        );
    }
    Ok(m)
}

/// The pipeline's tree distances of all codes, dense n x n.
pub struct TreeDistances {
    n: usize,
    pub matrix: Vec<f64>,
}

impl TreeDistances {
    pub fn load(data_dir: &Path, n: usize) -> Result<Self> {
        Ok(TreeDistances {
            n,
            matrix: tree_distances(data_dir, n)?,
        })
    }

    /// The [m, m] tree distances among `codes`.
    pub fn among(&self, codes: &[u32], device: &Device) -> Result<Tensor> {
        let m = codes.len();
        let values: Vec<f32> = codes
            .iter()
            .flat_map(|&i| {
                codes
                    .iter()
                    .map(move |&j| self.matrix[i as usize * self.n + j as usize] as f32)
            })
            .collect();
        Ok(Tensor::from_vec(values, (m, m), device)?)
    }
}

/// Whether a training entry is a validation entry: kept out of training, for the coder to fit
/// and calibrate on.
pub fn validation_entry(code: &str, text: &str, share: f64) -> bool {
    naics_common::share::in_share(naics_common::share::VALIDATION_SALT, code, text, share)
}

/// Held-out index entries (code, text).
pub fn holdout(data_dir: &Path) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for b in read(&DataDir(data_dir.to_path_buf()).holdout())? {
        let (c, t) = (strings(&b, "code")?, strings(&b, "text")?);
        out.extend(c.into_iter().zip(t).filter_map(|(c, t)| Some((c?, t?))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn among_gathers_the_submatrix() {
        let n = 3;
        let tree = TreeDistances {
            n,
            matrix: vec![0.0, 1.0, 2.0, 1.0, 0.0, 3.0, 2.0, 3.0, 0.0],
        };
        let sub = tree.among(&[2, 0], &Device::Cpu).unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(sub, vec![vec![0.0, 2.0], vec![2.0, 0.0]]);
    }
}
