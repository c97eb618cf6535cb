//! Object storage shared by every module: local filesystem by default, any S3-compatible server
//! by configuration. Callers see only `object_store::ObjectStore`; this file never runs SQL.

use std::sync::Arc;

use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::{ClientOptions, ObjectStore, RetryConfig};

use crate::config::StoreConfig;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("object store at {place}: {source}")]
    Open {
        place: String,
        source: object_store::Error,
    },
    #[error("object store folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
}

pub type Store = Arc<dyn ObjectStore>;

pub fn open(config: &StoreConfig) -> Result<Store, StoreError> {
    match config {
        StoreConfig::Local { path } => {
            std::fs::create_dir_all(path).map_err(|source| StoreError::Folder {
                path: path.display().to_string(),
                source,
            })?;
            let fs = LocalFileSystem::new_with_prefix(path).map_err(|source| StoreError::Open {
                place: path.display().to_string(),
                source,
            })?;
            Ok(Arc::new(fs))
        }
        StoreConfig::S3 {
            bucket,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            path_style,
            ..
        } => {
            // Short internal retries: the chain writer retries forever itself, and counts and
            // logs each failure, so an outage is visible instead of hidden in a 3-minute wait.
            let retry = RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
                backoff: Default::default(),
            };
            let client = ClientOptions::new()
                .with_connect_timeout(Duration::from_secs(5))
                .with_timeout(Duration::from_secs(60));
            let mut b = AmazonS3Builder::new()
                .with_retry(retry)
                .with_client_options(client)
                .with_bucket_name(bucket)
                .with_region(region)
                .with_access_key_id(access_key_id)
                .with_secret_access_key(secret_access_key)
                .with_virtual_hosted_style_request(!path_style);
            if let Some(endpoint) = endpoint {
                b = b
                    .with_endpoint(endpoint)
                    .with_allow_http(endpoint.starts_with("http://"));
            }
            let s3 = b.build().map_err(|source| StoreError::Open {
                place: format!("s3 bucket {bucket}"),
                source,
            })?;
            Ok(Arc::new(s3))
        }
    }
}
