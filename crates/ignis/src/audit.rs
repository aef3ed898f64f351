//! `ignis audit verify` and `ignis audit export`: the audit log from the command line, over
//! the same database as a running server (neither stops it).

use std::io::Write;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;
use serde_json::json;

use crate::cli::StorageArgs;
use crate::serve::{load_secret_key, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Walk every hash chain of the audit log: prints what was checked, and fails (exit 2)
    /// naming the first entry that was altered, deleted or inserted out of order.
    Verify(VerifyArgs),
    /// Print the entries recorded in a date range as NDJSON `AuditEvent`s, newest first.
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    #[command(flatten)]
    storage: StorageArgs,
    /// The first instant, as a FHIR date or dateTime (`2026-01-01`, `2026-01-01T08:00:00Z`).
    #[arg(long)]
    since: Option<String>,
    /// The end of the range, excluded, as a FHIR date or dateTime.
    #[arg(long)]
    until: Option<String>,
}

pub(crate) async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Verify(args) => verify(args).await,
        AuditCommand::Export(args) => export(args).await,
    }
}

async fn verify(args: VerifyArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let key = server::audit_key(&load_secret_key(&args.storage)?);
    let verification = store::audit::verify(store.as_ref(), &key).await.context("cannot read the audit log")?;
    let problem = verification.problem.as_ref().map(ToString::to_string);
    let report = json!({
        "chains": verification.chains,
        "entries": verification.entries,
        "verified": problem.is_none(),
        "problem": problem,
    });
    #[allow(clippy::print_stdout)] // The report is the command's output.
    {
        println!("{report}");
    }
    match problem {
        Some(problem) => bail!("{problem}"),
        None => Ok(()),
    }
}

async fn export(args: ExportArgs) -> anyhow::Result<()> {
    let bound = |name: &str, value: &Option<String>| match value {
        None => Ok(None),
        Some(text) => fhir::instant::parse_lower_bound(text)
            .map(Some)
            .with_context(|| format!("--{name} '{text}' is not a FHIR date or dateTime")),
    };
    let (since, until) = (bound("since", &args.since)?, bound("until", &args.until)?);
    let store = open_store(&args.storage)?;
    let mut lines = std::pin::pin!(server::audit_export(store, since, until));
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    while let Some(page) = lines.next().await {
        out.write_all(&page.context("cannot read the audit log")?)?;
    }
    out.flush()?;
    Ok(())
}
