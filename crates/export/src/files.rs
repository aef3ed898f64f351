//! Where export files live: a folder per job, on the local disk (the default) or in
//! S3-compatible object storage, both through `object_store`, so the runner and the server
//! write and read them one way.
//!
//! A file is written as a multipart upload: it appears whole when finished, so a reader never
//! sees half a file and a process that dies mid-file leaves none. Names are the server's own
//! (`Patient-3.ndjson`): a name from a URL is accepted only in that form, never as a path.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};

/// Where files go, as `--export-store` names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// `file://DIR`: a folder on the local disk.
    Folder(PathBuf),
    /// `s3://BUCKET/PREFIX`: a bucket of S3-compatible object storage; credentials, region
    /// and endpoint come from the standard `AWS_*` environment variables.
    S3 { bucket: String, prefix: String },
}

impl Location {
    /// Reads `file://DIR` or `s3://BUCKET[/PREFIX]`.
    pub fn parse(text: &str) -> Result<Location, String> {
        if let Some(folder) = text.strip_prefix("file://").filter(|folder| !folder.is_empty()) {
            return Ok(Location::Folder(PathBuf::from(folder)));
        }
        if let Some(rest) = text.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if !bucket.is_empty() {
                let prefix = prefix.trim_matches('/').to_owned();
                return Ok(Location::S3 { bucket: bucket.to_owned(), prefix });
            }
        }
        Err(format!("'{text}' is neither file://DIR nor s3://BUCKET/PREFIX"))
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Folder(folder) => write!(formatter, "file://{}", folder.display()),
            Location::S3 { bucket, prefix } => write!(formatter, "s3://{bucket}/{prefix}"),
        }
    }
}

/// The export files of every job.
#[derive(Debug, Clone)]
pub struct Files {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    /// The local folder, when files are on the local disk.
    folder: Option<PathBuf>,
}

/// The size of each uploaded part, and how many may be in flight: what a file being written
/// holds in memory at most.
const PART: usize = 8 * 1024 * 1024;
const PARTS_IN_FLIGHT: usize = 2;

impl Files {
    /// The files at `location` (a folder is created if it does not exist).
    pub fn open(location: &Location) -> Result<Files, object_store::Error> {
        match location {
            Location::Folder(folder) => {
                std::fs::create_dir_all(folder).map_err(|error| object_store::Error::Generic {
                    store: "LocalFileSystem",
                    source: Box::new(error),
                })?;
                let store = object_store::local::LocalFileSystem::new_with_prefix(folder)?;
                Ok(Files { store: Arc::new(store), prefix: Path::default(), folder: Some(folder.clone()) })
            }
            Location::S3 { bucket, prefix } => {
                let store = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).build()?;
                Ok(Files { store: Arc::new(store), prefix: Path::from(prefix.as_str()), folder: None })
            }
        }
    }

    /// True for a job id and file name this server writes.
    pub fn is_valid(job: &str, name: &str) -> bool {
        let plain = |text: &str| {
            !text.is_empty()
                && text.len() <= 128
                && !text.starts_with('.')
                && text.bytes().all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_'))
        };
        plain(job) && plain(name) && name.ends_with(".ndjson")
    }

    fn folder_of(&self, job: &str) -> Path {
        self.prefix.clone().join(job)
    }

    fn path(&self, job: &str, name: &str) -> Path {
        self.folder_of(job).join(name)
    }

    /// Begins the file `name` of `job` (replacing it when finished, if it exists).
    pub(crate) async fn create(&self, job: &str, name: &str) -> Result<FileWriter, object_store::Error> {
        let upload = self.store.put_multipart(&self.path(job, name)).await?;
        let upload = WriteMultipart::new_with_chunk_size(upload, PART);
        Ok(FileWriter { upload: std::sync::Mutex::new(upload), bytes: 0 })
    }

    /// The bytes of the file `name` of `job`, streamed.
    pub async fn read(
        &self,
        job: &str,
        name: &str,
    ) -> Result<BoxStream<'static, Result<Bytes, object_store::Error>>, object_store::Error> {
        Ok(self.store.get(&self.path(job, name)).await?.into_stream())
    }

    /// Removes every file of `job`.
    pub(crate) async fn remove(&self, job: &str) -> Result<(), object_store::Error> {
        let mut listing = self.store.list(Some(&self.folder_of(job)));
        while let Some(meta) = listing.next().await {
            match self.store.delete(&meta?.location).await {
                Err(object_store::Error::NotFound { .. }) | Ok(()) => {}
                Err(error) => return Err(error),
            }
        }
        if let Some(folder) = &self.folder {
            // Parts of uploads a dead process never finished lie there too.
            match std::fs::remove_dir_all(folder.join(job)) {
                Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                    return Err(object_store::Error::Generic { store: "LocalFileSystem", source: Box::new(error) });
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// An NDJSON file being written.
pub(crate) struct FileWriter {
    /// Only ever used through `&mut self` (`get_mut` takes no lock): the mutex makes the
    /// writer `Sync`, which the upload is not, so a job's future can be sent across threads.
    upload: std::sync::Mutex<WriteMultipart>,
    bytes: u64,
}

impl FileWriter {
    fn upload(&mut self) -> &mut WriteMultipart {
        self.upload.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends one line.
    pub(crate) async fn line(&mut self, json: &[u8]) -> Result<(), object_store::Error> {
        let upload = self.upload();
        upload.write(json);
        upload.write(b"\n");
        upload.wait_for_capacity(PARTS_IN_FLIGHT).await?;
        self.bytes += json.len() as u64 + 1;
        Ok(())
    }

    /// Bytes written so far.
    pub(crate) fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Completes the upload: the file appears whole.
    pub(crate) async fn finish(self) -> Result<u64, object_store::Error> {
        let upload = self.upload.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        upload.finish().await?;
        Ok(self.bytes)
    }

    /// Gives the upload up: no file appears.
    pub(crate) async fn abort(self) -> Result<(), object_store::Error> {
        self.upload.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner).abort().await
    }
}
