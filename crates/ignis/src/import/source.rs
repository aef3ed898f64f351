//! Where import data comes from: files, folders (searched recursively, in name order) and
//! `.tgz` archives, each yielding documents (a name and its bytes).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// One JSON or NDJSON document to parse, named for error reports.
pub(crate) struct Document {
    /// The file path, or `archive.tgz!member` for a member of an archive.
    pub(crate) name: String,
    pub(crate) bytes: Vec<u8>,
    pub(crate) ndjson: bool,
}

/// The files to read under `paths`: data files and archives, folders expanded in name order.
/// Files named explicitly are always read; in folders, other files (licences, notes) are
/// skipped.
pub(crate) fn files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for path in paths {
        if path.is_dir() {
            walk(path, &mut found)?;
        } else if path.exists() {
            found.push(path.clone());
        } else {
            anyhow::bail!("{} does not exist", path.display());
        }
    }
    Ok(found)
}

/// Calls `each` with every document of `file` (one for a data file, one per data member of
/// an archive). Stops when `each` returns false.
pub(crate) fn documents(file: &Path, each: &mut dyn FnMut(anyhow::Result<Document>) -> bool) {
    let name = file.display().to_string();
    if is_archive(file) {
        if let Err(error) = archive_documents(file, each) {
            each(Err(error.context(format!("{name}: cannot read the archive"))));
        }
        return;
    }
    let document = std::fs::read(file).with_context(|| format!("{name}: cannot read")).map(|bytes| Document {
        ndjson: is_ndjson(&name),
        name,
        bytes,
    });
    each(document);
}

/// The largest archive member read (one JSON or NDJSON document).
const MAX_MEMBER_BYTES: u64 = 4 << 30;
/// What is reserved up front for a member, whatever size its header declares.
const RESERVE_BYTES: u64 = 64 << 20;

fn archive_documents(file: &Path, each: &mut dyn FnMut(anyhow::Result<Document>) -> bool) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(File::open(file)?));
    for member in archive.entries()? {
        let mut member = member?;
        let member_name = member.path()?.display().to_string();
        if !member.header().entry_type().is_file() || !is_data(&member_name) {
            continue;
        }
        let name = format!("{}!{member_name}", file.display());
        let declared = member.size();
        if declared > MAX_MEMBER_BYTES {
            anyhow::bail!("{name} declares {declared} bytes, more than the {MAX_MEMBER_BYTES} a member may hold");
        }
        // The header's size is the archive's word, not a fact: reserve little, and read no
        // more than the limit whatever the stream holds.
        let mut bytes = Vec::with_capacity(usize::try_from(declared.min(RESERVE_BYTES)).unwrap_or(0));
        (&mut member).take(MAX_MEMBER_BYTES).read_to_end(&mut bytes).with_context(|| format!("{name}: cannot read"))?;
        if (bytes.len() as u64) < declared {
            anyhow::bail!("{name} declares {declared} bytes but the archive ends after {}", bytes.len());
        }
        if !each(Ok(Document { ndjson: is_ndjson(&member_name), name, bytes })) {
            break;
        }
    }
    Ok(())
}

fn walk(folder: &Path, found: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    let mut children: Vec<PathBuf> = std::fs::read_dir(folder)
        .with_context(|| format!("cannot list {}", folder.display()))?
        .map(|entry| entry.map(|entry| entry.path()))
        .collect::<Result<_, _>>()?;
    children.sort();
    for child in children {
        if child.is_dir() {
            walk(&child, found)?;
        } else if is_data(&child.display().to_string()) || is_archive(&child) {
            found.push(child);
        }
    }
    Ok(())
}

fn is_archive(path: &Path) -> bool {
    let name = path.display().to_string();
    name.ends_with(".tgz") || name.ends_with(".tar.gz")
}

fn is_data(name: &str) -> bool {
    name.ends_with(".json") || is_ndjson(name)
}

fn is_ndjson(name: &str) -> bool {
    name.ends_with(".ndjson") || name.ends_with(".jsonl")
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A `.tgz` with one member whose header declares `declared` bytes but holds `actual`.
    fn lying_archive(folder: &Path, declared: u64, actual: usize) -> PathBuf {
        let mut header = tar::Header::new_gnu();
        header.set_path("data.ndjson").expect("path");
        header.set_size(declared);
        header.set_mode(0o644);
        header.set_entry_type(tar::EntryType::Regular);
        header.set_cksum();
        let mut raw = header.as_bytes().to_vec();
        raw.extend(std::iter::repeat_n(b'{', actual));
        raw.resize(raw.len().next_multiple_of(512) + 1024, 0);
        let path = folder.join("lying.tgz");
        let mut encoder = flate2::write::GzEncoder::new(File::create(&path).expect("create"), Default::default());
        encoder.write_all(&raw).expect("write");
        encoder.finish().expect("finish");
        path
    }

    fn read_all(path: &Path) -> Vec<anyhow::Result<Document>> {
        let mut found = Vec::new();
        documents(path, &mut |document| {
            found.push(document);
            true
        });
        found
    }

    #[test]
    fn a_member_declaring_an_absurd_size_is_refused_without_reserving_it() {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = lying_archive(folder.path(), 1 << 60, 10);
        let results = read_all(&path);
        let error = results.iter().find_map(|result| result.as_ref().err()).expect("an error");
        assert!(format!("{error:#}").contains("more than the"), "{error:#}");
    }

    #[test]
    fn a_member_declaring_more_than_it_holds_is_an_error_not_a_hang() {
        let folder = tempfile::tempdir().expect("temp dir");
        let path = lying_archive(folder.path(), 1 << 20, 10);
        let results = read_all(&path);
        assert!(results.iter().all(|result| result.is_err()), "no document from a truncated member");
        assert!(!results.is_empty());
    }
}
