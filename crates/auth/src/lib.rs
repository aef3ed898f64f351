//! The SMART App Launch authorization server's logic, without HTTP: scopes, and (as they
//! land) users, clients, codes, tokens, sessions and keys. The server crate maps it onto
//! routes and pages.

pub mod api_key;
pub mod assertion;
pub mod authorization;
pub mod client;
pub mod consent;
pub mod issuer;
pub mod launch;
pub mod opaque;
pub mod password;
pub mod pkce;
pub mod refresh;
pub mod scope;
pub mod secret;
pub mod session;
pub mod signing;
pub mod token;
pub mod totp;
pub mod user;
