//! `ignis bench --export PATH`: for each size, loads copies of the Bundles at PATH into a
//! throw-away SQLite database (and, with `--database-url`, a throw-away PostgreSQL schema),
//! starts a real `ignis serve` process over it, runs a system
//! `$export` through HTTP until the manifest comes, and prints MB/s, resources/s and the
//! server process's peak memory (Linux `VmHWM`, before and after the export): the export
//! streams, so the peak must not grow with the size.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use store::Environment;

use crate::bench::Backend;
use crate::bench::search::{read_texts, write_copies};
use crate::export::peak_memory_of;
use crate::import::{self, Options};

/// One export measured.
struct Row {
    backend: &'static str,
    resources: u64,
    bytes: u64,
    files: usize,
    seconds: f64,
    /// The server's peak resident memory when it was ready, and after the export.
    peak_before: Option<u64>,
    peak_after: Option<u64>,
}

pub(crate) async fn run(path: &Path, sizes: &[usize], database_url: Option<String>) -> anyhow::Result<()> {
    let bundles = read_texts(path)?;
    let per_copy: usize = bundles.iter().map(|text| text.matches("\"request\"").count()).sum();
    let mut rows = Vec::new();
    for backend in Backend::compared(database_url) {
        for &size in sizes {
            rows.push(measure(&backend, &bundles, size.div_ceil(per_copy.max(1)).max(1)).await?);
        }
    }
    print_table(&rows);
    Ok(())
}

async fn measure(backend: &Backend, bundles: &[String], copies: usize) -> anyhow::Result<Row> {
    let folder = tempfile::tempdir()?;
    write_copies(bundles, copies, &folder.path().join("copies"))?;
    let fresh = backend.fresh().await?;
    let options = Options { env: Environment::Production, strict: false, batch_size: 2000, progress: true };
    import::import(fresh.store.as_ref(), &[folder.path().join("copies")], options).await?;
    let mut server = Server::start(folder.path(), &fresh.database_url())?;
    let pid = server.child.id().to_string();
    let peak_before = peak_memory_of(&pid);
    let client = reqwest::Client::new();
    let started = Instant::now();
    let response =
        client.get(format!("http://{}/fhir/$export", server.address)).header("prefer", "respond-async").send().await?;
    if response.status() != reqwest::StatusCode::ACCEPTED {
        bail!("the kick-off answered {}", response.status());
    }
    let status = response
        .headers()
        .get("content-location")
        .context("the kick-off answered no Content-Location")?
        .to_str()?
        .to_owned();
    let manifest = loop {
        let response = client.get(&status).send().await?;
        match response.status().as_u16() {
            200 => break response.json::<Value>().await?,
            202 => tokio::time::sleep(Duration::from_millis(20)).await,
            other => bail!("polling answered {other}: {}", response.text().await?),
        }
    };
    let seconds = started.elapsed().as_secs_f64();
    let peak_after = peak_memory_of(&pid);
    server.stop();
    fresh.remove().await?;
    let outputs = manifest["output"].as_array().context("the manifest lists files")?;
    let resources = outputs.iter().filter_map(|output| output["count"].as_u64()).sum();
    let job = status.rsplit('/').next().context("the job id")?;
    let mut bytes = 0;
    for entry in std::fs::read_dir(folder.path().join("exports").join(job))? {
        bytes += entry?.metadata()?.len();
    }
    Ok(Row { backend: backend.name(), resources, bytes, files: outputs.len(), seconds, peak_before, peak_after })
}

/// An `ignis serve` child over `database_url`, open on loopback, its exports in the folder.
struct Server {
    child: Child,
    address: String,
}

impl Server {
    fn start(folder: &Path, database_url: &str) -> anyhow::Result<Server> {
        let exports = format!("file://{}", folder.join("exports").display());
        let mut child = Command::new(std::env::current_exe()?)
            .args(["serve", "--listen", "127.0.0.1:0", "--no-demo", "--insecure-no-auth", "--export-store", &exports])
            .args(["--database-url", database_url])
            .arg("--data-dir")
            .arg(folder)
            .env("NO_COLOR", "1")
            .env("IGNIS_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take().context("the server's log")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        // Read the log to its end, so the child never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("ignis is serving")
                    && let Some(address) = line.split("address=").nth(1).and_then(|rest| rest.split_whitespace().next())
                {
                    let _ = sender.send(address.to_owned());
                }
            }
        });
        let address = receiver.recv_timeout(Duration::from_secs(120)).context("the server did not start")?;
        Ok(Server { child, address })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

#[allow(clippy::print_stdout)] // The table is the command's output.
fn print_table(rows: &[Row]) {
    let mib = |bytes: Option<u64>| bytes.map_or("-".to_owned(), |bytes| format!("{:.0}", bytes as f64 / 1048576.0));
    println!("system $export through ignis serve (file store)");
    println!(
        "{:<10} {:>10} {:>9} {:>6} {:>8} {:>8} {:>12} {:>16} {:>15}",
        "database", "resources", "MB", "files", "seconds", "MB/s", "resources/s", "peak MiB before", "peak MiB after"
    );
    for row in rows {
        let seconds = row.seconds.max(f64::EPSILON);
        println!(
            "{:<10} {:>10} {:>9.1} {:>6} {:>8.2} {:>8.1} {:>12.0} {:>16} {:>15}",
            row.backend,
            row.resources,
            row.bytes as f64 / 1e6,
            row.files,
            row.seconds,
            row.bytes as f64 / 1e6 / seconds,
            row.resources as f64 / seconds,
            mib(row.peak_before),
            mib(row.peak_after),
        );
    }
}
