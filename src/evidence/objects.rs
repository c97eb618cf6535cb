//! Stored objects read once into a package. Each object is read in pieces of `PIECE` bytes;
//! each piece is hashed with SHA-256 on the writing thread and written to the archive. A
//! segment's SM3 is normally known (computed when the chain writer sealed it, `media_digests`);
//! for an object without one, each piece is then handed to an SM3 worker, so both digests come
//! from the one read and SM3 (the slower) runs on the other cores. A fixed set of buffers travels between the writer and the workers: memory stays
//! at `BUFFERS × PIECE` whatever the object's size, and the writer waits when the workers fall
//! behind.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use futures::StreamExt;
use sha2::{Digest, Sha256};
use sm3::Sm3;

use crate::error::CoreError;
use crate::store::Store;

const PIECE: usize = 1 << 20;
const BUFFERS: usize = 8;

/// Why an object cannot go into a package: never bytes the chain does not vouch for.
fn tampered(key: &str, why: &str) -> CoreError {
    CoreError::conflict(
        "store_tampered",
        format!("object {key} {why}; the package was not completed; run verify"),
    )
}

enum Work {
    /// The next bytes of the lane's current object (the buffer goes back to the pool after).
    Piece(Vec<u8>),
    /// The lane's current object is complete: its digest is that of file `usize`.
    End(usize),
}

struct Lane {
    tx: mpsc::SyncSender<Work>,
    /// Pieces sent and not yet hashed: a new object goes to the lane with fewest.
    queued: Arc<AtomicUsize>,
}

/// SM3 on worker threads, one object at a time per worker.
struct Sm3Workers {
    lanes: Vec<Lane>,
    results: mpsc::Receiver<(usize, String)>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Sm3Workers {
    fn start(n: usize, free: mpsc::Sender<Vec<u8>>) -> Sm3Workers {
        let (done_tx, results) = mpsc::channel();
        let mut lanes = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let (tx, rx) = mpsc::sync_channel::<Work>(BUFFERS + 1);
            let queued = Arc::new(AtomicUsize::new(0));
            let (q, free, done) = (queued.clone(), free.clone(), done_tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("package-sm3-{i}"))
                .spawn(move || {
                    let mut h = Sm3::new();
                    for w in rx {
                        match w {
                            Work::Piece(buf) => {
                                h.update(&buf);
                                q.fetch_sub(1, Ordering::Relaxed);
                                let _ = free.send(buf);
                            }
                            Work::End(file) => {
                                let _ = done.send((file, hex::encode(h.finalize_reset())));
                            }
                        }
                    }
                })
                .expect("spawn an SM3 worker");
            lanes.push(Lane { tx, queued });
            threads.push(t);
        }
        Sm3Workers {
            lanes,
            results,
            threads,
        }
    }

    /// The lane with the fewest pieces waiting.
    fn least_busy(&self) -> usize {
        (0..self.lanes.len())
            .min_by_key(|&i| self.lanes[i].queued.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    fn send(&self, lane: usize, work: Work) -> Result<(), CoreError> {
        if let Work::Piece(_) = work {
            self.lanes[lane].queued.fetch_add(1, Ordering::Relaxed);
        }
        self.lanes[lane]
            .tx
            .send(work)
            .map_err(|_| CoreError::Internal("package: an SM3 worker stopped".into()))
    }

    /// Every digest, by file number.
    fn finish(self) -> Result<Vec<(usize, String)>, CoreError> {
        drop(self.lanes);
        for t in self.threads {
            t.join()
                .map_err(|_| CoreError::Internal("package: an SM3 worker failed".into()))?;
        }
        Ok(self.results.try_iter().collect())
    }
}

/// Where an object's bytes come from: the file itself for a local store, else the store's
/// stream.
enum Source {
    File(std::fs::File),
    Stream(
        futures::stream::BoxStream<'static, object_store::Result<bytes::Bytes>>,
        bytes::Bytes,
    ),
}

impl Source {
    /// Fills `buf` (cleared first) with up to `PIECE` bytes; empty at the end.
    fn fill(&mut self, handle: &tokio::runtime::Handle, buf: &mut Vec<u8>) -> Result<(), String> {
        buf.clear();
        match self {
            Source::File(f) => {
                use std::io::Read;
                buf.resize(PIECE, 0);
                let mut n = 0;
                while n < PIECE {
                    match f.read(&mut buf[n..]) {
                        Ok(0) => break,
                        Ok(k) => n += k,
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e.to_string()),
                    }
                }
                buf.truncate(n);
            }
            Source::Stream(stream, left) => {
                while buf.len() < PIECE {
                    if left.is_empty() {
                        match handle.block_on(stream.next()) {
                            None => break,
                            Some(Ok(b)) => *left = b,
                            Some(Err(e)) => return Err(e.to_string()),
                        }
                        continue;
                    }
                    let take = left.len().min(PIECE - buf.len());
                    buf.extend_from_slice(&left.split_to(take));
                }
            }
        }
        Ok(())
    }
}

/// The objects of one package as it is written: each read once, its SHA-256 checked and, unless
/// already known, its SM3 computed.
pub(crate) struct ObjectCopier {
    handle: tokio::runtime::Handle,
    store: Store,
    free_rx: mpsc::Receiver<Vec<u8>>,
    free_tx: mpsc::Sender<Vec<u8>>,
    /// Whether SM3 is wanted of objects whose digest is not known.
    sm3_wanted: bool,
    workers: usize,
    /// Started at the first object whose SM3 is to be computed (none, when all are known).
    sm3: Option<Sm3Workers>,
}

impl ObjectCopier {
    /// `sm3`: compute the SM3 of the objects copied whose digest is not known (on up to one
    /// worker per core, started at the first such object).
    pub(crate) fn new(handle: tokio::runtime::Handle, store: Store, sm3: bool) -> ObjectCopier {
        let (free_tx, free_rx) = mpsc::channel();
        for _ in 0..BUFFERS {
            let _ = free_tx.send(Vec::with_capacity(PIECE));
        }
        let workers = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        ObjectCopier {
            handle,
            store,
            free_rx,
            free_tx,
            sm3_wanted: sm3,
            workers,
            sm3: None,
        }
    }

    /// Opens stored object `key`, which must hold `len` bytes.
    fn open(&self, key: &str, len: u64) -> Result<Source, CoreError> {
        let path = object_store::path::Path::from(key);
        let got = match self.handle.block_on(self.store.get(&path)) {
            Ok(got) => got,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(tampered(key, "is missing from the store"));
            }
            Err(e) => return Err(e.into()),
        };
        if got.meta.size != len {
            return Err(tampered(
                key,
                &format!(
                    "holds {} bytes where its chain entry says {len}",
                    got.meta.size
                ),
            ));
        }
        Ok(match got.payload {
            object_store::GetResultPayload::File(f, _) => Source::File(f),
            object_store::GetResultPayload::Stream(s) => Source::Stream(s, bytes::Bytes::new()),
        })
    }

    /// Copies stored object `key` (`len` bytes, SHA-256 `sha256` by its chain entry) through
    /// `write` piece by piece, reading it once. With `sm3` (its digest is not known already),
    /// the file is package file number `file` for its SM3. A difference is an error once the
    /// last piece is read: the caller must then discard what was written (the package is
    /// incomplete and must not look whole).
    pub(crate) fn copy(
        &mut self,
        file: usize,
        key: &str,
        sha256: &str,
        len: u64,
        sm3: bool,
        mut write: impl FnMut(&[u8]) -> Result<(), CoreError>,
    ) -> Result<(), CoreError> {
        let mut source = self.open(key, len)?;
        if sm3 && self.sm3_wanted && self.sm3.is_none() {
            self.sm3 = Some(Sm3Workers::start(self.workers, self.free_tx.clone()));
        }
        let lane = match &self.sm3 {
            Some(w) if sm3 => Some(w.least_busy()),
            _ => None,
        };
        let mut sha = Sha256::new();
        let mut read = 0u64;
        loop {
            let mut buf = self
                .free_rx
                .recv()
                .map_err(|_| CoreError::Internal("package: buffers lost".into()))?;
            if let Err(e) = source.fill(&self.handle, &mut buf) {
                let _ = self.free_tx.send(buf);
                return Err(CoreError::Internal(format!("reading object {key}: {e}")));
            }
            if buf.is_empty() {
                let _ = self.free_tx.send(buf);
                break;
            }
            read += buf.len() as u64;
            if read > len {
                let _ = self.free_tx.send(buf);
                return Err(tampered(
                    key,
                    &format!("holds more than the {len} bytes of its chain entry"),
                ));
            }
            sha.update(&buf);
            if let Err(e) = write(&buf) {
                let _ = self.free_tx.send(buf);
                return Err(e);
            }
            match (&self.sm3, lane) {
                (Some(w), Some(lane)) => w.send(lane, Work::Piece(buf))?,
                _ => {
                    let _ = self.free_tx.send(buf);
                }
            }
        }
        if read != len {
            return Err(tampered(
                key,
                &format!("holds {read} bytes where its chain entry says {len}"),
            ));
        }
        if hex::encode(sha.finalize()) != sha256 {
            return Err(tampered(key, "does not match its chain entry"));
        }
        if let (Some(w), Some(lane)) = (&self.sm3, lane) {
            w.send(lane, Work::End(file))?;
        }
        Ok(())
    }

    /// The SM3 of every object copied, by file number (none when not asked for).
    pub(crate) fn finish(self) -> Result<Vec<(usize, String)>, CoreError> {
        match self.sm3 {
            Some(w) => w.finish(),
            None => Ok(Vec::new()),
        }
    }
}
