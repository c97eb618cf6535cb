//! Hashing beside a reader: one thread reads a file (or a stored object, or a package member) in
//! pieces and hands each piece to a hashing worker on another core, which computes the digests
//! asked for (SHA-256, SM3) of that file. Each file goes whole to one worker (a lane), and the
//! next file to the least busy lane, so several files are hashed at once while the reader moves
//! on: SM3, five times slower than SHA-256, no longer sets the pace. A fixed set of buffers
//! travels between the reader and the workers: memory stays at `BUFFERS × PIECE`, and the reader
//! waits when the workers fall behind.
//!
//! A lane can also be given a whole file to copy itself (`copy`): it reads the file piece by piece,
//! hashes each piece and writes it into another file at a given place. The export has the lanes
//! copy stored files into the package file this way: each byte is read once, the bytes written
//! are the bytes hashed, and the copies run on every core.
//!
//! Used by the export (`objects`: stored objects copied into a package) and by the package
//! verifier (`package`: every member of a package).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;

use sha2::{Digest, Sha256};
use sm3::Sm3;

/// Bytes per piece: a read, a write and a hash update each.
pub(crate) const PIECE: usize = 256 << 10;
const BUFFERS: usize = 16;

/// The workers stopped (one panicked): nothing hashed can be trusted.
#[derive(Debug)]
pub(crate) struct LanesStopped;

/// What a worker found of one file.
#[derive(Debug)]
pub(crate) struct Digests {
    /// The caller's number for the file.
    pub id: usize,
    pub sha256: Option<String>,
    pub sm3: Option<String>,
    /// A range the lane was to read could not be read: the digests cover less than the file.
    pub error: Option<String>,
}

struct File {
    id: usize,
    sha256: Option<Sha256>,
    sm3: Option<Sm3>,
    error: Option<String>,
}

impl File {
    fn update(&mut self, bytes: &[u8]) {
        if let Some(h) = self.sha256.as_mut() {
            h.update(bytes);
        }
        if let Some(h) = self.sm3.as_mut() {
            h.update(bytes);
        }
    }

    /// Reads the `len` bytes of `from` (from its start) in pieces into the lane's own `buf`,
    /// hashes each piece and writes it into `to` at `at`: the bytes written are the bytes
    /// hashed. A file shorter than `len` is an error, never a digest of less.
    fn copy(
        &mut self,
        from: &std::fs::File,
        to: &std::fs::File,
        at: u64,
        len: u64,
        buf: &mut Vec<u8>,
    ) {
        use std::os::unix::fs::FileExt;
        buf.resize(PIECE, 0);
        let mut done = 0u64;
        while done < len && self.error.is_none() {
            let want = (len - done).min(PIECE as u64) as usize;
            let piece = &mut buf[..want];
            if let Err(e) = from.read_exact_at(piece, done) {
                self.error = Some(format!("reading {len} bytes: {e}"));
                break;
            }
            self.update(piece);
            if let Err(e) = to.write_all_at(piece, at + done) {
                self.error = Some(format!("writing it into the package: {e}"));
                break;
            }
            done += want as u64;
        }
    }
}

enum Work {
    Begin(Box<File>),
    /// The next bytes of the lane's current file (the buffer goes back to the pool after).
    Piece(Vec<u8>),
    /// The next bytes of the lane's current file are all `len` bytes of the first file, which
    /// the lane copies into the second at the offset given as it hashes them.
    Copy(std::fs::File, Arc<std::fs::File>, u64, u64),
    End,
}

struct Lane {
    tx: mpsc::SyncSender<Work>,
    /// Pieces sent and not yet hashed: a new file goes to the lane with fewest.
    queued: Arc<AtomicUsize>,
}

pub(crate) struct HashLanes {
    lanes: Vec<Lane>,
    results: mpsc::Receiver<Digests>,
    threads: Vec<std::thread::JoinHandle<()>>,
    free_tx: mpsc::Sender<Vec<u8>>,
    free_rx: mpsc::Receiver<Vec<u8>>,
}

impl HashLanes {
    /// One worker per core, up to four (with a worker fewer than the cores, on two cores, the
    /// export took a tenth longer: the reader waits in the kernel part of the time).
    pub(crate) fn start(name: &str) -> HashLanes {
        let n = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
            .clamp(1, 4);
        let (free_tx, free_rx) = mpsc::channel();
        for _ in 0..BUFFERS {
            let _ = free_tx.send(Vec::with_capacity(PIECE));
        }
        let (done_tx, results) = mpsc::channel();
        let mut lanes = Vec::new();
        let mut threads = Vec::new();
        for i in 0..n {
            let (tx, rx) = mpsc::sync_channel::<Work>(BUFFERS + 1);
            let queued = Arc::new(AtomicUsize::new(0));
            let (q, free, done) = (queued.clone(), free_tx.clone(), done_tx.clone());
            let t = std::thread::Builder::new()
                .name(format!("{name}-hash-{i}"))
                .spawn(move || {
                    let mut current: Option<Box<File>> = None;
                    // This lane's own buffer, for the files it copies itself.
                    let mut own = Vec::new();
                    for w in rx {
                        match w {
                            Work::Begin(f) => current = Some(f),
                            Work::Piece(buf) => {
                                if let Some(f) = current.as_mut() {
                                    f.update(&buf);
                                }
                                q.fetch_sub(1, Ordering::Relaxed);
                                let _ = free.send(buf);
                            }
                            Work::Copy(from, to, at, len) => {
                                if let Some(f) = current.as_mut() {
                                    f.copy(&from, &to, at, len, &mut own);
                                }
                                q.fetch_sub(pieces(len), Ordering::Relaxed);
                            }
                            Work::End => {
                                if let Some(f) = current.take() {
                                    let _ = done.send(Digests {
                                        id: f.id,
                                        sha256: f.sha256.map(|h| hex::encode(h.finalize())),
                                        sm3: f.sm3.map(|h| hex::encode(h.finalize())),
                                        error: f.error,
                                    });
                                }
                            }
                        }
                    }
                })
                .expect("spawn a hashing worker");
            lanes.push(Lane { tx, queued });
            threads.push(t);
        }
        HashLanes {
            lanes,
            results,
            threads,
            free_tx,
            free_rx,
        }
    }

    /// A free buffer, with room for a piece and still holding its last bytes (refilled, not
    /// zeroed: zeroing a piece for every read cost as much as the read); waits while all are
    /// being hashed.
    pub(crate) fn buffer(&self) -> Result<Vec<u8>, LanesStopped> {
        self.free_rx.recv().map_err(|_| LanesStopped)
    }

    /// Returns a buffer not handed to a lane.
    pub(crate) fn give_back(&self, buf: Vec<u8>) {
        let _ = self.free_tx.send(buf);
    }

    /// Starts file `id` on the least busy lane, which computes the digests asked for; returns
    /// the lane for its pieces.
    pub(crate) fn begin(&self, id: usize, sha256: bool, sm3: bool) -> Result<usize, LanesStopped> {
        let lane = (0..self.lanes.len())
            .min_by_key(|&i| self.lanes[i].queued.load(Ordering::Relaxed))
            .unwrap_or(0);
        self.send(
            lane,
            Work::Begin(Box::new(File {
                id,
                sha256: sha256.then(Sha256::new),
                sm3: sm3.then(Sm3::new),
                error: None,
            })),
        )?;
        Ok(lane)
    }

    /// The next bytes of the lane's file.
    pub(crate) fn piece(&self, lane: usize, buf: Vec<u8>) -> Result<(), LanesStopped> {
        self.lanes[lane].queued.fetch_add(1, Ordering::Relaxed);
        self.send(lane, Work::Piece(buf))
    }

    /// The next bytes of the lane's file are all `len` bytes of `from`, which the lane reads
    /// itself (no buffer of the pool is used) and writes into `to` at `at` as it hashes them:
    /// the copies of several files run side by side, as their hashing does. A file that cannot
    /// be read or written whole is the file's `error`.
    pub(crate) fn copy(
        &self,
        lane: usize,
        from: std::fs::File,
        to: Arc<std::fs::File>,
        at: u64,
        len: u64,
    ) -> Result<(), LanesStopped> {
        self.lanes[lane]
            .queued
            .fetch_add(pieces(len), Ordering::Relaxed);
        self.send(lane, Work::Copy(from, to, at, len))
    }

    /// The lane's file is complete.
    pub(crate) fn end(&self, lane: usize) -> Result<(), LanesStopped> {
        self.send(lane, Work::End)
    }

    fn send(&self, lane: usize, work: Work) -> Result<(), LanesStopped> {
        self.lanes[lane].tx.send(work).map_err(|_| LanesStopped)
    }

    /// The digests of the files finished so far (each once).
    pub(crate) fn ready(&self) -> Vec<Digests> {
        self.results.try_iter().collect()
    }

    /// Waits for every file begun, then returns the digests not yet taken.
    pub(crate) fn finish(self) -> Result<Vec<Digests>, LanesStopped> {
        drop(self.lanes);
        for t in self.threads {
            t.join().map_err(|_| LanesStopped)?;
        }
        Ok(self.results.try_iter().collect())
    }
}

/// A copy's weight in the lanes' balance: the pieces it would have been sent as.
fn pieces(len: u64) -> usize {
    len.div_ceil(PIECE as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_hashed_side_by_side_get_their_own_digests() {
        let lanes = HashLanes::start("test");
        let files: Vec<Vec<u8>> = (0..7u8)
            .map(|i| {
                (0..(PIECE * 3 + i as usize * 1000))
                    .map(|b| (b as u8) ^ i)
                    .collect()
            })
            .collect();
        // Every third file is copied by its lane into `out`, after a header of 512 bytes.
        let out = Arc::new(tempfile::tempfile().unwrap());
        let mut copied = Vec::new();
        let mut got = Vec::new();
        for (id, f) in files.iter().enumerate() {
            let lane = lanes.begin(id, true, id % 2 == 0).unwrap();
            if id % 3 == 0 {
                let mut from = tempfile::tempfile().unwrap();
                std::io::Write::write_all(&mut from, f).unwrap();
                let at = (copied.len() + 512) as u64;
                copied.extend(vec![0u8; 512]);
                copied.extend_from_slice(f);
                lanes
                    .copy(lane, from, out.clone(), at, f.len() as u64)
                    .unwrap();
            } else {
                for chunk in f.chunks(PIECE) {
                    let mut buf = lanes.buffer().unwrap();
                    buf.clear();
                    buf.extend_from_slice(chunk);
                    lanes.piece(lane, buf).unwrap();
                }
            }
            lanes.end(lane).unwrap();
            got.extend(lanes.ready());
        }
        // A file shorter than said is an error, not a digest of less.
        let lane = lanes.begin(99, true, false).unwrap();
        let mut short = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut short, b"ten bytes.").unwrap();
        let end = copied.len() as u64;
        lanes.copy(lane, short, out.clone(), end, 20).unwrap();
        lanes.end(lane).unwrap();
        // So is a package that cannot be written (here: opened for reading only).
        let lane = lanes.begin(100, true, false).unwrap();
        let mut from = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut from, b"ten bytes.").unwrap();
        let unwritable = tempfile::NamedTempFile::new().unwrap();
        let read_only = Arc::new(std::fs::File::open(unwritable.path()).unwrap());
        lanes.copy(lane, from, read_only, 0, 10).unwrap();
        lanes.end(lane).unwrap();
        got.extend(lanes.finish().unwrap());
        got.sort_by_key(|d| d.id);
        let unwritten = got.pop().unwrap();
        assert_eq!(unwritten.id, 100);
        let why = unwritten.error.unwrap_or_default();
        assert!(why.starts_with("writing it into the package"), "{why}");
        let short = got.pop().unwrap();
        assert_eq!(short.id, 99);
        let why = short.error.unwrap_or_default();
        assert!(why.starts_with("reading 20 bytes"), "{why}");
        assert_eq!(got.len(), files.len());
        for (d, f) in got.iter().zip(&files) {
            assert_eq!(
                d.sha256.as_deref(),
                Some(hex::encode(Sha256::digest(f)).as_str())
            );
            let sm3 = (d.id % 2 == 0).then(|| hex::encode(Sm3::digest(f)));
            assert_eq!(d.sm3, sm3, "file {}", d.id);
            assert_eq!(d.error, None);
        }
        let mut written = vec![0u8; copied.len()];
        std::os::unix::fs::FileExt::read_exact_at(&*out, &mut written, 0).unwrap();
        assert_eq!(written, copied);
    }
}
