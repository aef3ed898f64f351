//! Auditing every request: who called, what they did, which resources and patients it touched,
//! and how it ended (ONC 170.315(d)(2), (d)(3), (d)(10)).
//!
//! [`record_requests`] wraps the FHIR bases, the authorization server and the `/api/`: it
//! puts a [`Note`] in the request, which authentication fills with the caller and handlers
//! with the resources they read, and after the answer appends the event through the
//! [`Recorder`]. A write records its event in its own database transaction instead
//! ([`Note::store`]), so a failed write leaves no entry that claims success. When an event
//! cannot be recorded the answer is replaced by a 503: nothing is served unaudited.
//! `audit/events.rs` renders entries as FHIR `AuditEvent`s.

pub(crate) mod events;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use store::audit::{Agent, Event, Outcome};
use store::{Store, StoredResource};
use tokio::sync::{mpsc, oneshot};

use crate::state::AppState;

/// What one request did, filled as it is served.
#[derive(Clone, Default)]
pub(crate) struct Note(Arc<Mutex<Pending>>);

#[derive(Default)]
struct Pending {
    event: Event,
    /// True once a write recorded the event in its transaction.
    recorded: bool,
    /// True when the request is not audited (only with [`crate::Config::bench_without_audit`]).
    off: bool,
}

/// Handlers take the request's note; a request the middleware did not audit gets one that
/// records nothing.
impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Note {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, _: &S) -> Result<Note, Self::Rejection> {
        Ok(parts.extensions.get::<Note>().cloned().unwrap_or_else(|| Note::new(Event::default(), true)))
    }
}

impl Note {
    fn new(event: Event, off: bool) -> Note {
        Note(Arc::new(Mutex::new(Pending { event, recorded: false, off })))
    }

    fn with<T>(&self, change: impl FnOnce(&mut Pending) -> T) -> T {
        change(&mut self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))
    }

    /// Sets who is calling.
    pub(crate) fn agent(&self, agent: Agent) {
        self.with(|pending| pending.event.agent = agent);
    }

    /// Says why the request was refused or what it did, in a few words (never a secret).
    pub(crate) fn detail(&self, detail: impl Into<String>) {
        self.with(|pending| pending.event.detail = Some(detail.into()));
    }

    /// Names the step more precisely than the path does (`refresh` at the token endpoint).
    pub(crate) fn action(&self, action: &str) {
        self.with(|pending| pending.event.action = action.to_owned());
    }

    /// Records the request as refused for `reason` whatever its HTTP status (a sign-in page
    /// that shows the error again answers 200).
    pub(crate) fn refused(&self, reason: impl Into<String>) {
        self.with(|pending| {
            pending.event.outcome = Outcome::Minor;
            pending.event.detail = Some(reason.into());
        });
    }

    /// Notes a resource the request read (or tried to), and the patients it is about.
    pub(crate) fn resource(&self, resource: &StoredResource) {
        self.with(|pending| {
            let version = (!resource.deleted).then_some(resource.version);
            pending.event.note_resource(&resource.resource_type, &resource.id, version, &resource.body);
        });
    }

    /// Notes every resource of `resources`.
    pub(crate) fn resources<'a>(&self, resources: impl IntoIterator<Item = &'a StoredResource>) {
        for resource in resources {
            self.resource(resource);
        }
    }

    /// Notes what the request acted on by name only, when no resource body is at hand (an
    /// export file).
    pub(crate) fn entity(&self, reference: String) {
        self.with(|pending| pending.event.entities.push(reference));
    }

    /// The store a write goes through: the write appends this request's event, with what it
    /// wrote, in its own transaction; [`Note::written`] then says it is recorded.
    pub(crate) fn store(&self, store: &Arc<dyn Store>) -> Arc<dyn Store> {
        match self.with(|pending| (!pending.off).then(|| pending.event.clone())) {
            Some(event) => store.audited(event),
            None => Arc::clone(store),
        }
    }

    /// Says a write through [`Note::store`] committed, and with it this request's event.
    pub(crate) fn written(&self) {
        self.with(|pending| pending.recorded = true);
    }
}

/// What the recorder's queue holds: an event to append, or a flush waiting for everything
/// queued before it to be committed.
enum Queued {
    Event(Box<Event>),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// Events queued at most; a request waits for room beyond that.
const QUEUE: usize = 16 * 1024;

/// Events a batch appends at most.
const BATCH: usize = 1024;

/// How often the recorder folds pending search terms into the term index, and how many at
/// most: often enough that the work is spread evenly (a fold every 10 s cost the request phase
/// it fell in 17 % against 11 % for the others) and searches scan few pending terms.
const FOLD_EVERY: std::time::Duration = std::time::Duration::from_secs(2);
const FOLD_LIMIT: usize = 200_000;

/// How long a batch waits for more events after its first.
const COALESCE: std::time::Duration = std::time::Duration::from_millis(50);

/// Appends the events of requests that wrote nothing (reads, searches, refusals) in batches:
/// every event queued while one batch commits goes into the next, so a read costs a queued
/// event, not a transaction (and, with SQLite's `synchronous = FULL`, not an fsync). A crash
/// loses at most the events of the batch being committed; when appending fails, every
/// request is refused (503) until a batch succeeds again, so nothing is served unaudited for
/// longer than one batch. [`Recorder::flush`] waits for the queue to be committed (an audit
/// search sees every event recorded before it).
#[derive(Default)]
pub(crate) struct Recorder {
    sender: tokio::sync::OnceCell<mpsc::Sender<Queued>>,
    failing: Arc<std::sync::atomic::AtomicBool>,
}

impl Recorder {
    /// Queues `event` for `store`'s audit log; fails while appending fails (the event is
    /// queued all the same: the next batch that succeeds ends the failure).
    pub(crate) async fn record(&self, store: &Arc<dyn Store>, event: Event) -> Result<(), String> {
        let queue = self.queue(store).await;
        queue.send(Queued::Event(Box::new(event))).await.map_err(|_| "the audit recorder stopped".to_owned())?;
        match self.failing.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err("the audit log cannot be written".to_owned()),
            false => Ok(()),
        }
    }

    /// Returns once every event queued before is committed.
    pub(crate) async fn flush(&self, store: &Arc<dyn Store>) -> Result<(), String> {
        let (reply, done) = oneshot::channel();
        let queue = self.queue(store).await;
        queue.send(Queued::Flush(reply)).await.map_err(|_| "the audit recorder stopped".to_owned())?;
        done.await.map_err(|_| "the audit recorder stopped".to_owned())?
    }

    async fn queue(&self, store: &Arc<dyn Store>) -> &mpsc::Sender<Queued> {
        self.sender
            .get_or_init(|| async {
                let (sender, receiver) = mpsc::channel(QUEUE);
                tokio::spawn(append_batches(Arc::clone(store), receiver, Arc::clone(&self.failing)));
                sender
            })
            .await
    }
}

async fn append_batches(
    store: Arc<dyn Store>,
    mut receiver: mpsc::Receiver<Queued>,
    failing: Arc<std::sync::atomic::AtomicBool>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut folded = std::time::Instant::now();
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        // Events that arrive within 50 milliseconds share one commit: every commit writes
        // the pages it changed to the WAL and waits for an fsync, whatever it holds.
        if batch.len() < BATCH {
            tokio::time::sleep(COALESCE).await;
            while batch.len() < BATCH {
                match receiver.try_recv() {
                    Ok(queued) => batch.push(queued),
                    Err(_) => break,
                }
            }
        }
        let mut events = Vec::with_capacity(batch.len());
        let mut flushes = Vec::new();
        for queued in batch.drain(..) {
            match queued {
                Queued::Event(event) => events.push(*event),
                Queued::Flush(reply) => flushes.push(reply),
            }
        }
        let result = match events.is_empty() {
            true => Ok(()),
            false => store.append_audit(events).await.map_err(|error| error.to_string()),
        };
        failing.store(result.is_err(), std::sync::atomic::Ordering::Relaxed);
        if let Err(error) = &result {
            tracing::error!(%error, "audit events could not be recorded");
        }
        for reply in flushes {
            let _ = reply.send(result.clone());
        }
        if folded.elapsed() >= FOLD_EVERY {
            folded = std::time::Instant::now();
            if let Err(error) = store.fold_audit_terms(FOLD_LIMIT).await {
                tracing::warn!(%error, "audit search terms could not be folded (searches still see them)");
            }
        }
    }
}

/// Middleware: audits the request (see the module's doc).
pub(crate) async fn record_requests(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let path = request.uri().path().to_owned();
    let Some(mut event) = event_of(request.method().as_str(), &path) else {
        return next.run(request).await;
    };
    event.source = request.extensions().get::<ConnectInfo<SocketAddr>>().map(|info| info.0.ip().to_string());
    let off = state.config.bench_without_audit;
    let note = Note::new(event, off);
    request.extensions_mut().insert(note.clone());
    let response = next.run(request).await;
    let status = response.status().as_u16();
    let (event, recorded) = note.with(|pending| (std::mem::take(&mut pending.event), pending.recorded));
    let outcome = Outcome::of_status(status).max(event.outcome);
    let event = Event { outcome, status: Some(status), ..event };
    state.monitor.observe(&event);
    if off || recorded {
        return response;
    }
    match state.audit.record(&state.store, event).await {
        Ok(()) => response,
        Err(_) => unaudited(&path),
    }
}

/// The answer when an event could not be recorded.
fn unaudited(path: &str) -> Response {
    let detail = "the request could not be recorded in the audit log; try again";
    if path.starts_with("/api/") {
        let status = axum::http::StatusCode::SERVICE_UNAVAILABLE;
        crate::api::problem::Problem::new(status, "unaudited", detail).into_response()
    } else {
        crate::error::ApiError::unavailable(detail, 1).into_response()
    }
}

/// The event a request starts, or `None` for what is not audited: public documents (metadata,
/// discovery, keys, the OpenAPI document, the authorization pages' style) and health checks.
fn event_of(method: &str, path: &str) -> Option<Event> {
    /// The public documents, below `/sandbox` or not (whole paths: a resource may have the id
    /// `metadata` or `jwks`, and reading it is audited).
    const PUBLIC: &[&str] = &[
        "/fhir/metadata",
        "/fhir/.well-known/smart-configuration",
        "/fhir/.well-known/openid-configuration",
        "/auth/jwks",
        "/auth/style.json",
        "/api/openapi.json",
    ];
    let (environment, rest) = match path.strip_prefix("/sandbox") {
        Some(rest) => ("sandbox", rest),
        None => ("production", path),
    };
    if PUBLIC.contains(&rest) {
        return None;
    }
    let (category, environment, action) = if let Some(fhir) = rest.strip_prefix("/fhir") {
        ("rest", Some(environment), rest_action(method, fhir))
    } else if let Some(step) = rest.strip_prefix("/auth/") {
        ("security", Some(environment), step.replace('/', "-"))
    } else if path.starts_with("/api/") && path != "/api/service-base-urls" {
        ("api", None, method.to_ascii_lowercase())
    } else {
        return None;
    };
    Some(Event {
        category: category.to_owned(),
        action,
        environment: environment.map(str::to_owned),
        request: Some(format!("{method} {path}")),
        ..Event::default()
    })
}

/// The RESTful interaction (`http://hl7.org/fhir/restful-interaction`) of a request to
/// `path` below a FHIR base.
fn rest_action(method: &str, path: &str) -> String {
    let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
    if segments.iter().any(|segment| segment.starts_with('$')) {
        return "operation".to_owned();
    }
    let action = match (method, segments.as_slice()) {
        ("GET", []) => "search-system",
        ("POST", []) => "transaction",
        ("GET", ["_history"]) => "history-system",
        ("GET", [_, _, "_history"]) => "history-instance",
        ("GET", [_]) | ("POST", [_, "_search"]) | ("GET", [_, _, _]) => "search-type",
        ("POST", [_]) => "create",
        ("PUT", [_]) | ("PUT", [_, _]) => "update",
        ("DELETE", [_]) | ("DELETE", [_, _]) => "delete",
        ("GET", [_, "_history"]) => "history-type",
        ("GET", [_, _]) => "read",
        ("PATCH", [_, _]) => "patch",
        ("GET", [_, _, "_history", _]) => "vread",
        _ => "unknown",
    };
    action.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_of_requests() {
        for (method, path, action) in [
            ("GET", "", "search-system"),
            ("POST", "/", "transaction"),
            ("GET", "/_history", "history-system"),
            ("GET", "/Patient", "search-type"),
            ("POST", "/Patient/_search", "search-type"),
            ("GET", "/Patient/1/Observation", "search-type"),
            ("POST", "/Patient", "create"),
            ("PUT", "/Patient/1", "update"),
            ("PUT", "/Patient", "update"),
            ("DELETE", "/Patient/1", "delete"),
            ("GET", "/Patient/_history", "history-type"),
            ("GET", "/Patient/1", "read"),
            ("PATCH", "/Patient/1", "patch"),
            ("GET", "/Patient/1/_history", "history-instance"),
            ("GET", "/Patient/1/_history/2", "vread"),
            ("POST", "/Patient/$validate", "operation"),
            ("GET", "/$export", "operation"),
        ] {
            assert_eq!(rest_action(method, path), action, "{method} {path}");
        }
    }

    #[test]
    fn public_documents_and_health_are_not_audited() {
        for path in [
            "/fhir/metadata",
            "/sandbox/fhir/.well-known/smart-configuration",
            "/auth/jwks",
            "/healthz",
            "/api/openapi.json",
        ] {
            assert!(event_of("GET", path).is_none(), "{path}");
        }
        // A resource whose id is a public document's name is audited when read.
        for path in ["/fhir/Patient/metadata", "/sandbox/fhir/Binary/jwks", "/fhir/Basic/style.json"] {
            assert_eq!(event_of("GET", path).map(|event| event.action), Some("read".to_owned()), "{path}");
        }
        let token = event_of("POST", "/sandbox/auth/token").expect("audited");
        assert_eq!((token.category.as_str(), token.action.as_str()), ("security", "token"));
        assert_eq!(token.environment.as_deref(), Some("sandbox"));
        let api = event_of("POST", "/api/devices/d1/revoke").expect("audited");
        assert_eq!((api.category.as_str(), api.action.as_str(), api.environment), ("api", "post", None));
    }
}
