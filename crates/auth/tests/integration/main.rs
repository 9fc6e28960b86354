//! berth-auth's integration tests, as one test binary: htpasswd files written by Debian's
//! `htpasswd`, the built-in token issuer, and token (JWT) verification. `common` holds the keys,
//! certificates and tokens they make.

mod common;

mod htpasswd;
mod issuer;
mod token;
