//! `naics-pipeline build-shards -c STAGE`: the curriculum's pairs, K negatives each drawn by
//! hardness bucket, the token cache, and the files the trainer memory-maps, under
//! `{shards_dir}/{experiment}/`:
//!
//! - `train-e{epoch:03}.samples`, `validation.samples`: sample records (format in naics-common);
//! - `tokens.bin`: the token cache, rebuilt only when the texts, tokenizer or max_length change;
//! - `samples.parquet`: the same samples for `naics-pipeline sql` (`samples_{experiment}`);
//! - `manifest.json` and `config.yaml`: what was built, from which configuration.

mod curriculum;
mod samples_table;
pub mod sampling;
pub mod split;
pub mod tokenize;

use crate::atomic::{write_atomically, write_json};
use crate::groups;
use crate::relations;
use crate::session::{self, DataDir};
use crate::sql_files;
use crate::tree::Tree;
use anyhow::{Context, Result, bail};
use arrow::array::{Array, BooleanArray, Float64Array, Int32Array, StringArray};
use datafusion::prelude::SessionContext;
use indicatif::{ProgressBar, ProgressStyle};
use naics_common::config::Loaded;
use naics_common::format::hex;
use naics_common::layout::{self, MANIFEST_FILE, TOKENS_FILE, samples_file};
use naics_common::samples::{self, Sample, SamplesMeta, Split};
use naics_common::share;
use naics_common::tokens::{self, TokenCache};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use sampling::{BucketSpec, DrawStats, HardnessRules, NegativePool};
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Debug)]
pub struct ShardSummary {
    pub out_dir: PathBuf,
    pub train_pairs: usize,
    pub validation_pairs: usize,
    pub epochs: usize,
    pub tokens_rebuilt: bool,
    pub stats: DrawStats,
}

pub async fn run(loaded: &Loaded) -> Result<ShardSummary> {
    let config = &loaded.config;
    let data = DataDir(config.data.dir.clone());
    let out_dir = layout::experiment_shards(&config.data.shards_dir, &config.experiment);
    let ctx = open_tables(&data).await?;
    let cur = &config.curriculum;

    // Token cache first: it also tells which tokenizer the samples belong to.
    let (tokenizer, tokenizer_sha) =
        tokenize::load_tokenizer(&config.model.path.join("tokenizer.json"), config.model.max_length)?;
    let texts = code_texts(&ctx, config.data.validation_entries).await?;
    let tokens_path = out_dir.join(TOKENS_FILE);
    let texts_hash = tokenize::texts_hash(&texts, config.model.max_length);
    let tokens_rebuilt = match TokenCache::open(&tokens_path, Some(tokenizer_sha)) {
        Ok(cache) if cache.meta.texts_hash == texts_hash => false,
        _ => {
            let (meta, ids) = tokenize::tokenize_all(&tokenizer, tokenizer_sha, &texts, config.model.max_length)?;
            let bytes = tokens::encode(&meta, &ids);
            write_atomically(&tokens_path, |tmp| Ok(std::fs::write(tmp, &bytes)?))?;
            true
        }
    };

    // Pairs, split by anchor, then sampled epoch by epoch.
    let codes = relations::code_tree(&ctx).await?;
    let limit = split::PositiveLimit::new(cur.max_positives, config.data.seed);
    let pairs = curriculum_pairs(&ctx, loaded, &codes.tree, limit).await?;
    if pairs.is_empty() {
        bail!(
            "curriculum `{}` selects no (anchor, positive) pair: loosen its level or distance filters",
            config.experiment
        );
    }
    let (train, validation) = split::by_anchor(&pairs, config.data.val_fraction, config.data.seed);
    let excluded = relations::exclusions(&ctx, codes.tree.len()).await?;
    let pool = NegativePool::new(codes.tree, excluded);
    let rules = hardness_rules(&ctx).await?;
    let spec = BucketSpec::new(&cur.difficulty_buckets, &cur.bucket_percentages, cur.k_negatives);
    let meta = |split, epoch: usize| SamplesMeta {
        k: cur.k_negatives,
        epoch: epoch as u32,
        split,
        tokenizer_sha256: tokenizer_sha,
        config_hash: loaded.hash(),
    };

    let bar = ProgressBar::new(((train.len() * cur.sampled_epochs) + validation.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} pairs sampled {per_sec} {msg}").expect("template"),
    );
    let mut stats = DrawStats::default();
    let mut all: Vec<(Split, usize, Vec<Sample>)> = Vec::new();
    for epoch in 0..cur.sampled_epochs {
        bar.set_message(format!("epoch {epoch}"));
        let samples = sample_epoch(
            &pool,
            &rules,
            &spec,
            &train,
            epoch_seed(config.data.seed, epoch),
            &mut stats,
            &bar,
        )?;
        all.push((Split::Train, epoch, samples));
    }
    bar.set_message("validation");
    let samples = sample_epoch(
        &pool,
        &rules,
        &spec,
        &validation,
        epoch_seed(config.data.seed + 1, 0),
        &mut stats,
        &bar,
    )?;
    all.push((Split::Validation, 0, samples));
    bar.finish_and_clear();

    let mut files = Vec::new();
    for (split, epoch, samples) in &all {
        let name = samples_file(*split, *epoch);
        let bytes = samples::encode(&meta(*split, *epoch), samples);
        write_atomically(&out_dir.join(&name), |tmp| Ok(std::fs::write(tmp, &bytes)?))?;
        files.push(json!({"file": name, "split": format!("{split:?}").to_lowercase(), "epoch": epoch, "records": samples.len()}));
    }
    let table = samples_table::batch(&all, &codes.code)?;
    crate::parquet_io::write_batch(&out_dir.join(layout::SAMPLES_TABLE), &table)?;

    let manifest = json!({
        "format_version": naics_common::format::VERSION,
        "experiment": config.experiment,
        "model": config.model.name,
        "tokenizer_sha256": hex(&tokenizer_sha),
        "config_hash": hex(&loaded.hash()),
        "seed": config.data.seed,
        "k_negatives": cur.k_negatives,
        "epochs": cur.sampled_epochs,
        "pairs": {"train": train.len(), "validation": validation.len()},
        "anchors": {"train": split::anchors(&train), "validation": split::anchors(&validation)},
        "files": files,
        "tokens": {"file": TOKENS_FILE, "codes": texts[0].len(), "max_length": config.model.max_length, "rebuilt": tokens_rebuilt},
        "buckets": (1..=8).map(|b| json!({"hardness": b, "targeted": stats.targeted[b], "sampled": stats.sampled[b]})).collect::<Vec<_>>(),
        "shortages_borrowed": stats.borrowed,
        "filled_from_any_bucket": stats.filled,
    });
    write_json(&out_dir.join(MANIFEST_FILE), &manifest)?;
    let yaml = loaded.to_yaml();
    write_atomically(&out_dir.join("config.yaml"), |tmp| Ok(std::fs::write(tmp, &yaml)?))?;
    Ok(ShardSummary {
        out_dir,
        train_pairs: train.len(),
        validation_pairs: validation.len(),
        epochs: cur.sampled_epochs,
        tokens_rebuilt,
        stats,
    })
}

/// A seed per epoch, so that every epoch is a fresh, reproducible shuffle and draw.
fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    seed.wrapping_mul(0x9E37_79B9_7F4A_7C15).wrapping_add(epoch as u64)
}

fn sample_epoch(
    pool: &NegativePool,
    rules: &HardnessRules,
    spec: &BucketSpec,
    pairs: &[(u32, u32, f64)],
    seed: u64,
    stats: &mut DrawStats,
    bar: &ProgressBar,
) -> Result<Vec<Sample>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order = pairs.to_vec();
    order.shuffle(&mut rng);
    let mut out = Vec::with_capacity(order.len());
    for (i, pair) in order.into_iter().enumerate() {
        out.push(sampling::draw(pool, rules, spec, pair, &mut rng, stats)?);
        if i % 4096 == 0 {
            bar.inc(4096.min(pairs.len() - i) as u64);
        }
    }
    Ok(out)
}

async fn open_tables(data: &DataDir) -> Result<SessionContext> {
    for name in ["anchor_groups", "exclusions", "hardness_rules"] {
        if !data.table(name).exists() {
            bail!(
                "{} not found: run `naics-pipeline ingest && naics-pipeline build` first",
                data.table(name).display()
            );
        }
    }
    session::open(
        data,
        Path::new(layout::OUTPUTS_DIR),
        &session::Engine::DataFusion,
        session::DEFAULT_MEMORY_LIMIT,
    )
    .await
}

async fn query(ctx: &SessionContext, sql: &str) -> Result<Vec<arrow::array::RecordBatch>> {
    Ok(ctx.sql(sql).await?.collect().await?)
}

/// A text column as plain Utf8 (DataFusion reads Parquet strings as Utf8View).
fn strings(batch: &arrow::array::RecordBatch, i: usize) -> Result<StringArray> {
    strings_of(batch.column(i))
}

/// Text values as plain Utf8, whichever string type they come in.
fn strings_of(values: &arrow::array::ArrayRef) -> Result<StringArray> {
    let utf8 = arrow::compute::cast(values, &arrow::datatypes::DataType::Utf8)?;
    Ok(utf8
        .as_any()
        .downcast_ref::<StringArray>()
        .context("a text column")?
        .clone())
}

fn column<T: 'static>(batch: &arrow::array::RecordBatch, i: usize) -> Result<&T> {
    batch
        .column(i)
        .as_any()
        .downcast_ref::<T>()
        .with_context(|| format!("unexpected type of column {i}"))
}

/// The four channels' texts of every code. The examples channel joins with "; " the entries
/// training may read (`share::Validation`: less the validation entries and the cross-references
/// that repeat one): the coder fits its fusion on those as on unseen text, so the code's point
/// may not have read them (it had, and the fusion leaned on the points).
async fn code_texts(ctx: &SessionContext, validation_share: f64) -> Result<tokenize::CodeTexts> {
    let mut texts: tokenize::CodeTexts = Default::default();
    let text = |col: &StringArray, r: usize| {
        if col.is_null(r) {
            String::new()
        } else {
            col.value(r).to_string()
        }
    };
    // (code, entries, how many of them are cross-references) of every code: the validation
    // share needs them all.
    let mut entries: Vec<(String, Vec<String>, usize)> = Vec::new();
    for batch in query(ctx, sql_files::CODE_TEXTS).await? {
        for (c, channel) in texts.iter_mut().take(3).enumerate() {
            let col = strings(&batch, c + 1)?;
            channel.extend((0..col.len()).map(|r| text(&col, r)));
        }
        let examples = column::<arrow::array::ListArray>(&batch, 4)?;
        let (codes, cited) = (strings(&batch, 5)?, column::<Int32Array>(&batch, 6)?);
        for r in 0..batch.num_rows() {
            let list = strings_of(&examples.value(r))?;
            let list: Vec<String> = (0..list.len()).map(|i| list.value(i).to_string()).collect();
            entries.push((text(&codes, r), list, cited.value(r).max(0) as usize));
        }
    }
    let validation = share::Validation::new(
        validation_share,
        entries
            .iter()
            .map(|(code, list, cited)| (code.as_str(), list.as_slice(), *cited)),
    );
    texts[3] = entries
        .iter()
        .map(|(code, list, cited)| {
            let kept: Vec<&str> = validation.training(code, list, *cited).map(String::as_str).collect();
            kept.join("; ")
        })
        .collect();
    Ok(texts)
}

/// The stage's pairs, anchor by anchor: the cells the SQL selects, less those above the stage's
/// depth relative to the leaves, listed from the tree, each anchor's positives in index order
/// and cut to `max_positives`.
async fn curriculum_pairs(
    ctx: &SessionContext,
    loaded: &Loaded,
    tree: &Tree,
    mut limit: split::PositiveLimit,
) -> Result<Vec<split::Pair>> {
    let cur = &loaded.config.curriculum;
    let sql = sql_files::CURRICULUM_PAIRS.replace("{{filters}}", &curriculum::sql_filters(cur));
    let min_depth = curriculum::min_positive_depth(cur, tree);
    let mut selected: Vec<(u32, u8, u8, f64)> = Vec::new();
    for batch in query(ctx, &sql).await? {
        let (a, u) = (column::<Int32Array>(&batch, 0)?, column::<Int32Array>(&batch, 1)?);
        let (d, dist) = (column::<Int32Array>(&batch, 2)?, column::<Float64Array>(&batch, 3)?);
        selected.extend(
            (0..batch.num_rows())
                .map(|r| (a.value(r) as u32, u.value(r) as u8, d.value(r) as u8, dist.value(r)))
                .filter(|c| curriculum::positive_depth(tree, c.0, c.1, c.2) >= min_depth),
        );
    }
    selected.sort_unstable_by_key(|c| (c.0, c.1, c.2));
    selected.dedup_by_key(|c| (c.0, c.1, c.2));
    let mut pairs = Vec::new();
    for anchor_cells in selected.chunk_by(|x, y| x.0 == y.0) {
        let anchor = anchor_cells[0].0;
        let chosen: Vec<(groups::Cell, f64)> = groups::cells(tree, anchor)
            .into_iter()
            .filter_map(|cell| {
                let found = anchor_cells.iter().find(|c| Some(c.1) == cell.up && c.2 == cell.down)?;
                Some((cell, found.3))
            })
            .collect();
        let total = chosen.iter().map(|(c, _)| c.len()).sum();
        match limit.sample_by_index(total) {
            Some(indices) => {
                let mut list: Vec<split::Pair> = indices
                    .into_iter()
                    .map(|i| nth_pair(tree, anchor, &chosen, i))
                    .collect();
                list.sort_unstable_by_key(|p| p.1);
                pairs.extend(list);
            }
            None => {
                let mut list: Vec<split::Pair> = chosen
                    .iter()
                    .flat_map(|(c, d)| c.codes(tree).map(move |p| (anchor, p, *d)))
                    .collect();
                list.sort_unstable_by_key(|p| p.1);
                pairs.extend(limit.apply(list));
            }
        }
    }
    Ok(pairs)
}

/// The `i`-th (anchor, positive) pair of `cells` read end to end.
fn nth_pair(tree: &Tree, anchor: u32, cells: &[(groups::Cell, f64)], mut i: usize) -> split::Pair {
    for (cell, distance) in cells {
        for span in &cell.spans {
            if i < span.len() {
                return (anchor, tree.code_at(span, i as u32), *distance);
            }
            i -= span.len();
        }
    }
    unreachable!("index within the cells' codes")
}

async fn hardness_rules(ctx: &SessionContext) -> Result<HardnessRules> {
    let mut rows = Vec::new();
    let sql = "SELECT positive_distance, negative_distance, excluded, hardness FROM hardness_rules";
    for batch in query(ctx, sql).await? {
        let (p, n) = (column::<Float64Array>(&batch, 0)?, column::<Float64Array>(&batch, 1)?);
        let (e, h) = (column::<BooleanArray>(&batch, 2)?, column::<Int32Array>(&batch, 3)?);
        rows.extend((0..batch.num_rows()).map(|r| (p.value(r), n.value(r), e.value(r), h.value(r) as u8)));
    }
    Ok(HardnessRules::new(rows))
}
