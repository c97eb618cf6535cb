//! Hashing beside a reader: one thread reads a file (or a stored object, or a package member) in
//! pieces and hands each piece to a hashing worker on another core, which computes the digests
//! asked for (SHA-256, SM3) of that file. Each file goes whole to one worker (a lane), and the
//! next file to the least busy lane, so several files are hashed at once while the reader moves
//! on: SM3, five times slower than SHA-256, no longer sets the pace. A fixed set of buffers
//! travels between the reader and the workers: memory stays at `BUFFERS × PIECE`, and the reader
//! waits when the workers fall behind.
//!
//! A lane can also be given a range of a file to read itself (`range`), and a job that first puts
//! the bytes there: the export has each lane copy a stored file into the package file by the
//! kernel, then read it back, so that what is checked is the package, and the copies of several
//! files run side by side as their hashing does.
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

    /// Reads `len` bytes of `from` at `offset` in pieces into the lane's own `buf`.
    fn update_from(&mut self, from: &std::fs::File, offset: u64, len: u64, buf: &mut Vec<u8>) {
        use std::os::unix::fs::FileExt;
        buf.resize(PIECE, 0);
        let mut done = 0u64;
        while done < len && self.error.is_none() {
            let want = (len - done).min(PIECE as u64) as usize;
            match from.read_exact_at(&mut buf[..want], offset + done) {
                Ok(()) => {
                    self.update(&buf[..want]);
                    done += want as u64;
                }
                Err(e) => self.error = Some(format!("reading {len} bytes at {offset}: {e}")),
            }
        }
    }
}

/// What puts a range's bytes in place before the lane reads them (the export's copy of a stored
/// file into the package).
pub(crate) type Fill = Box<dyn FnOnce() -> std::io::Result<()> + Send>;

enum Work {
    Begin(Box<File>),
    /// The next bytes of the lane's current file (the buffer goes back to the pool after).
    Piece(Vec<u8>),
    /// The next bytes of the lane's current file are `len` bytes of this file at `offset`,
    /// once the job given (if any) has put them there.
    Range(Option<Fill>, Arc<std::fs::File>, u64, u64),
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
                    // This lane's own buffer, for the ranges it reads itself.
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
                            Work::Range(fill, file, offset, len) => {
                                if let Some(f) = current.as_mut() {
                                    match fill.map_or(Ok(()), |fill| fill()) {
                                        Ok(()) => f.update_from(&file, offset, len, &mut own),
                                        Err(e) => f.error = Some(e.to_string()),
                                    }
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

    /// The next bytes of the lane's file are `len` bytes of `file` at `offset`, which the lane
    /// reads itself (no buffer of the pool is used), after running `fill` to put them there
    /// when given: the work of filling is then spread over the lanes too. A `fill` that fails
    /// is the file's `error`.
    pub(crate) fn range(
        &self,
        lane: usize,
        fill: Option<Fill>,
        file: Arc<std::fs::File>,
        offset: u64,
        len: u64,
    ) -> Result<(), LanesStopped> {
        self.lanes[lane]
            .queued
            .fetch_add(pieces(len), Ordering::Relaxed);
        self.send(lane, Work::Range(fill, file, offset, len))
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

/// A range's weight in the lanes' balance: the pieces it would have been sent as.
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
        // Every third file is read by its lane from a file holding them all.
        let mut all = tempfile::tempfile().unwrap();
        std::io::Write::write_all(&mut all, &files.concat()).unwrap();
        let all = Arc::new(all);
        let mut got = Vec::new();
        let mut at = 0u64;
        for (id, f) in files.iter().enumerate() {
            let lane = lanes.begin(id, true, id % 2 == 0).unwrap();
            if id % 3 == 0 {
                lanes
                    .range(lane, None, all.clone(), at, f.len() as u64)
                    .unwrap();
            } else {
                for chunk in f.chunks(PIECE) {
                    let mut buf = lanes.buffer().unwrap();
                    buf.clear();
                    buf.extend_from_slice(chunk);
                    lanes.piece(lane, buf).unwrap();
                }
            }
            at += f.len() as u64;
            lanes.end(lane).unwrap();
            got.extend(lanes.ready());
        }
        // A range past the end of its file is an error, not a digest of less.
        let lane = lanes.begin(99, true, false).unwrap();
        lanes.range(lane, None, all.clone(), at - 10, 20).unwrap();
        lanes.end(lane).unwrap();
        got.extend(lanes.finish().unwrap());
        got.sort_by_key(|d| d.id);
        let past_end = got.pop().unwrap();
        assert_eq!(past_end.id, 99);
        assert!(past_end.error.is_some(), "{past_end:?}");
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
    }

    #[test]
    fn a_range_is_read_after_its_fill_and_a_fill_that_fails_is_the_files_error() {
        let lanes = HashLanes::start("test");
        let data: Vec<u8> = (0..PIECE * 2 + 17).map(|b| (b % 251) as u8).collect();
        let out = Arc::new(tempfile::tempfile().unwrap());
        // Filled at an offset, as the export puts a member after its header.
        let lane = lanes.begin(0, true, true).unwrap();
        let (to, bytes) = (out.clone(), data.clone());
        let fill: Fill = Box::new(move || {
            use std::os::unix::fs::FileExt;
            to.write_all_at(&bytes, 512)
        });
        lanes
            .range(lane, Some(fill), out.clone(), 512, data.len() as u64)
            .unwrap();
        lanes.end(lane).unwrap();
        let lane = lanes.begin(1, true, false).unwrap();
        let fill: Fill = Box::new(|| Err(std::io::Error::other("the disk is full")));
        lanes.range(lane, Some(fill), out.clone(), 0, 10).unwrap();
        lanes.end(lane).unwrap();
        let mut got = lanes.finish().unwrap();
        got.sort_by_key(|d| d.id);
        assert_eq!(
            got[0].sha256.as_deref(),
            Some(hex::encode(Sha256::digest(&data)).as_str())
        );
        assert_eq!(
            got[0].sm3.as_deref(),
            Some(hex::encode(Sm3::digest(&data)).as_str())
        );
        assert_eq!(got[0].error, None);
        assert_eq!(got[1].error.as_deref(), Some("the disk is full"));
    }
}
