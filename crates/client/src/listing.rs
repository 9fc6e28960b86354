//! Listings: the catalog, `search` over it, and tags, paginated with `n`/`last` and `Link`.

use berth_oci::Digest;
use futures::StreamExt as _;
use reqwest::Method;

use crate::auth::Scope;
use crate::client::{Client, Req, urlencode};
use crate::error::{Error, Result};

/// Pagination and limits of a listing.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    /// Page size asked of the registry (`n`); the registry's default when `None`.
    pub page_size: Option<usize>,
    /// Start after this entry (`last`).
    pub last: Option<String>,
    /// Stop after this many entries in total.
    pub limit: Option<usize>,
}

#[derive(serde::Deserialize)]
struct TagList {
    #[serde(default)]
    tags: Option<Vec<String>>,
}

#[derive(serde::Deserialize)]
struct Catalog {
    #[serde(default)]
    repositories: Option<Vec<String>>,
}

/// The target of a `Link: <url>; rel="next"` header.
pub(crate) fn next_link(resp: &reqwest::Response) -> Option<String> {
    let link = resp.headers().get("link")?.to_str().ok()?;
    link.split(',').find_map(|part| {
        let part = part.trim();
        let (target, params) = part.strip_prefix('<')?.split_once('>')?;
        params
            .contains("rel=\"next\"")
            .then(|| target.to_owned())
            .or_else(|| params.contains("rel=next").then(|| target.to_owned()))
    })
}

/// Whether `name` matches a glob (`*`, `?`); a pattern without wildcards matches as a substring.
pub fn pattern_matches(pattern: &str, name: &str) -> bool {
    if !pattern.contains(['*', '?']) {
        return name.contains(pattern);
    }
    fn glob(p: &[u8], s: &[u8]) -> bool {
        let (mut pi, mut si, mut star, mut mark) = (0, 0, None, 0);
        while si < s.len() {
            if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
                pi += 1;
                si += 1;
            } else if pi < p.len() && p[pi] == b'*' {
                star = Some(pi);
                mark = si;
                pi += 1;
            } else if let Some(st) = star {
                pi = st + 1;
                mark += 1;
                si = mark;
            } else {
                return false;
            }
        }
        while pi < p.len() && p[pi] == b'*' {
            pi += 1;
        }
        pi == p.len()
    }
    glob(pattern.as_bytes(), name.as_bytes())
}

impl Client {
    /// Follows a paginated listing, parsing each page with `items`.
    async fn paginate(
        &self,
        path: &str,
        scope: Scope,
        what: &str,
        opts: &ListOptions,
        items: fn(&[u8]) -> Option<Vec<String>>,
    ) -> Result<Vec<String>> {
        let mut query = Vec::new();
        let n = match (opts.page_size, opts.limit) {
            (Some(p), Some(l)) => Some(p.min(l)),
            (p, l) => p.or(l),
        };
        if let Some(n) = n {
            query.push(format!("n={n}"));
        }
        if let Some(last) = &opts.last {
            query.push(format!("last={}", urlencode(last)));
        }
        let first = if query.is_empty() {
            path.to_owned()
        } else {
            format!("{path}?{}", query.join("&"))
        };
        let mut url = self.url(&first).await?;
        let mut out: Vec<String> = Vec::new();
        for _page in 0..10_000 {
            let resp = self
                .send_expect(
                    Req::new(Method::GET, url.clone(), scope.clone(), what),
                    &[200],
                )
                .await?;
            let next = next_link(&resp);
            let base = resp.url().clone();
            let body = self
                .read_capped(resp, crate::client::MAX_LISTING_BODY, what)
                .await?;
            let page = items(&body).ok_or_else(|| {
                self.protocol(format!(
                    "{what}: not a JSON listing: {}",
                    crate::error::snippet(&body)
                ))
            })?;
            let empty = page.is_empty();
            // Registries that ignore `last` would repeat entries; listings are sorted.
            out.extend(
                page.into_iter()
                    .filter(|t| opts.last.as_ref().is_none_or(|l| t > l)),
            );
            // The spec orders listings lexically; some registries (Distribution 2.8 for tags) do
            // not, so sort what was fetched before applying a limit.
            out.sort();
            out.dedup();
            if let Some(limit) = opts.limit
                && out.len() >= limit
            {
                out.truncate(limit);
                break;
            }
            match next {
                Some(n) if !empty => {
                    url = base
                        .join(&n)
                        .map_err(|_| self.protocol(format!("bad Link header {n:?}")))?
                        .to_string();
                }
                _ => break,
            }
        }
        Ok(out)
    }

    /// Lists a repository's tags, following pagination.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), berth_client::Error> {
    /// use berth_client::ListOptions;
    /// let client = berth_client::Client::new("127.0.0.1:5000", Default::default())?;
    /// let all = client.tags("app", None).await?;
    /// let page = client.tags("app", Some(&ListOptions { limit: Some(10), last: Some("v1".into()), ..Default::default() })).await?;
    /// # Ok(()) }
    /// ```
    pub async fn tags(&self, repo: &str, opts: Option<&ListOptions>) -> Result<Vec<String>> {
        let what = format!("tags of {}/{repo}", self.registry());
        let default = ListOptions::default();
        self.paginate(
            &format!("/v2/{repo}/tags/list"),
            Scope::pull(repo),
            &what,
            opts.unwrap_or(&default),
            |b| {
                serde_json::from_slice::<TagList>(b)
                    .ok()
                    .map(|t| t.tags.unwrap_or_default())
            },
        )
        .await
    }

    /// Resolves each tag's digest with `HEAD`, several at a time; order is kept.
    pub async fn tag_digests(&self, repo: &str, tags: &[String]) -> Result<Vec<(String, Digest)>> {
        let results: Vec<Result<(String, Digest)>> = futures::stream::iter(tags.iter().cloned())
            .map(|t| async move {
                let d = self.digest(repo, &t).await?;
                Ok((t, d))
            })
            .buffered(8)
            .collect()
            .await;
        results.into_iter().collect()
    }

    /// Lists the registry's repositories (`/v2/_catalog`), following pagination.
    pub async fn catalog(&self, opts: Option<&ListOptions>) -> Result<Vec<String>> {
        let what = format!("catalog of {}", self.registry());
        let default = ListOptions::default();
        self.paginate(
            "/v2/_catalog",
            Scope::catalog(),
            &what,
            opts.unwrap_or(&default),
            |b| {
                serde_json::from_slice::<Catalog>(b)
                    .ok()
                    .map(|c| c.repositories.unwrap_or_default())
            },
        )
        .await
        .map_err(|e| match e {
            Error::NotFound { .. } => Error::NotFound {
                what: format!("{what}: the registry has no catalog API"),
            },
            other => other,
        })
    }

    /// Repositories whose name matches `pattern` (a glob with `*`/`?`, or a substring).
    pub async fn search(&self, pattern: &str) -> Result<Vec<String>> {
        Ok(self
            .catalog(None)
            .await?
            .into_iter()
            .filter(|r| pattern_matches(pattern, r))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(pattern_matches("app", "team/app-x"));
        assert!(pattern_matches("team/*", "team/app"));
        assert!(pattern_matches("*/a?p", "x/app"));
        assert!(!pattern_matches("team/*", "other/app"));
        assert!(!pattern_matches("a?", "abc"));
    }
}
