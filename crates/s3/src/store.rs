//! [`S3Storage`]: the [`Storage`] trait on an S3 bucket.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use berth_storage::{ByteRange, Meta, Object, ObjectWriter, Result, Storage, StorageError};
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder, AmazonS3ConfigKey};
use object_store::path::Path;
use object_store::signer::Signer;
use object_store::{
    ClientOptions, GetOptions, GetRange, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};

use crate::config::{DEFAULT_CHUNK_SIZE, MIN_CHUNK_SIZE, S3Config};
use crate::error::S3Error;
use crate::writer;

/// Storage in an S3 bucket (AWS S3, Garage, MinIO, Ceph RGW...), with keys laid out as CNCF
/// Distribution's S3 driver lays them out: `<rootdirectory>/docker/registry/v2/...`.
#[derive(Clone)]
pub struct S3Storage {
    store: Arc<AmazonS3>,
    /// `rootdirectory` without its slashes, followed by `/`; empty for the bucket's root.
    prefix: String,
    chunk_size: usize,
    describe: String,
}

/// Maps an `object_store` error on `path` to a storage error.
/// How long `put_if_absent` waits before reading back what it wrote (see there).
const CREATE_SETTLE: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn map_err(path: &str, e: object_store::Error) -> StorageError {
    match e {
        object_store::Error::NotFound { .. } => StorageError::NotFound(path.to_owned()),
        other => StorageError::Io {
            path: path.to_owned(),
            source: std::io::Error::other(other),
        },
    }
}

impl S3Storage {
    /// Connects to the bucket and checks that it exists and that the credentials may list it,
    /// so that a wrong setting fails at start with a clear message.
    pub async fn connect(cfg: S3Config) -> Result<Self, S3Error> {
        // reqwest is built without a bundled TLS provider (Berth uses ring throughout).
        let _ = rustls::crypto::ring::default_provider().install_default();
        if cfg.bucket.is_empty() {
            return Err(S3Error::Config("storage.s3.bucket is not set".into()));
        }
        let chunk_size = match cfg.chunk_size {
            0 => DEFAULT_CHUNK_SIZE,
            n if n < MIN_CHUNK_SIZE => {
                return Err(S3Error::Config(format!(
                    "storage.s3.chunksize is {n} bytes; S3 needs parts of at least {MIN_CHUNK_SIZE}"
                )));
            }
            n => n,
        };
        let mut b = AmazonS3Builder::new();
        for (key, value) in &cfg.aws_settings {
            // The same rule as `AmazonS3Builder::from_env`, on settings the caller passed.
            if let Ok(k) = key.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                b = b.with_config(k, value);
            }
        }
        let mut b = b
            .with_bucket_name(&cfg.bucket)
            .with_region(cfg.region.clone().unwrap_or_else(|| "us-east-1".into()))
            .with_virtual_hosted_style_request(!cfg.force_path_style)
            .with_allow_http(cfg.allow_http)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(cfg.allow_http)
                    .with_allow_invalid_certificates(cfg.skip_verify)
                    .with_connect_timeout(Duration::from_secs(5))
                    // Blob bodies stream through one request: bound the whole request
                    // generously, and stalls by the connect timeout and retries.
                    .with_timeout(Duration::from_secs(900)),
            )
            .with_retry(RetryConfig {
                // A store that stays down fails the request within seconds, so that the
                // registry client gets a 5xx it can retry rather than a hung connection.
                max_retries: 3,
                retry_timeout: Duration::from_secs(15),
                ..Default::default()
            });
        if let Some(e) = &cfg.endpoint {
            b = b.with_endpoint(e.trim_end_matches('/'));
        }
        match (&cfg.access_key, &cfg.secret_key) {
            (Some(a), Some(s)) => {
                b = b.with_access_key_id(a).with_secret_access_key(s);
                if let Some(t) = &cfg.session_token {
                    b = b.with_token(t);
                }
            }
            (Some(_), None) | (None, Some(_)) => {
                return Err(S3Error::Config(
                    "storage.s3 needs both accesskey and secretkey, or neither".into(),
                ));
            }
            (None, None) => {}
        }
        let store = b.build().map_err(|e| S3Error::Config(e.to_string()))?;
        let prefix = match cfg.root_directory.trim_matches('/') {
            "" => String::new(),
            r => format!("{r}/"),
        };
        let endpoint = cfg
            .endpoint
            .clone()
            .unwrap_or_else(|| "https://s3.amazonaws.com".into());
        let s = S3Storage {
            store: Arc::new(store),
            describe: format!("s3 bucket {} at {endpoint}, prefix {prefix:?}", cfg.bucket),
            prefix,
            chunk_size,
        };
        s.check(&cfg.bucket, &endpoint).await?;
        Ok(s)
    }

    async fn check(&self, bucket: &str, endpoint: &str) -> Result<(), S3Error> {
        let probe = Path::from(format!("{}docker", self.prefix));
        match self.store.list_with_delimiter(Some(&probe)).await {
            Ok(_) => Ok(()),
            Err(e) => Err(S3Error::from_probe(bucket, endpoint, e)),
        }
    }

    pub(crate) fn store(&self) -> Arc<AmazonS3> {
        self.store.clone()
    }

    pub(crate) fn chunk_size(&self) -> usize {
        self.chunk_size
    }

    fn key(&self, path: &str) -> Result<Path> {
        berth_storage::check_key(path)?;
        Ok(Path::from(format!("{}{path}", self.prefix)))
    }

    async fn get_key(&self, key: &Path, path: &str, range: Option<ByteRange>) -> Result<Object> {
        if let Some(ByteRange { len: Some(0), .. }) = range {
            let m = self.store.head(key).await.map_err(|e| map_err(path, e))?;
            return Ok(Object {
                size: m.size,
                stream: futures::stream::empty().boxed(),
            });
        }
        let opts = GetOptions {
            range: range.map(|r| match r.len {
                Some(l) => GetRange::Bounded(r.start..r.start + l),
                None => GetRange::Offset(r.start),
            }),
            ..Default::default()
        };
        match self.store.get_opts(key, opts).await {
            Ok(res) => {
                let size = res.meta.size;
                let path = path.to_owned();
                Ok(Object {
                    size,
                    stream: res
                        .into_stream()
                        .map_err(move |e| {
                            std::io::Error::other(format!("reading {path} from S3: {e}"))
                        })
                        .boxed(),
                })
            }
            Err(object_store::Error::NotFound { .. }) => {
                Err(StorageError::NotFound(path.to_owned()))
            }
            Err(e) => match range {
                // S3 refuses a range that starts at or past the end with a 416.
                Some(r) => match self.store.head(key).await {
                    Ok(m) if r.start == m.size => Ok(Object {
                        size: m.size,
                        stream: futures::stream::empty().boxed(),
                    }),
                    Ok(m) if r.start > m.size => Err(StorageError::InvalidRange(path.to_owned())),
                    _ => Err(map_err(path, e)),
                },
                None => Err(map_err(path, e)),
            },
        }
    }

    /// Every object key under `key` (itself, its hidden writer keys and everything below).
    async fn keys_under(&self, key: &Path) -> Result<Vec<Path>> {
        let mut out = Vec::new();
        match self.store.head(key).await {
            Ok(_) => out.push(key.clone()),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(map_err(key.as_ref(), e)),
        }
        let skey = writer::state_key(key);
        if let Some(st) = writer::load_at(&self.store, &skey).await? {
            writer::discard(&self.store, key, &st).await?;
            out.push(skey);
        }
        let mut list = self.store.list(Some(key));
        while let Some(m) = list.next().await {
            let m = m.map_err(|e| map_err(key.as_ref(), e))?;
            if let Some(obj) = writer::object_of_state_key(&m.location)
                && let Some(st) = writer::load_at(&self.store, &m.location).await?
            {
                writer::discard(&self.store, &obj, &st).await?;
            }
            out.push(m.location);
        }
        Ok(out)
    }
}

#[async_trait]
impl Storage for S3Storage {
    fn describe(&self) -> String {
        self.describe.clone()
    }

    async fn get(&self, path: &str, range: Option<ByteRange>) -> Result<Object> {
        let key = self.key(path)?;
        match self.get_key(&key, path, range).await {
            Err(e) if e.is_not_found() && writer::seal(&self.store, &key).await? => {
                self.get_key(&key, path, range).await
            }
            r => r,
        }
    }

    async fn read(&self, path: &str, limit: u64) -> Result<Bytes> {
        let obj = self.get(path, None).await?;
        if obj.size > limit {
            return Err(StorageError::TooLarge {
                path: path.to_owned(),
                limit,
            });
        }
        let mut out = Vec::with_capacity(obj.size as usize);
        let mut st = obj.stream;
        while let Some(c) = st.next().await {
            out.extend_from_slice(&c.map_err(|e| StorageError::io(path, e))?);
        }
        Ok(Bytes::from(out))
    }

    async fn stat(&self, path: &str) -> Result<Meta> {
        let key = self.key(path)?;
        match self.store.head(&key).await {
            Ok(m) => {
                return Ok(Meta {
                    size: m.size,
                    modified: Some(m.last_modified.into()),
                    is_dir: false,
                });
            }
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(map_err(path, e)),
        }
        // An object being written has the size its last commit recorded; a directory has
        // keys below it. Both asked at once: a missing key is the common case here.
        let skey = writer::state_key(&key);
        let mut below = self.store.list(Some(&key));
        let (state, first) = tokio::join!(writer::load_at(&self.store, &skey), below.next());
        if let Some(st) = state? {
            return Ok(Meta {
                size: st.size,
                modified: None,
                is_dir: false,
            });
        }
        match first {
            Some(Ok(m)) => Ok(Meta {
                size: 0,
                modified: Some(m.last_modified.into()),
                is_dir: true,
            }),
            Some(Err(e)) => Err(map_err(path, e)),
            None => Err(StorageError::NotFound(path.to_owned())),
        }
    }

    async fn put(&self, path: &str, data: Bytes) -> Result<()> {
        let key = self.key(path)?;
        self.store
            .put(&key, PutPayload::from(data))
            .await
            .map_err(|e| map_err(path, e))?;
        Ok(())
    }

    async fn put_if_absent(&self, path: &str, data: Bytes) -> Result<bool> {
        let key = self.key(path)?;
        match self.store.head(&key).await {
            Ok(_) => return Ok(false),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(map_err(path, e)),
        }
        let opts = object_store::PutOptions {
            mode: object_store::PutMode::Create,
            ..Default::default()
        };
        // A conditional PUT (`If-None-Match: *`): AWS S3, MinIO and R2 refuse it when the key
        // exists, so one writer wins outright.
        match self
            .store
            .put_opts(&key, PutPayload::from(data.clone()), opts)
            .await
        {
            Ok(_) => {}
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => return Ok(false),
            Err(e) => return Err(map_err(path, e)),
        }
        // Some stores (Garage 2.5) ignore the condition and overwrite. Writers that raced
        // past the HEAD above all write within moments of each other; reading back once they
        // have settled tells each whether its write is the one that stayed, so all of them go
        // on with the same object. This runs once per object's life, so the wait is cheap.
        tokio::time::sleep(CREATE_SETTLE).await;
        let stored = self
            .store
            .get(&key)
            .await
            .map_err(|e| map_err(path, e))?
            .bytes()
            .await
            .map_err(|e| map_err(path, e))?;
        Ok(stored == data)
    }

    async fn list(&self, path: &str) -> Result<Vec<String>> {
        let key = self.key(path)?;
        let res = self
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| map_err(path, e))?;
        let mut names: Vec<String> = Vec::new();
        let prefixes = res.common_prefixes.iter();
        let objects = res.objects.iter().map(|m| &m.location);
        for p in prefixes.chain(objects) {
            let Some(n) = p.filename() else { continue };
            match writer::hidden_name(n) {
                None => names.push(n.to_owned()),
                Some(Some(obj)) => names.push(obj.to_owned()),
                Some(None) => {}
            }
        }
        if names.is_empty() && res.objects.is_empty() && res.common_prefixes.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    async fn list_folders(&self, path: &str) -> Result<Vec<String>> {
        let key = self.key(path)?;
        let res = self
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| map_err(path, e))?;
        if res.objects.is_empty() && res.common_prefixes.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        // A prefix is a folder; hidden upload objects are never prefixes.
        Ok(res
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_owned))
            .collect())
    }

    async fn delete(&self, path: &str) -> Result<()> {
        let key = self.key(path)?;
        let keys = self.keys_under(&key).await?;
        if keys.is_empty() {
            return Err(StorageError::NotFound(path.to_owned()));
        }
        let mut results = self
            .store
            .delete_stream(futures::stream::iter(keys.into_iter().map(Ok)).boxed());
        while let Some(r) = results.next().await {
            match r {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(map_err(path, e)),
            }
        }
        Ok(())
    }

    async fn rename(&self, from: &str, to: &str) -> Result<()> {
        let src = self.key(from)?;
        let dst = self.key(to)?;
        match self.store.head(&src).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                if !writer::seal(&self.store, &src).await? {
                    return Err(StorageError::NotFound(from.to_owned()));
                }
            }
            Err(e) => return Err(map_err(from, e)),
        }
        // S3 has no rename: a server-side copy (no bytes pass through Berth), then the
        // source goes.
        self.store
            .copy(&src, &dst)
            .await
            .map_err(|e| map_err(from, e))?;
        self.store
            .delete(&src)
            .await
            .map_err(|e| map_err(from, e))?;
        Ok(())
    }

    async fn writer(&self, path: &str, offset: u64) -> Result<Box<dyn ObjectWriter>> {
        let key = self.key(path)?;
        writer::open(self, path, key, offset).await
    }

    async fn presigned_get(&self, path: &str, expires: Duration) -> Result<Option<String>> {
        let key = self.key(path)?;
        let url = self
            .store
            .signed_url(http::Method::GET, &key, expires)
            .await
            .map_err(|e| map_err(path, e))?;
        Ok(Some(url.to_string()))
    }
}
