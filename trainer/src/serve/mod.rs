//! `naics-trainer serve`: the coder over HTTP (axum on tokio), and a search page.
//!
//! One model is loaded and shared: requests queue jobs for the model [`worker`], which merges
//! the texts of concurrent requests into one batch. Every error is a status with a JSON body
//! ([`error::ApiError`]); the server stops on SIGTERM or Ctrl-C after answering the requests
//! in flight.

pub mod error;
pub mod worker;

use crate::coder::{Coder, Policy, ShownAnswer};
use crate::disk::Disk;
use crate::embedded::Embedded;
use crate::model::lorentz::Targets;
use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse};
use axum::routing::{get, post};
use candle_core::{Device, Tensor};
use error::ApiError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Duration;
use worker::{Job, JobError};

/// What a request may ask for.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Request body bytes (413 above).
    pub max_body: usize,
    /// Texts per classify request (413 above).
    pub max_batch: usize,
    /// How long a request waits for the model (503 after).
    pub timeout: Duration,
    /// Texts the worker merges into one batch.
    pub merge_texts: usize,
    /// How long a batch may wait for the clients of the last one ([`worker`]).
    pub batch_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body: 1 << 20,
            max_batch: 1000,
            timeout: Duration::from_secs(30),
            merge_texts: 256,
            batch_wait: Duration::from_millis(5),
        }
    }
}

/// What every handler shares: the model (through the worker's queue) and the code tree.
#[derive(Clone)]
struct App {
    e: &'static Embedded,
    coder: &'static Coder<'static>,
    jobs: SyncSender<Job>,
    disk: Arc<Disk>,
    children: Arc<Vec<Vec<usize>>>,
    limits: Limits,
}

/// The service: routes, body limit, JSON errors for unknown routes and methods.
pub fn router(e: &'static Embedded, coder: &'static Coder<'static>, limits: Limits) -> anyhow::Result<Router> {
    let mut children = vec![Vec::new(); e.codes.len()];
    for (i, p) in e.codes.parent.iter().enumerate() {
        if let Some(p) = p {
            children[*p].push(i);
        }
    }
    let app = App {
        e,
        coder,
        jobs: worker::spawn(coder, limits.merge_texts, limits.batch_wait, 1024),
        disk: Arc::new(Disk::new(e)?),
        children: Arc::new(children),
        limits,
    };
    Ok(Router::new()
        .route("/", get(page))
        .route("/healthz", get(health))
        .route("/openapi.json", get(openapi))
        .route("/v1/classify", post(classify))
        .route("/v1/search", get(search))
        .route("/v1/codes/{code}", get(code))
        .route("/v1/similar/{code}", get(similar))
        .route("/v1/disk", get(disk))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route; see /openapi.json") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed here; see /openapi.json",
            )
        })
        .layer(DefaultBodyLimit::max(limits.max_body))
        .with_state(app))
}

/// Serves `router` on `listener` until `shutdown` resolves, then finishes the requests in flight.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    axum::serve(listener, router).with_graceful_shutdown(shutdown).await?;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn terminated() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}

async fn page() -> Html<&'static str> {
    Html(include_str!("page.html"))
}

async fn openapi() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "application/json")],
        include_str!("openapi.json"),
    )
}

async fn health(State(app): State<App>) -> Json<Value> {
    Json(json!({
        "status": "ok",
        "experiment": app.e.config.experiment,
        "codes": app.e.codes.len(),
        "candidates": app.coder.candidates.len(),
    }))
}

/// An answer as the API gives it: the coder's, and where the text lies on the disk picture.
#[derive(Serialize)]
struct Coded {
    #[serde(flatten)]
    answer: ShownAnswer,
    /// (x, y) in the Poincare disk of `/v1/disk`.
    place: (f64, f64),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    texts: Vec<String>,
    #[serde(default)]
    k: Option<usize>,
    #[serde(default)]
    min_confidence: Option<f64>,
    #[serde(default)]
    abstain: Option<f64>,
}

async fn classify(State(app): State<App>, body: Result<Bytes, BytesRejection>) -> Result<Json<Value>, ApiError> {
    let body = body.map_err(|r| ApiError::new(r.status(), r.body_text()))?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let request: ClassifyRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        // No path ("." or "?"): the body as a whole is not the expected JSON.
        let path = e.path().to_string();
        let field = if path == "." || path == "?" {
            "body".to_string()
        } else {
            path
        };
        ApiError::field(field, format!("expected {{\"texts\": [...], \"k\": 5}}: {}", e.inner()))
    })?;
    if request.texts.len() > app.limits.max_batch {
        return Err(ApiError {
            field: Some("texts".into()),
            ..ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "{} texts; at most {} per request",
                    request.texts.len(),
                    app.limits.max_batch
                ),
            )
        });
    }
    let policy = app.policy(request.k, request.min_confidence, request.abstain)?;
    let results = app.code(request.texts, policy, "texts").await?;
    Ok(Json(json!({ "results": results })))
}

/// `a=b&c=d` with percent-decoding that refuses bytes that are not UTF-8.
fn query_pairs(raw: Option<String>) -> Result<HashMap<String, String>, ApiError> {
    let mut out = HashMap::new();
    for pair in raw.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|s| s.into_owned())
        };
        let key = decode(k).map_err(|_| ApiError::field("query", "a parameter name is not UTF-8"))?;
        let value = decode(v).map_err(|_| ApiError::field(key.clone(), "not UTF-8"))?;
        out.insert(key, value);
    }
    Ok(out)
}

/// An optional number parameter.
fn number<T: std::str::FromStr>(params: &HashMap<String, String>, name: &str) -> Result<Option<T>, ApiError> {
    params
        .get(name)
        .map(|v| {
            v.parse()
                .map_err(|_| ApiError::field(name, format!("`{v}` is not a number")))
        })
        .transpose()
}

async fn search(State(app): State<App>, RawQuery(raw): RawQuery) -> Result<Json<Value>, ApiError> {
    let params = query_pairs(raw)?;
    let q = params
        .get("q")
        .ok_or_else(|| ApiError::field("q", "missing: /v1/search?q=TEXT"))?
        .clone();
    let policy = app.policy(
        number(&params, "k")?,
        number(&params, "min_confidence")?,
        number(&params, "abstain")?,
    )?;
    let mut results = app.code(vec![q.clone()], policy, "q").await?;
    let result = results.pop().expect("one answer per text");
    Ok(Json(json!({ "query": q, "answer": result })))
}

/// A code as the code endpoints show it.
fn brief(e: &Embedded, i: usize) -> Value {
    json!({"code": e.codes.code[i], "title": e.codes.title[i], "level": e.codes.level[i]})
}

/// The `k` codes nearest to code `i` by Lorentz distance, itself left out.
fn nearest(e: &Embedded, i: usize, k: usize) -> Result<Vec<Value>, ApiError> {
    let row = Tensor::from_slice(e.points.row(i), (1, e.points.cols()), &Device::Cpu).map_err(anyhow::Error::from)?;
    let d = Targets::in_place(e.points.values(), e.points.cols())
        .distances(&row, e.curvature())
        .map_err(anyhow::Error::from)?
        .remove(0);
    let mut order: Vec<usize> = (0..e.codes.len()).filter(|&j| j != i).collect();
    order.sort_by(|&a, &b| d[a].total_cmp(&d[b]).then(a.cmp(&b)));
    Ok(order
        .into_iter()
        .take(k)
        .map(|j| {
            let mut v = brief(e, j);
            v["distance"] = json!(d[j]);
            v
        })
        .collect())
}

impl App {
    fn code_index(&self, code: &str) -> Result<usize, ApiError> {
        self.e
            .codes
            .position
            .get(code)
            .copied()
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no code `{code}`")))
    }

    /// The request's policy ([`Policy::checked`]); a value out of range is a 400 naming it.
    fn policy(&self, k: Option<usize>, min_confidence: Option<f64>, abstain: Option<f64>) -> Result<Policy, ApiError> {
        Policy::checked(k, min_confidence, abstain, self.coder.candidates.len())
            .map_err(|bad| ApiError::field(bad.name, bad.message))
    }

    /// Codes texts through the worker; `field` names them in errors.
    async fn code(&self, texts: Vec<String>, policy: Policy, field: &str) -> Result<Vec<Coded>, ApiError> {
        let one = field == "q";
        let name = |i: usize| {
            if one {
                field.to_string()
            } else {
                format!("{field}[{i}]")
            }
        };
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(ApiError::field(name(i), "empty text"));
        }
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = Job { texts, policy, reply };
        match self.jobs.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "the model's queue is full; retry",
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the model worker stopped",
                ));
            }
        }
        let answers = match tokio::time::timeout(self.limits.timeout, answer).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("no answer within {:?}; retry, or send fewer texts", self.limits.timeout),
                ));
            }
            Ok(Err(_)) => {
                return Err(ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "the model worker stopped",
                ));
            }
            Ok(Ok(Err(JobError::TooLong { index, max }))) => {
                return Err(ApiError::field(
                    name(index),
                    format!("longer than the model's {max} tokens"),
                ));
            }
            Ok(Ok(Err(JobError::Failed(why)))) => return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, why)),
            Ok(Ok(Ok(answers))) => answers,
        };
        answers
            .iter()
            .map(|a| {
                let place = self.disk.place_point(&a.point)?;
                Ok(Coded {
                    answer: self.coder.show(a),
                    place,
                })
            })
            .collect()
    }
}

async fn code(State(app): State<App>, Path(code): Path<String>) -> Result<Json<Value>, ApiError> {
    let i = app.code_index(&code)?;
    let e = app.e;
    let path: Vec<Value> = e.codes.path(i).into_iter().map(|p| brief(e, p)).collect();
    let children: Vec<Value> = app.children[i].iter().map(|&c| brief(e, c)).collect();
    let mut out = brief(e, i);
    out["description"] = json!(e.codes.description[i]);
    out["path"] = json!(path);
    out["children"] = json!(children);
    out["nearest"] = json!(nearest(e, i, 5)?);
    out["place"] = json!(app.disk.codes[i]);
    Ok(Json(out))
}

async fn similar(
    State(app): State<App>,
    Path(code): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Json<Value>, ApiError> {
    let i = app.code_index(&code)?;
    let params = query_pairs(raw)?;
    let most = app.e.codes.len() - 1;
    let k = number(&params, "k")?.unwrap_or(10);
    if !(1..=most).contains(&k) {
        return Err(ApiError::field("k", format!("{k}: expected 1 to {most}")));
    }
    Ok(Json(json!({ "code": code, "similar": nearest(app.e, i, k)? })))
}

/// Every code's place on the Poincare disk, for the search page's picture.
async fn disk(State(app): State<App>) -> Json<Value> {
    let e = app.e;
    let codes: Vec<Value> = (0..e.codes.len())
        .map(|i| {
            json!({
                "code": e.codes.code[i],
                "sector": e.codes.sector[i],
                "level": e.codes.level[i],
                "x": app.disk.codes[i].0,
                "y": app.disk.codes[i].1,
            })
        })
        .collect();
    Json(json!({ "codes": codes }))
}
