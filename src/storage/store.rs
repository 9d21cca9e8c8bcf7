//! Opening the object store named by `--storage`, and proving it can commit safely.
//!
//! Commits rely on conditional create (`PutMode::Create`, S3 `If-None-Match: *`): of several
//! writers racing for the same manifest name, exactly one must win. Some S3-compatible servers
//! only check-then-write, which lets two win and tears a commit, so [`probe_conditional_create`]
//! races creates at startup and refuses a store that lets more than one through.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, RetryConfig,
};

use crate::config::{S3Settings, StorageLocation};
use crate::error::{Error, Result};

/// Racing writers used by the startup probe.
const PROBE_WRITERS: usize = 8;
/// A statement against an unreachable endpoint fails within about this long, not minutes.
const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(15);
const S3_RETRIES_MAX: usize = 4;
const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// One request, body included; a frozen endpoint (connections accepted, nothing answered)
/// fails a statement after two of these, within 20 s, not after object_store's 30 s default
/// (then without a retry). Parquet reads are ranges of a file, far below this at any speed.
const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(8);

/// Builds the store rooted at the configured folder or bucket prefix.
pub fn open_store(location: &StorageLocation, s3: &S3Settings) -> Result<Arc<dyn ObjectStore>> {
    match location {
        StorageLocation::Local(path) => {
            std::fs::create_dir_all(path).map_err(|e| Error::Storage {
                message: format!("cannot create data folder \"{}\": {e}", path.display()),
                retryable: false,
            })?;
            Error::set_data_folder(path);
            let store = LocalFileSystem::new_with_prefix(path).map_err(Error::storage)?;
            Ok(Arc::new(store.with_automatic_cleanup(true)))
        }
        StorageLocation::S3 { bucket, prefix } => {
            let retry = RetryConfig {
                max_retries: S3_RETRIES_MAX,
                retry_timeout: S3_RETRY_TIMEOUT,
                ..RetryConfig::default()
            };
            let client = ClientOptions::new()
                .with_connect_timeout(S3_CONNECT_TIMEOUT)
                .with_timeout(S3_REQUEST_TIMEOUT);
            let mut builder = AmazonS3Builder::new()
                .with_retry(retry)
                .with_client_options(client)
                .with_bucket_name(bucket)
                .with_region(&s3.region)
                .with_allow_http(s3.allow_http);
            if let Some(endpoint) = &s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            if let Some(key) = &s3.access_key_id {
                builder = builder.with_access_key_id(key);
            }
            if let Some(secret) = &s3.secret_access_key {
                builder = builder.with_secret_access_key(secret);
            }
            let store: Arc<dyn ObjectStore> = Arc::new(builder.build().map_err(Error::storage)?);
            if prefix.is_empty() {
                Ok(store)
            } else {
                Ok(Arc::new(PrefixStore::new(store, prefix.as_str())))
            }
        }
    }
}

/// Races [`PROBE_WRITERS`] conditional creates of one object and checks that exactly one wins.
pub async fn probe_conditional_create(store: &dyn ObjectStore, nonce: u128) -> Result<()> {
    let path = Path::from(format!("_probe/create-{nonce}"));
    let attempts = (0..PROBE_WRITERS).map(|i| {
        let payload = PutPayload::from(format!("writer {i}"));
        store.put_opts(&path, payload, PutOptions::from(PutMode::Create))
    });
    let results = join_all(attempts).await;
    let mut winners = 0;
    for result in results {
        match result {
            Ok(_) => winners += 1,
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {}
            Err(e) => return Err(Error::storage(e)),
        }
    }
    // A store that honours conditional create must also refuse a later, sequential create.
    let again = store
        .put_opts(
            &path,
            PutPayload::from("late"),
            PutOptions::from(PutMode::Create),
        )
        .await;
    let sequential_refused = match again {
        Ok(_) => false,
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => true,
        Err(e) => return Err(Error::storage(e)),
    };
    if let Err(e) = store.delete(&path).await {
        tracing::warn!(error = %e, path = %path, "could not delete the storage probe object");
    }
    if winners != 1 || !sequential_refused {
        return Err(Error::Config(format!(
            "the object store does not honour conditional create: {winners} of {PROBE_WRITERS} \
             racing creates of one object succeeded; SluiceDB commits manifests with \
             If-None-Match: * and cannot run safely on this store"
        )));
    }
    Ok(())
}
