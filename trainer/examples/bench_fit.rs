//! `lora` training-step throughput on CPU, B anchors x (2 + 16) codes from the real
//! 03_stage_hard shard: this design (each distinct code encoded once, each channel padded to its
//! longest sequence) against the original one (every occurrence re-encoded, padded to 512).
//! Run with `bench/fit.sh lora [anchors] [overrides...]` (B defaults to 8; `model=mpnet
//! experiment=bench_mpnet` measures MPNet on shards of its own tokenizer; NAICS_BENCH_STEPS sets
//! the number of steps timed, 2 by default, after one untimed warm-up step (the allocator's first
//! use of its peak footprint is the kernel clearing fresh pages); NAICS_BENCH_PADDED=0 skips the
//! padded-512 estimate, whose own graph of 8 x 512 tokens dwarfs this design's memory).

use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor};
use naics_common::config::{Pooling, load};
use naics_common::format::CHANNELS;
use naics_common::layout::{self, TOKENS_FILE};
use naics_common::samples::{Record, SamplesFile, Split};
use naics_common::tokens::TokenCache;
use naics_trainer::model::lora::Pass;
use naics_trainer::model::{Embedder, pool};
use naics_trainer::train::TrainingData;
use naics_trainer::train::loss::{batch_loss, replays, step_loss};
use naics_trainer::train::optim::AdamW;
use naics_trainer::train::replay::backward;
use std::time::Instant;

fn main() -> Result<()> {
    naics_trainer::setup::cpu::setup();
    naics_trainer::setup::cpu::on_pool(bench)
}

fn bench() -> Result<()> {
    let anchors: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(8);
    let mut overrides = vec![
        "model.encoder_mode=lora".to_string(),
        format!("data.batch_size={anchors}"),
        // The query anchors and the tree term are separate costs; this compares the code
        // encoding designs.
        "data.queries_per_step=0".to_string(),
        "loss.tree_weight=0".to_string(),
    ];
    overrides.extend(std::env::args().skip(2));
    let loaded = load("conf".as_ref(), Some("03_stage_hard"), &overrides)?;
    let config = &loaded.config;
    let model = Embedder::new(config, &Device::Cpu, DType::F32)?;
    let data = TrainingData::load(&model)?;
    let shards = layout::experiment_shards(&config.data.shards_dir, &config.experiment);
    let file = SamplesFile::open(&shards.join(layout::samples_file(Split::Train, 0)), None)?;
    let mut optimizer = AdamW::new(&model.varmap, 0.01, 1.0)?;
    let steps: usize = std::env::var("NAICS_BENCH_STEPS")
        .ok()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2);
    let mut distinct = 0;
    let mut started = Instant::now();
    let mut batches = Vec::new();
    for s in 0..=steps {
        if s == 1 {
            started = Instant::now();
            distinct = 0;
        }
        let records: Vec<Record> = (s * anchors..(s + 1) * anchors).map(|i| file.get(i)).collect();
        let codes: std::collections::BTreeSet<u32> = records.iter().flat_map(|r| r.codes()).collect();
        distinct += codes.len();
        batches.push(codes);
        let parts = vec![batch_loss(&model, &data, &records, &[], true)?];
        let (loss, ..) = step_loss(&parts, &config.loss, 0.01)?;
        optimizer.step(&backward(&model, &loss, &replays(&parts))?, 1e-4, 1.0)?;
    }
    let dynamic = started.elapsed().as_secs_f64() / steps as f64;
    println!(
        "lora mode, {}, batch {anchors} anchors x 18 codes, chunk_tokens {}, CPU {} threads",
        config.model.name,
        config.model.chunk_tokens,
        candle_core::utils::get_num_threads()
    );
    println!(
        "this design: {dynamic:>8.2} s/step ({:.3} steps/s; {:.0} distinct codes per step of {}); peak RSS so far {}",
        1.0 / dynamic,
        distinct as f64 / steps as f64,
        anchors * 18,
        peak_rss()
    );
    if std::env::var("NAICS_BENCH_PADDED").is_ok_and(|v| v == "0") {
        return Ok(());
    }

    // The original design on the same first batch: all 8 x 18 occurrences, every text padded to
    // 512 tokens. Measured on 8 rows of one channel (forward + backward through the LoRA
    // adapters), then scaled to all anchors x 18 rows x 4 channels: the cost is linear in rows.
    let encoder = model.channels.encoder();
    let tokens = TokenCache::open(&shards.join(TOKENS_FILE), None)?;
    let records: Vec<Record> = (0..8).map(|i| file.get(i)).collect();
    let rows: Vec<Vec<u32>> = records[0]
        .codes()
        .take(8)
        .map(|c| tokens.ids(1, c as usize).to_vec())
        .collect();
    let started = Instant::now();
    let pass = Pass {
        channel: Some(1),
        train: true,
    };
    let grad = Tensor::ones(
        (rows.len(), encoder.transformer.config.hidden_size),
        DType::F32,
        &Device::Cpu,
    )?;
    let cls = |hidden: &Tensor, mask: &Tensor| pool(hidden, mask, Pooling::Cls);
    encoder
        .transformer
        .backprop(&rows, 512, pass, false, cls, &grad, &mut GradStore::default())?;
    let occurrences = anchors * 18;
    let padded = started.elapsed().as_secs_f64() * (occurrences as f64 / 8.0) * CHANNELS.len() as f64;
    println!(
        "padded 512, duplicates re-encoded (extrapolated): {padded:>8.2} s/step ({:.4} steps/s)",
        1.0 / padded
    );
    println!("speed-up: {:.1}x", padded / dynamic);
    // For bench/torch_fit.py: the steps' distinct codes as token ids per channel.
    if let Ok(path) = std::env::var("NAICS_BENCH_BATCHES") {
        let steps: Vec<Vec<Vec<Vec<u32>>>> = batches
            .iter()
            .map(|codes| {
                (0..CHANNELS.len())
                    .map(|c| {
                        codes
                            .iter()
                            .map(|&code| tokens.ids(c, code as usize).to_vec())
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let json =
            serde_json::json!({"model": config.model.path, "chunk_tokens": config.model.chunk_tokens, "steps": steps});
        std::fs::write(&path, json.to_string())?;
    }
    Ok(())
}

/// The process's peak resident memory (VmHWM), where /proc tells it.
fn peak_rss() -> String {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM"))
                .map(|l| l[6..].trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}
