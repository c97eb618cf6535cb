//! The containers an evidence package travels in: tar (GNU) or zip (stored, zip64 when large).
//! Both are written as a stream in pieces, so a package of any size needs about one segment in
//! memory and no temporary copy.

use std::io::{Read, Write};

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
/// synchronous archive writers run on a blocking thread at the pace of whoever reads.
const PIECE: usize = 1 << 20;

struct ChannelSink {
    buf: Vec<u8>,
    tx: tokio::sync::mpsc::Sender<Vec<u8>>,
}

impl ChannelSink {
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

enum Inner {
    Tar(tar::Builder<ChannelSink>),
    Zip(Box<zip::ZipWriter<zip::write::StreamWriter<ChannelSink>>>),
}

/// An archive being written on a blocking thread: `add` files, then `finish`.
pub struct ArchiveWriter {
    inner: Inner,
}

impl ArchiveWriter {
    /// Pieces of the archive arrive on `tx` as they are written.
    pub fn new(format: Format, tx: tokio::sync::mpsc::Sender<Vec<u8>>) -> ArchiveWriter {
        let sink = ChannelSink {
            buf: Vec::with_capacity(PIECE),
            tx,
        };
        let inner = match format {
            Format::Tar => Inner::Tar(tar::Builder::new(sink)),
            Format::Zip => Inner::Zip(Box::new(zip::ZipWriter::new_stream(sink))),
        };
        ArchiveWriter { inner }
    }

    /// One read-only file of `len` bytes with a fixed time stamp (the same package bytes from the
    /// same input), copied from `data` as it is read.
    pub fn add(&mut self, path: &str, len: u64, data: impl Read) -> Result<(), CoreError> {
        let failed = |e: &dyn std::fmt::Display| {
            CoreError::Internal(format!("writing {path} into the package: {e}"))
        };
        match &mut self.inner {
            Inner::Tar(tar) => {
                let mut header = tar::Header::new_gnu();
                header.set_size(len);
                header.set_mode(0o444);
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut header, path, data.take(len))
                    .map_err(|e| failed(&e))
            }
            Inner::Zip(zip) => {
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored)
                    .last_modified_time(zip::DateTime::default())
                    .unix_permissions(0o444)
                    .large_file(len >= u64::from(u32::MAX));
                zip.start_file(path, options).map_err(|e| failed(&e))?;
                let copied = std::io::copy(&mut data.take(len), zip).map_err(|e| failed(&e))?;
                if copied != len {
                    return Err(failed(&format!("{copied} bytes where {len} were expected")));
                }
                Ok(())
            }
        }
    }

    /// Ends the archive (tar's zero blocks, zip's central directory) and sends the last bytes.
    pub fn finish(self) -> Result<(), CoreError> {
        let failed =
            |e: &dyn std::fmt::Display| CoreError::Internal(format!("finishing the package: {e}"));
        let mut sink = match self.inner {
            Inner::Tar(tar) => tar.into_inner().map_err(|e| failed(&e))?,
            Inner::Zip(zip) => zip.finish().map_err(|e| failed(&e))?.into_inner(),
        };
        sink.flush().map_err(|e| failed(&e))
    }
}
