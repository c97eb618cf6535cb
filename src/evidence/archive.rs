//! The containers an evidence package travels in: tar (GNU) or zip (stored, zip64 when large).
//! Both are written as a stream, so a package of any size needs a few pieces of a segment in
//! memory and no temporary copy. A file is either added whole from a reader (`add`), or
//! announced with its length and written in pieces as they are read (`begin`, `data`, `end`),
//! so the export can check each piece's hashes on the way without reading an object twice.
//! When a tar package goes to a file (`PackageSink::file`), a stored file's bytes are set aside
//! in it (`reserve`) while the archive goes on, and a hashing lane writes them there.

use std::io::{Read, Seek, Write};
use std::sync::Arc;

use serde::Deserialize;

use crate::error::CoreError;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    #[default]
    Tar,
    Zip,
}

impl Format {
    pub fn extension(self) -> &'static str {
        match self {
            Format::Tar => "tar",
            Format::Zip => "zip",
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Tar => "application/x-tar",
            Format::Zip => "application/zip",
        }
    }

    /// `zip` for a `.zip` file name, `tar` otherwise.
    pub fn for_file_name(name: &str) -> Format {
        if name.to_ascii_lowercase().ends_with(".zip") {
            Format::Zip
        } else {
            Format::Tar
        }
    }
}

/// The archive's bytes leave through a bounded channel in pieces of about `PIECE` bytes, so the
/// synchronous archive writers run on a blocking thread at the pace of whoever reads (a
/// download).
const PIECE: usize = 1 << 20;

pub struct ChannelSink {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl ChannelSink {
    /// Pieces of the archive arrive on `tx` as they are written.
    pub fn new(tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> ChannelSink {
        ChannelSink {
            buf: Vec::with_capacity(PIECE),
            tx,
        }
    }

    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let piece = std::mem::replace(&mut self.buf, Vec::with_capacity(PIECE));
        self.tx
            .blocking_send(piece)
            .map_err(|_| std::io::Error::other("the reader of the package went away"))
    }
}

impl Write for ChannelSink {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= PIECE {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

/// Where a package's bytes go.
pub trait PackageSink: Write {
    /// The file under any buffering, flushed and positioned at the end of what was written,
    /// when the package goes to a file opened for reading and writing; `None` for a stream.
    fn file(&mut self) -> std::io::Result<Option<&std::fs::File>> {
        Ok(None)
    }
}

impl PackageSink for ChannelSink {}

impl PackageSink for Vec<u8> {}

impl PackageSink for std::fs::File {
    fn file(&mut self) -> std::io::Result<Option<&std::fs::File>> {
        Ok(Some(self))
    }
}

impl<W: PackageSink> PackageSink for std::io::BufWriter<W> {
    fn file(&mut self) -> std::io::Result<Option<&std::fs::File>> {
        self.flush()?;
        self.get_mut().file()
    }
}

impl<W: PackageSink> PackageSink for crate::store::ChunkedWrites<W> {
    fn file(&mut self) -> std::io::Result<Option<&std::fs::File>> {
        self.0.file()
    }
}

enum Inner<W: Write> {
    Tar(tar::Builder<W>),
    Zip(Box<zip::ZipWriter<zip::write::StreamWriter<W>>>),
}

/// An archive being written to `W` (a file, or a `ChannelSink`): `add` files, or `begin`,
/// `data`…, `end` one, then `finish`.
pub struct ArchiveWriter<W: Write> {
    inner: Inner<W>,
    /// The file begun and not yet ended: its path, declared length and bytes written so far.
    open: Option<(String, u64, u64)>,
    /// The package file, shared with those who put in the bytes `reserve` set aside.
    file: Option<Arc<std::fs::File>>,
}

fn failed(path: &str, e: &dyn std::fmt::Display) -> CoreError {
    CoreError::Internal(format!("writing {path} into the package: {e}"))
}

impl<W: PackageSink> ArchiveWriter<W> {
    pub fn new(format: Format, sink: W) -> ArchiveWriter<W> {
        let inner = match format {
            Format::Tar => Inner::Tar(tar::Builder::new(sink)),
            Format::Zip => Inner::Zip(Box::new(zip::ZipWriter::new_stream(sink))),
        };
        ArchiveWriter {
            inner,
            open: None,
            file: None,
        }
    }

    /// One read-only file of `len` bytes with a fixed time stamp (the same package bytes from the
    /// same input), copied from `data` as it is read.
    pub fn add(&mut self, path: &str, len: u64, mut data: impl Read) -> Result<(), CoreError> {
        self.begin(path, len)?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = data.read(&mut buf).map_err(|e| failed(path, &e))?;
            if n == 0 {
                break;
            }
            self.data(&buf[..n])?;
        }
        self.end()
    }

    /// Starts a read-only file of exactly `len` bytes (its header), with a fixed time stamp.
    pub fn begin(&mut self, path: &str, len: u64) -> Result<(), CoreError> {
        if let Some((open, _, _)) = &self.open {
            return Err(failed(path, &format!("{open} is not finished")));
        }
        match &mut self.inner {
            Inner::Tar(tar) => {
                let mut header = tar::Header::new_gnu();
                header.set_size(len);
                header.set_mode(0o444);
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Regular);
                // The header only (with a GNU long-name entry before it for a long path): the
                // `len` bytes follow through `data`, then `end` pads them to a 512-byte block.
                tar.append_data(&mut header, path, std::io::empty())
                    .map_err(|e| failed(path, &e))?;
            }
            Inner::Zip(zip) => {
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored)
                    .last_modified_time(zip::DateTime::default())
                    .unix_permissions(0o444)
                    .large_file(len >= u64::from(u32::MAX));
                zip.start_file(path, options)
                    .map_err(|e| failed(path, &e))?;
            }
        }
        self.open = Some((path.to_string(), len, 0));
        Ok(())
    }

    /// The next bytes of the file begun; never more than it declared.
    pub fn data(&mut self, piece: &[u8]) -> Result<(), CoreError> {
        let Some((path, len, written)) = &mut self.open else {
            return Err(CoreError::Internal(
                "package: data with no file begun".into(),
            ));
        };
        *written += piece.len() as u64;
        if *written > *len {
            return Err(failed(path, &format!("more than the {len} bytes declared")));
        }
        let r = match &mut self.inner {
            Inner::Tar(tar) => tar.get_mut().write_all(piece),
            Inner::Zip(zip) => zip.write_all(piece),
        };
        r.map_err(|e| failed(path, &e))
    }

    /// Sets aside the `len` bytes of the file begun in the package file, when the package is a
    /// tar going to a file, for the caller to put there (on another thread) while
    /// the archive goes on after them; returns the package file and where in it the bytes go.
    /// `None` (nothing done) for zip, whose checksum must see every byte, and for a stream: the
    /// caller writes the bytes through `data` then. The package is whole only once the caller
    /// has put every byte set aside.
    pub fn reserve(&mut self, len: u64) -> Result<Option<(Arc<std::fs::File>, u64)>, CoreError> {
        let Some((path, declared, 0)) = self.open.clone() else {
            return Err(CoreError::Internal(
                "package: bytes set aside for no file begun, or for one begun already".into(),
            ));
        };
        if len != declared {
            return Err(failed(
                &path,
                &format!("{len} bytes where {declared} were declared"),
            ));
        }
        let Inner::Tar(tar) = &mut self.inner else {
            return Ok(None);
        };
        let Some(mut out) = tar.get_mut().file().map_err(|e| failed(&path, &e))? else {
            return Ok(None);
        };
        let at = out.stream_position().map_err(|e| failed(&path, &e))?;
        let skip = i64::try_from(len).map_err(|e| failed(&path, &e))?;
        out.seek(std::io::SeekFrom::Current(skip))
            .map_err(|e| failed(&path, &e))?;
        let file = match &self.file {
            Some(f) => f.clone(),
            None => {
                let f = Arc::new(out.try_clone().map_err(|e| failed(&path, &e))?);
                self.file = Some(f.clone());
                f
            }
        };
        self.open = Some((path, declared, len));
        Ok(Some((file, at)))
    }

    /// Ends the file begun, which must have received exactly the bytes it declared.
    pub fn end(&mut self) -> Result<(), CoreError> {
        let Some((path, len, written)) = self.open.take() else {
            return Err(CoreError::Internal("package: no file begun".into()));
        };
        if written != len {
            return Err(failed(
                &path,
                &format!("{written} bytes where {len} were expected"),
            ));
        }
        if let Inner::Tar(tar) = &mut self.inner {
            let pad = (512 - len % 512) % 512;
            tar.get_mut()
                .write_all(&[0u8; 512][..pad as usize])
                .map_err(|e| failed(&path, &e))?;
        }
        Ok(())
    }

    /// Ends the archive (tar's zero blocks, zip's central directory), flushes the sink and
    /// hands it back.
    pub fn finish(self) -> Result<W, CoreError> {
        let failed =
            |e: &dyn std::fmt::Display| CoreError::Internal(format!("finishing the package: {e}"));
        if let Some((open, _, _)) = &self.open {
            return Err(failed(&format!("{open} is not finished")));
        }
        drop(self.file);
        let mut sink = match self.inner {
            Inner::Tar(tar) => tar.into_inner().map_err(|e| failed(&e))?,
            Inner::Zip(zip) => zip.finish().map_err(|e| failed(&e))?.into_inner(),
        };
        sink.flush().map_err(|e| failed(&e))?;
        Ok(sink)
    }
}
