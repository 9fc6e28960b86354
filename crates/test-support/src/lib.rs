//! Helpers of Berth's integration tests, in one place instead of copied from test file to test
//! file: guards around `berth serve` and CNCF Distribution's `docker-registry`, Garage (S3)
//! nodes, fault-injecting proxies, a `curl` wrapper, OCI image fixtures and image layouts,
//! `skopeo` wrappers, and snapshots of storage folders.
//!
//! Not published; only the workspace's tests depend on it. Helpers panic instead of returning
//! errors: a failing helper is a failing test, and the panic message says what went wrong.
//! Unlike the libraries, this crate reads environment variables (`BERTH_TEST_STORAGE`,
//! `GARAGE_BIN`, `CARGO_BIN_EXE_berth`).
#![warn(missing_docs)]

pub mod client;
pub mod curl;
pub mod data;
pub mod distribution;
pub mod docker;
pub mod fault;
pub mod garage;
pub mod image;
pub mod layout;
pub mod net;
pub mod pki;
pub mod postgres;
pub mod process;
pub mod serve;
pub mod skopeo;
pub mod storage;
