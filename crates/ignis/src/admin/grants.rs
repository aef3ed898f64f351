//! `ignis admin token revoke` (a user's app grants: refresh tokens and the access tokens issued
//! from them) and `ignis admin signing-key rotate` (a new id_token signing key; the old one stays
//! published until the tokens it signed expire).

use auth::issuer::ACCESS_LIFETIME;
use auth::signing::SigningKeys;
use clap::Args;
use serde_json::json;

use super::{print_json, secret_key};
use crate::cli::StorageArgs;
use crate::serve::open_store;

#[derive(Debug, Args)]
pub(crate) struct TokenRevokeArgs {
    /// The user whose grants to revoke.
    #[arg(long)]
    username: String,
    /// Only the grants of this client.
    #[arg(long)]
    client_id: Option<String>,
    #[command(flatten)]
    storage: StorageArgs,
}

/// Revokes the grants and prints how many. A running server refuses the revoked access tokens
/// within seconds (it reloads its revocation list) and the refresh tokens at once.
pub(crate) async fn revoke(args: TokenRevokeArgs) -> anyhow::Result<()> {
    let store = open_store(&args.storage)?;
    let Some(user) = auth::user::find_by_username(&*store, &args.username).await? else {
        anyhow::bail!("no user named '{}'", args.username);
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let list = auth::refresh::RevocationList::default();
    let mut revoked = 0;
    for (grant, token) in auth::refresh::grants_of(&*store, &user.id, now).await? {
        if args.client_id.as_ref().is_none_or(|client| *client == token.client_id)
            && auth::refresh::revoke_grant(&*store, &list, &grant, now).await?
        {
            revoked += 1;
        }
    }
    print_json(&json!({"username": user.value.username, "revoked": revoked}));
    Ok(())
}

#[derive(Debug, Args)]
pub(crate) struct KeyRotateArgs {
    #[command(flatten)]
    storage: StorageArgs,
}

/// Makes a new signing key and prints its `kid`. Servers pick it up within a minute.
pub(crate) async fn rotate(args: KeyRotateArgs) -> anyhow::Result<()> {
    let key = secret_key(&args.storage)?;
    let store = open_store(&args.storage)?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let keys = SigningKeys::rotate(&*store, &key, now, ACCESS_LIFETIME).await?;
    print_json(&json!({"kid": keys.kid(), "published": keys.jwks()["keys"].as_array().map_or(0, Vec::len)}));
    Ok(())
}
