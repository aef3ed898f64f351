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

fn archive_documents(file: &Path, each: &mut dyn FnMut(anyhow::Result<Document>) -> bool) -> anyhow::Result<()> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(File::open(file)?));
    for member in archive.entries()? {
        let mut member = member?;
        let member_name = member.path()?.display().to_string();
        if !member.header().entry_type().is_file() || !is_data(&member_name) {
            continue;
        }
        let mut bytes = Vec::with_capacity(usize::try_from(member.size()).unwrap_or(0));
        member.read_to_end(&mut bytes)?;
        let name = format!("{}!{member_name}", file.display());
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
