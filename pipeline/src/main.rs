//! The `naics-pipeline` command line: a thin layer over the library's modules.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use naics_pipeline::session::{self, DataDir};
use naics_pipeline::shell::{self, print::Format};
use naics_pipeline::{build, ingest};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(
    name = "naics-pipeline",
    version,
    about = "A classification tree (NAICS 2022, ICD-10-CM or any table) -> tree relations -> training shards"
)]
struct Cli {
    /// Folder of the pipeline's tables (inputs are read from DATA/naics2022 by default).
    #[arg(long, global = true, default_value = "data")]
    data: PathBuf,
    /// Folder of the trainer's outputs, searched for embeddings to register in `sql`.
    #[arg(long, global = true, default_value = naics_common::layout::OUTPUTS_DIR)]
    outputs: PathBuf,
    /// Memory DataFusion may use before spilling to disk, in MiB.
    #[arg(long, global = true, default_value_t = session::DEFAULT_MEMORY_LIMIT >> 20)]
    memory_limit_mib: usize,
    /// Where `build` and `sql` run their SQL (ballista: the `ballista` cargo feature).
    #[arg(long, global = true, value_enum, default_value = "datafusion")]
    engine: EngineName,
    /// With `--engine ballista`: the scheduler, df://HOST:PORT (without: Ballista standalone in
    /// this process). With `cluster executor`: the scheduler to register with.
    #[arg(long, global = true)]
    scheduler: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum EngineName {
    /// DataFusion in this process.
    Datafusion,
    /// Apache DataFusion Ballista: the plans on a scheduler and executors (docs/cluster.md).
    Ballista,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum Taxonomy {
    /// NAICS 2022's Census files.
    Naics,
    /// One table: code, parent, title, [description, examples, excluded, excluded_codes].
    Generic,
    /// ICD-10-CM's tabular list (XML).
    Icd10cm,
}

#[derive(Subcommand)]
enum Command {
    /// Read a taxonomy into naics_codes.parquet and naics_index_holdout.parquet.
    Ingest {
        /// Which adapter reads the input.
        #[arg(long, value_enum, default_value = "naics")]
        taxonomy: Taxonomy,
        /// naics: the folder holding the four Census files (default DATA/naics2022); generic: the
        /// taxonomy table (CSV or Parquet); icd10cm: the tabular XML (default
        /// DATA/icd10cm-tabular-April-1-2026.xml; scripts/fetch_icd10cm.sh puts it in data/icd10cm).
        #[arg(long)]
        input: Option<PathBuf>,
        /// generic: free-text entries (code, text), CSV or Parquet; a share is held out.
        #[arg(long)]
        entries: Option<PathBuf>,
        #[arg(long)]
        codes: Option<PathBuf>,
        #[arg(long)]
        descriptions: Option<PathBuf>,
        #[arg(long)]
        index: Option<PathBuf>,
        /// The per-code CSV or the official one-sentence-per-row xlsx.
        #[arg(long)]
        cross_references: Option<PathBuf>,
        /// Fraction of index entries held out of training for the retrieval evaluation.
        #[arg(long, default_value_t = 0.1)]
        holdout_fraction: f64,
    },
    /// Compute the tree relations (sql/build/*.sql) into DATA/tables/.
    Build {
        /// Also write every triplet as Parquet, partitioned by hardness (about 10^9 rows).
        #[arg(long)]
        materialize_triplets: bool,
        /// Store `distances` and `positives` (a row per pair of codes) for trees up to this many
        /// codes; larger trees get them as views, for queries that filter by code.
        #[arg(long, default_value_t = build::ALL_PAIRS_MAX_CODES)]
        all_pairs_max_codes: usize,
    },
    /// Sample the curriculum's pairs and negatives and write the trainer's shards.
    BuildShards {
        /// Curriculum stage (conf/curriculum/NAME.yaml); also names the experiment. `all`: every
        /// stage of conf/curriculum/, in name order.
        #[arg(short = 'c', long)]
        curriculum: Option<String>,
        /// Folder holding config.yaml and its groups.
        #[arg(long, default_value = "conf")]
        conf: PathBuf,
        /// Print the resolved configuration and stop.
        #[arg(long)]
        print_config: bool,
        /// `key=value` overrides (`curriculum.k_negatives=8`) and group choices (`model=mpnet`).
        overrides: Vec<String>,
    },
    /// Write a random taxonomy as a generic table (Parquet), for `ingest --taxonomy generic`.
    Synth {
        #[arg(long)]
        codes: usize,
        /// The deepest level below the roots.
        #[arg(long, default_value_t = 5)]
        depth: u8,
        #[arg(long, default_value_t = 0)]
        seed: u64,
        /// Default: DATA/synthetic.parquet.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Query every table with SQL: one query, a file (-f), or an interactive shell.
    Sql {
        query: Option<String>,
        #[arg(short, long)]
        file: Option<PathBuf>,
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Write the (last) result to this file instead of standard output.
        #[arg(short, long)]
        output: Option<PathBuf>,
    },
    /// Run a Ballista scheduler or executor (docs/cluster.md).
    #[cfg(feature = "ballista")]
    #[command(subcommand)]
    Cluster(Role),
}

#[cfg(feature = "ballista")]
#[derive(Subcommand)]
enum Role {
    /// The scheduler the pipeline's `--scheduler df://HOST:PORT` points at.
    Scheduler {
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        #[arg(long, default_value_t = naics_pipeline::cluster::DEFAULT_SCHEDULER_PORT)]
        bind_port: u16,
    },
    /// An executor: runs the scheduler's tasks (`--scheduler`, default df://127.0.0.1:50050),
    /// serves their outputs over Arrow Flight.
    Executor {
        #[arg(long, default_value = "127.0.0.1")]
        bind_host: String,
        /// Arrow Flight (shuffle files and results); a second executor on one machine needs
        /// other ports.
        #[arg(long, default_value_t = 50051)]
        bind_port: u16,
        /// The scheduler's calls.
        #[arg(long, default_value_t = 50052)]
        bind_grpc_port: u16,
        /// Tasks at once (default: the cores).
        #[arg(long)]
        vcores: Option<usize>,
        /// Shuffle files (default: a temporary folder).
        #[arg(long)]
        work_dir: Option<PathBuf>,
    },
}

#[tokio::main]
async fn main() {
    // Ballista reports through `log`: its warnings by default, more with RUST_LOG=info.
    #[cfg(feature = "ballista")]
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    if let Err(err) = run(Cli::parse()).await {
        eprintln!("error: {err:#}");
        std::process::exit(1);
    }
}

async fn run(cli: Cli) -> Result<()> {
    let data = DataDir(cli.data.clone());
    let memory_limit = cli.memory_limit_mib << 20;
    let engine = || session::Engine::from_args(cli.engine == EngineName::Ballista, cli.scheduler.clone());
    match cli.command {
        Command::Ingest {
            taxonomy,
            input,
            entries,
            codes,
            descriptions,
            index,
            cross_references,
            holdout_fraction,
        } => {
            let started = Instant::now();
            let s = match taxonomy {
                Taxonomy::Naics => {
                    let mut paths =
                        ingest::IngestPaths::in_folder(&input.unwrap_or_else(|| cli.data.join("naics2022")), &cli.data);
                    paths.codes = codes.unwrap_or(paths.codes);
                    paths.descriptions = descriptions.unwrap_or(paths.descriptions);
                    paths.index = index.unwrap_or(paths.index);
                    paths.cross_references = cross_references.unwrap_or(paths.cross_references);
                    ingest::run(&paths, holdout_fraction)?
                }
                Taxonomy::Generic => {
                    let input = input.context("--taxonomy generic needs --input TABLE (CSV or Parquet)")?;
                    ingest::run_generic(&input, entries.as_deref(), &cli.data, holdout_fraction)?
                }
                Taxonomy::Icd10cm => {
                    let input = input.unwrap_or_else(|| cli.data.join(ingest::icd10cm::DEFAULT_FILE));
                    ingest::run_icd10cm(&input, &cli.data, holdout_fraction)?
                }
            };
            let took = started.elapsed().as_secs_f64();
            match taxonomy {
                Taxonomy::Naics => println!(
                    "ingest: {} codes ({} descriptions inherited from a child, {} stale description rows skipped), {} index entries \
                     ({} held out, {} pointer rows skipped), {} cross-reference rows, {} exclusion pairs over {} codes, in {took:.2}s",
                    s.codes,
                    s.inherited_descriptions,
                    s.skipped_description_rows,
                    s.index_entries,
                    s.held_out,
                    s.skipped_index_rows,
                    s.cross_reference_rows,
                    s.exclusion_pairs,
                    s.codes_with_exclusions,
                ),
                _ => println!(
                    "ingest: {} codes, {} entries ({} held out), {} cross-reference entries, {} exclusion pairs over {} codes, \
                     in {took:.2}s",
                    s.codes,
                    s.index_entries,
                    s.held_out,
                    s.cross_reference_rows,
                    s.exclusion_pairs,
                    s.codes_with_exclusions,
                ),
            }
            println!("wrote {} and {}", data.codes().display(), data.holdout().display());
        }
        Command::Build {
            materialize_triplets,
            all_pairs_max_codes,
        } => {
            let summary = build::run(
                &data,
                &engine()?,
                materialize_triplets,
                all_pairs_max_codes,
                memory_limit,
            )
            .await?;
            for (table, rows, took) in summary {
                match rows {
                    Some(rows) => println!("{table:>16}: {rows:>13} rows in {:>6.2}s", took.as_secs_f64()),
                    None => println!("{table:>16}: a view (past --all-pairs-max-codes)"),
                }
            }
            println!("wrote {}", data.tables().display());
        }
        Command::BuildShards {
            curriculum,
            conf,
            print_config,
            overrides,
        } => {
            let stages = match curriculum {
                Some(c) => naics_common::config::selected_stages(&conf, &c)?
                    .into_iter()
                    .map(Some)
                    .collect(),
                None => vec![None],
            };
            for stage in stages {
                let loaded = naics_common::config::load(&conf, stage.as_deref(), &overrides)?;
                if print_config {
                    print!("{}", loaded.to_yaml());
                    continue;
                }
                let started = Instant::now();
                let s = naics_pipeline::shards::run(&loaded).await?;
                let sampled: u64 = s.stats.sampled.iter().sum();
                println!(
                    "build-shards: {} train pairs x {} epoch(s), {} validation pairs, {} negatives sampled \
                     ({} borrowed from easier buckets, {} filled from any), token cache {}, in {:.2}s",
                    s.train_pairs,
                    s.epochs,
                    s.validation_pairs,
                    sampled,
                    s.stats.borrowed,
                    s.stats.filled,
                    if s.tokens_rebuilt { "rebuilt" } else { "unchanged" },
                    started.elapsed().as_secs_f64()
                );
                println!("wrote {}", s.out_dir.display());
            }
        }
        Command::Synth {
            codes,
            depth,
            seed,
            output,
        } => {
            let out = output.unwrap_or_else(|| cli.data.join("synthetic.parquet"));
            let per_depth = naics_pipeline::synth::write(&out, codes, depth, seed)?;
            println!("synth: {codes} codes, per depth {per_depth:?}; wrote {}", out.display());
        }
        Command::Sql {
            query,
            file,
            format,
            output,
        } => {
            let ctx = session::open(&data, &cli.outputs, &engine()?, memory_limit).await?;
            let text = match (query, file) {
                (Some(_), Some(_)) => anyhow::bail!("give either a query or -f FILE, not both"),
                (Some(q), None) => Some(q),
                (None, Some(f)) => {
                    Some(std::fs::read_to_string(&f).map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?)
                }
                (None, None) => None,
            };
            match text {
                Some(sql) => shell::run_batch(&ctx, &sql, format, output.as_deref()).await?,
                None => shell::interactive(&ctx, format, cli.data.join(".sql_history")).await?,
            }
        }
        #[cfg(feature = "ballista")]
        Command::Cluster(role) => {
            use naics_pipeline::cluster;
            match role {
                Role::Scheduler { bind_host, bind_port } => cluster::scheduler(&bind_host, bind_port).await?,
                Role::Executor {
                    bind_host,
                    bind_port,
                    bind_grpc_port,
                    vcores,
                    work_dir,
                } => {
                    cluster::executor(cluster::ExecutorOptions {
                        scheduler: cli.scheduler.clone().unwrap_or_else(|| {
                            format!("df://127.0.0.1:{}", naics_pipeline::cluster::DEFAULT_SCHEDULER_PORT)
                        }),
                        bind_host,
                        flight_port: bind_port,
                        grpc_port: bind_grpc_port,
                        vcores,
                        work_dir,
                        memory_limit,
                    })
                    .await?
                }
            }
        }
    }
    Ok(())
}
