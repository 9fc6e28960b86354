//! A pool of registry clients keyed by host, so that copying one reference to another is one
//! call with two references, as `crane.Copy(src, dst)` is.

use std::collections::HashMap;
use std::sync::Mutex;

use berth_oci::Reference;

use crate::client::{Client, ClientOptions};
use crate::copy::{CopyOptions, CopyReport, RegistryRepo, copy};
use crate::error::Result;

/// One [`Client`] per registry host, made on first use from one set of options (its keychain
/// answers for every host; [`ClientOptions::insecure_registries`] names hosts one by one) and
/// shared afterwards, with its connections and cached tokens.
///
/// ```no_run
/// # async fn demo() -> Result<(), berth_client::Error> {
/// use berth_client::{CopyOptions, Registries};
/// let pool = Registries::new(Default::default());
/// let src = "127.0.0.1:5000/team/app:v1".parse()?;
/// let dst = "127.0.0.1:5001/mirror/app:v1".parse()?;
/// let report = pool.copy(&src, &dst, &CopyOptions::default()).await?;
/// println!("{:?} ({} blobs copied)", report.digest, report.blobs_copied);
/// # Ok(()) }
/// ```
pub struct Registries {
    options: ClientOptions,
    clients: Mutex<HashMap<String, Client>>,
}

impl Registries {
    /// A pool whose clients all use `options`.
    pub fn new(options: ClientOptions) -> Self {
        Registries {
            options,
            clients: Mutex::new(HashMap::new()),
        }
    }

    /// The client of `host` (`host[:port]`), made on first use.
    ///
    /// # Errors
    ///
    /// What [`Client::new`] refuses (a malformed host, unreadable CA files).
    pub fn client(&self, host: &str) -> Result<Client> {
        let mut clients = self.clients.lock().expect("registry pool lock");
        if let Some(c) = clients.get(host) {
            return Ok(c.clone());
        }
        let c = Client::new(host, self.options.clone())?;
        clients.insert(host.to_owned(), c.clone());
        Ok(c)
    }

    /// Copies `src` to `dst` (an image or a whole index, digests kept; `dst`'s tag or digest
    /// is what is written), both resolved in this pool. See [`copy_between`] for two pools.
    ///
    /// # Errors
    ///
    /// As [`copy()`]: nothing is tagged unless everything it names is in the destination.
    pub async fn copy(
        &self,
        src: &Reference,
        dst: &Reference,
        opts: &CopyOptions,
    ) -> Result<CopyReport> {
        copy_between(self, src, self, dst, opts).await
    }
}

/// [`Registries::copy`] with each side from its own pool: the source read with `src_pool`'s
/// credentials, the destination written with `dst_pool`'s (two accounts on one registry).
///
/// # Errors
///
/// As [`copy()`].
pub async fn copy_between(
    src_pool: &Registries,
    src: &Reference,
    dst_pool: &Registries,
    dst: &Reference,
    opts: &CopyOptions,
) -> Result<CopyReport> {
    let from = RegistryRepo::new(src_pool.client(&src.registry)?, src.repository.clone());
    let to = RegistryRepo::new(dst_pool.client(&dst.registry)?, dst.repository.clone());
    copy(&from, &src.reference_str(), &to, &dst.reference_str(), opts).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_host_shared_afterwards() {
        let pool = Registries::new(ClientOptions::default());
        let a = pool.client("127.0.0.1:5000").unwrap();
        let b = pool.client("127.0.0.1:5001").unwrap();
        let a2 = pool.client("127.0.0.1:5000").unwrap();
        assert_eq!(a.registry(), "127.0.0.1:5000");
        assert_eq!(b.registry(), "127.0.0.1:5001");
        assert!(std::sync::Arc::ptr_eq(&a.inner, &a2.inner));
        assert!(!std::sync::Arc::ptr_eq(&a.inner, &b.inner));
        assert_eq!(pool.clients.lock().unwrap().len(), 2);
    }
}
