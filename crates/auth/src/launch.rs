//! EHR launch contexts: an EHR (or `ignis admin launch create`) binds a patient, maybe an
//! encounter and a user to an opaque `launch` value, which the app passes back in its
//! authorization request. Kept under the value's digest like other opaque values.

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records};

use crate::authorization::{FlowError, LaunchContext};
use crate::opaque;

/// How long a launch value may wait for the app's authorization request.
pub const LIFETIME: i64 = 60 * 60;

/// A launch as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub environment: String,
    pub patient: String,
    #[serde(default)]
    pub encounter: Option<String>,
    /// The username the EHR session belongs to, if it named one.
    #[serde(default)]
    pub user: Option<String>,
    pub expires: i64,
}

impl Kind for Launch {
    const KIND: &'static str = "launch";

    fn keys(&self) -> Vec<RecordKey> {
        Vec::new()
    }
}

/// Stores `launch`; returns the `launch` value to hand to the app.
pub async fn create(store: &dyn Records, launch: &Launch, by: &str) -> Result<String, FlowError> {
    let value = opaque::new_secret()?;
    records::create(store, &opaque::digest(&value), launch, by).await?;
    Ok(value)
}

/// The context bound to `value` in `environment`, if it is live.
pub async fn context(
    store: &dyn Records,
    environment: &str,
    value: &str,
    now: i64,
) -> Result<Option<(LaunchContext, Option<String>)>, FlowError> {
    let found = records::get::<Launch>(store, &opaque::digest(value)).await?;
    Ok(found
        .map(|found| found.value)
        .filter(|launch| launch.environment == environment && launch.expires > now)
        .map(|launch| (LaunchContext { patient: Some(launch.patient), encounter: launch.encounter }, launch.user)))
}
