//! Probes for orchestrators: `/healthz` (the process answers) and `/readyz` (storage, and the
//! index database where there is one, answer within a deadline, and the process is not
//! shutting down). Neither needs credentials, and neither says more than a sentence.

use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::AppState;

/// How long the dependencies may take to answer a readiness probe.
pub const READY_DEADLINE: Duration = Duration::from_secs(2);

/// `GET /healthz`: 200 while the process serves requests.
pub(crate) async fn alive() -> Response {
    (StatusCode::OK, "ok\n").into_response()
}

/// `GET /readyz`: 200 when storage and the index answer within [`READY_DEADLINE`], else 503
/// with what failed; 503 while draining.
pub(crate) async fn ready(State(st): State<AppState>) -> Response {
    if st.options.draining.load(Ordering::SeqCst) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: shutting down, finishing requests in flight\n",
        )
            .into_response();
    }
    match tokio::time::timeout(READY_DEADLINE, st.registry.check_ready()).await {
        Ok(Ok(())) => (StatusCode::OK, "ready\n").into_response(),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "readiness probe failed");
            (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {e}\n")).into_response()
        }
        Err(_) => {
            tracing::warn!("readiness probe: storage or index did not answer in time");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "not ready: storage or the index did not answer within {}s\n",
                    READY_DEADLINE.as_secs()
                ),
            )
                .into_response()
        }
    }
}
