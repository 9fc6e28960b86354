//! Prometheus metrics (OpenMetrics text): requests by route kind, method and status with
//! latency histograms, bytes received and sent, requests in flight, refused sign-ins, garbage
//! collection, build info. Labels are bounded sets: never a repository, tag or digest.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use berth_oci::Route;
use http_body::Body as _;
use http_body_util::BodyExt as _;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry as PromRegistry;

/// Largest response body counted when the response is made rather than as it is sent.
const SMALL_BODY: u64 = 64 << 10;

/// One request's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    method: &'static str,
    status: u16,
}

/// A latency observation's labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
    method: &'static str,
}

/// Why a sign-in or a request was refused.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// The metrics of one process. Cheap to share (`Arc`); record from any thread.
pub struct Metrics {
    registry: PromRegistry,
    requests: Family<RequestLabels, Counter>,
    duration: Family<RouteLabels, Histogram>,
    received: Counter,
    sent: Counter,
    in_flight: Gauge,
    auth_refusals: Family<ReasonLabels, Counter>,
    gc_runs: Counter,
    gc_failures: Counter,
    gc_freed: Counter,
    gc_blobs_freed: Counter,
    gc_reclaimable: Gauge<u64, AtomicU64>,
    gc_last_seconds: Gauge<f64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set, registered under `berth_`.
    pub fn new() -> Metrics {
        let mut r = PromRegistry::with_prefix("berth");
        let requests = Family::<RequestLabels, Counter>::default();
        r.register(
            "http_requests",
            "HTTP requests answered, by route kind, method and status",
            requests.clone(),
        );
        let duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.0005, 2.0, 18))
        });
        r.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response headers, by route kind and method",
            duration.clone(),
        );
        let received = Counter::default();
        r.register(
            "http_received_bytes",
            "Request body bytes received",
            received.clone(),
        );
        let sent = Counter::default();
        r.register("http_sent_bytes", "Response body bytes sent", sent.clone());
        let in_flight = Gauge::default();
        r.register(
            "http_requests_in_flight",
            "Requests being answered now",
            in_flight.clone(),
        );
        let auth_refusals = Family::<ReasonLabels, Counter>::default();
        r.register(
            "auth_refusals",
            "Requests refused by access control: bad_credentials (401 with credentials), denied (403), throttled (429)",
            auth_refusals.clone(),
        );
        let gc_runs = Counter::default();
        r.register("gc_runs", "Garbage collections finished", gc_runs.clone());
        let gc_failures = Counter::default();
        r.register(
            "gc_failures",
            "Garbage collections stopped by an error",
            gc_failures.clone(),
        );
        let gc_freed = Counter::default();
        r.register(
            "gc_freed_bytes",
            "Bytes of blobs garbage collection deleted",
            gc_freed.clone(),
        );
        let gc_blobs_freed = Counter::default();
        r.register(
            "gc_freed_blobs",
            "Blobs garbage collection deleted",
            gc_blobs_freed.clone(),
        );
        let gc_reclaimable = Gauge::<u64, AtomicU64>::default();
        r.register(
            "gc_reclaimable_bytes",
            "Bytes the last collection found unreferenced but kept inside the grace window (freed by a later run unless a push uses them)",
            gc_reclaimable.clone(),
        );
        let gc_last_seconds = Gauge::<f64, AtomicU64>::default();
        r.register(
            "gc_last_duration_seconds",
            "How long the last garbage collection took",
            gc_last_seconds.clone(),
        );
        r.register(
            "build",
            "The running build",
            Info::new(vec![("version", env!("CARGO_PKG_VERSION"))]),
        );
        Metrics {
            registry: r,
            requests,
            duration,
            received,
            sent,
            in_flight,
            auth_refusals,
            gc_runs,
            gc_failures,
            gc_freed,
            gc_blobs_freed,
            gc_reclaimable,
            gc_last_seconds,
        }
    }

    /// Records a finished garbage collection.
    pub fn gc_finished(&self, r: &berth_registry::GcReport) {
        self.gc_runs.inc();
        self.gc_freed.inc_by(r.bytes_freed());
        self.gc_blobs_freed.inc_by(r.blobs_deleted.len() as u64);
        self.gc_reclaimable.set(r.kept_in_grace_bytes);
        self.gc_last_seconds.set(r.elapsed.as_secs_f64());
    }

    /// Records a garbage collection that stopped with an error.
    pub fn gc_failed(&self) {
        self.gc_failures.inc();
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The bounded label for a request's route.
fn route_kind(route: Option<&Route>, path: &str) -> &'static str {
    match route {
        Some(Route::Base) => "base",
        Some(Route::Catalog) => "catalog",
        Some(Route::TagsList { .. }) => "tags",
        Some(Route::Manifest { .. }) => "manifest",
        Some(Route::Blob { .. }) => "blob",
        Some(Route::UploadStart { .. }) | Some(Route::UploadSession { .. }) => "upload",
        Some(Route::Referrers { .. }) => "referrers",
        Some(_) => "other",
        None => match path {
            "/token" => "token",
            "/healthz" | "/readyz" => "health",
            "/metrics" => "metrics",
            _ => "other",
        },
    }
}

/// A method as a label: the registry's own, else `other` (a client may send anything).
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::PUT => "PUT",
        Method::POST => "POST",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The middleware: counts, times and measures every request (inside route parsing, outside
/// access control, so refusals count too).
pub(crate) async fn record(
    State(metrics): State<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let route = route_kind(req.extensions().get::<Route>(), req.uri().path());
    let method = method_label(req.method());
    let had_credentials = req.headers().contains_key(header::AUTHORIZATION);
    metrics.in_flight.inc();
    // Bodies are wrapped to count what actually passes; one known to be empty is not.
    let req = if req.body().is_end_stream() {
        req
    } else {
        let received = metrics.received.clone();
        req.map(|b| {
            Body::new(b.map_frame(move |f| {
                if let Some(d) = f.data_ref() {
                    received.inc_by(d.len() as u64);
                }
                f
            }))
        })
    };
    let res = next.run(req).await;
    metrics.in_flight.dec();
    let status = res.status();
    metrics
        .requests
        .get_or_create(&RequestLabels {
            route,
            method,
            status: status.as_u16(),
        })
        .inc();
    metrics
        .duration
        .get_or_create(&RouteLabels { route, method })
        .observe(started.elapsed().as_secs_f64());
    let refusal = match status {
        StatusCode::UNAUTHORIZED if had_credentials => Some("bad_credentials"),
        StatusCode::FORBIDDEN => Some("denied"),
        StatusCode::TOO_MANY_REQUESTS => Some("throttled"),
        _ => None,
    };
    if let Some(reason) = refusal {
        metrics
            .auth_refusals
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
    if res.body().is_end_stream() {
        return res;
    }
    // A small body of known size (a manifest, a JSON answer) is counted at once rather than
    // wrapped: it goes out in one write; a large one is counted as it streams, so that a
    // download the client abandons counts what it got.
    if let Some(n) = res.body().size_hint().exact()
        && n <= SMALL_BODY
    {
        metrics.sent.inc_by(n);
        return res;
    }
    let sent = metrics.sent.clone();
    res.map(|b| {
        Body::new(b.map_frame(move |f| {
            if let Some(d) = f.data_ref() {
                sent.inc_by(d.len() as u64);
            }
            f
        }))
    })
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        metrics.encode(),
    )
        .into_response()
}
