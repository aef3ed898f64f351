//! `ignis admin …`: operator commands over the same database as the server (they may run while
//! it serves: SQLite in WAL mode lets one process write while others read). Each prints what it
//! created as JSON on stdout; secrets go only to a file the operator names, created 0600.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use auth::totp::Enrolment;
use auth::user::{self, NewUser, Role, User};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use store::records::{Records, Versioned};

use crate::cli::StorageArgs;
use crate::serve::{load_secret_key as secret_key, open_store};

mod access;
mod clients;
mod grants;
mod launch;

/// Who the records' history says made an admin command's changes.
const BY: &str = "ignis admin";

#[derive(Debug, Args)]
pub(crate) struct AdminArgs {
    #[command(subcommand)]
    command: AdminCommand,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Users who sign in: patients, practitioners and operators.
    #[command(subcommand)]
    User(UserCommand),
    /// Registered SMART clients.
    #[command(subcommand)]
    Client(ClientCommand),
    /// EHR launch contexts.
    #[command(subcommand)]
    Launch(LaunchCommand),
    /// Apps' grants.
    #[command(subcommand)]
    Token(TokenCommand),
    /// The OpenID Connect signing keys.
    #[command(subcommand, name = "signing-key")]
    SigningKey(SigningKeyCommand),
    /// Accounts of the access program.
    #[command(subcommand)]
    Account(access::AccountCommand),
    /// Accounts' devices and their Device JWTs.
    #[command(subcommand)]
    Device(access::DeviceCommand),
    /// Production access requests and their certification review.
    #[command(subcommand, name = "access-request")]
    AccessRequest(access::AccessRequestCommand),
    /// The platform client-auth CA.
    #[command(subcommand)]
    Ca(access::CaCommand),
}

#[derive(Debug, Subcommand)]
enum ClientCommand {
    /// Register a client and print it as JSON (without its secret).
    Create(clients::ClientCreateArgs),
    /// Register the clients of a list in the Inferno reference server's format.
    Import(clients::ClientImportArgs),
}

#[derive(Debug, Subcommand)]
enum LaunchCommand {
    /// Bind a patient (and maybe an encounter and user) to a new `launch` value; prints it.
    Create(launch::LaunchCreateArgs),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Revoke a user's app grants: refresh tokens and the access tokens issued from them.
    Revoke(grants::TokenRevokeArgs),
}

#[derive(Debug, Subcommand)]
enum SigningKeyCommand {
    /// Make a new id_token signing key; the old one stays published until its tokens expire.
    Rotate(grants::KeyRotateArgs),
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user and print it as JSON. Practitioners and operators are enrolled in TOTP; their
    /// otpauth URI, secret and recovery codes go to --totp-secret-out.
    Create(UserCreateArgs),
}

#[derive(Debug, Args)]
struct UserCreateArgs {
    /// The name the user signs in with (letters, digits, '.', '_', '-', '@'; stored lowercase).
    #[arg(long)]
    username: String,
    /// Read the password from standard input (one trailing newline is dropped), so it appears in
    /// no command line or shell history.
    #[arg(long, required = true)]
    password_stdin: bool,
    /// The user's FHIR resource, e.g. `Patient/85` or `Practitioner/12`.
    #[arg(long)]
    fhir_user: String,
    #[arg(long, value_enum)]
    role: RoleArg,
    /// Another Patient id a patient account acts for (a parent); repeatable. A patient whose
    /// FHIR user is a Patient always acts for that one.
    #[arg(long = "patient")]
    patients: Vec<String>,
    /// Enrol a patient in TOTP too (always done for practitioners and operators).
    #[arg(long)]
    enrol_totp: bool,
    /// Where to write the TOTP enrolment (otpauth URI, base32 secret, recovery codes) as JSON; the
    /// file is created with mode 0600 and must not exist. Required when TOTP is enrolled.
    #[arg(long)]
    totp_secret_out: Option<PathBuf>,
    #[command(flatten)]
    storage: StorageArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum RoleArg {
    Patient,
    Practitioner,
    Operator,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Role {
        match role {
            RoleArg::Patient => Role::Patient,
            RoleArg::Practitioner => Role::Practitioner,
            RoleArg::Operator => Role::Operator,
        }
    }
}

pub(crate) async fn run(args: AdminArgs) -> anyhow::Result<()> {
    match args.command {
        AdminCommand::User(UserCommand::Create(args)) => create_user(args).await,
        AdminCommand::Client(ClientCommand::Create(args)) => clients::create(args).await,
        AdminCommand::Client(ClientCommand::Import(args)) => clients::import(args).await,
        AdminCommand::Launch(LaunchCommand::Create(args)) => launch::create(args).await,
        AdminCommand::Token(TokenCommand::Revoke(args)) => grants::revoke(args).await,
        AdminCommand::SigningKey(SigningKeyCommand::Rotate(args)) => grants::rotate(args).await,
        AdminCommand::Account(command) => access::account(command).await,
        AdminCommand::Device(command) => access::device(command).await,
        AdminCommand::AccessRequest(command) => access::access_request(command).await,
        AdminCommand::Ca(command) => access::ca(command).await,
    }
}

/// Prints a command's result.
fn print_json(value: &serde_json::Value) {
    #[allow(clippy::print_stdout)] // What the command made is its output.
    {
        println!("{value}");
    }
}

async fn create_user(args: UserCreateArgs) -> anyhow::Result<()> {
    let role = Role::from(args.role);
    let enrols = role.requires_totp() || args.enrol_totp;
    // Refused before anything is read or written: the secret must go somewhere safe.
    let mut secret_out = match (&args.totp_secret_out, enrols) {
        (Some(path), true) => Some(SecretFile::create(path)?),
        (None, true) => bail!(
            "a {} is enrolled in TOTP, and its secret must be written somewhere safe: pass --totp-secret-out FILE",
            role.as_str()
        ),
        (Some(_), false) => bail!("--totp-secret-out is only for users enrolled in TOTP (add --enrol-totp)"),
        (None, false) => None,
    };
    let password = read_password(std::io::stdin().lock())?;
    let key = secret_key(&args.storage)?;
    let store = open_store(&args.storage)?;
    let records: &dyn Records = &*store;
    let new = NewUser {
        username: args.username,
        password,
        role,
        fhir_user: args.fhir_user,
        patients: args.patients,
        enrol_totp: args.enrol_totp,
    };
    let created = user::create(records, &key, new, BY).await;
    let (created, enrolment) = match created {
        Ok(created) => created,
        Err(error) => {
            if let Some(file) = secret_out.take() {
                file.discard();
            }
            return Err(error).context("cannot create the user");
        }
    };
    if let (Some(file), Some(enrolment)) = (secret_out, &enrolment) {
        file.write(enrolment)?;
    }
    print_json(&user_json(&created));
    Ok(())
}

/// The user as the command prints it: no hash, no secret.
fn user_json(user: &Versioned<User>) -> serde_json::Value {
    let updated = user.updated.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    json!({
        "id": user.id,
        "username": user.value.username,
        "role": user.value.role.as_str(),
        "fhir_user": user.value.fhir_user,
        "patients": user.value.patients,
        "totp_enrolled": user.value.totp.is_some(),
        "version": user.version,
        "updated": updated,
    })
}

/// The password on `input`, without one trailing newline (`\n` or `\r\n`).
fn read_password(input: impl Read) -> anyhow::Result<String> {
    // A little over the longest password accepted, so a longer one is refused as too long
    // rather than cut.
    let limit = auth::password::MAX_LEN as u64 + 3;
    let mut bytes = Vec::new();
    input.take(limit).read_to_end(&mut bytes).context("cannot read the password from standard input")?;
    let mut password = String::from_utf8(bytes).context("the password on standard input is not UTF-8")?;
    if password.ends_with('\n') {
        password.pop();
        if password.ends_with('\r') {
            password.pop();
        }
    }
    if password.is_empty() {
        bail!("no password on standard input (--password-stdin reads it from there)");
    }
    Ok(password)
}

/// The file a TOTP enrolment goes to: created (0600, never over an existing file) before the
/// user is, so a bad path fails before anything is stored.
struct SecretFile {
    path: PathBuf,
    file: std::fs::File,
}

impl SecretFile {
    fn create(path: &Path) -> anyhow::Result<SecretFile> {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options
            .open(path)
            .with_context(|| format!("cannot create the secret file {} (it must not exist)", path.display()))?;
        Ok(SecretFile { path: path.to_owned(), file })
    }

    fn write(self, enrolment: &Enrolment) -> anyhow::Result<()> {
        let text = json!({
            "otpauth_uri": enrolment.uri,
            "secret": enrolment.secret,
            "recovery_codes": enrolment.recovery_codes,
        });
        let text = serde_json::to_string_pretty(&text).context("cannot write the TOTP enrolment")? + "\n";
        self.write_text(&text)
    }

    /// Writes the secret the command made; it exists now, so a failure says so.
    fn write_text(mut self, text: &str) -> anyhow::Result<()> {
        let written = self.file.write_all(text.as_bytes()).and_then(|()| self.file.sync_all());
        written.with_context(|| {
            format!("the record was created, but its secret could not be written to {}", self.path.display())
        })
    }

    /// Removes the still empty file when the user could not be created.
    fn discard(self) {
        drop(self.file);
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_trailing_newline_is_dropped_from_the_password() {
        let read = |text: &str| read_password(text.as_bytes()).map_err(|error| error.to_string());
        assert_eq!(read("s3cret\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\r\n").unwrap(), "s3cret");
        assert_eq!(read("s3cret\n\n").unwrap(), "s3cret\n");
        assert_eq!(read(" s3cret ").unwrap(), " s3cret ");
        assert!(read("\n").unwrap_err().contains("no password"));
        assert!(read("").unwrap_err().contains("no password"));
        let long = "x".repeat(auth::password::MAX_LEN + 1);
        assert_eq!(read(&long).unwrap().len(), auth::password::MAX_LEN + 1, "not cut, so refused later");
    }
}
