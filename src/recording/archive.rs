//! The containers an evidence package travels in: tar (POSIX ustar/GNU) or zip (stored, zip64
//! when large). Both are written as a stream in pieces, so a package of any size needs only
//! one segment in memory and no temporary copy.

use std::io::Write;
use std::sync::{Arc, Mutex};

use serde::Deserialize;

use super::error::CoreError;

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

/// A sink that keeps what the archive writer wrote until `take` hands it out.
#[derive(Clone, Default)]
struct Pieces(Arc<Mutex<Vec<u8>>>);

impl Pieces {
    fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.0.lock().expect("pieces lock"))
    }
}

impl Write for Pieces {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("pieces lock").extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

enum Inner {
    Tar(tar::Builder<Pieces>),
    Zip(Box<zip::ZipWriter<zip::write::StreamWriter<Pieces>>>),
}

/// An archive being written: `add` files, `take` what is ready to send, then `finish`.
pub struct ArchiveWriter {
    pieces: Pieces,
    inner: Inner,
}

impl ArchiveWriter {
    pub fn new(format: Format) -> ArchiveWriter {
        let pieces = Pieces::default();
        let inner = match format {
            Format::Tar => Inner::Tar(tar::Builder::new(pieces.clone())),
            Format::Zip => Inner::Zip(Box::new(zip::ZipWriter::new_stream(pieces.clone()))),
        };
        ArchiveWriter { pieces, inner }
    }

    /// One read-only file with a fixed time stamp: the same package bytes from the same input.
    pub fn add(&mut self, path: &str, data: &[u8]) -> Result<(), CoreError> {
        let failed = |e: &dyn std::fmt::Display| {
            CoreError::Internal(format!("writing {path} into the package: {e}"))
        };
        match &mut self.inner {
            Inner::Tar(tar) => {
                let mut header = tar::Header::new_gnu();
                header.set_size(data.len() as u64);
                header.set_mode(0o444);
                header.set_mtime(0);
                header.set_entry_type(tar::EntryType::Regular);
                tar.append_data(&mut header, path, data)
                    .map_err(|e| failed(&e))
            }
            Inner::Zip(zip) => {
                let options = zip::write::SimpleFileOptions::default()
                    .compression_method(zip::CompressionMethod::Stored)
                    .last_modified_time(zip::DateTime::default())
                    .unix_permissions(0o444)
                    .large_file(data.len() as u64 >= u64::from(u32::MAX));
                zip.start_file(path, options).map_err(|e| failed(&e))?;
                zip.write_all(data).map_err(|e| failed(&e))
            }
        }
    }

    /// The bytes written since the last call.
    pub fn take(&mut self) -> Vec<u8> {
        self.pieces.take()
    }

    /// Ends the archive (tar's zero blocks, zip's central directory) and returns the last bytes.
    pub fn finish(self) -> Result<Vec<u8>, CoreError> {
        let failed =
            |e: &dyn std::fmt::Display| CoreError::Internal(format!("finishing the package: {e}"));
        match self.inner {
            Inner::Tar(tar) => {
                tar.into_inner().map_err(|e| failed(&e))?;
            }
            Inner::Zip(zip) => {
                zip.finish().map_err(|e| failed(&e))?;
            }
        }
        Ok(self.pieces.take())
    }
}
