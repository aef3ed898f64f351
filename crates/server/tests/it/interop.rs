//! What common clients expect of the transport: a trailing slash on any FHIR path is the same
//! path (a transaction posted to `[base]/`), responses compressed with gzip or brotli when
//! asked, gzipped request bodies accepted, and a decompression bomb refused at the size limit.

use std::io::{Read, Write};

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::{TestApp, assert_outcome};

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("compress");
    encoder.finish().expect("compress")
}

#[tokio::test]
async fn a_trailing_slash_is_the_same_path() {
    let app = TestApp::spawn().await;
    let id = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Slash"}]})).await;
    for path in ["/metadata/", "/Patient/", &format!("/Patient/{id}/"), &format!("/Patient/{id}/_history/")] {
        let response = app.get(path).await;
        assert_eq!(response.status(), StatusCode::OK, "{path}");
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Patient", "name": [{"family": "Posted"}]},
        "request": {"method": "POST", "url": "Patient"}}]});
    let response = app
        .client
        .post(format!("{}/", app.base))
        .header("content-type", "application/fhir+json")
        .body(bundle.to_string())
        .send()
        .await
        .expect("transaction");
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.expect("json");
    assert_eq!(body["type"], "transaction-response");
    // Links keep their canonical form.
    let search: Value = app.get("/Patient/?family=Slash").await.json().await.expect("json");
    let link = search["link"][0]["url"].as_str().expect("self link");
    assert!(link.starts_with(&format!("{}/Patient?", app.base)), "{link}");
}

#[tokio::test]
async fn responses_are_compressed_when_asked() {
    let app = TestApp::spawn().await;
    for index in 0..30 {
        app.create(&json!({"resourceType": "Patient", "name": [{"family": format!("Compressed{index}")}]})).await;
    }
    let fetch = |encoding: &'static str| {
        let request = app.request(reqwest::Method::GET, "/Patient?_count=50").header("accept-encoding", encoding);
        async move {
            let response = request.send().await.expect("search");
            assert_eq!(response.status(), StatusCode::OK);
            let header =
                response.headers().get("content-encoding").map(|value| value.to_str().expect("text").to_owned());
            (header, response.bytes().await.expect("body").to_vec())
        }
    };
    let (plain_encoding, plain) = fetch("identity").await;
    assert_eq!(plain_encoding, None);
    let (gzip_encoding, gzipped) = fetch("gzip").await;
    assert_eq!(gzip_encoding.as_deref(), Some("gzip"));
    let mut inflated = Vec::new();
    flate2::read::GzDecoder::new(gzipped.as_slice()).read_to_end(&mut inflated).expect("gzip");
    assert_eq!(serde_json::from_slice::<Value>(&inflated).expect("json")["total"], 30);
    assert!(gzipped.len() * 3 < plain.len(), "{} gzipped vs {} plain", gzipped.len(), plain.len());
    let (brotli_encoding, brotli) = fetch("br").await;
    assert_eq!(brotli_encoding.as_deref(), Some("br"));
    assert!(brotli.len() * 3 < plain.len());
}

#[tokio::test]
async fn gzipped_request_bodies_are_read_and_bombs_refused() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024 * 1024).await;
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Zipped"}]});
    let response = app
        .client
        .post(format!("{}/Patient", app.base))
        .header("content-type", "application/fhir+json")
        .header("content-encoding", "gzip")
        .body(gzip(patient.to_string().as_bytes()))
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::CREATED);
    // 64 MiB of spaces gzip to about 64 KiB: refused at the 1 MiB limit of the inflated body.
    let bomb = gzip(&vec![b' '; 64 * 1024 * 1024]);
    assert!(bomb.len() < 1024 * 1024);
    let response = app
        .client
        .post(format!("{}/Patient", app.base))
        .header("content-type", "application/fhir+json")
        .header("content-encoding", "gzip")
        .body(bomb)
        .send()
        .await
        .expect("create");
    assert_outcome(response, StatusCode::PAYLOAD_TOO_LARGE, "too-long").await;
    // A body that says gzip but is not is a 400.
    let response = app
        .client
        .post(format!("{}/Patient", app.base))
        .header("content-type", "application/fhir+json")
        .header("content-encoding", "gzip")
        .body(patient.to_string())
        .send()
        .await
        .expect("create");
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
}
