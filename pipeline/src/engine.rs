//! Where `build` and `sql` run their SQL: DataFusion in this process (the default), or Apache
//! DataFusion Ballista (`--engine ballista`, built with the `ballista` cargo feature), which
//! serializes the same plans to a scheduler that hands their stages to executors. Only the
//! session differs: tables are registered, queried and written the same way on every engine.

use anyhow::{Result, bail};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use std::sync::Arc;

/// Memory DataFusion may hold before it spills sorts and aggregations to disk.
pub const DEFAULT_MEMORY_LIMIT: usize = 2 << 30;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Engine {
    #[default]
    DataFusion,
    /// Ballista's standalone mode: a scheduler and an executor in this process that still
    /// exchange serialized plans and shuffle files over gRPC on loopback.
    BallistaStandalone,
    /// A running Ballista scheduler, `df://HOST:PORT`.
    BallistaCluster(String),
}

impl Engine {
    /// From the command line's `--engine` and `--scheduler`.
    pub fn from_args(ballista: bool, scheduler: Option<String>) -> Result<Engine> {
        Ok(match (ballista, scheduler) {
            (false, None) => Engine::DataFusion,
            (false, Some(_)) => bail!("--scheduler needs --engine ballista"),
            (true, None) => Engine::BallistaStandalone,
            (true, Some(url)) => Engine::BallistaCluster(url),
        })
    }

    /// A session whose spilling operators share `memory_limit` bytes (on Ballista: the
    /// standalone executor's; a cluster's executors have their own limits).
    pub async fn context(&self, memory_limit: usize) -> Result<SessionContext> {
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(memory_limit)))
            .build_arc()?;
        let config = SessionConfig::new().with_information_schema(true);
        match self {
            Engine::DataFusion => Ok(SessionContext::new_with_config_rt(config, runtime)),
            ballista => ballista_context(ballista, config, runtime).await,
        }
    }
}

#[cfg(feature = "ballista")]
async fn ballista_context(
    engine: &Engine,
    config: SessionConfig,
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext> {
    use ballista::prelude::{SessionConfigExt, SessionContextExt};
    // Ballista's settings on DataFusion's (among them: no dynamic filters, which cannot cross
    // stage boundaries), for the in-process scheduler too, which plans with this config.
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_config(config.upgrade_for_ballista())
        .with_runtime_env(runtime)
        .with_default_features()
        .build();
    Ok(match engine {
        Engine::BallistaCluster(url) => {
            crate::cluster::check_scheduler(url).await?;
            SessionContext::remote_with_state(url, state).await?
        }
        _ => SessionContext::standalone_with_state(state).await?,
    })
}

#[cfg(not(feature = "ballista"))]
async fn ballista_context(
    _: &Engine,
    _: SessionConfig,
    _: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
) -> Result<SessionContext> {
    bail!(
        "this naics-pipeline was built without Ballista: build it with \
         `cargo build --locked --bins --features naics-pipeline/ballista` (docs/cluster.md)"
    )
}
