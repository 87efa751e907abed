//! `--engine ballista`: every build stage, the `triplets` view and the materialized triplets
//! the same row for row as on DataFusion, in Ballista's standalone mode and on a loopback
//! cluster of one scheduler and two executor processes; a clear error when no scheduler
//! answers. Without the `ballista` feature: a clear error naming the feature.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};

fn pipeline(data: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_naics-pipeline"))
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(not(feature = "ballista"))]
#[test]
fn ballista_engine_names_the_feature_it_needs() {
    let dir = tempfile::tempdir().unwrap();
    let out = pipeline(dir.path(), &["--engine", "ballista", "sql", "SELECT 1"]);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("built without Ballista") && err.contains("--features naics-pipeline/ballista"),
        "{err}"
    );
}

#[cfg(feature = "ballista")]
mod on_ballista {
    use super::*;
    use common::{fixtures, rows};
    use naics_pipeline::build::{self, ALL_PAIRS_MAX_CODES};
    use naics_pipeline::ingest::{self, IngestPaths};
    use naics_pipeline::session::{self, DEFAULT_MEMORY_LIMIT, DataDir, Engine};
    use naics_pipeline::sql_files::STAGES;
    use std::process::Child;
    use std::time::{Duration, Instant};

    /// A port nothing listens on (bound, then released).
    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// The mini fixture ingested into a fresh folder (not built).
    fn ingested() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        ingest::run(&IngestPaths::in_folder(&fixtures().join("mini"), dir.path()), 0.5).unwrap();
        dir
    }

    fn copy_ingested(from: &Path) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for file in ["naics_codes.parquet", "naics_index_holdout.parquet"] {
            std::fs::copy(from.join(file), dir.path().join(file)).unwrap();
        }
        dir
    }

    /// Every table of a built folder, each as its rows sorted, read on plain DataFusion.
    async fn tables(dir: &Path) -> Vec<(String, Vec<Vec<String>>)> {
        let ctx = common::open(dir, &dir.join("outputs")).await;
        let mut out = Vec::new();
        for name in STAGES
            .iter()
            .map(|s| s.name)
            .chain(["triplets", "triplets_materialized"])
        {
            let mut got = rows(&ctx, &format!("SELECT * FROM {name}")).await;
            got.sort();
            out.push((name.to_string(), got));
        }
        out
    }

    fn assert_same(a: &[(String, Vec<Vec<String>>)], b: &[(String, Vec<Vec<String>>)]) {
        assert_eq!(a.len(), b.len());
        for ((name, rows_a), (_, rows_b)) in a.iter().zip(b) {
            assert!(!rows_a.is_empty(), "{name} is empty");
            assert_eq!(rows_a.len(), rows_b.len(), "{name}: rows");
            assert!(rows_a == rows_b, "{name}: the same rows on both engines");
        }
    }

    /// A DataFusion build of the mini fixture, triplets materialized.
    async fn datafusion_build() -> tempfile::TempDir {
        let dir = ingested();
        let data = DataDir(dir.path().to_path_buf());
        build::run(
            &data,
            &Engine::DataFusion,
            true,
            ALL_PAIRS_MAX_CODES,
            DEFAULT_MEMORY_LIMIT,
        )
        .await
        .unwrap();
        dir
    }

    const HARDNESS: &str = "SELECT hardness, count(*) AS n, sum(anchor_idx) AS s FROM triplets GROUP BY 1 ORDER BY 1";

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn standalone_gives_the_tables_of_datafusion() {
        let reference = datafusion_build().await;
        let dir = copy_ingested(reference.path());
        let data = DataDir(dir.path().to_path_buf());
        build::run(
            &data,
            &Engine::BallistaStandalone,
            true,
            ALL_PAIRS_MAX_CODES,
            DEFAULT_MEMORY_LIMIT,
        )
        .await
        .unwrap();
        assert_same(&tables(reference.path()).await, &tables(dir.path()).await);

        // The `triplets` view queried through Ballista: its plan (joins over `positives`,
        // `distances`, `exclusions`) serialized to the executor, the result fetched back.
        let ballista = session::open(
            &data,
            &dir.path().join("o"),
            &Engine::BallistaStandalone,
            DEFAULT_MEMORY_LIMIT,
        )
        .await
        .unwrap();
        let local = common::open(dir.path(), &dir.path().join("o")).await;
        let on_ballista = rows(&ballista, HARDNESS).await;
        assert_eq!(on_ballista.len(), 8, "{on_ballista:?}");
        assert_eq!(on_ballista, rows(&local, HARDNESS).await);
    }

    /// Child processes killed when the test ends, however it ends.
    struct Processes(Vec<Child>);

    impl Drop for Processes {
        fn drop(&mut self) {
            for child in &mut self.0 {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    fn spawn(args: &[String], log: &Path) -> Child {
        Command::new(env!("CARGO_BIN_EXE_naics-pipeline"))
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(log).unwrap())
            .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
            .spawn()
            .unwrap()
    }

    fn wait_for_port(port: u16, deadline: Instant) {
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nothing listens on {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Runs the pipeline, killed past `limit`.
    fn pipeline_within(data: &Path, args: &[&str], limit: Duration) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_naics-pipeline"))
            .arg("--data")
            .arg(data)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while child.try_wait().unwrap().is_none() {
            if started.elapsed() > limit {
                child.kill().unwrap();
                panic!("naics-pipeline {args:?} ran past {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        child.wait_with_output().unwrap()
    }

    /// docs/cluster.md's recipe on loopback: a scheduler and two executors, each its own
    /// process, and the pipeline pointed at the scheduler.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn loopback_cluster_gives_the_tables_of_datafusion() {
        let reference = datafusion_build().await;
        let dir = copy_ingested(reference.path());
        let logs = tempfile::tempdir().unwrap();
        let scheduler_port = free_port();
        let scheduler = format!("df://127.0.0.1:{scheduler_port}");
        let mut processes = Processes(vec![spawn(
            &["cluster", "scheduler", "--bind-port", &scheduler_port.to_string()].map(String::from),
            &logs.path().join("scheduler.log"),
        )]);
        let deadline = Instant::now() + Duration::from_secs(60);
        wait_for_port(scheduler_port, deadline);
        let mut work_dirs = Vec::new();
        for i in 0..2 {
            let (flight, grpc) = (free_port(), free_port());
            let work = logs.path().join(format!("executor{i}"));
            std::fs::create_dir(&work).unwrap();
            let args = [
                "--scheduler",
                &scheduler,
                "cluster",
                "executor",
                "--bind-port",
                &flight.to_string(),
                "--bind-grpc-port",
                &grpc.to_string(),
                "--vcores",
                "1",
                "--work-dir",
                work.to_str().unwrap(),
            ]
            .map(String::from);
            processes
                .0
                .push(spawn(&args, &logs.path().join(format!("executor{i}.log"))));
            wait_for_port(flight, deadline);
            work_dirs.push(work);
        }

        let limit = Duration::from_secs(300);
        let on_cluster = ["--engine", "ballista", "--scheduler", &scheduler];
        let build = pipeline_within(
            dir.path(),
            &[&on_cluster[..], &["build", "--materialize-triplets"]].concat(),
            limit,
        );
        assert!(build.status.success(), "{}", text(&build.stderr));
        assert_same(&tables(reference.path()).await, &tables(dir.path()).await);

        let query = ["sql", HARDNESS, "--format", "csv"];
        let distributed = pipeline_within(dir.path(), &[&on_cluster[..], &query].concat(), limit);
        assert!(distributed.status.success(), "{}", text(&distributed.stderr));
        let local = pipeline_within(dir.path(), &query, limit);
        assert_eq!(text(&distributed.stdout), text(&local.stdout));
        assert_eq!(text(&local.stdout).lines().count(), 9, "{}", text(&local.stdout));

        // The executors ran the stages: their shuffle files are in their work folders.
        let files = |d: &Path| std::fs::read_dir(d).unwrap().count();
        let used: Vec<usize> = work_dirs.iter().map(|d| files(d)).collect();
        assert!(
            used.iter().sum::<usize>() > 0,
            "no executor wrote shuffle files: {used:?}"
        );
        for child in &mut processes.0 {
            assert!(child.try_wait().unwrap().is_none(), "a cluster process exited early");
        }
    }

    #[test]
    fn unreachable_scheduler_says_how_to_start_one() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("df://127.0.0.1:{}", free_port());
        let out = pipeline(
            dir.path(),
            &["--engine", "ballista", "--scheduler", &url, "sql", "SELECT 1"],
        );
        assert!(!out.status.success());
        let err = text(&out.stderr);
        assert!(
            err.contains(&format!("no Ballista scheduler at {url}"))
                && err.contains("naics-pipeline cluster scheduler")
                && err.contains("docs/cluster.md"),
            "{err}"
        );
        let out = pipeline(
            dir.path(),
            &[
                "--engine",
                "ballista",
                "--scheduler",
                "localhost:50050",
                "sql",
                "SELECT 1",
            ],
        );
        assert!(
            text(&out.stderr).contains("expected df://HOST:PORT"),
            "{}",
            text(&out.stderr)
        );
        let out = pipeline(dir.path(), &["--scheduler", &url, "sql", "SELECT 1"]);
        assert!(
            text(&out.stderr).contains("--scheduler needs --engine ballista"),
            "{}",
            text(&out.stderr)
        );
    }
}
