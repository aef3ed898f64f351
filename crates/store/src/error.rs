//! The store's one error type, in domain terms; the server maps each variant to a status.

/// Why a store call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The resource has never existed.
    #[error("{resource_type}/{id} does not exist")]
    NotFound { resource_type: String, id: String },
    /// An `If-Match` precondition named a version that is not the current one.
    #[error("{resource_type}/{id} is at version {current}, not {expected}")]
    VersionConflict { resource_type: String, id: String, expected: u64, current: u64 },
    /// Conditional criteria matched more than one resource.
    #[error("the criteria matched {count} {resource_type} resources")]
    MultipleMatches { resource_type: String, count: usize },
    /// A transaction is not acceptable as a whole: two entries write one resource, or a
    /// conditional reference matches nothing.
    #[error("{0}")]
    InvalidTransaction(String),
    /// The resource to store is not a JSON object of the expected shape.
    #[error("invalid resource: {0}")]
    InvalidResource(String),
    /// A search that cannot be run as asked (e.g. a cursor this server never issued).
    #[error("invalid search: {0}")]
    InvalidQuery(String),
    /// A search ran past one of its [`crate::SearchLimits`]; the text names the limit.
    #[error("{0}")]
    TooCostly(String),
    /// A platform record that does not live.
    #[error("{kind} {id} does not exist")]
    RecordNotFound { kind: String, id: String },
    /// A create of a platform record that already lives.
    #[error("{kind} {id} already exists")]
    RecordExists { kind: String, id: String },
    /// An update of a platform record at a version that is no longer its current one.
    #[error("{kind} {id} is at version {current}, not {expected}")]
    RecordConflict { kind: String, id: String, expected: u64, current: u64 },
    /// A unique lookup key another live record of the kind holds.
    #[error("another {kind} already has {name} '{value}'")]
    RecordKeyTaken { kind: String, name: String, value: String },
    /// A platform record that cannot be stored or read as its kind.
    #[error("{kind} {id} is not a valid record: {reason}")]
    InvalidRecord { kind: String, id: String, reason: String },
    /// The database could not be reached or is busy; the call may succeed later.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// Any other database failure.
    #[error("database error: {0}")]
    Database(String),
}

impl From<rusqlite::Error> for Error {
    fn from(error: rusqlite::Error) -> Error {
        match error.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked) => {
                Error::Unavailable(error.to_string())
            }
            // Only a search's time limit interrupts a statement.
            Some(rusqlite::ErrorCode::OperationInterrupted) => Error::TooCostly(TIME_LIMIT.into()),
            _ => Error::Database(error.to_string()),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(error: r2d2::Error) -> Error {
        Error::Unavailable(error.to_string())
    }
}

/// What [`Error::TooCostly`] says when the database stopped a statement at its time limit;
/// a search replaces it with a text that names its limit.
pub(crate) const TIME_LIMIT: &str = "the statement ran past its time limit";

/// How an [`Error::Unavailable`] message starts when PostgreSQL aborted a transaction to keep
/// it serializable (or to break a deadlock): the whole transaction may simply be retried.
pub(crate) const SERIALIZATION_FAILURE: &str = "serialization failure";

impl From<postgres::Error> for Error {
    fn from(error: postgres::Error) -> Error {
        use postgres::error::SqlState;
        if let Some(code) = error.code() {
            if *code == SqlState::QUERY_CANCELED {
                return Error::TooCostly(TIME_LIMIT.into());
            }
            if *code == SqlState::T_R_SERIALIZATION_FAILURE || *code == SqlState::T_R_DEADLOCK_DETECTED {
                return Error::Unavailable(format!("{SERIALIZATION_FAILURE}: {error}"));
            }
            // Class 08 is connection trouble, 57 an operator intervention (shutdown, a
            // statement timeout), 53 insufficient resources (too many connections).
            let class = &code.code()[..2];
            if matches!(class, "08" | "57" | "53") {
                return Error::Unavailable(error.to_string());
            }
            // `postgres::Error` says only "db error"; the server's log needs what failed.
            let detail = error.as_db_error().map_or_else(String::new, |db| format!(": {}", db.message()));
            return Error::Database(format!("{error} (SQLSTATE {}){detail}", code.code()));
        }
        let io = std::error::Error::source(&error).is_some_and(|source| source.is::<std::io::Error>());
        if error.is_closed() || io { Error::Unavailable(error.to_string()) } else { Error::Database(error.to_string()) }
    }
}
