//! `ignis migrate`: applies the database's pending schema migrations and says which version
//! it was at and is at now. Every command that opens the database migrates it too; this one
//! lets an operator do it on its own, e.g. before starting several upgraded servers.

use anyhow::Context;

use crate::cli::MigrateArgs;
use crate::serve::{Database, blocking};

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let database = Database::from_args(&args.storage)?;
    let versions = match &database {
        Database::Sqlite(path) => blocking(|| store::migrate::sqlite(path)),
        Database::Postgres(url) => blocking(|| store::migrate::postgres(url)),
    }
    .with_context(|| format!("cannot migrate the database {}", database.describe()))?;
    #[allow(clippy::print_stdout)] // The versions are the command's output.
    {
        if versions.before == versions.after {
            println!("{}: schema version {}, up to date", database.describe(), versions.after);
        } else {
            let applied = versions.after.saturating_sub(versions.before);
            println!(
                "{}: schema version {} -> {} ({applied} migration{} applied)",
                database.describe(),
                versions.before,
                versions.after,
                if applied == 1 { "" } else { "s" }
            );
        }
    }
    Ok(())
}
