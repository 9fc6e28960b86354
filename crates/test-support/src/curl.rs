//! HTTP requests through the `curl` binary (a real, independent client), and their answers.

use std::process::Command;

use serde_json::Value;

/// An HTTP response.
#[derive(Debug, Clone)]
pub struct Resp {
    /// The status code.
    pub status: u16,
    /// Header names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body (empty for HEAD).
    pub body: Vec<u8>,
}

impl Resp {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics when it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {self}"))
    }

    /// The first error code of a spec error body.
    pub fn error_code(&self) -> String {
        self.json()["errors"][0]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no errors[0].code in {self}"))
            .to_owned()
    }

    /// Asserts an error answer: status, the spec's JSON body with `code`, and the version header.
    #[track_caller]
    pub fn assert_error(&self, status: u16, code: &str) {
        assert_eq!(self.status, status, "expected {status} {code}: {self}");
        self.assert_error_shape();
        let body = self.json();
        let codes: Vec<&str> = body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["code"].as_str())
            .collect();
        assert!(
            codes.contains(&code),
            "expected error code {code}, got {codes:?}: {self}"
        );
    }

    /// Asserts that an error answer has the spec's shape (any code) and the version header.
    #[track_caller]
    pub fn assert_error_shape(&self) {
        assert!(self.status >= 400, "not an error: {self}");
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{self}"
        );
        let v = self.json();
        let errs = v["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array: {self}"));
        assert!(!errs.is_empty(), "empty errors array: {self}");
        for e in errs {
            assert!(
                e["code"].as_str().is_some_and(|c| !c.is_empty()),
                "error without code: {self}"
            );
        }
    }

    /// Asserts a HEAD error answer: status and version header (HEAD has no body).
    #[track_caller]
    pub fn assert_head_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(
            self.header("docker-distribution-api-version"),
            Some("registry/2.0"),
            "{self}"
        );
        assert!(self.body.is_empty());
    }
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.status)?;
        for (k, v) in &self.headers {
            write!(f, "\n  {k}: {v}")?;
        }
        let body = self.text();
        let cut: String = body.chars().take(600).collect();
        write!(f, "\n  body ({} bytes): {cut}", self.body.len())
    }
}

/// A request run through the `curl` binary.
pub struct Req {
    method: String,
    url: String,
    headers: Vec<(String, String)>,
    body: Option<Vec<u8>>,
    extra: Vec<String>,
}

impl Req {
    /// A request of `method` to the absolute `url`.
    pub fn new(method: &str, url: String) -> Req {
        Req {
            method: method.to_owned(),
            url,
            headers: vec![],
            body: None,
            extra: vec![],
        }
    }

    /// Adds a request header.
    pub fn header(mut self, k: &str, v: &str) -> Req {
        self.headers.push((k.to_owned(), v.to_owned()));
        self
    }

    /// Sets the request body (sent as is, with no default `Content-Type`).
    pub fn body(mut self, b: impl Into<Vec<u8>>) -> Req {
        self.body = Some(b.into());
        self
    }

    /// Extra curl arguments.
    pub fn arg(mut self, a: &str) -> Req {
        self.extra.push(a.to_owned());
        self
    }

    /// Runs curl; panics when curl fails (no HTTP answer).
    pub fn send(self) -> Resp {
        let tmp = tempfile::tempdir().expect("curl tempdir");
        let hfile = tmp.path().join("headers");
        let bfile = tmp.path().join("body");
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "--path-as-is", "--max-time", "300", "-H", "Expect:"]);
        cmd.arg("-D").arg(&hfile).arg("-o").arg(&bfile);
        if self.method == "HEAD" {
            cmd.arg("-I");
        } else {
            cmd.args(["-X", &self.method]);
        }
        let has_ct = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        for (k, v) in &self.headers {
            cmd.arg("-H").arg(format!("{k}: {v}"));
        }
        if let Some(b) = &self.body {
            let f = tmp.path().join("request");
            std::fs::write(&f, b).unwrap();
            cmd.arg("--data-binary").arg(format!("@{}", f.display()));
            if !has_ct {
                // curl would otherwise send application/x-www-form-urlencoded.
                cmd.args(["-H", "Content-Type:"]);
            }
        }
        cmd.args(&self.extra);
        cmd.arg(&self.url);
        let out = cmd.output().expect("run curl");
        assert!(
            out.status.success(),
            "curl {} {} failed ({}): {}",
            self.method,
            self.url,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let raw = std::fs::read_to_string(&hfile).unwrap_or_default();
        // With -I curl writes the headers to the output file too; a HEAD answer has no body.
        let body = if self.method == "HEAD" {
            Vec::new()
        } else {
            std::fs::read(&bfile).unwrap_or_default()
        };
        parse_head(&raw, body).unwrap_or_else(|| {
            panic!(
                "curl {} {}: no HTTP status in {raw:?}",
                self.method, self.url
            )
        })
    }
}

/// Parses the last header block of a (possibly multi-block) response head.
fn parse_head(raw: &str, body: Vec<u8>) -> Option<Resp> {
    let blocks: Vec<&str> = raw
        .split("\r\n\r\n")
        .filter(|b| b.trim_start().starts_with("HTTP/"))
        .collect();
    let last = blocks.last()?;
    let mut lines = last.trim_start().split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    Some(Resp {
        status,
        headers,
        body,
    })
}

/// Follows a `Link: <url>; rel="next"` header.
pub fn next_link(r: &Resp) -> Option<String> {
    let l = r.header("link")?;
    let start = l.find('<')? + 1;
    let end = l.find('>')?;
    assert!(l.contains("rel=\"next\""), "Link without rel=\"next\": {l}");
    Some(l[start..end].to_owned())
}
