//! Stored objects read once into a package. Each object is read in pieces and each piece written
//! to the archive on the writing thread, then handed to a hashing lane on another core
//! (`hash_lanes`), which computes its SHA-256 (checked against the chain entry) and, for an
//! object whose SM3 is not known already, its SM3: the copy and the hashing run side by side
//! from the one read. (A segment's SM3 is normally known: the chain writer computed it when it
//! sealed the segment, `media_digests`.) A mismatch is found when the lane finishes the object,
//! at most a few pieces after the writer: the copy fails then, or at `finish` at the latest, and
//! the caller discards what was written (the package is incomplete and must not look whole).
//!
//! A package going to a file (a tar) takes a stored file on a lane instead: the writing thread
//! sets the file's bytes aside in the package and goes on, and the lane reads the file, hashes
//! each piece and writes it into its place, so the copies run on every core too. Either way the
//! bytes written are the bytes hashed, read once.

use futures::StreamExt;

use crate::error::CoreError;
use crate::evidence::hash_lanes::{Digests, HashLanes, LanesStopped, PIECE};
use crate::store::Store;

/// Why an object cannot go into a package: never bytes the chain does not vouch for.
fn tampered(key: &str, why: &str) -> CoreError {
    CoreError::conflict(
        "store_tampered",
        format!("object {key} {why}; the package was not completed; run verify"),
    )
}

fn stopped(_: LanesStopped) -> CoreError {
    CoreError::Internal("package: a hashing worker stopped".into())
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
    /// Fills `buf` with up to `PIECE` bytes (replacing what it held); empty at the end.
    fn fill(&mut self, handle: &tokio::runtime::Handle, buf: &mut Vec<u8>) -> Result<(), String> {
        match self {
            Source::File(f) => {
                use std::io::Read;
                // Read over the buffer's old bytes: zeroing a whole piece first for every read
                // cost as much as the read.
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
                buf.clear();
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

/// Where a package's member goes: the archive, or a buffer in tests.
pub(crate) trait Member {
    /// The next bytes of the member.
    fn write(&mut self, piece: &[u8]) -> Result<(), CoreError>;
    /// Sets aside the member's `len` bytes where they can be put without reading them here;
    /// returns the file and offset where they go, to be copied and checked there. `None`:
    /// nothing was done, the bytes are to come through `write`.
    fn reserve(
        &mut self,
        len: u64,
    ) -> Result<Option<(std::sync::Arc<std::fs::File>, u64)>, CoreError>;
}

impl<W: crate::evidence::archive::PackageSink> Member
    for crate::evidence::archive::ArchiveWriter<W>
{
    fn write(&mut self, piece: &[u8]) -> Result<(), CoreError> {
        self.data(piece)
    }
    fn reserve(
        &mut self,
        len: u64,
    ) -> Result<Option<(std::sync::Arc<std::fs::File>, u64)>, CoreError> {
        crate::evidence::archive::ArchiveWriter::reserve(self, len)
    }
}

/// The objects of one package as it is written: each read once, its SHA-256 checked and, unless
/// already known, its SM3 computed.
pub(crate) struct ObjectCopier {
    handle: tokio::runtime::Handle,
    store: Store,
    lanes: HashLanes,
    /// Whether SM3 is wanted of objects whose digest is not known.
    sm3_wanted: bool,
    /// Per file number begun: its key and the SHA-256 its chain entry gives.
    expected: std::collections::HashMap<usize, (String, String)>,
    /// The SM3 computed so far, by file number.
    sm3: Vec<(usize, String)>,
}

impl ObjectCopier {
    /// `sm3`: compute the SM3 of the objects copied whose digest is not known.
    pub(crate) fn new(handle: tokio::runtime::Handle, store: Store, sm3: bool) -> ObjectCopier {
        ObjectCopier {
            handle,
            store,
            lanes: HashLanes::start("package"),
            sm3_wanted: sm3,
            expected: Default::default(),
            sm3: Vec::new(),
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

    /// Copies stored object `key` (`len` bytes, SHA-256 `sha256` by its chain entry) into
    /// `member`, reading it once: piece by piece here, or on a lane where `member` can set its
    /// place aside (a package file). With `sm3` (its digest is not known already), its SM3 is
    /// computed too, as package file number `file`. A difference found (in this object or one
    /// copied before) is an error: the caller must then discard what was written.
    pub(crate) fn copy(
        &mut self,
        file: usize,
        key: &str,
        sha256: &str,
        len: u64,
        sm3: bool,
        member: &mut impl Member,
    ) -> Result<(), CoreError> {
        collect(self.lanes.ready(), &mut self.expected, &mut self.sm3)?;
        let source = self.open(key, len)?;
        self.expected
            .insert(file, (key.to_string(), sha256.to_string()));
        let lane = self
            .lanes
            .begin(file, true, sm3 && self.sm3_wanted)
            .map_err(stopped)?;
        // Into a package file, the lane copies a stored file into the place set aside for it.
        let mut source = match source {
            Source::File(from) => match member.reserve(len)? {
                Some((package, at)) => {
                    self.lanes
                        .copy(lane, from, package, at, len)
                        .map_err(stopped)?;
                    return self.lanes.end(lane).map_err(stopped);
                }
                None => Source::File(from),
            },
            stream => stream,
        };
        let mut read = 0u64;
        loop {
            let mut buf = self.lanes.buffer().map_err(stopped)?;
            if let Err(e) = source.fill(&self.handle, &mut buf) {
                self.lanes.give_back(buf);
                return Err(CoreError::Internal(format!("reading object {key}: {e}")));
            }
            if buf.is_empty() {
                self.lanes.give_back(buf);
                break;
            }
            read += buf.len() as u64;
            if read > len {
                self.lanes.give_back(buf);
                return Err(tampered(
                    key,
                    &format!("holds more than the {len} bytes of its chain entry"),
                ));
            }
            if let Err(e) = member.write(&buf) {
                self.lanes.give_back(buf);
                return Err(e);
            }
            self.lanes.piece(lane, buf).map_err(stopped)?;
        }
        if read != len {
            return Err(tampered(
                key,
                &format!("holds {read} bytes where its chain entry says {len}"),
            ));
        }
        self.lanes.end(lane).map_err(stopped)
    }

    /// Waits for the last objects' digests. Every object copied matched its chain entry;
    /// returns the SM3 computed, by file number (none when not asked for).
    pub(crate) fn finish(self) -> Result<Vec<(usize, String)>, CoreError> {
        let ObjectCopier {
            lanes,
            mut expected,
            mut sm3,
            ..
        } = self;
        collect(lanes.finish().map_err(stopped)?, &mut expected, &mut sm3)?;
        Ok(sm3)
    }
}

/// Takes what the lanes found: a mismatch is an error; each SM3 computed joins `sm3`.
fn collect(
    found: Vec<Digests>,
    expected: &mut std::collections::HashMap<usize, (String, String)>,
    sm3: &mut Vec<(usize, String)>,
) -> Result<(), CoreError> {
    for d in found {
        let (key, sha256) = expected.remove(&d.id).unwrap_or_default();
        if let Some(e) = &d.error {
            return Err(CoreError::Internal(format!(
                "object {key}: its copy into the package failed: {e}"
            )));
        }
        if d.sha256.as_deref() != Some(sha256.as_str()) {
            return Err(tampered(&key, "does not match its chain entry"));
        }
        if let Some(digest) = d.sm3 {
            sm3.push((d.id, digest));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use sm3::Sm3;
    use std::sync::Arc;

    /// A local store holding `objects`, and a runtime to drive it from this (blocking) thread.
    fn store_with(
        objects: &[(&str, Vec<u8>)],
    ) -> (tempfile::TempDir, Store, tokio::runtime::Runtime) {
        let dir = tempfile::tempdir().unwrap();
        let store: Store =
            Arc::new(object_store::local::LocalFileSystem::new_with_prefix(dir.path()).unwrap());
        let rt = tokio::runtime::Runtime::new().unwrap();
        for (key, data) in objects {
            rt.block_on(store.put(&object_store::path::Path::from(*key), data.clone().into()))
                .unwrap();
        }
        (dir, store, rt)
    }

    fn sha(data: &[u8]) -> String {
        hex::encode(Sha256::digest(data))
    }

    /// A member kept in memory, as a stream would send it.
    #[derive(Default)]
    struct Buffer(Vec<u8>);

    impl Member for Buffer {
        fn write(&mut self, piece: &[u8]) -> Result<(), CoreError> {
            self.0.extend_from_slice(piece);
            Ok(())
        }
        fn reserve(&mut self, _: u64) -> Result<Option<(Arc<std::fs::File>, u64)>, CoreError> {
            Ok(None)
        }
    }

    #[test]
    fn copies_each_object_once_and_computes_only_the_sm3_not_known() {
        // Larger than a piece, so that an object spans several.
        let big: Vec<u8> = (0..(PIECE * 2 + 123)).map(|i| (i * 7) as u8).collect();
        let small = b"a segment of a few bytes".to_vec();
        let (_dir, store, rt) = store_with(&[("a/1.ts", big.clone()), ("a/2.ts", small.clone())]);
        let mut copier = ObjectCopier::new(rt.handle().clone(), store, true);
        let mut out = Buffer::default();
        copier
            .copy(0, "a/1.ts", &sha(&big), big.len() as u64, true, &mut out)
            .unwrap();
        copier
            .copy(
                1,
                "a/2.ts",
                &sha(&small),
                small.len() as u64,
                false,
                &mut out,
            )
            .unwrap();
        let sm3 = copier.finish().unwrap();
        assert_eq!(out.0, [big.clone(), small].concat());
        assert_eq!(sm3, vec![(0, hex::encode(Sm3::digest(&big)))]);
    }

    #[test]
    fn into_a_tar_file_objects_are_copied_into_their_place_by_the_lanes() {
        use crate::evidence::archive::{ArchiveWriter, Format};
        let big: Vec<u8> = (0..(PIECE * 3 + 5)).map(|i| (i * 13) as u8).collect();
        let small = b"a segment of a few bytes".to_vec();
        let (dir, store, rt) = store_with(&[("a/1.ts", big.clone()), ("a/2.ts", small.clone())]);
        let package = dir.path().join("package.tar");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&package)
            .unwrap();
        let mut archive = ArchiveWriter::new(Format::Tar, std::io::BufWriter::new(file));
        let mut copier = ObjectCopier::new(rt.handle().clone(), store.clone(), true);
        for (i, (key, data)) in [("a/1.ts", &big), ("a/2.ts", &small)]
            .into_iter()
            .enumerate()
        {
            archive.begin(key, data.len() as u64).unwrap();
            copier
                .copy(i, key, &sha(data), data.len() as u64, true, &mut archive)
                .unwrap();
            archive.end().unwrap();
        }
        archive.add("bag-info.txt", 3, &b"abc"[..]).unwrap();
        let sm3 = copier.finish().unwrap();
        archive.finish().unwrap();
        assert_eq!(sm3.len(), 2);
        let mut members = Vec::new();
        let mut tar = tar::Archive::new(std::fs::File::open(&package).unwrap());
        for e in tar.entries().unwrap() {
            let mut e = e.unwrap();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut e, &mut data).unwrap();
            members.push((e.path().unwrap().display().to_string(), data));
        }
        assert_eq!(
            members,
            [
                ("a/1.ts".to_string(), big.clone()),
                ("a/2.ts".to_string(), small.clone()),
                ("bag-info.txt".to_string(), b"abc".to_vec())
            ]
        );

        // A stored file that differs from its entry fails the copy here too.
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("second.tar"))
            .unwrap();
        let mut archive = ArchiveWriter::new(Format::Tar, out);
        let mut copier = ObjectCopier::new(rt.handle().clone(), store, false);
        archive.begin("a/1.ts", big.len() as u64).unwrap();
        let copied = copier.copy(
            0,
            "a/1.ts",
            &sha(&small),
            big.len() as u64,
            false,
            &mut archive,
        );
        let err = copied
            .and_then(|()| copier.finish().map(|_| ()))
            .unwrap_err();
        assert!(
            err.to_string().contains("does not match its chain entry"),
            "{err}"
        );
    }

    #[test]
    fn an_object_that_differs_from_its_chain_entry_fails_the_copy() {
        let data = b"stored bytes".to_vec();
        let (_dir, store, rt) = store_with(&[("a/1.ts", data.clone()), ("a/2.ts", data.clone())]);
        let mut copier = ObjectCopier::new(rt.handle().clone(), store, false);
        let wrong = sha(b"the bytes the chain vouches for");
        // Found by the worker: at the next copy or at the end, whichever comes first.
        let mut out = Buffer::default();
        let first = copier.copy(0, "a/1.ts", &wrong, data.len() as u64, false, &mut out);
        let err = match first {
            Err(e) => e,
            Ok(()) => {
                match copier.copy(1, "a/2.ts", &sha(&data), data.len() as u64, false, &mut out) {
                    Err(e) => e,
                    Ok(()) => copier.finish().unwrap_err(),
                }
            }
        };
        let text = err.to_string();
        assert!(
            text.contains("a/1.ts") && text.contains("does not match its chain entry"),
            "{text}"
        );

        // A length other than the entry's is found before a byte is written.
        let (_dir, store, rt) = store_with(&[("a/1.ts", data.clone())]);
        let mut copier = ObjectCopier::new(rt.handle().clone(), store, false);
        let mut out = Buffer::default();
        let err = copier
            .copy(
                0,
                "a/1.ts",
                &sha(&data),
                data.len() as u64 + 1,
                false,
                &mut out,
            )
            .unwrap_err();
        assert!(err.to_string().contains("holds 12 bytes"), "{err}");
        assert!(out.0.is_empty());
    }
}
