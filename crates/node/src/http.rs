//! The HTTP listener: the consumer resolver for GS1 Digital Links, the
//! evidence behind each verdict, and Prometheus metrics.
//!
//! Routes:
//! - `GET /01/{gtin}[/22/{cpv}][/10/{lot}][/21/{serial}][?17=YYMMDD]` — the
//!   verdict on the product, as a consumer page, or as the verdict JSON with
//!   `Accept: application/json` (or `?format=json`). 400 for a code that
//!   breaks a coding rule, 404 (with the page) when the ledger has no record.
//! - `GET /evidence/{log id}/{seq}` — one record as JSON with its inclusion
//!   proof and the signed checkpoint it is proven against.
//! - `GET /metrics` — the metrics of [`crate::metrics`].
//! - `GET /` — what the resolver is.
//!
//! Verdicts come from [`Verdicts::compute`], the same code the gRPC Verify
//! RPC runs. axum is the HTTP stack because tonic 0.14 already builds on
//! axum 0.8 and hyper 1: the resolver adds no second HTTP implementation.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::Response;
use axum::routing::get;
use qtrace_ledger::hash::LogId;
use qtrace_ledger::ids::ProductCode;
use qtrace_ledger::merkle;
use qtrace_ledger::note;
use qtrace_ledger::pb;
use qtrace_ledger::verdict::{self, Overall};
use qtrace_ledger::view::{RecordId, View};
use serde_json::json;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::page;
use crate::service::Verdicts;
use crate::status::{self, Failure};

/// Host put in front of a request path to make it a Digital Link URI; the
/// host is not part of a product's identity, so any name does.
const RESOLVER_HOST: &str = "https://resolver";
/// Pages carry no script and load nothing from elsewhere.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

/// What the resolver serves from.
pub struct Resolver {
    pub verdicts: Verdicts,
    pub origin: String,
    pub log_id: LogId,
    pub vkey: String,
}

/// The running HTTP listener.
pub struct HttpServer {
    pub addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Binds `addr`, writes the bound address to `DATA/http.addr` and serves
/// until [`HttpServer::shutdown`].
pub async fn start(addr: SocketAddr, data: &Path, resolver: Resolver) -> anyhow::Result<HttpServer> {
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {addr} (HTTP)"))?;
    let bound = listener.local_addr()?;
    std::fs::write(data.join("http.addr"), format!("{bound}\n")).context("writing DATA/http.addr")?;
    let (stop, mut stopped) = watch::channel(false);
    let app = router(Arc::new(resolver));
    let task = tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown).await {
            tracing::error!(error = %e, "HTTP listener failed");
        }
    });
    Ok(HttpServer { addr: bound, stop, task })
}

impl HttpServer {
    /// Stops accepting and waits (briefly) for requests in flight.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        if tokio::time::timeout(Duration::from_secs(5), self.task).await.is_err() {
            tracing::warn!("HTTP requests still open after 5 s; stopping anyway");
        }
    }
}

fn router(resolver: Arc<Resolver>) -> Router {
    Router::new()
        .route("/", get(home))
        .route("/metrics", get(metrics))
        .route("/01/{*rest}", get(resolve))
        .route("/evidence/{log}/{seq}", get(evidence))
        .fallback(unknown_route)
        .with_state(resolver)
}

/// Whether the caller asked for JSON rather than a page.
fn wants_json(headers: &HeaderMap, query: Option<&str>) -> bool {
    if query.is_some_and(|q| q.split('&').any(|p| p == "format=json")) {
        return true;
    }
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or_default();
    accept.contains("application/json") && !accept.contains("text/html")
}

fn html(status: StatusCode, body: String) -> Response {
    respond(status, "text/html; charset=utf-8", body)
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    respond(status, "application/json", text + "\n")
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    // A verdict changes when a recall or suspension is recorded.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::VARY, HeaderValue::from_static("Accept"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    response
}

/// An error as a page or JSON, with the HTTP status that fits its gRPC code.
fn failure_response(failure: Failure, want_json: bool) -> Response {
    let grpc = status::to_status(failure);
    let (code, zh, en) = match grpc.code() {
        tonic::Code::InvalidArgument => (StatusCode::BAD_REQUEST, "请求无效", "Bad request"),
        tonic::Code::NotFound => (StatusCode::NOT_FOUND, "未找到", "Not found"),
        tonic::Code::ResourceExhausted => (StatusCode::SERVICE_UNAVAILABLE, "追溯范围过大", "Too large to trace here"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "服务器错误", "Server error"),
    };
    if want_json {
        return json_response(
            code,
            &json!({ "error": grpc.message(), "code": qtrace_rpc::connect::code_name(grpc.code()) }),
        );
    }
    html(code, page::error_page(zh, en, grpc.message()))
}

async fn home(State(resolver): State<Arc<Resolver>>) -> Response {
    html(StatusCode::OK, page::home_page(&resolver.origin, &resolver.log_id.to_string(), &resolver.vkey))
}

async fn metrics(State(resolver): State<Arc<Resolver>>) -> Response {
    let mut response = respond(
        StatusCode::OK,
        crate::metrics::CONTENT_TYPE,
        crate::metrics::render(&resolver.verdicts.federation.logs),
    );
    response.headers_mut().remove(header::VARY);
    response
}

async fn unknown_route(uri: Uri, headers: HeaderMap) -> Response {
    let message = format!("{} is not a resolver address; product links start with /01/<GTIN> (see /)", uri.path());
    if wants_json(&headers, uri.query()) {
        return json_response(StatusCode::NOT_FOUND, &json!({ "error": message, "code": "NOT_FOUND" }));
    }
    html(StatusCode::NOT_FOUND, page::error_page("未找到", "Not found", &message))
}

/// `GET /01/…`: the verdict on a product code.
async fn resolve(State(resolver): State<Arc<Resolver>>, uri: Uri, headers: HeaderMap) -> Response {
    let want_json = wants_json(&headers, uri.query());
    let path_and_query = uri.path_and_query().map(|p| p.as_str()).unwrap_or(uri.path()).to_string();
    let link = format!("{RESOLVER_HOST}{path_and_query}");
    if let Err(error) = ProductCode::parse(&link) {
        if want_json {
            return json_response(
                StatusCode::BAD_REQUEST,
                &json!({ "error": format!("product code: {error}"), "code": "INVALID_ARGUMENT" }),
            );
        }
        return html(StatusCode::BAD_REQUEST, page::invalid_code_page(&path_and_query, &error));
    }
    let request = pb::VerifyRequest {
        subject: Some(pb::VerdictSubject { kind: Some(pb::verdict_subject::Kind::ProductCode(link)) }),
        ..Default::default()
    };
    // The span is attached to the future, not entered, because the task
    // may move between threads while the verdict is computed.
    let span = tracing::debug_span!("resolve", path = %path_and_query);
    let report = match resolver.verdicts.compute(request, false).instrument(span).await {
        Ok((report, _)) => report,
        Err(failure) => return failure_response(failure, want_json),
    };
    let code = if report.verdict == Overall::NotFound { StatusCode::NOT_FOUND } else { StatusCode::OK };
    if want_json {
        return json_response(code, &verdict::to_json_value(&report));
    }
    let context = page::PageContext { path_and_query: &path_and_query, origin: &resolver.origin };
    html(code, page::verdict_page(&report, &context))
}

/// `GET /evidence/{log}/{seq}`: a record, its inclusion proof and the
/// signed checkpoint, from the same snapshot verdicts are computed on.
async fn evidence(State(resolver): State<Arc<Resolver>>, UrlPath((log, seq)): UrlPath<(String, String)>) -> Response {
    let Ok(log) = LogId::from_hex(&log) else {
        return failure_response(Failure::Invalid(format!("log id {log:?}: give 64 hex digits")), true);
    };
    let Ok(seq) = seq.parse::<u64>() else {
        return failure_response(Failure::Invalid(format!("sequence number {seq:?}: give a decimal number")), true);
    };
    let id = RecordId { log, seq };
    let vkeys: Vec<(LogId, String)> = resolver
        .verdicts
        .federation
        .trusted_logs()
        .iter()
        .map(|v| (LogId::of_key(&v.public_key().to_bytes()), v.to_string()))
        .collect();
    let result = resolver
        .verdicts
        .with_view(move |view, trust| {
            let record = view
                .record(id)
                .map_err(|e| Failure::Internal(e.to_string()))?
                .ok_or_else(|| Failure::NotFound(format!("record {id} is not in this node's signed checkpoints")))?;
            let proven = view
                .proof(id)
                .map_err(|e| Failure::Internal(e.to_string()))?
                .ok_or_else(|| Failure::NotFound(format!("record {id} has no inclusion proof yet")))?;
            let verifier = trust.logs.iter().find(|v| LogId::of_key(&v.public_key().to_bytes()) == id.log);
            let opened = verifier.map(|v| note::open_checkpoint(&proven.checkpoint_note, v, &trust.witnesses));
            let (root, cosigners, checkpoint_problem) = match opened {
                Some(Ok(opened)) => (
                    Some(opened.checkpoint.root),
                    opened.cosigners.iter().map(|(name, time)| format!("{name} at {time}")).collect(),
                    None,
                ),
                Some(Err(e)) => (None, Vec::new(), Some(format!("the checkpoint does not verify: {e}"))),
                None => (None, Vec::new(), Some("the log is not among this node's trusted logs".to_string())),
            };
            let included = root
                .map(|root| {
                    merkle::verify_inclusion(id.seq, proven.tree_size, &record.hash.0, &proven.path, &root).is_ok()
                })
                .unwrap_or(false);
            let registry = view.registry();
            let key = registry.key(&record.entry.signer);
            let org = key.and_then(|k| registry.organisation(&k.uscc));
            let event = record.event.as_ref();
            Ok(json!({
                "record": record.cite(),
                "log_id": id.log.to_string(),
                "seq": id.seq,
                "entry_hash": record.hash.to_string(),
                "prev_hash": record.entry.prev_hash.to_string(),
                "logged_at_micros": record.entry.logged_at_micros,
                "kind": event.map(|e| e.kind.name()),
                "kind_zh": event.map(|e| e.kind.name_zh()),
                "description": record.body().map(verdict::describe),
                "signer": {
                    "public_key": hex::encode(record.entry.signer),
                    "uscc": key.map(|k| k.uscc.to_string()),
                    "organisation": org.map(|o| o.name.clone()),
                    "person": key.map(|k| k.person.clone()),
                    "title": key.map(|k| k.title.clone()),
                },
                "signature": hex::encode(record.entry.signature),
                "entry": hex::encode(record.entry.encode()),
                "inclusion": {
                    "leaf_index": id.seq,
                    "tree_size": proven.tree_size,
                    "path": proven.path.iter().map(hex::encode).collect::<Vec<_>>(),
                },
                "checkpoint": {
                    "note": proven.checkpoint_note,
                    "size": proven.tree_size,
                    "root": root.map(hex::encode),
                    "cosigned_by": cosigners,
                },
                "log_vkey": vkeys.iter().find(|(l, _)| *l == id.log).map(|(_, v)| v.clone()),
                "checked_here": {
                    "signature": record.entry.verify_signature().is_ok(),
                    "inclusion": included,
                    "problem": checkpoint_problem,
                },
                "how_to_verify": "entry_hash = SHA-256(0x00 || entry bytes); the signature is Ed25519 over \
                    \"qtrace/v1/event\\0\" || event bytes; hash the path up to the checkpoint's root (RFC 6962) and \
                    check the checkpoint note's signature with the log's verifier key, obtained from the agency",
            }))
        })
        .await;
    match result {
        Ok(value) => json_response(StatusCode::OK, &value),
        Err(failure) => failure_response(failure, true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_negotiation() {
        let mut headers = HeaderMap::new();
        assert!(!wants_json(&headers, None));
        assert!(wants_json(&headers, Some("17=281231&format=json")));
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(wants_json(&headers, None));
        // What browsers send: a page.
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        );
        assert!(!wants_json(&headers, None));
    }
}
