//! Encoder throughput on CPU: MiniLM, batch 32 x 128 tokens, forward only and forward + backward
//! through per-channel LoRA adapters. Run with `bench/encoder.sh` (the tests' build profile).

use candle_core::backprop::GradStore;
use candle_core::{DType, Device};
use candle_nn::VarMap;
use naics_common::config::{LoraConfig, Pooling};
use naics_trainer::model::kernels;
use naics_trainer::model::lora::Pass;
use naics_trainer::model::{Encoder, frozen, pool};
use naics_trainer::timing;
use std::time::Instant;

fn main() -> anyhow::Result<()> {
    naics_trainer::setup::cpu::setup();
    naics_trainer::setup::cpu::on_pool(bench)
}

fn bench() -> anyhow::Result<()> {
    let folder = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "data/models/all-MiniLM-L6-v2".into());
    let (batch, len) = (32usize, 128usize);
    let rounds: usize = std::env::var("NAICS_BENCH_ROUNDS").map_or(Ok(5), |r| r.parse())?;
    let mut encoder = Encoder::load(folder.as_ref(), 512, &Device::Cpu, DType::F32)?;
    // Real words, 128 tokens a row, varied across rows.
    let ids: Vec<Vec<u32>> = (0..batch)
        .map(|r| {
            let mut row = vec![101u32];
            row.extend((0..len - 2).map(|i| 2000 + ((r * 131 + i * 17) % 20000) as u32));
            row.push(102);
            row
        })
        .collect();
    let tokens = (batch * len * rounds) as f64;

    encoder.embed_ids(&ids, Pooling::Cls, Pass::default())?; // warm-up
    let (start, products) = (Instant::now(), timing::counters());
    for _ in 0..rounds {
        encoder.embed_ids(&ids, Pooling::Cls, Pass::default())?;
    }
    let (seconds, products) = (start.elapsed().as_secs_f64(), timing::counters() - products);
    let forward = tokens / seconds;

    let varmap = VarMap::new();
    let lora = LoraConfig {
        r: 8,
        alpha: 16.0,
        dropout: 0.1,
        targets: vec!["query".into(), "value".into()],
    };
    encoder.add_lora(&varmap, &naics_trainer::model::lora::numbered(4), &lora)?;
    let pass = Pass {
        channel: Some(1),
        train: true,
    };
    // The gradient of sum(vectors * seed), for a fixed seed: one forward and one backward pass.
    let seed = candle_core::Tensor::randn(0f32, 1., (batch, 384), &Device::Cpu)?;
    let step = || -> anyhow::Result<()> {
        let mut grads = GradStore::default();
        let cls = |hidden: &candle_core::Tensor, mask: &candle_core::Tensor| pool(hidden, mask, Pooling::Cls);
        encoder
            .transformer
            .backprop(&ids, 0, pass, false, cls, &seed, &mut grads)?;
        let data = varmap.data().lock().expect("varmap lock");
        // Exactly channel 1's adapters got a gradient.
        anyhow::ensure!(
            data.iter()
                .all(|(name, v)| grads.get(v).is_some() == name.contains(".1."))
        );
        Ok(())
    };
    // Warm-up: the allocator's footprint grows over the first rounds (fresh pages are cleared by
    // the kernel, slowly on this machine) before it settles; the timed rounds are the steady state.
    step()?;
    step()?;
    let start = Instant::now();
    for _ in 0..rounds {
        step()?;
    }
    let backward = tokens / start.elapsed().as_secs_f64();
    let gflops = matmul_gflops(batch * len, 384, 1536)?;
    println!(
        "MiniLM CPU, batch {batch} x {len} tokens, {rounds} rounds, {} threads, {} path",
        rayon::current_num_threads(),
        kernels::isa().name()
    );
    println!("matmul {} x 384 x 1536:      {gflops:>8.0} GFLOP/s", batch * len);
    println!("forward:                    {forward:>8.0} tokens/s");
    println!("forward + backward (LoRA):  {backward:>8.0} tokens/s");
    // The products counted here are gemm's (with `--features mkl` the linear layers are MKL's).
    println!(
        "forward in gemm's products: {:>7.1} % of the time, {:.0} GFLOP/s there",
        100.0 * products.seconds / seconds,
        products.flops as f64 / products.seconds.max(1e-9) / 1e9
    );
    Ok(())
}

/// The matrix product alone, [m, k] x [n, k]^T as the encoder's linear layers compute it: how
/// far the encoder's speed is its BLAS's.
fn matmul_gflops(m: usize, k: usize, n: usize) -> anyhow::Result<f64> {
    let a = candle_core::Tensor::randn(0f32, 1., (m, k), &Device::Cpu)?;
    let layer = candle_nn::Linear::new(
        candle_core::Tensor::randn(0f32, 1., (n, k), &Device::Cpu)?,
        Some(candle_core::Tensor::zeros(n, DType::F32, &Device::Cpu)?),
    );
    frozen::linear(&layer, &a)?; // warm-up
    let rounds = 20;
    let start = Instant::now();
    for _ in 0..rounds {
        frozen::linear(&layer, &a)?;
    }
    Ok((2 * m * k * n * rounds) as f64 / start.elapsed().as_secs_f64() / 1e9)
}
