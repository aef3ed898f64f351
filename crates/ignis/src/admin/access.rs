//! The access program's operator commands: accounts, production access requests and their
//! review, devices and their credentials, the platform client-auth CA. Each does what the same
//! `/api/` call does (both call the `access` crate) and prints the record as the API shows it.

use std::path::{Path, PathBuf};

use access::ca::{self, Given};
use access::credential::DeviceCredentials;
use access::device::{self, CertificateSource, NewDevice};
use access::request::{self, Action, Item};
use access::view::{AccessRequestView, AccountView, DeviceView};
use access::{AccessError, account};
use anyhow::Context;
use clap::{Args, Subcommand};
use serde_json::json;

use super::{BY, print_json};
use crate::cli::{EnvironmentArg, StorageArgs};
use crate::serve::{load_secret_key, open_store};

#[derive(Debug, Subcommand)]
pub(crate) enum AccountCommand {
    /// Create an account; prints it (`{"id": …}`).
    Create(AccountCreateArgs),
    /// Set the account's rate limit, for each of its devices and for the account (this also
    /// lifts a throttle); prints the account.
    Limit(AccountLimitArgs),
    /// Suspend the account: every credential of it is refused until it is reinstated; prints
    /// the account.
    Suspend(AccountSuspendArgs),
    /// Reinstate a suspended account (its rate limit starts afresh); prints the account.
    Reinstate(AccountReinstateArgs),
}

#[derive(Debug, Args)]
pub(crate) struct AccountLimitArgs {
    #[arg(long)]
    id: String,
    /// Requests per minute.
    #[arg(long)]
    per_minute: u32,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AccountSuspendArgs {
    #[arg(long)]
    id: String,
    /// Why (shown to the account and on every refused request).
    #[arg(long, default_value = "suspended by an operator")]
    reason: String,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AccountReinstateArgs {
    #[arg(long)]
    id: String,
    /// Why (kept in the audit log's record of the change).
    #[arg(long)]
    reason: Option<String>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct AccountCreateArgs {
    #[arg(long)]
    name: String,
    /// Days production stays open after a material change (default 30).
    #[arg(long)]
    grace_days: Option<u32>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum DeviceCommand {
    /// Configure a device of an account with the certificate it will present, or sign its CSR
    /// with the platform CA (the printed `certificate`).
    Create(DeviceCreateArgs),
    /// Issue the device's one live Device JWT (revoking the one before); prints `{"jwt": …}`.
    Credential(DeviceArgs),
    /// Revoke the device and its credential.
    Revoke(DeviceArgs),
    /// Replace the device's certificate (its Device JWT is revoked with the old one).
    Rotate(DeviceRotateArgs),
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("new-certificate").args(["certificate", "csr"]).required(true))]
pub(crate) struct DeviceRotateArgs {
    #[arg(long)]
    device: String,
    /// The PEM certificate the device will present from now on.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// The device's PEM certificate signing request, signed by the platform CA.
    #[arg(long)]
    csr: Option<PathBuf>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
#[command(group = clap::ArgGroup::new("certificate-source").args(["certificate", "csr", "generate_key_out"]))]
pub(crate) struct DeviceCreateArgs {
    #[arg(long)]
    account: String,
    #[arg(long)]
    name: String,
    #[arg(long, value_enum)]
    environment: EnvironmentArg,
    /// What the device is for.
    #[arg(long, default_value = "")]
    purpose: String,
    /// SMART `system/` scopes its credential grants (default `system/*.rs`).
    #[arg(long)]
    scope: Option<String>,
    /// The PEM certificate the device will present over mutual TLS.
    #[arg(long)]
    certificate: Option<PathBuf>,
    /// The device's PEM certificate signing request, signed by the platform CA; the device
    /// keeps its private key.
    #[arg(long)]
    csr: Option<PathBuf>,
    /// Not recommended: the platform makes the device's key and certificate and writes the key
    /// here once (created 0600); recorded on the device as platform-generated.
    #[arg(long)]
    generate_key_out: Option<PathBuf>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct DeviceArgs {
    #[arg(long)]
    device: String,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AccessRequestCommand {
    /// Open a draft production access request for an account.
    Create(RequestCreateArgs),
    /// Record an item of the review checklist.
    Checklist(ChecklistArgs),
    /// Hand the request in (again, after changes).
    Submit(TransitionArgs),
    /// Take a submitted request into review.
    Review(TransitionArgs),
    /// Send the request back with what to change (--reason required).
    RequestChanges(TransitionArgs),
    /// Approve a request in review whose checklist is complete.
    Approve(TransitionArgs),
    /// Reject the request (--reason required).
    Reject(TransitionArgs),
}

#[derive(Debug, Args)]
pub(crate) struct RequestCreateArgs {
    #[arg(long)]
    account: String,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct ChecklistArgs {
    #[arg(long)]
    id: String,
    /// legal, architecture, security, network or demo.
    #[arg(long)]
    item: String,
    /// The item's value; for `network`, comma-separated CIDRs.
    #[arg(long)]
    value: String,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Args)]
pub(crate) struct TransitionArgs {
    #[arg(long)]
    id: String,
    /// Why (required to request changes or reject).
    #[arg(long)]
    reason: Option<String>,
    /// For approve: when the certification ends, an RFC 3339 instant (default a year on).
    #[arg(long)]
    contract_end: Option<String>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum CaCommand {
    /// Create the platform client-auth CA (trusted for production) unless it exists; prints
    /// `{"certificate": PEM}`.
    Init(CaInitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct CaInitArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

pub(crate) async fn account(command: AccountCommand) -> anyhow::Result<()> {
    let changed = match command {
        AccountCommand::Create(args) => {
            let store = open_store(&args.storage)?;
            account::create_with_grace(&*store, &args.name, Vec::new(), args.grace_days, BY).await
        }
        AccountCommand::Limit(args) => {
            let store = open_store(&args.storage)?;
            access::monitoring::set_limit(&*store, &args.id, args.per_minute, BY).await
        }
        AccountCommand::Suspend(args) => {
            let store = open_store(&args.storage)?;
            access::monitoring::suspend(&*store, &args.id, &args.reason, BY).await
        }
        AccountCommand::Reinstate(args) => {
            let store = open_store(&args.storage)?;
            let by = match &args.reason {
                Some(reason) => format!("{BY} ({reason})"),
                None => BY.to_owned(),
            };
            access::monitoring::reinstate(&*store, &args.id, &by).await
        }
    };
    print_json(&json!(AccountView::from(&changed.map_err(refused)?)));
    Ok(())
}

pub(crate) async fn device(command: DeviceCommand) -> anyhow::Result<()> {
    match command {
        DeviceCommand::Create(args) => create_device(args).await,
        DeviceCommand::Credential(args) => {
            let store = open_store(&args.storage)?;
            let secret = load_secret_key(&args.storage)?;
            let credentials = DeviceCredentials::load_or_create(&*store, &secret).await.map_err(refused)?;
            let jwt = credentials.issue(&*store, &args.device, BY).await.map_err(refused)?;
            print_json(&json!({"device": args.device, "jwt": jwt}));
            Ok(())
        }
        DeviceCommand::Rotate(args) => {
            let store = open_store(&args.storage)?;
            let secret = load_secret_key(&args.storage)?;
            let (certificate, csr) = read_given(args.certificate.as_deref(), args.csr.as_deref())?;
            let given = Given::of(certificate.as_deref(), csr.as_deref()).map_err(refused)?;
            let given = given.context("give --certificate or --csr")?;
            let (certificate, source) = ca::device_certificate(&*store, &secret, given).await.map_err(refused)?;
            let rotated =
                device::rotate_certificate(&*store, &args.device, certificate, source, BY).await.map_err(refused)?;
            print_json(&json!(DeviceView::from(&rotated)));
            Ok(())
        }
        DeviceCommand::Revoke(args) => {
            let store = open_store(&args.storage)?;
            let revoked = device::revoke(&*store, &args.device, BY).await.map_err(refused)?;
            print_json(&json!(DeviceView::from(&revoked)));
            Ok(())
        }
    }
}

async fn create_device(args: DeviceCreateArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let secret = load_secret_key(&args.storage)?;
    let mut key_file = None;
    let (certificate, csr) = read_given(args.certificate.as_deref(), args.csr.as_deref())?;
    let given = Given::of(certificate.as_deref(), csr.as_deref()).map_err(refused)?;
    let certificate = match (given, &args.generate_key_out) {
        (Some(given), _) => Some(ca::device_certificate(&*store, &secret, given).await.map_err(refused)?),
        (None, Some(path)) => {
            let file = super::SecretFile::create(path)?;
            let (certificate, key) = ca::generate_for_device(&*store, &secret, &args.name).await.map_err(refused)?;
            key_file = Some((file, key));
            Some((certificate, CertificateSource::PlatformGenerated))
        }
        (None, None) => None,
    };
    let new = NewDevice {
        account: args.account,
        name: args.name,
        purpose: args.purpose,
        environment: args.environment.into(),
        scope: args.scope,
        certificate,
    };
    let created = match device::create(&*store, new, BY).await {
        Ok(created) => created,
        Err(error) => {
            if let Some((file, _)) = key_file {
                file.discard();
            }
            return Err(refused(error));
        }
    };
    if let Some((file, key)) = key_file {
        file.write_text(&key)?;
    }
    print_json(&json!(DeviceView::from(&created)));
    Ok(())
}

pub(crate) async fn access_request(command: AccessRequestCommand) -> anyhow::Result<()> {
    let (storage, change) = match command {
        AccessRequestCommand::Create(args) => {
            let store = open_store(&args.storage)?;
            let created = request::create(&*store, &args.account, BY).await.map_err(refused)?;
            print_json(&json!(AccessRequestView::from(&created)));
            return Ok(());
        }
        AccessRequestCommand::Checklist(args) => {
            let item: Item = args.item.parse().map_err(refused)?;
            (args.storage, Change::Record(args.id, item, args.value))
        }
        AccessRequestCommand::Submit(args) => transition(args, Action::Submit),
        AccessRequestCommand::Review(args) => transition(args, Action::Review),
        AccessRequestCommand::RequestChanges(args) => transition(args, Action::RequestChanges),
        AccessRequestCommand::Approve(args) => transition(args, Action::Approve),
        AccessRequestCommand::Reject(args) => transition(args, Action::Reject),
    };
    let store = open_store(&storage)?;
    let changed = match change {
        Change::Record(id, item, value) => request::record(&*store, &id, item, &value, BY).await,
        Change::Transition(id, action, reason, contract_end) => {
            let contract_end = contract_end
                .map(|text| {
                    time::OffsetDateTime::parse(&text, &time::format_description::well_known::Rfc3339)
                        .with_context(|| format!("--contract-end '{text}' is not an RFC 3339 instant"))
                })
                .transpose()?;
            request::transition_with(&*store, &id, action, reason.as_deref(), contract_end, BY).await
        }
    }
    .map_err(refused)?;
    print_json(&json!(AccessRequestView::from(&changed)));
    Ok(())
}

/// What an access-request command changes.
enum Change {
    Record(String, Item, String),
    Transition(String, Action, Option<String>, Option<String>),
}

fn transition(args: TransitionArgs, action: Action) -> (StorageArgs, Change) {
    (args.storage, Change::Transition(args.id, action, args.reason, args.contract_end))
}

pub(crate) async fn ca(command: CaCommand) -> anyhow::Result<()> {
    let CaCommand::Init(args) = command;
    let store = open_store(&args.storage)?;
    let secret = load_secret_key(&args.storage)?;
    let certificate = ca::init(&*store, &secret, BY).await.map_err(refused)?;
    print_json(&json!({"certificate": certificate}));
    Ok(())
}

/// The PEM files named, read (clap lets at most one be named).
fn read_given(certificate: Option<&Path>, csr: Option<&Path>) -> anyhow::Result<(Option<String>, Option<String>)> {
    Ok((certificate.map(read).transpose()?, csr.map(read).transpose()?))
}

fn read(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

/// An access-program refusal as the command reports it: the reason, and for an illegal
/// transition what the request allows.
fn refused(error: AccessError) -> anyhow::Error {
    match &error {
        AccessError::IllegalTransition { allowed, .. } if allowed.is_empty() => {
            anyhow::anyhow!("{error}; it is decided")
        }
        AccessError::IllegalTransition { allowed, .. } => {
            let allowed: Vec<String> =
                allowed.iter().map(|(action, to)| format!("{} (to {to})", action.as_str())).collect();
            anyhow::anyhow!("{error}; allowed now: {}", allowed.join(", "))
        }
        _ => anyhow::Error::new(error),
    }
}
