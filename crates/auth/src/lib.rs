//! The SMART App Launch authorization server's logic, without HTTP: scopes, and (as they
//! land) users, clients, codes, tokens, sessions and keys. The server crate maps it onto
//! routes and pages.

pub mod client;
pub mod password;
pub mod scope;
pub mod secret;
pub mod token;
pub mod totp;
pub mod user;
