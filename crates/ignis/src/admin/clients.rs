//! `ignis admin client create` and `ignis admin client import`: registered SMART clients, per
//! environment. Each prints what it registered as JSON, never a secret or its hash.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use auth::client::{self, Client, ClientError, ClientType, NewClient};
use clap::{Args, ValueEnum};
use serde::Deserialize;
use serde_json::{Value, json};
use store::records::Records;

use super::{BY, print_json, read_password};
use crate::cli::{EnvironmentArg, StorageArgs};
use crate::serve::open_store;

/// Inferno's redirect and EHR launch URIs on the hosted ONC instance.
const INFERNO_REDIRECT: &str = "https://inferno.healthit.gov/suites/custom/smart/redirect";
const INFERNO_LAUNCH: &str = "https://inferno.healthit.gov/suites/custom/smart/launch";
/// What imported clients may be granted unless `--scopes` says otherwise: every SMART scope.
const ALL_SCOPES: &str =
    "launch launch/patient launch/encounter openid fhirUser offline_access online_access patient/*.cruds user/*.cruds";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum TypeArg {
    Public,
    ConfidentialSymmetric,
    ConfidentialAsymmetric,
}

impl From<TypeArg> for ClientType {
    fn from(value: TypeArg) -> ClientType {
        match value {
            TypeArg::Public => ClientType::Public,
            TypeArg::ConfidentialSymmetric => ClientType::ConfidentialSymmetric,
            TypeArg::ConfidentialAsymmetric => ClientType::ConfidentialAsymmetric,
        }
    }
}

#[derive(Debug, Args)]
pub(crate) struct ClientCreateArgs {
    #[arg(long)]
    client_id: String,
    #[arg(long = "type", value_enum)]
    client_type: TypeArg,
    /// A redirect URI, matched exactly; repeatable. Needed by every client but a Backend
    /// Services one (confidential-asymmetric with only `system/` scopes).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// Read a confidential-symmetric client's secret from standard input.
    #[arg(long)]
    secret_stdin: bool,
    /// A confidential-asymmetric client's public keys (a JWK Set file).
    #[arg(long, conflicts_with = "jwks_url")]
    jwks_file: Option<PathBuf>,
    /// Or the HTTPS URL of its JWK Set.
    #[arg(long)]
    jwks_url: Option<String>,
    /// An EHR launch URI; repeatable.
    #[arg(long = "launch-uri")]
    launch_uris: Vec<String>,
    /// The scopes the client may be granted.
    #[arg(long)]
    scopes: String,
    #[arg(long, value_enum, default_value_t = EnvironmentArg::Production)]
    environment: EnvironmentArg,
    #[command(flatten)]
    storage: StorageArgs,
}

pub(crate) async fn create(args: ClientCreateArgs) -> anyhow::Result<()> {
    let client_type = ClientType::from(args.client_type);
    let secret = match (args.secret_stdin, client_type) {
        (true, ClientType::ConfidentialSymmetric) => Some(read_password(std::io::stdin().lock())?),
        (false, ClientType::ConfidentialSymmetric) => {
            bail!("a confidential-symmetric client needs a secret: pass --secret-stdin")
        }
        (true, _) => bail!("--secret-stdin is only for confidential-symmetric clients"),
        (false, _) => None,
    };
    if args.redirect_uris.is_empty() && client_type != ClientType::ConfidentialAsymmetric {
        bail!(
            "a {} client needs at least one --redirect-uri",
            args.client_type.to_possible_value().map_or_else(String::new, |value| value.get_name().to_owned())
        );
    }
    let jwks = args.jwks_file.as_deref().map(read_jwks).transpose()?;
    let store = open_store(&args.storage)?;
    let new = NewClient {
        client_id: args.client_id,
        client_type,
        environment: store::Environment::from(args.environment).as_str().to_owned(),
        secret,
        jwks,
        jwks_url: args.jwks_url,
        redirect_uris: args.redirect_uris,
        launch_uris: args.launch_uris,
        scopes: args.scopes,
    };
    let registered = register(&*store, new).await?;
    print_json(&client_json(&registered));
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct ClientImportArgs {
    /// A client list in the Inferno reference server's format (`default_clients.json`).
    file: PathBuf,
    /// The redirect URIs of every imported client (default: Inferno's hosted redirect URI).
    #[arg(long = "redirect-uri")]
    redirect_uris: Vec<String>,
    /// The EHR launch URIs of every imported client (default: Inferno's hosted launch URI).
    #[arg(long = "launch-uri")]
    launch_uris: Vec<String>,
    /// What the imported clients may be granted (default: every SMART scope).
    #[arg(long, default_value = ALL_SCOPES)]
    scopes: String,
    #[arg(long, value_enum, default_value_t = EnvironmentArg::Production)]
    environment: EnvironmentArg,
    #[command(flatten)]
    storage: StorageArgs,
}

/// One entry of the reference server's list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Listed {
    client_id: String,
    #[serde(default)]
    authorization_grant_type: Option<String>,
    client_authentication_method: String,
    #[serde(default)]
    client_secret: Option<String>,
    #[serde(default)]
    provider_details: Option<Value>,
}

/// Registers every client of the list; prints those registered and those skipped, with why.
pub(crate) async fn import(args: ClientImportArgs) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("cannot read {}", args.file.display()))?;
    let listed: Vec<Listed> =
        serde_json::from_str(&text).with_context(|| format!("{} is not a client list", args.file.display()))?;
    let folder = args.file.parent().unwrap_or(Path::new("."));
    let redirect_uris = or_default(args.redirect_uris, INFERNO_REDIRECT);
    let launch_uris = or_default(args.launch_uris, INFERNO_LAUNCH);
    let environment = store::Environment::from(args.environment).as_str().to_owned();
    let store = open_store(&args.storage)?;
    let (mut registered, mut skipped) = (Vec::new(), Vec::new());
    for entry in listed {
        let client_id = entry.client_id.clone();
        let new = match imported(entry, folder) {
            Ok(mut new) => {
                new.environment = environment.clone();
                new.redirect_uris = redirect_uris.clone();
                new.launch_uris = launch_uris.clone();
                new.scopes = args.scopes.clone();
                new
            }
            Err(reason) => {
                skipped.push(json!({"client_id": client_id, "reason": reason.to_string()}));
                continue;
            }
        };
        match register(&*store, new).await {
            Ok(client) => registered.push(client_json(&client)),
            Err(reason) => skipped.push(json!({"client_id": client_id, "reason": reason.to_string()})),
        }
    }
    print_json(&json!({"registered": registered, "skipped": skipped}));
    Ok(())
}

/// The client an entry of the list describes (environment, URIs and scopes set by the caller).
fn imported(entry: Listed, folder: &Path) -> anyhow::Result<NewClient> {
    if entry.authorization_grant_type.as_deref() == Some("client_credentials") {
        // Its id is a registration token naming a JWKS URL on the reference server's own host.
        bail!(
            "a Backend Services client is registered with its own JWKS URL: ignis admin client create \
             --type confidential-asymmetric --jwks-url URL --scopes 'system/*.rs'"
        );
    }
    let (client_type, jwks) = match entry.client_authentication_method.as_str() {
        "none" => (ClientType::Public, None),
        "client_secret_basic" | "client_secret_post" => (ClientType::ConfidentialSymmetric, None),
        "private_key_jwt" => {
            let uri = entry.provider_details.as_ref().and_then(|details| details["jwkSetUri"].as_str()).unwrap_or("");
            let Some(name) = uri.strip_prefix("resource:/") else {
                bail!("its jwkSetUri '{uri}' is not a resource:/ file next to the list");
            };
            (ClientType::ConfidentialAsymmetric, Some(read_jwks(&folder.join(name))?))
        }
        other => bail!("client authentication method '{other}' is not supported"),
    };
    Ok(NewClient {
        client_id: entry.client_id,
        client_type,
        environment: String::new(),
        secret: entry.client_secret,
        jwks,
        jwks_url: None,
        redirect_uris: Vec::new(),
        launch_uris: Vec::new(),
        scopes: String::new(),
    })
}

async fn register(store: &dyn Records, new: NewClient) -> anyhow::Result<Client> {
    let id = new.client_id.clone();
    match client::register(store, new, BY).await {
        Ok(client) => Ok(client.value),
        Err(ClientError::Store(store::Error::RecordExists { .. } | store::Error::RecordKeyTaken { .. })) => {
            bail!("a client '{id}' already exists in this environment")
        }
        Err(error) => Err(error).context("cannot register the client"),
    }
}

fn read_jwks(path: &Path) -> anyhow::Result<Value> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read the JWKS {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))
}

fn or_default(values: Vec<String>, default: &str) -> Vec<String> {
    if values.is_empty() { vec![default.to_owned()] } else { values }
}

/// A client as printed: no secret and no hash.
fn client_json(client: &Client) -> Value {
    let client_type = match client.client_type {
        ClientType::Public => "public",
        ClientType::ConfidentialSymmetric => "confidential-symmetric",
        ClientType::ConfidentialAsymmetric => "confidential-asymmetric",
    };
    json!({
        "client_id": client.client_id,
        "type": client_type,
        "environment": client.environment,
        "redirect_uris": client.redirect_uris,
        "launch_uris": client.launch_uris,
        "scopes": client.scopes,
        "jwks": client.jwks.is_some(),
        "jwks_url": client.jwks_url,
    })
}
