//! A Ballista cluster from the binary already built: `naics-pipeline cluster scheduler` and
//! `naics-pipeline cluster executor` make the library calls that the crates' own binaries
//! (`ballista-scheduler`, `ballista-executor`, version 55) make, so a cluster needs no second
//! build of DataFusion; either kind of process serves the other. Also the check that a
//! scheduler answers before a session is pointed at it.

use anyhow::{Context, Result, anyhow};
use ballista_executor::executor_process::{ExecutorProcessConfig, start_executor_process};
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::start_server;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The port of `ballista-scheduler` (and `naics-pipeline cluster scheduler`) by default.
pub const DEFAULT_SCHEDULER_PORT: u16 = 50050;

/// `(host, port)` of `df://HOST[:PORT]`.
pub fn parse_scheduler(url: &str) -> Result<(String, u16)> {
    let expected = || anyhow!("scheduler `{url}`: expected df://HOST:PORT, e.g. df://localhost:50050");
    let rest = url.strip_prefix("df://").ok_or_else(expected)?;
    match rest.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() => Ok((host.to_string(), port.parse().map_err(|_| expected())?)),
        Some(_) => Err(expected()),
        None if !rest.is_empty() => Ok((rest.to_string(), DEFAULT_SCHEDULER_PORT)),
        None => Err(expected()),
    }
}

/// Fails with what to do next unless something accepts connections at the scheduler's address
/// (Ballista's client would only fail at the first query, with a gRPC transport error).
pub async fn check_scheduler(url: &str) -> Result<()> {
    let (host, port) = parse_scheduler(url)?;
    let connect = tokio::net::TcpStream::connect((host.as_str(), port));
    let reason = match tokio::time::timeout(Duration::from_secs(5), connect).await {
        Ok(Ok(_)) => return Ok(()),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "no answer in 5 s".to_string(),
    };
    Err(anyhow!(
        "no Ballista scheduler at {url} ({reason}). Start one there with \
         `naics-pipeline cluster scheduler --bind-port {port}` (or the crate's `ballista-scheduler \
         --bind-port {port}`) and at least one executor (docs/cluster.md), or leave out \
         --scheduler to run Ballista standalone in this process"
    ))
}

/// Runs a scheduler until the process is stopped.
pub async fn scheduler(bind_host: &str, port: u16) -> Result<()> {
    let config = SchedulerConfig {
        bind_host: bind_host.to_string(),
        bind_port: port,
        external_host: bind_host.to_string(),
        ..Default::default()
    };
    let address = format!("{bind_host}:{port}")
        .parse()
        .with_context(|| format!("--bind-host {bind_host}: expected an IP address"))?;
    let cluster = BallistaCluster::new_from_config(&config).await?;
    println!("Ballista scheduler listening on df://{bind_host}:{port}");
    start_server(cluster, address, Arc::new(config)).await?;
    Ok(())
}

/// What one executor process serves and where its scheduler is.
pub struct ExecutorOptions {
    pub scheduler: String,
    pub bind_host: String,
    /// Arrow Flight: the shuffle files and results other processes fetch.
    pub flight_port: u16,
    /// The scheduler's calls (tasks pushed, cancellations).
    pub grpc_port: u16,
    /// Tasks run at once; default: the cores.
    pub vcores: Option<usize>,
    /// Shuffle files; default: a temporary folder.
    pub work_dir: Option<PathBuf>,
    pub memory_limit: usize,
}

/// Registers with the scheduler (retrying for 30 s) and runs tasks until the process is stopped.
pub async fn executor(options: ExecutorOptions) -> Result<()> {
    let (scheduler_host, scheduler_port) = parse_scheduler(&options.scheduler)?;
    let defaults = ExecutorProcessConfig::default();
    let config = ExecutorProcessConfig {
        bind_host: options.bind_host.clone(),
        external_host: Some(options.bind_host.clone()),
        port: options.flight_port,
        grpc_port: options.grpc_port,
        scheduler_host,
        scheduler_port,
        scheduler_connect_timeout_seconds: 30,
        vcores: options.vcores.unwrap_or(defaults.vcores),
        work_dir: options.work_dir.map(|d| d.to_string_lossy().into_owned()),
        memory_pool_size: Some(options.memory_limit as u64),
        ..defaults
    };
    println!(
        "Ballista executor on {}:{} (flight) and :{} (grpc), scheduler {}",
        options.bind_host, options.flight_port, options.grpc_port, options.scheduler
    );
    start_executor_process(Arc::new(config)).await?;
    Ok(())
}
