//! Berth's end-to-end tests, as one test binary (one link instead of one per file): the `berth`
//! binary run as a process against real peers on loopback (curl, skopeo, umoci, Docker, CNCF
//! Distribution, Garage). Each module is one suite; `cargo test -p berth --test e2e -- serve_api::`
//! runs one. The helpers they share live in `berth-test-support`; `authsupport` holds what only
//! the `auth_*` suites use.

mod authsupport;

mod auth_builtin;
mod auth_docker;
mod auth_htpasswd;
mod auth_token;
mod build_cli;
mod client_cli;
mod serve_api;
mod serve_bad_input;
mod serve_compat;
mod serve_concurrency;
mod serve_config;
mod serve_crash;
mod serve_docker;
mod serve_gc;
mod serve_hardening;
mod serve_index;
mod serve_metrics;
mod serve_policies;
mod serve_s3;
mod serve_skopeo;
