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

/// How much of a local file one read takes when an object is streamed.
const READ_PIECE: u64 = 256 * 1024;

/// The bytes of an object as a stream. A local file is read `READ_PIECE` at a time:
/// `object_store`'s own stream reads 8 KiB at a time, each read a trip to the blocking thread
/// pool and back (128 trips for a 1 MB segment, each one slow on a busy machine). Other stores'
/// streams pass through as they come.
pub fn object_stream(
    got: object_store::GetResult,
) -> futures::stream::BoxStream<'static, Result<bytes::Bytes, std::io::Error>> {
    use futures::{StreamExt, TryStreamExt};
    match got.payload {
        object_store::GetResultPayload::File(file, _) => futures::stream::try_unfold(
            (file, got.range.start, got.range.end),
            |(mut file, at, end)| async move {
                if at >= end {
                    return Ok(None);
                }
                let (file, piece) = tokio::task::spawn_blocking(move || {
                    use std::io::{Read, Seek, SeekFrom};
                    file.seek(SeekFrom::Start(at))?;
                    let mut piece = Vec::with_capacity((end - at).min(READ_PIECE) as usize);
                    (&mut file)
                        .take((end - at).min(READ_PIECE))
                        .read_to_end(&mut piece)?;
                    Ok::<_, std::io::Error>((file, piece))
                })
                .await
                .map_err(std::io::Error::other)??;
                if piece.is_empty() {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "object shorter than its listed size",
                    ));
                }
                let next = at + piece.len() as u64;
                Ok(Some((bytes::Bytes::from(piece), (file, next, end))))
            },
        )
        .boxed(),
        object_store::GetResultPayload::Stream(s) => s.map_err(std::io::Error::other).boxed(),
    }
}

/// The largest single write to a local file. On the kernels we run (Linux 6.18, ext4), one
/// `write` of 1 MiB into the page cache cost 2–6× as much system time as the same bytes in
/// 256 KiB writes, and varied from run to run by as much (measured with `dd bs=1M` against
/// `bs=256k` over 1.1 GiB; docs/performance.md): large writes are split.
pub const WRITE_CHUNK: usize = 256 * 1024;

/// `bytes` as a payload of `WRITE_CHUNK` slices (no copy): the local store writes each slice
/// with its own `write`, so a segment is never written in one large call.
pub fn payload(bytes: &bytes::Bytes) -> object_store::PutPayload {
    (0..bytes.len())
        .step_by(WRITE_CHUNK)
        .map(|at| bytes.slice(at..(at + WRITE_CHUNK).min(bytes.len())))
        .collect()
}

/// A file written at most `WRITE_CHUNK` bytes per call (see there).
pub struct ChunkedWrites<W>(pub W);

impl<W: std::io::Write> std::io::Write for ChunkedWrites<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(&buf[..buf.len().min(WRITE_CHUNK)])
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_payload_is_the_same_bytes_in_slices_no_larger_than_a_write() {
        for len in [
            0,
            1,
            WRITE_CHUNK - 1,
            WRITE_CHUNK,
            WRITE_CHUNK + 1,
            5 * WRITE_CHUNK + 7,
        ] {
            let bytes = bytes::Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
            let p = payload(&bytes);
            assert!(p.iter().all(|s| !s.is_empty() && s.len() <= WRITE_CHUNK));
            assert_eq!(
                p.iter().flatten().copied().collect::<Vec<u8>>(),
                bytes.to_vec()
            );
        }
    }

    #[test]
    fn chunked_writes_write_everything_a_chunk_at_a_time() {
        struct Calls(Vec<usize>, Vec<u8>);
        impl std::io::Write for Calls {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.push(buf.len());
                self.1.extend_from_slice(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let data: Vec<u8> = (0..(3 * WRITE_CHUNK + 5))
            .map(|i| (i % 251) as u8)
            .collect();
        let mut w = ChunkedWrites(Calls(Vec::new(), Vec::new()));
        std::io::Write::write_all(&mut w, &data).unwrap();
        assert_eq!(w.0.0, vec![WRITE_CHUNK, WRITE_CHUNK, WRITE_CHUNK, 5]);
        assert_eq!(w.0.1, data);
    }
}
