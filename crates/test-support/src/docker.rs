//! The Docker engine, for the tests that pull and push with `docker`.

use std::process::Command;

/// Fails the test with a clear message when the Docker daemon is not reachable.
pub fn require_docker() {
    let out = Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output();
    match out {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "the Docker daemon is not reachable (`docker info` failed); this test needs it:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!("cannot run the docker CLI; this test needs a Docker engine: {e}"),
    }
}
