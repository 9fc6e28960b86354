//! In-process HTTP checks of the router: requests go through `tower::ServiceExt::oneshot`, with
//! no socket and no server process, so that route errors, the error JSON and the auth challenge
//! are checked in milliseconds. The end-to-end suites in `crates/cli/tests` drive a real server.

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use berth_auth::{Htpasswd, HtpasswdAuthenticator, PasswordChecker};
use berth_registry::{FolderStorage, Registry, RegistryConfig};
use http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;

use crate::{AccessControl, ServerOptions, router};

/// A router over a fresh folder; the folder lives as long as the returned guard.
fn app(access: AccessControl) -> (Router, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let storage = FolderStorage::new(dir.path()).unwrap();
    let registry = Registry::new(Arc::new(storage), RegistryConfig::default());
    let options = ServerOptions {
        access,
        ..ServerOptions::default()
    };
    (router(registry, options), dir)
}

/// An htpasswd authenticator with no users: every request needs credentials nobody has.
fn locked() -> AccessControl {
    let checker = PasswordChecker::new(Htpasswd::parse("", "test").unwrap());
    AccessControl {
        authenticator: Some(Arc::new(HtpasswdAuthenticator::new("berth-test", checker))),
        issuer: None,
    }
}

struct Answer {
    status: StatusCode,
    headers: http::HeaderMap,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

async fn send(app: &Router, method: Method, uri: &str) -> Answer {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let headers = res.headers().clone();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    Answer {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

#[tokio::test]
async fn base_answers_200_with_the_version_header() {
    let (app, _dir) = app(AccessControl::default());
    for path in ["/v2", "/v2/"] {
        let r = send(&app, Method::GET, path).await;
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert_eq!(r.body, "{}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.header("docker-distribution-api-version"),
            Some("registry/2.0")
        );
    }
}

#[tokio::test]
async fn unknown_paths_answer_404_with_the_spec_error_json() {
    let (app, _dir) = app(AccessControl::default());
    let r = send(&app, Method::GET, "/v2/a/unknown/x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.body,
        r#"{"errors":[{"code":"UNSUPPORTED","message":"unknown API path /v2/a/unknown/x"}]}"#
    );
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0"),
        "errors carry the version header too"
    );
    // Encoded endpoint words are not endpoint words.
    let r = send(&app, Method::GET, "/v2/a/manifest%73/v1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "UNSUPPORTED");
    let r = send(&app, Method::GET, "/elsewhere").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json()["errors"][0]["message"],
        "unknown path: the registry API lives under /v2/"
    );
    // No issuer configured: no token endpoint.
    assert_eq!(
        send(&app, Method::GET, "/token").await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn route_errors() {
    let (app, _dir) = app(AccessControl::default());
    let r = send(&app, Method::GET, "/v2/A/manifests/v1").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "NAME_INVALID");
    let r = send(&app, Method::GET, "/v2/%2e%2e/manifests/v1").await;
    assert_eq!(r.json()["errors"][0]["code"], "NAME_INVALID");

    let r = send(&app, Method::POST, "/v2/a/manifests/v1").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(
        r.body,
        r#"{"errors":[{"code":"UNSUPPORTED","message":"method POST is not supported on this endpoint"}]}"#
    );

    let r = send(&app, Method::GET, "/v2/a/manifests/v1").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(
        r.json()["errors"][0]["code"],
        "NAME_UNKNOWN",
        "no such repository"
    );

    let r = send(&app, Method::GET, "/v2/a/blobs/not-a-digest").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "DIGEST_INVALID");

    let r = send(&app, Method::GET, "/v2/a/blobs/uploads/nope").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.json()["errors"][0]["code"], "BLOB_UPLOAD_UNKNOWN");

    let r = send(&app, Method::GET, "/v2/a/tags/list?n=x").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_repository_may_be_called_blobs() {
    let (app, _dir) = app(AccessControl::default());
    let r = send(&app, Method::POST, "/v2/x/blobs/blobs/uploads/").await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let loc = r.header("location").unwrap();
    assert!(loc.contains("/v2/x/blobs/blobs/uploads/"), "{loc}");
    let id = r.header("docker-upload-uuid").unwrap();
    let r = send(
        &app,
        Method::GET,
        &format!("/v2/x/blobs/blobs/uploads/{id}"),
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    assert_eq!(r.header("range"), Some("0-0"));
}

#[tokio::test]
async fn the_guard_challenges_with_the_spec_error_json() {
    let (app, _dir) = app(locked());
    let r = send(&app, Method::GET, "/v2/team/app/tags/list").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="berth-test""#)
    );
    assert_eq!(
        r.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert_eq!(
        r.body,
        r#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required","detail":[{"Action":"pull","Name":"team/app","Type":"repository"}]}]}"#
    );
    // The base route needs valid credentials too, with no scope in the detail.
    let r = send(&app, Method::GET, "/v2/").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.json()["errors"][0].get("detail").is_none(), "{}", r.body);
    // An invalid name is refused before credentials are looked at.
    let r = send(&app, Method::GET, "/v2/A/tags/list").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json()["errors"][0]["code"], "NAME_INVALID");
    // Not a registry route: the handler answers, no challenge.
    let r = send(&app, Method::GET, "/v2/a/unknown/x").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.header("www-authenticate"), None);
    // A method the route does not serve: 405, no challenge.
    let r = send(&app, Method::POST, "/v2/a/manifests/v1").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
}
