//! htpasswd files with bcrypt entries, and the password checker that verifies against them
//! off the async workers with a short-lived cache of successful checks.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_oci::{Algorithm, Hasher};
use rand::RngCore as _;
use subtle::ConstantTimeEq as _;

/// Why an htpasswd file was refused at load time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HtpasswdError {
    /// The file could not be read.
    #[error("cannot read htpasswd file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A line is not `user:hash`.
    #[error("{origin} line {line}: expected USER:HASH")]
    Malformed {
        /// The file.
        origin: String,
        /// 1-based line number.
        line: usize,
    },
    /// An entry uses a hash other than bcrypt.
    #[error(
        "{origin} line {line}: user {user:?} has a {kind} hash, which Berth does not accept; only bcrypt is: recreate the entry with `htpasswd -B {origin} {user}`"
    )]
    NotBcrypt {
        /// The file.
        origin: String,
        /// 1-based line number.
        line: usize,
        /// The user of the entry.
        user: String,
        /// The hash kind found (`MD5 ($apr1$)`, `SHA-1 ({SHA})`, ...).
        kind: &'static str,
    },
    /// A user appears twice.
    #[error("{origin} line {line}: user {user:?} is listed twice; keep one entry")]
    Duplicate {
        /// The file.
        origin: String,
        /// 1-based line number of the second entry.
        line: usize,
        /// The user.
        user: String,
    },
}

fn hash_kind(hash: &str) -> Result<(), &'static str> {
    let b = hash.as_bytes();
    let is_bcrypt =
        (hash.starts_with("$2y$") || hash.starts_with("$2a$") || hash.starts_with("$2b$"))
            && b.len() == 60
            && b[4].is_ascii_digit()
            && b[5].is_ascii_digit()
            && b[6] == b'$'
            && b[7..]
                .iter()
                .all(|c| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/');
    if is_bcrypt {
        return Ok(());
    }
    Err(if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$1$") {
        "MD5-crypt ($1$)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt ($5$/$6$)"
    } else if hash.starts_with("$2") {
        "malformed bcrypt"
    } else if hash.len() == 13 {
        "DES crypt or plain-text"
    } else {
        "plain-text or unknown"
    })
}

/// A loaded htpasswd file: user name → bcrypt hash.
pub struct Htpasswd {
    entries: HashMap<String, String>,
    /// A bcrypt hash of a random password, verified against for unknown users so that a
    /// missing user costs as much time as a wrong password.
    dummy: String,
}

impl std::fmt::Debug for Htpasswd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Htpasswd")
            .field("users", &self.entries.len())
            .finish_non_exhaustive()
    }
}

impl Htpasswd {
    /// Reads and parses an htpasswd file (see [`Htpasswd::parse`]).
    pub fn load(path: &Path) -> Result<Self, HtpasswdError> {
        let text = std::fs::read_to_string(path).map_err(|source| HtpasswdError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses htpasswd text. Blank lines and `#` comments are skipped; every entry must be
    /// bcrypt (`$2y$`, `$2a$`, `$2b$`, as written by `htpasswd -B`). `origin` names the file in
    /// error messages.
    pub fn parse(text: &str, origin: &str) -> Result<Self, HtpasswdError> {
        let mut entries = HashMap::new();
        let mut costs = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (user, hash) = line
                .split_once(':')
                .filter(|(u, h)| !u.is_empty() && !h.is_empty())
                .ok_or_else(|| HtpasswdError::Malformed {
                    origin: origin.to_owned(),
                    line: i + 1,
                })?;
            // A trailing `:comment` field is allowed by some tools.
            let hash = hash.split(':').next().unwrap_or(hash);
            hash_kind(hash).map_err(|kind| HtpasswdError::NotBcrypt {
                origin: origin.to_owned(),
                line: i + 1,
                user: user.to_owned(),
                kind,
            })?;
            costs.push(hash[4..6].parse::<u32>().unwrap_or(10));
            if entries.insert(user.to_owned(), hash.to_owned()).is_some() {
                return Err(HtpasswdError::Duplicate {
                    origin: origin.to_owned(),
                    line: i + 1,
                    user: user.to_owned(),
                });
            }
        }
        // The dummy uses the highest cost in the file so unknown users are never cheaper.
        let cost = costs.iter().copied().max().unwrap_or(5).clamp(4, 31);
        let mut pw = [0u8; 24];
        rand::rng().fill_bytes(&mut pw);
        let dummy = bcrypt::hash(pw, cost).unwrap_or_else(|_| {
            "$2y$05$abcdefghijklmnopqrstuuNwXGXsOo8lCbsPYuKzsP7cfv7b/lD8C".to_owned()
        });
        Ok(Htpasswd { entries, dummy })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the file has no users.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// True when `user` has an entry.
    pub fn contains(&self, user: &str) -> bool {
        self.entries.contains_key(user)
    }

    /// Verifies a password (blocking: runs bcrypt). Unknown users are verified against a dummy
    /// hash so that they take as long as a wrong password.
    pub fn verify_blocking(&self, user: &str, password: &str) -> PasswordCheck {
        match self.entries.get(user) {
            Some(hash) => match bcrypt::verify(password, hash) {
                Ok(true) => PasswordCheck::Ok,
                _ => PasswordCheck::WrongPassword,
            },
            None => {
                let _ = bcrypt::verify(password, &self.dummy);
                PasswordCheck::UnknownUser
            }
        }
    }
}

/// The outcome of a password check. Callers must answer unknown users and wrong passwords
/// identically; the distinction is only for the audit log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasswordCheck {
    /// User known and password right.
    Ok,
    /// User known, password wrong.
    WrongPassword,
    /// No such user.
    UnknownUser,
    /// Not checked: too many checks are running and waiting. Answer "retry shortly", not
    /// "wrong password".
    Busy,
}

impl PasswordCheck {
    /// The audit reason word.
    pub fn reason(self) -> &'static str {
        match self {
            PasswordCheck::Ok => "ok",
            PasswordCheck::WrongPassword => "wrong_password",
            PasswordCheck::UnknownUser => "unknown_user",
            PasswordCheck::Busy => "busy",
        }
    }
}

/// How long a successful check is remembered by default.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(60);
/// Most users remembered at once by default.
pub const DEFAULT_CACHE_CAPACITY: usize = 1024;

/// Password checks waiting for a slot, per slot, beyond which callers are told to retry.
const WAITING_PER_SLOT: usize = 16;
/// Recent failed checks remembered (so that a client retrying the same wrong password costs
/// no bcrypt run).
const FAILURES_REMEMBERED: usize = 4096;

struct CacheEntry {
    digest: [u8; 32],
    expires: Instant,
}

/// Bcrypt runs at once: half the cores (at least one), so that sign-ins never take all the CPU
/// and never fill the blocking pool that file I/O needs.
fn default_slots() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get() / 2)
        .unwrap_or(1)
        .max(1)
}

/// Checks passwords against an [`Htpasswd`] on the blocking thread pool, remembering successful
/// checks for a short time.
///
/// The cache holds, per user, SHA-256(per-process random salt ‖ user ‖ 0 ‖ password) of the last
/// password that verified, never the password; a hit is compared in constant time. It is keyed
/// by user name (not secret) so that the lookup itself does not depend on the password. Entries
/// expire after the TTL; when full, expired entries are dropped first, then the one closest to
/// expiry.
///
/// Bcrypt is slow by design (cost 12 is about 250 ms of CPU), so checks are bounded: at most
/// [`PasswordChecker::slots`] run at once, a few per slot may wait, and beyond that a check
/// answers [`PasswordCheck::Busy`] at once; failed checks are remembered for the TTL by the same
/// salted digest, so a client repeating a wrong password is answered without bcrypt. A flood of
/// wrong passwords thus costs at most the slots' CPU, and requests that need no password check
/// (cached users, anonymous pulls, tokens) are never queued behind it.
pub struct PasswordChecker {
    htpasswd: Arc<Htpasswd>,
    salt: [u8; 32],
    ttl: Duration,
    capacity: usize,
    cache: Mutex<HashMap<String, CacheEntry>>,
    failures: Mutex<HashMap<[u8; 32], Instant>>,
    slots: Arc<tokio::sync::Semaphore>,
    slot_count: usize,
    waiting: std::sync::atomic::AtomicUsize,
}

impl std::fmt::Debug for PasswordChecker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PasswordChecker")
            .field("htpasswd", &self.htpasswd)
            .finish_non_exhaustive()
    }
}

impl PasswordChecker {
    /// A checker with the default cache (60 s, 1024 users).
    pub fn new(htpasswd: Htpasswd) -> Self {
        Self::with_cache(htpasswd, DEFAULT_CACHE_TTL, DEFAULT_CACHE_CAPACITY)
    }

    /// A checker with a given cache TTL and capacity (capacity 0 disables the cache).
    pub fn with_cache(htpasswd: Htpasswd, ttl: Duration, capacity: usize) -> Self {
        let mut salt = [0u8; 32];
        rand::rng().fill_bytes(&mut salt);
        let slot_count = default_slots();
        PasswordChecker {
            htpasswd: Arc::new(htpasswd),
            salt,
            ttl,
            capacity,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            slots: Arc::new(tokio::sync::Semaphore::new(slot_count)),
            slot_count,
            waiting: Default::default(),
        }
    }

    /// How many bcrypt checks run at once.
    pub fn slots(&self) -> usize {
        self.slot_count
    }

    fn failed_recently(&self, digest: &[u8; 32]) -> bool {
        let failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        failures.get(digest).is_some_and(|&t| t > Instant::now())
    }

    fn remember_failure(&self, digest: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if failures.len() >= FAILURES_REMEMBERED {
            failures.retain(|_, &mut t| t > now);
            if failures.len() >= FAILURES_REMEMBERED {
                failures.clear();
            }
        }
        failures.insert(digest, now + self.ttl);
    }

    /// The users file.
    pub fn htpasswd(&self) -> &Htpasswd {
        &self.htpasswd
    }

    fn digest(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Hasher::new(Algorithm::Sha256);
        h.update(&self.salt);
        h.update(user.as_bytes());
        h.update(&[0u8]);
        h.update(password.as_bytes());
        h.finish()
            .to_bytes()
            .try_into()
            .expect("SHA-256 output is 32 bytes")
    }

    fn cached(&self, user: &str, digest: &[u8; 32]) -> bool {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache
            .get(user)
            .is_some_and(|e| e.expires > Instant::now() && bool::from(e.digest.ct_eq(digest)))
    }

    fn remember(&self, user: &str, digest: [u8; 32]) {
        if self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= self.capacity && !cache.contains_key(user) {
            cache.retain(|_, e| e.expires > now);
            if cache.len() >= self.capacity {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, e)| e.expires)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            user.to_owned(),
            CacheEntry {
                digest,
                expires: now + self.ttl,
            },
        );
    }

    /// Number of cached users (for tests and metrics).
    pub fn cache_len(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Checks a password; bcrypt runs under `tokio::task::spawn_blocking`, in one of the
    /// bounded slots.
    pub async fn check(&self, user: &str, password: &str) -> PasswordCheck {
        use std::sync::atomic::Ordering;
        let digest = self.digest(user, password);
        if self.cached(user, &digest) {
            return PasswordCheck::Ok;
        }
        if self.failed_recently(&digest) {
            return PasswordCheck::WrongPassword;
        }
        // Counted while waiting for a slot or running, so that the queue stays short.
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::SeqCst);
            }
        }
        let queued = self.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(&self.waiting);
        if queued >= self.slot_count * (WAITING_PER_SLOT + 1) {
            return PasswordCheck::Busy;
        }
        let Ok(_slot) = self.slots.clone().acquire_owned().await else {
            return PasswordCheck::Busy;
        };
        let htpasswd = Arc::clone(&self.htpasswd);
        let (u, p) = (user.to_owned(), password.to_owned());
        let result = tokio::task::spawn_blocking(move || htpasswd.verify_blocking(&u, &p))
            .await
            .unwrap_or(PasswordCheck::WrongPassword);
        match result {
            PasswordCheck::Ok => self.remember(user, digest),
            _ => self.remember_failure(digest),
        }
        result
    }
}

/// Hex of a digest (used in tests and kids).
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(entries: &[(&str, &str)]) -> String {
        entries
            .iter()
            .map(|(u, p)| format!("{u}:{}\n", bcrypt::hash(p, 4).unwrap()))
            .collect()
    }

    #[test]
    fn refuses_other_hashes_naming_the_line_and_user() {
        let cases = [
            ("carol:$apr1$abc$defghijklmnopqrstuvwx.", "MD5"),
            ("carol:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "SHA-1"),
            ("carol:$1$abc$def", "MD5-crypt"),
            ("carol:$6$abc$def", "SHA-crypt"),
            ("carol:abcdefghijklm", "DES crypt"),
            ("carol:secret", "plain-text"),
            ("carol:$2y$05$short", "malformed bcrypt"),
        ];
        for (line, kind) in cases {
            let text = format!("# users\n{}{line}\n", file(&[("alice", "a")]));
            let err = Htpasswd::parse(&text, "/etc/berth/htpasswd").unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("line 3"), "{msg}");
            assert!(msg.contains("\"carol\""), "{msg}");
            assert!(msg.contains(kind), "{msg}");
            assert!(msg.contains("htpasswd -B"), "{msg}");
        }
    }

    #[test]
    fn malformed_and_duplicate() {
        assert!(matches!(
            Htpasswd::parse("nocolon\n", "f"),
            Err(HtpasswdError::Malformed { line: 1, .. })
        ));
        assert!(matches!(
            Htpasswd::parse(":x\n", "f"),
            Err(HtpasswdError::Malformed { .. })
        ));
        let dup = file(&[("a", "1"), ("a", "2")]);
        assert!(matches!(
            Htpasswd::parse(&dup, "f"),
            Err(HtpasswdError::Duplicate { line: 2, .. })
        ));
        let e = Htpasswd::load(Path::new("/nonexistent/htpasswd")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/htpasswd"));
    }

    #[test]
    fn accepts_all_bcrypt_prefixes() {
        let h = bcrypt::hash("pw", 4).unwrap(); // $2b$
        let text = format!(
            "a:{}\nb:{}\nc:{}\n",
            h,
            h.replacen("$2b$", "$2y$", 1),
            h.replacen("$2b$", "$2a$", 1)
        );
        let f = Htpasswd::parse(&text, "f").unwrap();
        assert_eq!(f.len(), 3);
        for u in ["a", "b", "c"] {
            assert_eq!(f.verify_blocking(u, "pw"), PasswordCheck::Ok, "{u}");
            assert_eq!(
                f.verify_blocking(u, "wrong"),
                PasswordCheck::WrongPassword,
                "{u}"
            );
        }
        assert_eq!(f.verify_blocking("zed", "pw"), PasswordCheck::UnknownUser);
        assert!(f.dummy.starts_with("$2"));
    }

    #[tokio::test]
    async fn a_flood_of_checks_is_bounded_and_wrong_passwords_are_remembered() {
        // Cost 10 (tens of milliseconds a check): no check ends while the flood is queued.
        let line = format!("alice:{}\n", bcrypt::hash("right", 10).unwrap());
        let f = Htpasswd::parse(&line, "f").unwrap();
        let c = PasswordChecker::new(f);
        assert_eq!(c.check("alice", "right").await, PasswordCheck::Ok);
        // Many distinct wrong passwords at once: a bounded number is checked, the rest are
        // told to retry, and a cached user is answered meanwhile.
        let flood = (0..500).map(|i| {
            let c = &c;
            async move { c.check("mallory", &format!("guess-{i}")).await }
        });
        let (results, cached) = tokio::join!(futures::future::join_all(flood), async {
            c.check("alice", "right").await
        });
        assert_eq!(cached, PasswordCheck::Ok);
        let busy = results
            .iter()
            .filter(|r| **r == PasswordCheck::Busy)
            .count();
        let checked = results.len() - busy;
        assert!(busy > 0, "nothing was refused");
        assert!(
            checked <= c.slots() * (WAITING_PER_SLOT + 1),
            "{checked} checks ran or waited"
        );
        // The same wrong password again is answered from memory, even when the slots are full.
        let _slots: Vec<_> = (0..c.slots())
            .map(|_| c.slots.clone().try_acquire_owned().unwrap())
            .collect();
        assert_eq!(
            c.check("mallory", "guess-0").await,
            PasswordCheck::WrongPassword
        );
        assert_eq!(c.check("alice", "right").await, PasswordCheck::Ok);
    }

    #[tokio::test]
    async fn checker_caches_only_successes_and_respects_password() {
        let f = Htpasswd::parse(&file(&[("alice", "right")]), "f").unwrap();
        let c = PasswordChecker::new(f);
        assert_eq!(
            c.check("alice", "wrong").await,
            PasswordCheck::WrongPassword
        );
        assert_eq!(c.cache_len(), 0);
        assert_eq!(c.check("alice", "right").await, PasswordCheck::Ok);
        assert_eq!(c.cache_len(), 1);
        assert!(c.cached("alice", &c.digest("alice", "right")));
        // A cached user with a different password still fails (goes to bcrypt).
        assert_eq!(
            c.check("alice", "wrong").await,
            PasswordCheck::WrongPassword
        );
        assert_eq!(c.check("alice", "right").await, PasswordCheck::Ok);
        assert_eq!(c.check("bob", "right").await, PasswordCheck::UnknownUser);
    }

    #[tokio::test]
    async fn cache_expires_and_is_bounded() {
        let f = Htpasswd::parse(&file(&[("a", "1"), ("b", "2"), ("c", "3")]), "f").unwrap();
        let c = PasswordChecker::with_cache(f, Duration::from_secs(3600), 2);
        for (u, p) in [("a", "1"), ("b", "2"), ("c", "3")] {
            assert_eq!(c.check(u, p).await, PasswordCheck::Ok);
        }
        assert_eq!(c.cache_len(), 2);
        let f = Htpasswd::parse(&file(&[("a", "1")]), "f").unwrap();
        let c = PasswordChecker::with_cache(f, Duration::ZERO, 10);
        assert_eq!(c.check("a", "1").await, PasswordCheck::Ok);
        assert!(
            !c.cached("a", &c.digest("a", "1")),
            "a zero TTL entry is already expired"
        );
        assert_eq!(hex_lower(&[0, 255]), "00ff");
    }
}
