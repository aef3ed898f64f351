//! Where export files live: a folder per job under the export root on the local disk.
//!
//! Names are the server's own (`Patient-3.ndjson`), so a file name from a URL is accepted
//! only in that form, never as a path.

use std::path::{Path, PathBuf};

use tokio::io::AsyncWriteExt;

/// The export root folder.
#[derive(Debug, Clone)]
pub struct Files {
    root: PathBuf,
}

/// The write buffer of a file: large writes keep the disk busy and the calls few.
const BUFFER: usize = 1024 * 1024;

impl Files {
    /// Files under `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Files {
        Files { root: root.into() }
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn folder(&self, job: &str) -> PathBuf {
        self.root.join(job)
    }

    /// The file `name` of `job`, when both are names this server writes.
    pub fn path(&self, job: &str, name: &str) -> Option<PathBuf> {
        let plain = |text: &str| {
            !text.is_empty()
                && text.len() <= 128
                && !text.starts_with('.')
                && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'))
        };
        (plain(job) && plain(name) && name.ends_with(".ndjson")).then(|| self.folder(job).join(name))
    }

    /// Creates (or truncates) the file `name` of `job`.
    pub(crate) async fn create(&self, job: &str, name: &str) -> std::io::Result<FileWriter> {
        let folder = self.folder(job);
        tokio::fs::create_dir_all(&folder).await?;
        let file = tokio::fs::File::create(folder.join(name)).await?;
        Ok(FileWriter { file: tokio::io::BufWriter::with_capacity(BUFFER, file), bytes: 0 })
    }

    /// Removes the file `name` of `job` if it exists.
    pub(crate) async fn remove_file(&self, job: &str, name: &str) -> std::io::Result<()> {
        match tokio::fs::remove_file(self.folder(job).join(name)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }

    /// Removes every file of `job`.
    pub(crate) async fn remove(&self, job: &str) -> std::io::Result<()> {
        match tokio::fs::remove_dir_all(self.folder(job)).await {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

/// An NDJSON file being written.
pub(crate) struct FileWriter {
    file: tokio::io::BufWriter<tokio::fs::File>,
    bytes: u64,
}

impl FileWriter {
    /// Appends one line.
    pub(crate) async fn line(&mut self, json: &[u8]) -> std::io::Result<()> {
        self.file.write_all(json).await?;
        self.file.write_all(b"\n").await?;
        self.bytes += json.len() as u64 + 1;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Writes the buffer out and makes the file durable.
    pub(crate) async fn finish(mut self) -> std::io::Result<u64> {
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        Ok(self.bytes)
    }
}
