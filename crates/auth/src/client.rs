//! Registered SMART clients, one set per environment, kept as platform records.
//!
//! A client is public (no secret: PKCE alone protects its codes), confidential-symmetric (a
//! secret, stored as an Argon2id hash) or confidential-asymmetric (`private_key_jwt` with keys
//! from an inline JWKS or a JWKS URL). Redirect URIs match exactly, as RFC 6749 and SMART
//! require; the scopes a client may be granted are registered with it.

use serde::{Deserialize, Serialize};
use store::records::{self, Kind, RecordKey, Records, Versioned};

use crate::password;
use crate::scope::Scopes;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClientType {
    Public,
    ConfidentialSymmetric,
    ConfidentialAsymmetric,
}

impl ClientType {
    /// The type named on the command line (`public`, `confidential-symmetric`,
    /// `confidential-asymmetric`).
    pub fn parse(text: &str) -> Option<ClientType> {
        match text {
            "public" => Some(ClientType::Public),
            "confidential-symmetric" => Some(ClientType::ConfidentialSymmetric),
            "confidential-asymmetric" => Some(ClientType::ConfidentialAsymmetric),
            _ => None,
        }
    }
}

/// A registered client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Client {
    pub client_id: String,
    pub client_type: ClientType,
    /// `production` or `sandbox`: a client exists in one environment only.
    pub environment: String,
    /// The Argon2id hash of a confidential-symmetric client's secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// A confidential-asymmetric client's public keys, inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks: Option<serde_json::Value>,
    /// Or where to fetch them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwks_url: Option<String>,
    pub redirect_uris: Vec<String>,
    #[serde(default)]
    pub launch_uris: Vec<String>,
    /// The scopes the client may be granted, as a scope string.
    pub scopes: String,
}

impl Kind for Client {
    const KIND: &'static str = "client";

    fn keys(&self) -> Vec<RecordKey> {
        vec![RecordKey::unique("client_id", client_key(&self.environment, &self.client_id))]
    }
}

/// The record id (and unique key) of `client_id` in `environment`.
pub fn client_key(environment: &str, client_id: &str) -> String {
    format!("{environment}:{client_id}")
}

/// A client to register; the secret in clear, hashed before it is stored.
#[derive(Debug, Clone)]
pub struct NewClient {
    pub client_id: String,
    pub client_type: ClientType,
    pub environment: String,
    pub secret: Option<String>,
    pub jwks: Option<serde_json::Value>,
    pub jwks_url: Option<String>,
    pub redirect_uris: Vec<String>,
    pub launch_uris: Vec<String>,
    pub scopes: String,
}

/// Why a client cannot be registered or found.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] store::Error),
}

impl NewClient {
    /// The client as stored, once every rule holds.
    fn into_client(self) -> Result<Client, ClientError> {
        self.check()?;
        let secret_hash = match (self.client_type, &self.secret) {
            (ClientType::ConfidentialSymmetric, Some(secret)) => Some(
                password::hash(secret).map_err(|error| ClientError::Invalid(format!("the client secret: {error}")))?,
            ),
            (ClientType::ConfidentialSymmetric, None) => {
                return Err(ClientError::Invalid("a confidential-symmetric client needs a secret".to_owned()));
            }
            (_, Some(_)) => {
                return Err(ClientError::Invalid("only a confidential-symmetric client has a secret".to_owned()));
            }
            (_, None) => None,
        };
        Ok(self.stored(secret_hash))
    }

    /// The rules of everything but the secret.
    fn check(&self) -> Result<(), ClientError> {
        let invalid = |text: &str| Err(ClientError::Invalid(text.to_owned()));
        if self.client_id.is_empty() || self.client_id.len() > 256 || self.client_id.chars().any(char::is_whitespace) {
            return invalid("a client id is 1 to 256 characters without spaces");
        }
        if !matches!(self.environment.as_str(), "production" | "sandbox") {
            return invalid("the environment is production or sandbox");
        }
        Scopes::parse(&self.scopes).map_err(|error| ClientError::Invalid(format!("the client's scopes: {error}")))?;
        for uri in self.redirect_uris.iter().chain(&self.launch_uris) {
            if !(uri.starts_with("https://") || uri.starts_with("http://")) || uri.contains('#') {
                return invalid(&format!("'{uri}' is not an absolute http(s) URI without a fragment"));
            }
        }
        match (self.client_type, &self.jwks, &self.jwks_url) {
            (ClientType::ConfidentialAsymmetric, None, None) => {
                invalid("a confidential-asymmetric client needs a JWKS or a JWKS URL")
            }
            (ClientType::ConfidentialAsymmetric, Some(jwks), _) if !jwks["keys"].is_array() => {
                invalid("the JWKS has no \"keys\" array")
            }
            (ClientType::ConfidentialAsymmetric, _, Some(url)) if !url.starts_with("https://") && !is_loopback(url) => {
                invalid("a JWKS URL must use https")
            }
            (ClientType::Public | ClientType::ConfidentialSymmetric, Some(_), _)
            | (ClientType::Public | ClientType::ConfidentialSymmetric, _, Some(_)) => {
                invalid("only a confidential-asymmetric client has keys")
            }
            _ => Ok(()),
        }
    }

    fn stored(self, secret_hash: Option<String>) -> Client {
        Client {
            client_id: self.client_id,
            client_type: self.client_type,
            environment: self.environment,
            secret_hash,
            jwks: self.jwks,
            jwks_url: self.jwks_url,
            redirect_uris: self.redirect_uris,
            launch_uris: self.launch_uris,
            scopes: self.scopes,
        }
    }
}

fn is_loopback(url: &str) -> bool {
    ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|prefix| url.starts_with(prefix))
}

/// `client` with `new`'s settings, checked as a registration is; its secret stays.
pub fn changed(client: &Client, new: NewClient) -> Result<Client, ClientError> {
    new.check()?;
    Ok(new.stored(client.secret_hash.clone()))
}

/// Registers `client`, by `by`.
pub async fn register(store: &dyn Records, client: NewClient, by: &str) -> Result<Versioned<Client>, ClientError> {
    let client = client.into_client()?;
    let id = client_key(&client.environment, &client.client_id);
    Ok(records::create(store, &id, &client, by).await?)
}

/// The client `client_id` of `environment`, if registered.
pub async fn find(store: &dyn Records, environment: &str, client_id: &str) -> Result<Option<Client>, ClientError> {
    Ok(records::get::<Client>(store, &client_key(environment, client_id)).await?.map(|found| found.value))
}

impl Client {
    /// True when `secret` is this confidential-symmetric client's secret.
    pub fn secret_matches(&self, secret: &str) -> bool {
        self.secret_hash.as_deref().is_some_and(|hash| password::verify(hash, secret))
    }

    /// True when `uri` is one of the registered redirect URIs, character for character.
    pub fn redirects_to(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|registered| registered == uri)
    }

    /// The scopes the client may be granted.
    pub fn allowed_scopes(&self) -> Scopes {
        Scopes::parse(&self.scopes).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_client(client_type: ClientType) -> NewClient {
        NewClient {
            client_id: "app".into(),
            client_type,
            environment: "production".into(),
            secret: None,
            jwks: None,
            jwks_url: None,
            redirect_uris: vec!["https://app.example/callback".into()],
            launch_uris: Vec::new(),
            scopes: "launch/patient openid fhirUser patient/*.rs".into(),
        }
    }

    #[test]
    fn each_type_has_its_credentials() {
        assert!(new_client(ClientType::Public).into_client().is_ok());
        assert!(new_client(ClientType::ConfidentialSymmetric).into_client().is_err());
        let symmetric =
            NewClient { secret: Some("s3cret".into()), ..new_client(ClientType::ConfidentialSymmetric) }.into_client();
        let symmetric = symmetric.unwrap();
        assert!(symmetric.secret_matches("s3cret") && !symmetric.secret_matches("s3cret "));
        assert!(!serde_json::to_string(&symmetric).unwrap().contains("s3cret"));
        assert!(new_client(ClientType::ConfidentialAsymmetric).into_client().is_err());
        let jwks = serde_json::json!({"keys": []});
        let asymmetric = NewClient { jwks: Some(jwks), ..new_client(ClientType::ConfidentialAsymmetric) };
        assert!(asymmetric.into_client().is_ok());
        let http = NewClient {
            jwks_url: Some("http://keys.example/jwks".into()),
            ..new_client(ClientType::ConfidentialAsymmetric)
        };
        assert!(http.into_client().is_err());
        assert!(NewClient { secret: Some("x".into()), ..new_client(ClientType::Public) }.into_client().is_err());
    }

    #[test]
    fn redirect_uris_match_exactly() {
        let client = new_client(ClientType::Public).into_client().unwrap();
        assert!(client.redirects_to("https://app.example/callback"));
        for other in
            ["https://app.example/callback/", "https://app.example/callback?x=1", "https://APP.example/callback"]
        {
            assert!(!client.redirects_to(other), "{other}");
        }
        let fragment =
            NewClient { redirect_uris: vec!["https://app.example/cb#x".into()], ..new_client(ClientType::Public) };
        assert!(fragment.into_client().is_err());
    }
}
