//! Bad input of every kind. Each case is one request with the status and OperationOutcome it
//! must get: the issue code and, for validation failures, the `expression` of the problem.
//! After every case the server must still create and read a valid Patient.
//!
//! Cases live in tables of [`Case`] values, one table per theme; add a line to extend one.

use std::io::{Read, Write};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::{TestApp, status_and_json};

const FHIR_JSON: &str = "application/fhir+json";
const JSON_PATCH: &str = "application/json-patch+json";

/// One bad request and the answer it must get.
struct Case {
    name: &'static str,
    method: Method,
    path: String,
    headers: Vec<(&'static str, String)>,
    body: Option<Vec<u8>>,
    status: StatusCode,
    code: &'static str,
    /// The `expression` the issue with `code` must carry, for validation failures.
    expression: Option<&'static str>,
}

impl Case {
    /// A request without body; expects 400 `invalid` until told otherwise.
    fn new(name: &'static str, method: Method, path: impl Into<String>) -> Case {
        let path = path.into();
        let (status, code, expression) = (StatusCode::BAD_REQUEST, "invalid", None);
        Case { name, method, path, headers: Vec::new(), body: None, status, code, expression }
    }

    /// Adds `body` sent as `content_type`.
    fn body(self, content_type: &'static str, body: impl Into<Vec<u8>>) -> Case {
        Case { body: Some(body.into()), ..self.header("content-type", content_type) }
    }

    /// Adds `body` with no `Content-Type` at all.
    fn body_without_type(self, body: impl Into<Vec<u8>>) -> Case {
        Case { body: Some(body.into()), ..self }
    }

    /// Adds `body` sent as FHIR JSON.
    fn json(self, body: impl Into<Vec<u8>>) -> Case {
        self.body(FHIR_JSON, body)
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Case {
        self.headers.push((name, value.into()));
        self
    }

    fn expect(self, status: StatusCode, code: &'static str) -> Case {
        Case { status, code, ..self }
    }

    fn at(self, expression: &'static str) -> Case {
        Case { expression: Some(expression), ..self }
    }
}

/// `POST [base]/[path]` with `body` as FHIR JSON.
fn post(name: &'static str, path: &str, body: impl Into<Vec<u8>>) -> Case {
    Case::new(name, Method::POST, path).json(body)
}

/// A create of `resource` that validation must refuse with 400, `code` at `expression`.
fn invalid(name: &'static str, resource: Value, code: &'static str, expression: &'static str) -> Case {
    let resource_type = resource["resourceType"].as_str().expect("resourceType").to_owned();
    post(name, &resource_type, resource.to_string()).expect(StatusCode::BAD_REQUEST, code).at(expression)
}

/// An Observation that is valid until `extra` is merged into it.
fn observation(extra: Value) -> Value {
    let mut resource = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    for (key, value) in extra.as_object().expect("object") {
        resource[key] = value.clone();
    }
    resource
}

/// A `Parameters` resource whose `resource` parameter holds `resource`.
fn parameters(resource: Value) -> Value {
    let parameter = json!({"name": "resource", "resource": resource});
    json!({"resourceType": "Parameters", "parameter": [parameter]})
}

/// Sends every case and checks its answer and the server's health after it; reports every
/// failing case at once.
async fn run(app: &TestApp, cases: Vec<Case>) {
    let mut failures = Vec::new();
    for case in &cases {
        if let Err(message) = check(app, case).await {
            failures.push(format!("{}: {message}", case.name));
        }
        assert_still_healthy(app).await;
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

async fn check(app: &TestApp, case: &Case) -> Result<(), String> {
    let mut request = app.request(case.method.clone(), &case.path);
    for (name, value) in &case.headers {
        request = request.header(*name, value);
    }
    if let Some(body) = &case.body {
        request = request.body(body.clone());
    }
    let response = request.send().await.map_err(|error| format!("send: {error}"))?;
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = response.status();
    let text = response.text().await.map_err(|error| format!("body: {error}"))?;
    if status != case.status {
        return Err(format!("status {status}, expected {}; body: {text}", case.status));
    }
    if !content_type.as_deref().unwrap_or("").starts_with(FHIR_JSON) {
        return Err(format!("content type {content_type:?}; body: {text}"));
    }
    let body: Value = serde_json::from_str(&text).map_err(|_| format!("not JSON: {text}"))?;
    outcome_has(&body, case.code, case.expression)
}

/// Checks `body` is an OperationOutcome with an error issue of `code` (at `expression`).
fn outcome_has(body: &Value, code: &str, expression: Option<&str>) -> Result<(), String> {
    if body["resourceType"] != "OperationOutcome" {
        return Err(format!("not an OperationOutcome: {body}"));
    }
    let found = body["issue"].as_array().into_iter().flatten().any(|issue| {
        matches!(issue["severity"].as_str(), Some("error" | "fatal"))
            && issue["code"] == code
            && expression.is_none_or(|expression| issue["expression"] == json!([expression]))
    });
    match found {
        true => Ok(()),
        false => Err(format!("no error issue with code {code} at {expression:?}: {body}")),
    }
}

/// A normal create and read of a valid Patient still work.
async fn assert_still_healthy(app: &TestApp) {
    let id = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Healthy"}]})).await;
    let (status, body) = status_and_json(app.get(&format!("Patient/{id}")).await).await;
    assert_eq!(status, StatusCode::OK, "read after create: {body}");
    assert_eq!(body["name"][0]["family"], "Healthy", "{body}");
}

/// Creates `resource` and returns `[type]/[id]`.
async fn create_at(app: &TestApp, resource: Value) -> String {
    format!("{}/{}", resource["resourceType"].as_str().expect("resourceType"), app.create(&resource).await)
}

/// Sends `request` as written over a bare TCP connection, for requests reqwest will not make
/// (a false `Content-Length`, a hand-made chunked body); returns the status and JSON body.
async fn raw_request(app: &TestApp, request: Vec<u8>) -> (StatusCode, Value) {
    let address = app.root.trim_start_matches("http://").to_owned();
    let reply = tokio::task::spawn_blocking(move || {
        let mut stream = std::net::TcpStream::connect(address).expect("connect");
        stream.write_all(&request).expect("write");
        read_response(&mut stream)
    })
    .await
    .expect("raw request");
    let (head, body) = reply.split_once("\r\n\r\n").expect("response head");
    let status = head.split(' ').nth(1).and_then(|code| code.parse().ok()).expect("status line");
    let body = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {reply}"));
    (StatusCode::from_u16(status).expect("status"), body)
}

/// Reads one response with a `Content-Length` body; stops as soon as it is complete, so a
/// reset after it does not matter.
fn read_response(stream: &mut std::net::TcpStream) -> String {
    let mut received = Vec::new();
    let mut buffer = [0; 4096];
    while !response_complete(&received) {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => received.extend_from_slice(&buffer[..read]),
        }
    }
    String::from_utf8(received).expect("UTF-8 response")
}

fn response_complete(received: &[u8]) -> bool {
    let text = String::from_utf8_lossy(received);
    let Some((head, body)) = text.split_once("\r\n\r\n") else { return false };
    let length = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok())?
    });
    length.is_some_and(|length| body.len() >= length)
}

#[tokio::test]
async fn bodies_that_are_not_json_resources() {
    let app = TestApp::spawn().await;
    let nested_arrays = format!(r#"{{"resourceType":"Patient","name":{}{}}}"#, "[".repeat(10_000), "]".repeat(10_000));
    let nested_objects =
        format!(r#"{{"resourceType":"Patient","text":{}1{}}}"#, r#"{"a":"#.repeat(10_000), "}".repeat(10_000));
    let structure = |case: Case| case.expect(StatusCode::BAD_REQUEST, "structure");
    run(
        &app,
        vec![
            structure(post("truncated JSON", "Patient", r#"{"resourceType":"Patient","name":[{"family":"Do"#)),
            structure(post("trailing garbage", "Patient", r#"{"resourceType":"Patient"} {}"#)),
            structure(post("whitespace body", "Patient", "  \n ")),
            structure(post("single quotes", "Patient", "{'resourceType':'Patient'}")),
            structure(post(
                "invalid UTF-8",
                "Patient",
                b"{\"resourceType\":\"Patient\",\"name\":[{\"family\":\"\xff\xfe\"}]}".to_vec(),
            )),
            structure(post(
                "lone surrogate escape",
                "Patient",
                r#"{"resourceType":"Patient","name":[{"family":"\ud800"}]}"#,
            )),
            structure(post("10 000 nested arrays", "Patient", nested_arrays)),
            structure(post("10 000 nested objects", "Patient", nested_objects)),
            post("empty body", "Patient", ""),
            post("array", "Patient", r#"[{"resourceType":"Patient"}]"#),
            post("number", "Patient", "42"),
            post("string", "Patient", r#""Patient""#),
            post("null", "Patient", "null"),
            post("no resourceType", "Patient", r#"{"name":[{"family":"Doe"}]}"#),
            post("resourceType is a number", "Patient", r#"{"resourceType":7}"#),
            post("resourceType is an object", "Patient", r#"{"resourceType":{"name":"Patient"}}"#),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn resource_types_that_do_not_fit() {
    let app = TestApp::spawn().await;
    let patient = r#"{"resourceType":"Patient"}"#;
    let not_found = |case: Case| case.expect(StatusCode::NOT_FOUND, "not-found");
    run(
        &app,
        vec![
            not_found(post("unknown type in URL (create)", "Foo", patient)),
            not_found(post("abstract type in URL", "DomainResource", r#"{"resourceType":"DomainResource"}"#)),
            not_found(post("lower-case type in URL", "patient", patient)),
            not_found(Case::new("unknown type in URL (read)", Method::GET, "Foo/1")),
            not_found(Case::new("unknown type in URL (history)", Method::GET, "Foo/_history")),
            post("unknown type in body", "Patient", r#"{"resourceType":"Foo"}"#),
            post("body type differs from URL", "Patient", observation(json!({})).to_string()),
            Case::new("update body type differs", Method::PUT, "Patient/p1")
                .json(r#"{"resourceType":"Observation","id":"p1","status":"final","code":{"text":"x"}}"#),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn elements_that_fail_validation() {
    let app = TestApp::spawn().await;
    let patient = |extra: Value| {
        let mut resource = json!({"resourceType": "Patient"});
        resource.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        resource
    };
    let repeat = |frequency: u32| {
        json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
               "medicationCodeableConcept": {"text": "x"}, "subject": {"reference": "Patient/1"},
               "dosageInstruction": [{"timing": {"repeat": {"frequency": frequency, "period": 1}}}]})
    };
    let frequency = "MedicationRequest.dosageInstruction[0].timing.repeat.frequency";
    let decimal_text =
        r#"{"resourceType":"Observation","status":"final","code":{"text":"x"},"valueQuantity":{"value":01.5}}"#;
    run(
        &app,
        vec![
            invalid("unknown element", patient(json!({"nickname": "Bob"})), "structure", "Patient.nickname"),
            invalid(
                "unknown nested element",
                patient(json!({"name": [{"first": "Bob"}]})),
                "structure",
                "Patient.name[0].first",
            ),
            invalid("birthDate as number", patient(json!({"birthDate": 19_700_101})), "structure", "Patient.birthDate"),
            invalid("boolean as string", patient(json!({"active": "true"})), "structure", "Patient.active"),
            invalid("array for a single value", patient(json!({"gender": ["male"]})), "structure", "Patient.gender"),
            invalid("object for an array", patient(json!({"name": {"family": "Doe"}})), "structure", "Patient.name"),
            invalid(
                "string for a complex type",
                patient(json!({"maritalStatus": "M"})),
                "structure",
                "Patient.maritalStatus",
            ),
            invalid("impossible date", patient(json!({"birthDate": "2024-13-45"})), "value", "Patient.birthDate"),
            invalid("date with slashes", patient(json!({"birthDate": "2024/01/01"})), "value", "Patient.birthDate"),
            invalid(
                "dateTime without zone",
                observation(json!({"effectiveDateTime": "2024-01-02T10:00:00"})),
                "value",
                "Observation.effectiveDateTime",
            ),
            invalid(
                "dateTime hour 25",
                observation(json!({"effectiveDateTime": "2024-01-02T25:00:00Z"})),
                "value",
                "Observation.effectiveDateTime",
            ),
            invalid(
                "instant without time",
                observation(json!({"issued": "2024-01-02"})),
                "value",
                "Observation.issued",
            ),
            invalid(
                "decimal as string",
                observation(json!({"valueQuantity": {"value": "1.5"}})),
                "structure",
                "Observation.valueQuantity.value",
            ),
            post("decimal with leading zero", "Observation", decimal_text).expect(StatusCode::BAD_REQUEST, "structure"),
            invalid(
                "integer above 32 bits",
                patient(json!({"multipleBirthInteger": 2_147_483_648_i64})),
                "value",
                "Patient.multipleBirthInteger",
            ),
            invalid(
                "integer with a fraction",
                patient(json!({"multipleBirthInteger": 2.5})),
                "value",
                "Patient.multipleBirthInteger",
            ),
            invalid("positiveInt 0", repeat(0), "value", frequency),
            invalid(
                "code outside required binding",
                patient(json!({"gender": "robot"})),
                "code-invalid",
                "Patient.gender",
            ),
            invalid("empty string", patient(json!({"name": [{"family": ""}]})), "value", "Patient.name[0].family"),
            invalid("blank string", patient(json!({"name": [{"given": ["  "]}]})), "value", "Patient.name[0].given[0]"),
            invalid("null value", patient(json!({"active": null})), "structure", "Patient.active"),
            invalid(
                "null in an array",
                patient(json!({"name": [{"given": [null]}]})),
                "structure",
                "Patient.name[0].given[0]",
            ),
            invalid("empty array", patient(json!({"name": []})), "structure", "Patient.name"),
            invalid("empty object", patient(json!({"name": [{}]})), "structure", "Patient.name[0]"),
            invalid(
                "two choice variants",
                observation(json!({"valueString": "x", "valueBoolean": true})),
                "structure",
                "Observation.valueBoolean",
            ),
            invalid("unknown choice variant", observation(json!({"valueFoo": 1})), "structure", "Observation.valueFoo"),
            invalid(
                "choice type in lower case",
                observation(json!({"valuestring": "x"})),
                "structure",
                "Observation.valuestring",
            ),
            invalid(
                "missing required element",
                json!({"resourceType": "Observation", "code": {"text": "x"}}),
                "required",
                "Observation.status",
            ),
            invalid(
                "extension without url",
                patient(json!({"extension": [{"valueString": "x"}]})),
                "required",
                "Patient.extension[0].url",
            ),
            invalid(
                "primitive extension of wrong shape",
                patient(json!({"_birthDate": "x"})),
                "structure",
                "Patient.birthDate",
            ),
            invalid(
                "narrative not a div",
                patient(json!({"text": {"status": "generated", "div": "<p>x</p>"}})),
                "value",
                "Patient.text.div",
            ),
            invalid(
                "bad contained resource",
                patient(json!({"contained": [{"resourceType": "Organization", "nam": "x"}]})),
                "structure",
                "Patient.contained[0].nam",
            ),
            invalid(
                "contained of unknown type",
                patient(json!({"contained": [{"resourceType": "Nope"}]})),
                "structure",
                "Patient.contained[0]",
            ),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn malformed_ids_in_urls() {
    let app = TestApp::spawn().await;
    let long = "a".repeat(65);
    let body = |id: &str| json!({"resourceType": "Patient", "id": id}).to_string();
    let patch = r#"[{"op":"add","path":"/active","value":true}]"#;
    run(
        &app,
        vec![
            Case::new("read id with underscore", Method::GET, "Patient/a_b"),
            Case::new("read id of 65 characters", Method::GET, format!("Patient/{long}")),
            Case::new("read id with a space", Method::GET, "Patient/a%20b"),
            Case::new("read id with non-ASCII", Method::GET, "Patient/%C3%A9"),
            Case::new("read id not UTF-8", Method::GET, "Patient/%FF"),
            Case::new("vread id with underscore", Method::GET, "Patient/a_b/_history/1"),
            Case::new("history id with underscore", Method::GET, "Patient/a_b/_history"),
            Case::new("update id with underscore", Method::PUT, "Patient/a_b").json(body("a_b")),
            Case::new("update id of 65 characters", Method::PUT, format!("Patient/{long}")).json(body(&long)),
            Case::new("delete id with underscore", Method::DELETE, "Patient/a_b"),
            Case::new("delete id of 65 characters", Method::DELETE, format!("Patient/{long}")),
            Case::new("patch id with underscore", Method::PATCH, "Patient/a_b").body(JSON_PATCH, patch),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn updates_and_deletes_with_bad_preconditions() {
    let app = TestApp::spawn().await;
    let path = create_at(&app, json!({"resourceType": "Patient", "active": true})).await;
    let id = path.trim_start_matches("Patient/").to_owned();
    let update = |name, body: Value| Case::new(name, Method::PUT, path.clone()).json(body.to_string());
    let current = json!({"resourceType": "Patient", "id": id, "active": false});
    let conflict = |case: Case| case.expect(StatusCode::PRECONDITION_FAILED, "conflict");
    run(
        &app,
        vec![
            update("update without id in body", json!({"resourceType": "Patient", "active": false})),
            update("update with another id", json!({"resourceType": "Patient", "id": "other", "active": false})),
            update("update with a numeric id", json!({"resourceType": "Patient", "id": 7, "active": false})),
            conflict(update("update with stale If-Match", current.clone()).header("if-match", "W/\"7\"")),
            update("update with malformed If-Match", current.clone()).header("if-match", "version 1"),
            conflict(
                Case::new("If-Match on a new resource", Method::PUT, "Patient/never-was")
                    .json(json!({"resourceType": "Patient", "id": "never-was"}).to_string())
                    .header("if-match", "W/\"1\""),
            ),
            conflict(
                Case::new("delete with stale If-Match", Method::DELETE, path.clone()).header("if-match", "W/\"9\""),
            ),
            Case::new("delete with malformed If-Match", Method::DELETE, path.clone()).header("if-match", "W/\"x\""),
            Case::new("delete of unknown id", Method::DELETE, "Patient/never-was")
                .expect(StatusCode::NOT_FOUND, "not-found"),
        ],
    )
    .await;
    let (status, body) = status_and_json(app.get(&path).await).await;
    assert_eq!((status, &body["active"], &body["meta"]["versionId"]), (StatusCode::OK, &json!(true), &json!("1")));
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn reads_of_what_is_not_there() {
    let app = TestApp::spawn().await;
    let deleted = create_at(&app, json!({"resourceType": "Patient"})).await;
    assert_eq!(app.delete(&deleted).await.status(), StatusCode::NO_CONTENT);
    let live = create_at(&app, json!({"resourceType": "Patient"})).await;
    let get = |name, path: String| Case::new(name, Method::GET, path);
    let not_found = |case: Case| case.expect(StatusCode::NOT_FOUND, "not-found");
    let gone = |case: Case| case.expect(StatusCode::GONE, "deleted");
    run(
        &app,
        vec![
            not_found(get("read of unknown id", "Patient/never-was".into())),
            gone(get("read of deleted", deleted.clone())),
            gone(get("vread of the deletion", format!("{deleted}/_history/2"))),
            not_found(get("vread of version 99", format!("{live}/_history/99"))),
            not_found(get("vread of version 0", format!("{live}/_history/0"))),
            not_found(get("vread of version abc", format!("{live}/_history/abc"))),
            not_found(get("history of unknown id", "Patient/never-was/_history".into())),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn bodies_over_the_size_limit() {
    let app = TestApp::spawn_with(|config| config.max_body_bytes = 1024).await;
    let big = json!({"resourceType": "Patient", "name": [{"family": "x".repeat(2000)}]}).to_string();
    let id = app.create(&json!({"resourceType": "Patient"})).await;
    let big_patch = json!([{"op": "add", "path": "/name", "value": [{"family": "x".repeat(2000)}]}]).to_string();
    let too_large = |case: Case| case.expect(StatusCode::PAYLOAD_TOO_LARGE, "too-long");
    run(
        &app,
        vec![
            too_large(post("create over the limit", "Patient", big.clone())),
            too_large(Case::new("update over the limit", Method::PUT, format!("Patient/{id}")).json(big.clone())),
            too_large(post("$validate over the limit", "Patient/$validate", big)),
            too_large(
                Case::new("patch over the limit", Method::PATCH, format!("Patient/{id}")).body(JSON_PATCH, big_patch),
            ),
        ],
    )
    .await;
    let head =
        "POST /fhir/Patient HTTP/1.1\r\nHost: test\r\nContent-Type: application/fhir+json\r\nConnection: close\r\n";
    let declared = format!("{head}Content-Length: 100000000\r\n\r\n{{");
    let (status, body) = raw_request(&app, declared.into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "declared Content-Length: {body}");
    outcome_has(&body, "too-long", None).expect("declared Content-Length");
    let payload = format!(r#"{{"resourceType":"Patient","name":[{{"family":"{}"}}]}}"#, "x".repeat(2000));
    let chunked = format!("{head}Transfer-Encoding: chunked\r\n\r\n{:x}\r\n{payload}\r\n0\r\n\r\n", payload.len());
    let (status, body) = raw_request(&app, chunked.into_bytes()).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "chunked body: {body}");
    outcome_has(&body, "too-long", None).expect("chunked body");
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn unsupported_media_types() {
    let app = TestApp::spawn().await;
    let patient = r#"{"resourceType":"Patient"}"#;
    let unsupported = |case: Case| case.expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported");
    let not_acceptable = |case: Case| case.expect(StatusCode::NOT_ACCEPTABLE, "not-supported");
    let xml = "<Patient xmlns=\"http://hl7.org/fhir\"/>";
    run(
        &app,
        vec![
            unsupported(Case::new("text/plain", Method::POST, "Patient").body("text/plain", patient)),
            unsupported(Case::new("application/xml", Method::POST, "Patient").body("application/xml", xml)),
            unsupported(Case::new("application/fhir+xml", Method::POST, "Patient").body("application/fhir+xml", xml)),
            unsupported(
                Case::new("form encoded", Method::POST, "Patient").body("application/x-www-form-urlencoded", "a=b"),
            ),
            unsupported(Case::new("no Content-Type", Method::POST, "Patient").body_without_type(patient)),
            unsupported(Case::new("update as text/plain", Method::PUT, "Patient/p1").body("text/plain", patient)),
            unsupported(
                Case::new("$validate as text/plain", Method::POST, "Patient/$validate").body("text/plain", patient),
            ),
            not_acceptable(
                Case::new("Accept XML (read)", Method::GET, "metadata").header("accept", "application/fhir+xml"),
            ),
            not_acceptable(post("Accept XML (create)", "Patient", patient).header("accept", "application/fhir+xml")),
            not_acceptable(Case::new("Accept text/html only", Method::GET, "metadata").header("accept", "text/html")),
            not_acceptable(Case::new("_format=xml", Method::GET, "metadata?_format=xml")),
            not_acceptable(Case::new(
                "_format=application/fhir+xml",
                Method::GET,
                "metadata?_format=application/fhir%2Bxml",
            )),
            not_acceptable(post("_format=xml on create", "Patient?_format=xml", patient)),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn unknown_routes_and_methods() {
    let app = TestApp::spawn().await;
    let not_allowed = |case: Case| case.expect(StatusCode::METHOD_NOT_ALLOWED, "not-supported");
    let not_found = |case: Case| case.expect(StatusCode::NOT_FOUND, "not-found");
    run(
        &app,
        vec![
            not_found(Case::new("path too deep", Method::GET, "Patient/1/_history/1/extra")),
            not_found(Case::new("unknown instance operation", Method::GET, "Patient/1/$everything")),
            not_allowed(Case::new("PATCH on the type", Method::PATCH, "Patient").body(JSON_PATCH, "[]")),
            not_allowed(
                Case::new("POST on an instance", Method::POST, "Patient/1").json(r#"{"resourceType":"Patient"}"#),
            ),
            not_allowed(Case::new("DELETE on metadata", Method::DELETE, "metadata")),
            not_allowed(Case::new("GET on $validate", Method::GET, "Patient/$validate")),
            not_allowed(Case::new("POST on history", Method::POST, "Patient/_history").json("{}")),
        ],
    )
    .await;
    let response = app.client.get(format!("{}/not-fhir", app.root)).send().await.expect("send");
    let (status, body) = status_and_json(response).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    outcome_has(&body, "not-found", None).expect("route outside the base");
    let response = app.request(Method::PATCH, "Patient").send().await.expect("send");
    let allow = response.headers().get("allow").and_then(|value| value.to_str().ok()).unwrap_or("").to_owned();
    assert!(allow.contains("POST") && allow.contains("PUT") && allow.contains("DELETE"), "Allow: {allow}");
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn conditional_criteria_that_cannot_be_used() {
    let app = TestApp::spawn().await;
    let twin =
        json!({"resourceType": "Patient", "identifier": [{"system": "http://example.org/mrn", "value": "twin"}]});
    create_at(&app, twin.clone()).await;
    create_at(&app, twin.clone()).await;
    let single =
        json!({"resourceType": "Patient", "identifier": [{"system": "http://example.org/mrn", "value": "one"}]});
    let single_id = app.create(&single).await;
    let twins = "identifier=http://example.org/mrn|twin";
    let put = |name, query: &str, body: &Value| {
        Case::new(name, Method::PUT, format!("Patient?{query}")).json(body.to_string())
    };
    let delete = |name, query: &str| Case::new(name, Method::DELETE, format!("Patient?{query}"));
    let multiple = |case: Case| case.expect(StatusCode::PRECONDITION_FAILED, "multiple-matches");
    let unsupported = |case: Case| case.expect(StatusCode::BAD_REQUEST, "not-supported");
    let mut other_id = single.clone();
    other_id["id"] = json!("someone-else");
    run(
        &app,
        vec![
            multiple(put("conditional update, two matches", twins, &twin)),
            multiple(delete("conditional delete, two matches", twins)),
            multiple(
                post("conditional create, two matches", "Patient", twin.to_string()).header("if-none-exist", twins),
            ),
            unsupported(put("unknown parameter", "foo=bar", &twin)),
            unsupported(put("parameter the server cannot search", "_text=hello", &twin)),
            unsupported(delete("unknown parameter (delete)", "foo=bar")),
            unsupported(
                post("unknown parameter (create)", "Patient", twin.to_string()).header("if-none-exist", "foo=bar"),
            ),
            put("no criteria (update)", "", &twin),
            delete("no criteria (delete)", ""),
            delete("only result parameters", "_count=1"),
            put("empty parameter value", "identifier=", &twin),
            put("body id differs from the match", "identifier=http://example.org/mrn|one", &other_id),
        ],
    )
    .await;
    let (status, _) = status_and_json(app.get(&format!("Patient/{single_id}")).await).await;
    assert_eq!(status, StatusCode::OK, "the single match is untouched");
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn history_parameters_that_are_not_valid() {
    let app = TestApp::spawn().await;
    let path = create_at(&app, json!({"resourceType": "Patient"})).await;
    let get = |name, path: String| Case::new(name, Method::GET, path);
    run(
        &app,
        vec![
            get("_since not a date", "_history?_since=notadate".into()),
            get("_since impossible date", "Patient/_history?_since=2024-13-45".into()),
            get("_at not a date", format!("{path}/_history?_at=yesterday")),
            get("_count not a number", "_history?_count=many".into()),
            get("_count negative", "Patient/_history?_count=-1".into()),
            get("_page not issued", "_history?_page=abc".into()),
        ],
    )
    .await;
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn patches_that_cannot_be_applied() {
    let app = TestApp::spawn().await;
    let path = create_at(&app, json!({"resourceType": "Patient", "active": true, "name": [{"family": "Doe"}]})).await;
    let patch =
        |name, document: Value| Case::new(name, Method::PATCH, path.clone()).body(JSON_PATCH, document.to_string());
    let unprocessable = |case: Case, code| case.expect(StatusCode::UNPROCESSABLE_ENTITY, code);
    run(
        &app,
        vec![
            Case::new("patch as FHIR JSON", Method::PATCH, path.clone())
                .json(r#"{"resourceType":"Patient"}"#)
                .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported"),
            Case::new("patch without Content-Type", Method::PATCH, path.clone())
                .body_without_type("[]")
                .expect(StatusCode::UNSUPPORTED_MEDIA_TYPE, "not-supported"),
            Case::new("patch not JSON", Method::PATCH, path.clone())
                .body(JSON_PATCH, "[{")
                .expect(StatusCode::BAD_REQUEST, "structure"),
            Case::new("empty patch body", Method::PATCH, path.clone()).body(JSON_PATCH, ""),
            patch("patch is an object", json!({"op": "add", "path": "/active", "value": false})),
            patch("unknown patch op", json!([{"op": "frobnicate", "path": "/active"}])),
            patch("patch op without path", json!([{"op": "remove"}])),
            unprocessable(
                patch("failing test op", json!([{"op": "test", "path": "/active", "value": false}])),
                "processing",
            ),
            unprocessable(
                patch("remove of a missing element", json!([{"op": "remove", "path": "/name/5"}])),
                "processing",
            ),
            unprocessable(
                patch("patch changes id", json!([{"op": "replace", "path": "/id", "value": "other"}])),
                "business-rule",
            ),
            unprocessable(patch("patch removes id", json!([{"op": "remove", "path": "/id"}])), "business-rule"),
            patch("patch yields a bad code", json!([{"op": "add", "path": "/gender", "value": "robot"}]))
                .expect(StatusCode::BAD_REQUEST, "code-invalid")
                .at("Patient.gender"),
            patch("patch yields an unknown element", json!([{"op": "add", "path": "/nickname", "value": "Bob"}]))
                .expect(StatusCode::BAD_REQUEST, "structure")
                .at("Patient.nickname"),
            patch("patch changes resourceType", json!([{"op": "replace", "path": "/resourceType", "value": "Group"}])),
            patch("patch with stale If-Match", json!([{"op": "replace", "path": "/active", "value": false}]))
                .header("if-match", "W/\"9\"")
                .expect(StatusCode::PRECONDITION_FAILED, "conflict"),
            Case::new("patch of unknown id", Method::PATCH, "Patient/never-was")
                .body(JSON_PATCH, "[]")
                .expect(StatusCode::NOT_FOUND, "not-found"),
        ],
    )
    .await;
    let (status, body) = status_and_json(app.get(&path).await).await;
    assert_eq!((status, &body["active"], &body["meta"]["versionId"]), (StatusCode::OK, &json!(true), &json!("1")));
    assert_still_healthy(&app).await;
}

#[tokio::test]
async fn validate_reports_problems_with_200() {
    let app = TestApp::spawn().await;
    let validate =
        |name, body: Value| post(name, "Patient/$validate", body.to_string()).expect(StatusCode::OK, "code-invalid");
    run(
        &app,
        vec![
            validate("$validate of a bad code", json!({"resourceType": "Patient", "gender": "robot"}))
                .at("Patient.gender"),
            validate("$validate in Parameters", parameters(json!({"resourceType": "Patient", "gender": "robot"})))
                .at("Patient.gender"),
            validate("$validate of an unknown element", json!({"resourceType": "Patient", "nickname": "Bob"}))
                .expect(StatusCode::OK, "structure")
                .at("Patient.nickname"),
            validate("$validate of another type", observation(json!({}))).expect(StatusCode::OK, "invalid"),
            post("$validate of Parameters without resource", "Patient/$validate", r#"{"resourceType":"Parameters"}"#),
            post("$validate of broken JSON", "Patient/$validate", "{").expect(StatusCode::BAD_REQUEST, "structure"),
            post("$validate of unknown type", "Foo/$validate", r#"{"resourceType":"Foo"}"#)
                .expect(StatusCode::NOT_FOUND, "not-found"),
        ],
    )
    .await;
    let (status, body) = status_and_json(app.get("Patient/_history").await).await;
    let entries = body["entry"].as_array().cloned().unwrap_or_default();
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(entries.iter().all(|entry| entry["resource"]["gender"] != "robot"), "$validate stored: {body}");
    assert_still_healthy(&app).await;
}

/// An extension nested `levels` deep in further extensions: two JSON levels (object and
/// array) per extension level.
fn nested_extension(levels: usize) -> Value {
    let mut extension = json!({"url": "http://example.org/leaf", "valueString": "leaf"});
    for _ in 0..levels {
        extension = json!({"url": "http://example.org/level", "extension": [extension]});
    }
    extension
}

/// Each patch is within the validator's nesting limit (100 JSON levels), but the second would
/// nest the resource twice as deep, beyond what the server accepts in a request body. It must be refused like the same
/// resource sent whole would be; the resource must stay patchable and round-trip through
/// read and update.
#[tokio::test]
async fn patches_cannot_nest_a_resource_deeper_than_a_body_may_be() {
    let app = TestApp::spawn().await;
    let path = create_at(&app, json!({"resourceType": "Patient", "active": true})).await;
    let patch = |document: Value| {
        app.request(Method::PATCH, &path).header("content-type", JSON_PATCH).body(document.to_string()).send()
    };
    let first = patch(json!([{"op": "add", "path": "/extension", "value": [nested_extension(40)]}]));
    assert_eq!(first.await.expect("send").status(), StatusCode::OK, "the first patch is within the limit");
    let deepest = format!("/extension/0{}", "/extension/0".repeat(40));
    let second = patch(json!([{"op": "replace", "path": deepest, "value": nested_extension(40)}]));
    let second = second.await.expect("send");
    let status = second.status();
    let text = second.text().await.expect("body");
    assert_eq!(status, StatusCode::BAD_REQUEST, "second patch: {}…", text.chars().take(200).collect::<String>());
    let body: Value = serde_json::from_str(&text).expect("OperationOutcome");
    outcome_has(&body, "structure", None).expect("second patch");
    let third = patch(json!([{"op": "replace", "path": "/active", "value": false}]));
    let (status, body) = status_and_json(third.await.expect("send")).await;
    assert_eq!(status, StatusCode::OK, "a later patch: {body}");
    let (status, current) = status_and_json(app.get(&path).await).await;
    assert_eq!(status, StatusCode::OK, "read");
    let (status, body) = status_and_json(app.put(&path, &current).await).await;
    assert_eq!(status, StatusCode::OK, "update with the body just read: {body}");
    assert_still_healthy(&app).await;
}
