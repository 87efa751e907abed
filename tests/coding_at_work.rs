//! The coder's interfaces on a model trained on the mini tree: `classify` over CSV, JSON lines
//! and Parquet with bad rows, its output in the SQL session; the HTTP server on an ephemeral port,
//! every endpoint and error through a real HTTP client; the search page in headless Chromium
//! (ignored, saying why, where Debian's chromium-driver is not installed).

mod common;

use arrow::array::{Array, AsArray, BinaryArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use common::fixtures;
use naics_pipeline::session::{DEFAULT_MEMORY_LIMIT, DataDir};
use naics_trainer::classify::{self, Options, input::Format};
use naics_trainer::coder::{Coder, Policy};
use naics_trainer::embedded::{self, Embedded};
use naics_trainer::serve::{self, Limits};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The leaves of the mini tree, what texts are coded to: its three six-digit codes and 1121,
/// which the fixture gives no children.
const LEAVES: [&str; 4] = ["111110", "111120", "1121", "311111"];

/// A data folder with the mini tree's tables and a model trained on them, made once per run.
struct Trained {
    dir: tempfile::TempDir,
    e: &'static Embedded,
    coder: &'static Coder<'static>,
}

fn trained() -> &'static Trained {
    static TRAINED: OnceLock<Trained> = OnceLock::new();
    TRAINED.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let dir = runtime.block_on(common::tables(&fixtures().join("mini"), 0.7));
        let config = common::mini_config(dir.path(), &["data.validation_entries=0.5"]);
        runtime.block_on(naics_pipeline::shards::run(&config)).unwrap();
        let options = naics_trainer::train::FitOptions {
            resume: false,
            init: None,
            checkpoints: dir.path().join("checkpoints"),
            outputs: dir.path().join("outputs"),
            query_map: false,
        };
        let summary = naics_trainer::train::fit(&config, &options).unwrap();
        let e: &'static Embedded = Box::leak(Box::new(embedded::load(&summary.best).unwrap()));
        let coder: &'static Coder<'static> = Box::leak(Box::new(Coder::new(e).unwrap()));
        Trained { dir, e, coder }
    })
}

/// Over the model's 128 tokens.
fn long_text() -> String {
    "soybean farm ".repeat(80)
}

fn options(input: &Path, output: &Path) -> Options {
    Options {
        input: input.to_path_buf(),
        format: None,
        text_column: "text".into(),
        id_column: Some("id".into()),
        output: output.to_path_buf(),
        policy: Policy {
            k: 2,
            ..Policy::default()
        },
        truncate: false,
        batch_rows: 2,
    }
}

fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap();
    parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// A string column of every batch, as options.
fn column(batches: &[RecordBatch], name: &str) -> Vec<Option<String>> {
    batches
        .iter()
        .flat_map(|b| {
            let c = arrow::compute::cast(b.column_by_name(name).unwrap(), &DataType::Utf8).unwrap();
            let s = c.as_string::<i32>().clone();
            (0..s.len())
                .map(|r| s.is_valid(r).then(|| s.value(r).to_string()))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The six rows every format's input holds: two good texts, an empty one, a missing one, one
/// that is not UTF-8 and one over the model's length, ids 1 to 6.
fn check_output(path: &Path, what: &str) {
    let batches = read_parquet(path);
    let ids = column(&batches, "id");
    assert_eq!(ids, (1..=6).map(|i| Some(i.to_string())).collect::<Vec<_>>(), "{what}");
    let errors = column(&batches, "error");
    assert_eq!(errors[0], None, "{what}");
    assert_eq!(errors[1], None, "{what}");
    assert_eq!(errors[2].as_deref(), Some("empty text"), "{what}");
    assert_eq!(errors[3].as_deref(), Some("no text (null)"), "{what}");
    assert!(
        errors[4].as_deref().unwrap().contains("not UTF-8"),
        "{what}: {errors:?}"
    );
    assert!(
        errors[5].as_deref().unwrap().contains("--truncate"),
        "{what}: {errors:?}"
    );
    let codes = column(&batches, "code_1");
    for r in 0..2 {
        assert!(LEAVES.contains(&codes[r].as_deref().unwrap()), "{what}: {codes:?}");
    }
    assert!(
        codes[2..].iter().all(Option::is_none),
        "{what}: error rows have no codes"
    );
    assert_eq!(codes[0].as_deref(), Some("111110"), "{what}: soybean farm");
    let conf = |name: &str| -> Vec<Option<f64>> {
        batches
            .iter()
            .flat_map(|b| {
                let c = b
                    .column_by_name(name)
                    .unwrap()
                    .as_primitive::<arrow::datatypes::Float64Type>()
                    .clone();
                (0..c.len()).map(move |r| c.is_valid(r).then(|| c.value(r)))
            })
            .collect()
    };
    let (first, second) = (conf("confidence_1"), conf("confidence_2"));
    for r in 0..2 {
        assert!(
            first[r].unwrap() >= second[r].unwrap() && first[r].unwrap() <= 1.0,
            "{what}"
        );
    }
    let abstained = column(&batches, "abstained");
    assert_eq!(abstained[0].as_deref(), Some("false"), "{what}");
    assert_eq!(abstained[2], None, "{what}");
}

#[test]
fn classify_reads_csv_json_lines_and_parquet_keeping_bad_rows() {
    let t = trained();
    let work = tempfile::tempdir().unwrap();
    let long = long_text();

    let csv = work.path().join("in.csv");
    let mut bytes = b"id,text,note\n1,soybean farm,a\n2,dog food manufacturing,b\n3,,c\n4\n5,\"".to_vec();
    bytes.extend_from_slice(b"bad \xff byte\",e\n6,");
    bytes.extend_from_slice(format!("{long},f\n").as_bytes());
    std::fs::write(&csv, bytes).unwrap();

    let jsonl = work.path().join("in.jsonl");
    let mut bytes = Vec::new();
    for (id, text) in [
        (1, json!("soybean farm")),
        (2, json!("dog food manufacturing")),
        (3, json!("")),
    ] {
        // Fields in file order (json! would sort them).
        bytes.extend_from_slice(format!("{{\"id\": {id}, \"text\": {text}, \"note\": \"x\"}}\n").as_bytes());
    }
    bytes.extend_from_slice(b"{\"id\": 4, \"text\": null}\n\n{\"id\": 5, \"text\": \"bad \xff\"}\n");
    bytes.extend_from_slice(format!("{}\n", json!({"id": 6, "text": long})).as_bytes());
    std::fs::write(&jsonl, bytes).unwrap();

    // Parquet with the text as binary, so that a value can be other than UTF-8.
    let parquet = work.path().join("in.parquet");
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("text", DataType::Binary, true),
    ]));
    let texts: Vec<Option<&[u8]>> = vec![
        Some(b"soybean farm"),
        Some(b"dog food manufacturing"),
        Some(b"  "),
        None,
        Some(b"bad \xff"),
        Some(long.as_bytes()),
    ];
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values((1..=6).map(|i| i.to_string()))),
            Arc::new(BinaryArray::from(texts)),
        ],
    )
    .unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(std::fs::File::create(&parquet).unwrap(), schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();

    for input in [&csv, &jsonl, &parquet] {
        let out = work.path().join(format!("{}.out.parquet", input.display()));
        let summary = classify::run(t.coder, &options(input, &out)).unwrap();
        assert_eq!((summary.rows, summary.errors), (6, 4), "{}", input.display());
        assert_eq!(
            summary.per_level.values().sum::<usize>() + summary.no_level + summary.abstained,
            2
        );
        assert_eq!(summary.first_errors[0].1.as_deref(), Some("3"), "bad rows named by id");
        check_output(&out, &input.display().to_string());
    }

    // --truncate codes the long text's beginning; CSV out keeps the input's columns first.
    let out = work.path().join("truncated.csv");
    let summary = classify::run(
        t.coder,
        &Options {
            truncate: true,
            ..options(&jsonl, &out)
        },
    )
    .unwrap();
    assert_eq!(summary.errors, 3);
    let written = std::fs::read_to_string(&out).unwrap();
    let header = written.lines().next().unwrap();
    assert!(header.starts_with("id,text,note,code_1,code_2,title_1"), "{header}");
    assert!(header.ends_with("answer_confidence,abstained,error"), "{header}");
    assert_eq!(written.lines().count(), 7);

    // A missing file or column stops the run before anything is written.
    let nowhere = work.path().join("none.parquet");
    let missing = classify::run(t.coder, &options(&work.path().join("absent.csv"), &nowhere)).unwrap_err();
    assert!(format!("{missing:#}").contains("absent.csv"), "{missing:#}");
    let no_column = classify::run(
        t.coder,
        &Options {
            text_column: "description".into(),
            ..options(&csv, &nowhere)
        },
    )
    .unwrap_err();
    let message = format!("{no_column:#}");
    assert!(
        message.contains("no column `description`") && message.contains("id, text, note"),
        "{message}"
    );
    let clash = work.path().join("clash.csv");
    std::fs::write(&clash, "id,text,code_1\n1,soybean farm,x\n").unwrap();
    let message = format!("{:#}", classify::run(t.coder, &options(&clash, &nowhere)).unwrap_err());
    assert!(message.contains("`code_1`"), "{message}");
    assert!(!nowhere.exists());
    assert!(
        std::fs::read_dir(work.path())
            .unwrap()
            .all(|e| !e.unwrap().file_name().to_string_lossy().contains(".tmp-")),
        "no temporary left behind"
    );
    assert!(matches!(Format::of(Path::new("x.txt"), None), Err(e) if e.to_string().contains("--format")));

    // The default output registers in the SQL session as `classified`.
    let outputs = t.dir.path().join("outputs");
    let default = outputs
        .join("03_stage_hard")
        .join(naics_common::layout::CLASSIFIED_FILE);
    classify::run(t.coder, &options(&csv, &default)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (by_code, joined) = rt.block_on(async {
        let ctx = naics_pipeline::session::open(&DataDir(t.dir.path().to_path_buf()), &outputs, &Default::default(), DEFAULT_MEMORY_LIMIT)
            .await
            .unwrap();
        (
            common::counts(&ctx, "SELECT code_1, count(*) FROM classified WHERE code_1 IS NOT NULL GROUP BY 1 ORDER BY 1").await,
            common::rows(
                &ctx,
                "SELECT c.id, n.level FROM classified_03_stage_hard c JOIN naics_codes n ON n.code = c.code_1 ORDER BY c.id",
            )
            .await,
        )
    });
    assert_eq!(by_code.iter().map(|(_, n)| n).sum::<i64>(), 2, "{by_code:?}");
    assert_eq!(
        joined,
        vec![
            vec!["1".to_string(), "6".to_string()],
            vec!["2".to_string(), "6".to_string()]
        ]
    );
}

/// A server on an ephemeral port, run on its own thread until `stop` resolves.
struct Server {
    base: String,
    thread: std::thread::JoinHandle<()>,
}

fn start(limits: Limits, stop: impl Future<Output = ()> + Send + 'static) -> Server {
    let t = trained();
    let router = serve::router(t.e, t.coder, limits).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let thread = std::thread::spawn(move || rt.block_on(serve::serve(listener, router, stop)).unwrap());
    Server { base, thread }
}

/// Status and JSON body of a request, whatever the status.
fn call(request: ureq::Request, body: Option<&[u8]>) -> (u16, Value) {
    let response = match body {
        Some(b) => request.set("content-type", "application/json").send_bytes(b),
        None => request.call(),
    };
    let response = match response {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("{e}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

fn get(base: &str, path: &str) -> (u16, Value) {
    call(ureq::get(&format!("{base}{path}")), None)
}

fn post(base: &str, path: &str, body: &[u8]) -> (u16, Value) {
    call(ureq::post(&format!("{base}{path}")), Some(body))
}

/// A JSON error's field.
fn field(v: &Value) -> &str {
    v["error"]["field"].as_str().unwrap_or("")
}

#[test]
fn server_answers_every_endpoint_and_every_error_as_json() {
    let limits = Limits {
        max_body: 64 * 1024,
        max_batch: 4,
        ..Limits::default()
    };
    let s = start(limits, serve::terminated());
    let b = s.base.as_str();

    let (status, health) = get(b, "/healthz");
    assert_eq!(
        (status, health["status"].as_str(), health["codes"].as_u64()),
        (200, Some("ok"), Some(14))
    );

    let (status, v) = get(b, "/v1/search?q=soybean+farm&k=2");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["query"], "soybean farm");
    let ranked = v["answer"]["ranked"].as_array().unwrap();
    assert_eq!(ranked.len(), 2);
    assert_eq!(ranked[0]["code"], "111110");
    assert_eq!(ranked[0]["path"][0][0], "11", "the path starts at the sector");
    assert_eq!(v["answer"]["place"].as_array().unwrap().len(), 2);

    let (status, v) = post(
        b,
        "/v1/classify",
        br#"{"texts": ["soybean farm", "dog food manufacturing"], "k": 3}"#,
    );
    assert_eq!(status, 200, "{v}");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1]["ranked"][0]["code"], "311111");
    assert_eq!(results[0]["ranked"].as_array().unwrap().len(), 3);
    // The same answer as the coder gives in-process.
    let direct = trained()
        .coder
        .code(
            &["soybean farm".to_string()],
            &Policy {
                k: 3,
                ..Policy::default()
            },
        )
        .unwrap();
    let served = results[0]["ranked"][0]["confidence"].as_f64().unwrap();
    assert!((served - direct[0].ranked[0].confidence).abs() < 1e-4, "{served}");

    let (status, v) = get(b, "/v1/codes/1111");
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["title"], "Oilseed and Grain Farming");
    let children: Vec<&str> = v["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["code"].as_str().unwrap())
        .collect();
    assert_eq!(children, ["11111", "11112"]);
    assert_eq!(v["path"].as_array().unwrap().len(), 3);
    assert_eq!(v["nearest"].as_array().unwrap().len(), 5);

    let (status, v) = get(b, "/v1/similar/111110?k=3");
    assert_eq!(status, 200, "{v}");
    let d: Vec<f64> = v["similar"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["distance"].as_f64().unwrap())
        .collect();
    assert_eq!(d.len(), 3);
    assert!(d.windows(2).all(|w| w[0] <= w[1]), "{d:?}");
    assert_eq!(get(b, "/v1/disk").1["codes"].as_array().unwrap().len(), 14);

    // Errors: each a status and a JSON error naming the field.
    let too_long = serde_json::to_vec(&json!({"texts": ["ok", long_text()]})).unwrap();
    let big = serde_json::to_vec(&json!({"texts": ["x".repeat(70 * 1024)]})).unwrap();
    let cases: Vec<(u16, &str, (u16, Value))> = vec![
        (400, "body", post(b, "/v1/classify", b"{not json")),
        (400, "texts", post(b, "/v1/classify", br#"{"texts": 3}"#)),
        (400, "texts[1]", post(b, "/v1/classify", br#"{"texts": ["farm", " "]}"#)),
        (400, "texts[1]", post(b, "/v1/classify", &too_long)),
        (400, "k", post(b, "/v1/classify", br#"{"texts": ["farm"], "k": 0}"#)),
        (400, "k", get(b, "/v1/search?q=farm&k=-1")),
        (
            400,
            "abstain",
            post(b, "/v1/classify", br#"{"texts": ["farm"], "abstain": 2}"#),
        ),
        (
            413,
            "texts",
            post(b, "/v1/classify", br#"{"texts": ["a", "b", "c", "d", "e"]}"#),
        ),
        (413, "", post(b, "/v1/classify", &big)),
        (400, "q", get(b, "/v1/search")),
        (400, "q", get(b, "/v1/search?q=%20")),
        (400, "q", get(b, "/v1/search?q=caf%FF")),
        (400, "k", get(b, "/v1/search?q=farm&k=many")),
        (404, "", get(b, "/v1/codes/999999")),
        (404, "", get(b, "/v1/similar/999999")),
        (400, "k", get(b, "/v1/similar/111110?k=0")),
        (404, "", get(b, "/v1/nothing")),
        (405, "", call(ureq::delete(&format!("{b}/v1/search")), None)),
    ];
    for (status, name, (got, v)) in &cases {
        assert_eq!((got, field(v)), (status, *name), "{v}");
        assert_eq!(v["error"]["status"].as_u64(), Some(*status as u64), "{v}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    // Non-UTF-8 bytes inside a JSON string.
    let (status, v) = post(b, "/v1/classify", b"{\"texts\": [\"ok\", \"caf\xff\"]}");
    assert_eq!(status, 400, "{v}");

    // Every path of the OpenAPI description is served.
    let (status, api) = get(b, "/openapi.json");
    assert_eq!(status, 200);
    for (path, item) in api["paths"].as_object().unwrap() {
        let concrete = path.replace("{code}", "111110");
        let got = if item.get("post").is_some() {
            post(b, &concrete, br#"{"texts": ["farm"]}"#).0
        } else {
            let q = if concrete == "/v1/search" { "?q=farm" } else { "" };
            call(ureq::get(&format!("{b}{concrete}{q}")), None).0
        };
        assert_eq!(got, 200, "{path}");
    }

    // Concurrent clients share the one model; answers match the sequential ones.
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let base = s.base.clone();
            std::thread::spawn(move || {
                let q = if i % 2 == 0 { "soybean+farm" } else { "dog+food" };
                (0..5)
                    .map(|_| get(&base, &format!("/v1/search?q={q}")))
                    .map(|(status, v)| (status, v["answer"]["ranked"][0]["code"].as_str().unwrap().to_string()))
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    for (i, t) in threads.into_iter().enumerate() {
        let expected = if i % 2 == 0 { "111110" } else { "311111" };
        for (status, code) in t.join().unwrap() {
            assert_eq!((status, code.as_str()), (200, expected));
        }
    }

    // A request that cannot be answered in time is a 503, and the server stays up.
    let impatient = start(
        Limits {
            timeout: Duration::ZERO,
            ..Limits::default()
        },
        std::future::pending(),
    );
    let (status, v) = get(&impatient.base, "/v1/search?q=farm");
    assert_eq!(status, 503, "{v}");
    assert_eq!(get(&impatient.base, "/healthz").0, 200);

    // SIGTERM: the server finishes and its thread returns.
    let kill = std::process::Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", std::process::id())])
        .status()
        .unwrap();
    assert!(kill.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !s.thread.is_finished() {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s.thread.join().unwrap();
}

/// One WebDriver command: its `value`.
fn webdriver(method: &str, url: &str, body: Option<Value>) -> Value {
    let request = ureq::request(method, url);
    let (status, v) = match body {
        Some(b) => call(request, Some(&serde_json::to_vec(&b).unwrap())),
        None => call(request, None),
    };
    assert_eq!(status, 200, "{method} {url}: {v}");
    v["value"].clone()
}

#[test]
#[cfg_attr(
    not(has_chromedriver),
    ignore = "no /usr/bin/chromedriver: apt-get install chromium chromium-driver, then touch tests/build.rs"
)]
fn search_page_in_a_real_browser() {
    // Debian's chromium-driver (tests/build.rs looked for it).
    let driver = "/usr/bin/chromedriver";
    let s = start(Limits::default(), std::future::pending());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = std::process::Command::new(driver)
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let wd = format!("http://127.0.0.1:{port}");
    let mut driver = Driver { child, session: None };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while ureq::get(&format!("{wd}/status")).call().is_err() {
        assert!(std::time::Instant::now() < deadline, "chromedriver did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut options = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1100,800"]});
    if Path::new("/usr/bin/chromium").exists() {
        options["binary"] = json!("/usr/bin/chromium");
    }
    let session = webdriver(
        "POST",
        &format!("{wd}/session"),
        Some(json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}})),
    );
    let id = session["sessionId"].as_str().unwrap().to_string();
    driver.session = Some(format!("{wd}/session/{id}"));
    let at = |path: &str| format!("{wd}/session/{id}{path}");
    let element = |css: &str| {
        let v = webdriver(
            "POST",
            &at("/element"),
            Some(json!({"using": "css selector", "value": css})),
        );
        element_id(&v)
    };
    webdriver("POST", &at("/url"), Some(json!({"url": format!("{}/", s.base)})));
    let q = element("#q");
    webdriver(
        "POST",
        &at(&format!("/element/{q}/value")),
        Some(json!({"text": "soybean farm\u{E007}"})),
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let items = loop {
        let found = webdriver(
            "POST",
            &at("/elements"),
            Some(json!({"using": "css selector", "value": "#results li"})),
        );
        if !found.as_array().unwrap().is_empty() {
            break found;
        }
        assert!(std::time::Instant::now() < deadline, "no results appeared");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(items.as_array().unwrap().len(), LEAVES.len(), "the mini tree's leaves");
    let first = element_id(&items[0]);
    let text = webdriver("GET", &at(&format!("/element/{first}/text")), None);
    assert!(text.as_str().unwrap().contains("111110"), "{text}");
    let answer = webdriver("GET", &at(&format!("/element/{}/text", element("#answer"))), None);
    assert!(
        answer.as_str().unwrap().starts_with("Answer:") || answer.as_str().unwrap().starts_with("No"),
        "{answer}"
    );
    let url = webdriver("GET", &at("/url"), None);
    assert!(url.as_str().unwrap().ends_with("?q=soybean%20farm"), "{url}");
    let png = webdriver("GET", &at("/screenshot"), None);
    use base64::Engine;
    let png = base64::engine::general_purpose::STANDARD
        .decode(png.as_str().unwrap())
        .unwrap();
    assert_eq!(&png[1..4], b"PNG");
    let shot = std::env::var_os("NAICS_SCREENSHOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("naics-search-page.png"));
    std::fs::write(&shot, png).unwrap();
    eprintln!("screenshot: {}", shot.display());
}

/// A WebDriver element reference's id (the one value of its object).
fn element_id(v: &Value) -> String {
    v.as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_str()
        .unwrap()
        .to_string()
}

/// Ends the browser session and stops chromedriver, also when an assertion fails.
struct Driver {
    child: std::process::Child,
    session: Option<String>,
}

impl Drop for Driver {
    fn drop(&mut self) {
        if let Some(session) = &self.session {
            let _ = ureq::delete(session).call();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
