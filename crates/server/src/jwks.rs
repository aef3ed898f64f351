//! Fetches the JWKS of a confidential-asymmetric client registered by URL (the `auth` crate
//! caches and checks; it does no HTTP): over HTTPS (or loopback HTTP), with a time limit and
//! a size cap, reporting the response's `Cache-Control` lifetime.

use std::time::Duration;

use async_trait::async_trait;
use auth::assertion::{FetchedJwks, JwksFetcher, cache_lifetime};

/// A client JWKS larger than this is refused.
const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Fetches JWKS with reqwest.
#[derive(Debug, Clone)]
pub struct HttpJwksFetcher {
    client: reqwest::Client,
}

impl HttpJwksFetcher {
    /// A fetcher whose requests give up after five seconds.
    pub fn new() -> HttpJwksFetcher {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        HttpJwksFetcher { client }
    }
}

impl Default for HttpJwksFetcher {
    fn default() -> HttpJwksFetcher {
        HttpJwksFetcher::new()
    }
}

#[async_trait]
impl JwksFetcher for HttpJwksFetcher {
    async fn fetch(&self, url: &str) -> Result<FetchedJwks, String> {
        let mut response = self.client.get(url).send().await.map_err(|error| format!("{url}: {error}"))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered {}", response.status()));
        }
        let cache_control = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|value| value.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(|error| format!("{url}: {error}"))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("{url} sent more than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let jwks = serde_json::from_slice(&body).map_err(|_| format!("{url} did not send JSON"))?;
        Ok(FetchedJwks { jwks, max_age: cache_lifetime(cache_control.as_deref()) })
    }
}
