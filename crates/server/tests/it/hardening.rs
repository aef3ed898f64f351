//! One bad request must never take the server down: a write that panics is rolled back and
//! the next write works; dates at the edges of the calendar; search limits; forged cursors;
//! custom search parameters kept to their partition.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::search::{found, link, match_ids, search};
use crate::support::{TestApp, assert_outcome, status_and_json};

/// A write that panics midway (after its version rows, before its index rows) answers 500,
/// leaves nothing behind, and the writes after it succeed: no poisoned lock, no open
/// transaction. Runs on SQLite and, under `.ci/with-postgres`, on PostgreSQL.
#[tokio::test]
async fn a_panicking_write_rolls_back_and_the_next_write_works() {
    let app = TestApp::spawn().await;
    let id = format!("panic-{}", uuid::Uuid::new_v4().simple());
    let patient = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Unwind"}]});

    store::panic_on_write(&id);
    let response = app.put(&format!("Patient/{id}"), &patient).await;
    let body = assert_outcome(response, StatusCode::INTERNAL_SERVER_ERROR, "exception").await;
    assert!(!body.to_string().contains("test hook"), "a 500 reveals nothing: {body}");

    let response = app.get(&format!("Patient/{id}")).await;
    assert_outcome(response, StatusCode::NOT_FOUND, "not-found").await;
    let (status, bundle) = status_and_json(app.get("Patient?family=Unwind").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["total"], 0, "no index row survived the rollback: {bundle}");

    // The same write again, and an unrelated create, both succeed.
    let (status, stored) = status_and_json(app.put(&format!("Patient/{id}"), &patient).await).await;
    assert_eq!(status, StatusCode::CREATED, "{stored}");
    assert_eq!(stored["meta"]["versionId"], "1", "the panicked write used no version: {stored}");
    app.create(&json!({"resourceType": "Patient", "name": [{"family": "After"}]})).await;
    let (status, bundle) = status_and_json(app.get("Patient?family=Unwind").await).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["total"], 1, "{bundle}");

    // A transaction whose second write panics writes nothing at all.
    let other = format!("panic-{}", uuid::Uuid::new_v4().simple());
    store::panic_on_write(&other);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "Before"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "id": other},
         "request": {"method": "PUT", "url": format!("Patient/{other}")}}
    ]});
    let response = app.post_base(&bundle).await;
    assert_outcome(response, StatusCode::INTERNAL_SERVER_ERROR, "exception").await;
    let (_, found) = status_and_json(app.get("Patient?family=Before").await).await;
    assert_eq!(found["total"], 0, "the transaction's first entry was rolled back: {found}");
    let (status, _) = status_and_json(app.post_base(&bundle).await).await;
    assert_eq!(status, StatusCode::OK, "the same transaction succeeds afterwards");
}

/// The year-0001 and year-9999 edges at every precision: created, searched and read back,
/// and a write after them succeeds.
#[tokio::test]
async fn dates_at_the_edges_of_the_calendar_are_stored_and_searched() {
    let app = TestApp::spawn().await;
    let cases = [
        ("birthDate", "0001"),
        ("birthDate", "0001-01"),
        ("birthDate", "0001-01-01"),
        ("birthDate", "9999"),
        ("birthDate", "9999-12"),
        ("birthDate", "9999-12-31"),
        ("deceasedDateTime", "0001-01-01T00:00:00Z"),
        ("deceasedDateTime", "0001-01-01T00:00:00+14:00"),
        ("deceasedDateTime", "9999-12-31T23:59:59Z"),
        ("deceasedDateTime", "9999-12-31T23:59:59.999999999Z"),
        ("deceasedDateTime", "9999-12-31T23:00:00-14:00"),
    ];
    for (element, value) in cases {
        let family = format!("Edge{}", uuid::Uuid::new_v4().simple());
        let id = app.create(&json!({"resourceType": "Patient", "name": [{"family": family}], element: value})).await;
        let (status, read) = status_and_json(app.get(&format!("Patient/{id}")).await).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(read[element], value, "read back as written");
        let parameter = if element == "birthDate" { "birthdate" } else { "death-date" };
        // The value itself (a zone's `+` escaped): a day in UTC would not hold the instants
        // whose zone moves them into the year before or after.
        let searched = value.replace('+', "%2B");
        for query in [
            format!("Patient?family={family}&{parameter}={searched}"),
            format!("Patient?family={family}&{parameter}=ge{searched}"),
            format!("Patient?family={family}&{parameter}=le{searched}"),
            format!("Patient?family={family}&{parameter}=ap{searched}"),
        ] {
            let (status, bundle) = status_and_json(app.get(&query).await).await;
            assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
            assert_eq!(bundle["total"], 1, "{query} finds the {value} patient: {bundle}");
        }
    }
    for query in ["Patient?birthdate=9999-12-31", "Patient?birthdate=gt9999-12-31", "Patient?birthdate=lt0001-01-01"] {
        let (status, bundle) = status_and_json(app.get(query).await).await;
        assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    }
    for (element, value) in [("birthDate", "10000-01-01"), ("birthDate", "0000-01-01"), ("birthDate", "2023-02-29")] {
        let response = app.post("Patient", &json!({"resourceType": "Patient", element: value})).await;
        assert_outcome(response, StatusCode::BAD_REQUEST, "value").await;
    }
    for query in ["Patient?birthdate=10000", "Patient?birthdate=0000-01-01", "Patient?birthdate=2023-02-29"] {
        assert_outcome(app.get(query).await, StatusCode::BAD_REQUEST, "invalid").await;
    }
    app.create(&json!({"resourceType": "Patient", "name": [{"family": "AfterEdges"}]})).await;
}

/// A chain whose targets multiply, too many values, nested `_has` and too many includes are
/// each refused with a 400 that names the limit.
#[tokio::test]
async fn searches_that_would_expand_without_bound_are_refused_with_the_limit_named() {
    let app = TestApp::spawn().await;
    let many_values = vec!["x"; 1000].join(",");
    let many_includes = (0..40).map(|_| "_include=Observation:subject").collect::<Vec<_>>().join("&");
    let cases = [
        ("Task?subject.subject.subject.subject.identifier=x".to_owned(), "max-chain"),
        (format!("Patient?name={many_values}"), "max-or-values"),
        (
            "Patient?_has:Observation:patient:_has:AuditEvent:entity:_has:Provenance:target:agent=x".to_owned(),
            "max-has-depth",
        ),
        (format!("Observation?{many_includes}"), "max-includes"),
    ];
    for (query, limit) in cases {
        let body = assert_outcome(app.get(&query).await, StatusCode::BAD_REQUEST, "too-costly").await;
        assert!(body.to_string().contains(limit), "{query}: the refusal names {limit}: {body}");
    }
    // Ordinary chains, _has and includes still run.
    for query in [
        "Observation?subject.name=x",
        "Observation?subject:Patient.name=x",
        "Patient?_has:Observation:patient:code=1234",
        "Observation?_include=Observation:subject&_revinclude:iterate=Provenance:target",
    ] {
        let (status, bundle) = status_and_json(app.get(query).await).await;
        assert_eq!(status, StatusCode::OK, "{query}: {bundle}");
    }
}

/// A search past its time limit is stopped in the database and answered with a 400
/// `too-costly` that names the limit. On SQLite a limit of zero interrupts the first
/// statement; on PostgreSQL the search waits on a table lock held here until its
/// `statement_timeout` stops it. Neither depends on how fast the machine is.
#[tokio::test]
async fn a_search_past_its_time_limit_is_stopped_and_says_so() {
    let on_postgres = crate::support::postgres_url().is_some();
    let limit = if on_postgres { Duration::from_millis(300) } else { Duration::ZERO };
    let app = TestApp::spawn_with(|config| config.search_limits.time = limit).await;
    for index in 0..50 {
        app.create(&json!({"resourceType": "Patient", "name": [{"family": format!("Slow{index}")}]})).await;
    }
    let lock = if on_postgres { Some(app.postgres_hold_lock("resources").await) } else { None };
    let body = assert_outcome(app.get("Patient?name:contains=slow").await, StatusCode::BAD_REQUEST, "too-costly").await;
    assert!(body.to_string().contains("search-time-limit"), "{body}");
    drop(lock);
    // Reads and writes are not searches: they still work.
    let id = app.create(&json!({"resourceType": "Patient"})).await;
    assert_eq!(app.get(&format!("Patient/{id}")).await.status(), StatusCode::OK);
}

/// With every search slot taken (here: none at all), a search waits briefly and then gets 503
/// with `Retry-After`; reads are unaffected.
#[tokio::test]
async fn searches_beyond_the_concurrency_limit_get_503_with_retry_after() {
    let app = TestApp::spawn_with(|config| {
        config.max_concurrent_searches = 0;
        config.search_queue_wait = Duration::ZERO;
    })
    .await;
    let id = app.create(&json!({"resourceType": "Patient"})).await;
    let response = app.get("Patient?_id=x").await;
    assert_eq!(response.headers().get("retry-after").and_then(|value| value.to_str().ok()), Some("1"));
    let body = assert_outcome(response, StatusCode::SERVICE_UNAVAILABLE, "transient").await;
    assert!(body.to_string().contains("max-concurrent-searches"), "{body}");
    assert_eq!(app.get(&format!("Patient/{id}")).await.status(), StatusCode::OK);
}

/// A page whose resources would pass the byte budget is cut: fewer matches, a `next` link
/// that carries on where it stopped, and an outcome entry that says so. Every match is
/// still reached by following the links.
#[tokio::test]
async fn a_page_over_its_byte_budget_is_cut_and_says_so() {
    let app = TestApp::spawn_with(|config| config.search_limits.page_bytes = 2000).await;
    let text = "x".repeat(600);
    let mut created = Vec::new();
    for index in 0..6 {
        let patient =
            json!({"resourceType": "Patient", "name": [{"family": "Budget", "given": [format!("{index}{text}")]}]});
        created.push(format!("Patient/{}", app.create(&patient).await));
    }
    let bundle = search(&app, "Patient?family=Budget&_count=5").await;
    let first = match_ids(&bundle);
    assert!(!first.is_empty() && first.len() < 5, "cut below _count: {first:?}");
    let outcomes: Vec<&Value> = bundle["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|entry| entry["search"]["mode"] == "outcome")
        .collect();
    assert_eq!(outcomes.len(), 1, "{bundle}");
    assert_eq!(outcomes[0]["resource"]["issue"][0]["code"], "too-costly", "{bundle}");
    assert!(bundle.to_string().contains("search-page-bytes"), "{bundle}");
    let mut seen = first;
    let mut next = link(&bundle, "next");
    while let Some(url) = next {
        let (status, page) = status_and_json(app.client.get(&url).send().await.expect("send")).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(match_ids(&page));
        next = link(&page, "next");
    }
    seen.sort();
    created.sort();
    assert_eq!(seen, created, "every match on some page, once");
    // A single resource larger than the budget is still served, alone.
    let bundle = search(&app, "Patient?family=Budget&_count=1&_include=Patient:link").await;
    assert_eq!(match_ids(&bundle).len(), 1);
}

/// Cursors are opaque: anything the server did not issue for this search is a 400, never a
/// 500 — on either database.
#[tokio::test]
async fn forged_or_mismatched_cursors_are_400s() {
    use base64::Engine;
    let app = TestApp::spawn().await;
    for index in 0..3 {
        app.create(&json!({"resourceType": "Patient", "name": [{"family": format!("Cursor{index}")}]})).await;
    }
    let encode = |json: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(json);
    let forged = [
        "garbage".to_owned(),
        "!!!".to_owned(),
        encode("not json"),
        encode("[]"),
        encode("[0]"),
        encode("{\"a\":1}"),
        encode("[0,\"x\"]"),
        encode("[0,1,{\"i\":5}]"),
        encode("[0,1,{\"t\":\"text where a date goes\"}]"),
        encode("[1,99999999999999,{\"r\":1.5}]"),
        encode("[0,1,{\"q\":1}]"),
        encode(&format!("[0,1,{{\"t\":\"{}\"}}]", "y".repeat(5000))),
    ];
    for cursor in &forged {
        for query in
            ["Patient?_count=1", "Patient?_count=1&_sort=birthdate", "Patient?_count=1&_sort=-_lastUpdated,name"]
        {
            let response = app.get(&format!("{query}&_cursor={cursor}")).await;
            assert_outcome(response, StatusCode::BAD_REQUEST, "invalid").await;
        }
    }
    // A real cursor of another search's sort is refused too; its own search accepts it.
    let bundle = search(&app, "Patient?_count=1&_sort=birthdate").await;
    let next = link(&bundle, "next").expect("a next page");
    let cursor = next.split("_cursor=").nth(1).expect("cursor").split('&').next().expect("cursor").to_owned();
    assert_outcome(app.get(&format!("Patient?_count=1&_cursor={cursor}")).await, StatusCode::BAD_REQUEST, "invalid")
        .await;
    assert_outcome(
        app.get(&format!("Patient?_count=1&_sort=family&_cursor={cursor}")).await,
        StatusCode::BAD_REQUEST,
        "invalid",
    )
    .await;
    let (status, _) = status_and_json(app.client.get(&next).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::OK);
}

fn nickname_parameter(expression: &str) -> Value {
    json!({
        "resourceType": "SearchParameter", "url": "http://example.org/SearchParameter/hardening-alias",
        "name": "alias", "status": "active", "description": "A test alias", "code": "alias", "base": ["Patient"],
        "type": "string", "expression": expression
    })
}

/// A SearchParameter written in the sandbox changes nothing in production, and editing a
/// parameter's expression takes effect for new writes at once and for older ones after a
/// reindex.
#[tokio::test]
async fn custom_search_parameters_keep_to_their_partition_and_follow_edits() {
    let app = TestApp::spawn().await;
    let sandbox = format!("{}/sandbox/fhir", app.root);
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Partitioned", "given": ["Ada"]}]});
    app.create(&patient).await;
    let response = app
        .client
        .post(format!("{sandbox}/SearchParameter"))
        .header("content-type", "application/fhir+json")
        .body(nickname_parameter("Patient.name.given").to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    // Production does not know `alias`: strict handling refuses it, lenient ignores it.
    let response = app
        .request(reqwest::Method::GET, "Patient?alias=ada")
        .header("prefer", "handling=strict")
        .send()
        .await
        .expect("send");
    assert_outcome(response, StatusCode::BAD_REQUEST, "not-supported").await;
    // The sandbox does, for resources written there after it.
    let response = app
        .client
        .post(format!("{sandbox}/Patient"))
        .header("content-type", "application/fhir+json")
        .body(patient.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(response.status(), StatusCode::CREATED);
    let (status, bundle) =
        status_and_json(app.client.get(format!("{sandbox}/Patient?alias=ada")).send().await.expect("send")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(bundle["total"], 1, "{bundle}");

    // Production: a parameter, then an edit of its expression.
    let parameter_id = app.create(&nickname_parameter("Patient.name.given")).await;
    let first =
        app.create(&json!({"resourceType": "Patient", "name": [{"family": "Lovelace", "given": ["Ada"]}]})).await;
    assert_eq!(found(&app, "Patient?alias=ada").await, [format!("Patient/{first}")]);
    let mut edited = nickname_parameter("Patient.name.family");
    edited["id"] = json!(parameter_id);
    let (status, _) = status_and_json(app.put(&format!("SearchParameter/{parameter_id}"), &edited).await).await;
    assert_eq!(status, StatusCode::OK);
    let second = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Byron", "given": ["Ada"]}]})).await;
    assert_eq!(found(&app, "Patient?alias=byron").await, [format!("Patient/{second}")], "new writes use the edit");
    let mut position = 0;
    while let Some(last) = app.store.reindex(position, 2).await.expect("reindex") {
        position = last;
    }
    assert_eq!(found(&app, "Patient?alias=lovelace").await, [format!("Patient/{first}")], "older ones after reindex");
    assert_eq!(found(&app, "Patient?alias=ada").await, Vec::<String>::new(), "the old expression is gone");
    // The sandbox kept its own definition through the production reindex.
    let (_, bundle) =
        status_and_json(app.client.get(format!("{sandbox}/Patient?alias=ada")).send().await.expect("send")).await;
    assert_eq!(bundle["total"], 1, "{bundle}");
}
