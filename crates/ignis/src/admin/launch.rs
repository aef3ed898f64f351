//! `ignis admin launch create`: an EHR launch context (patient, maybe encounter and user) for
//! an app's EHR launch; prints `{"launch": "…"}`, the value the EHR hands the app.

use auth::launch::{self, Launch};
use clap::Args;
use serde_json::json;

use super::{BY, print_json};
use crate::cli::{EnvironmentArg, StorageArgs};
use crate::serve::open_store;

#[derive(Debug, Args)]
pub(crate) struct LaunchCreateArgs {
    /// The Patient id in context.
    #[arg(long)]
    patient: String,
    /// The Encounter id in context.
    #[arg(long)]
    encounter: Option<String>,
    /// The username of the EHR user the launch is for.
    #[arg(long)]
    user: Option<String>,
    /// Whose FHIR base the launch is for.
    #[arg(long, value_enum, default_value_t = EnvironmentArg::Production)]
    environment: EnvironmentArg,
    #[command(flatten)]
    storage: StorageArgs,
}

pub(crate) async fn create(args: LaunchCreateArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let environment = store::Environment::from(args.environment);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let context = Launch {
        environment: environment.as_str().to_owned(),
        patient: args.patient,
        encounter: args.encounter,
        user: args.user,
        expires: now + launch::LIFETIME,
    };
    let value = launch::create(&*store, &context, BY).await?;
    print_json(&json!({"launch": value, "patient": context.patient, "encounter": context.encounter}));
    Ok(())
}
