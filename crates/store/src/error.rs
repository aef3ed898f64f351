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
            _ => Error::Database(error.to_string()),
        }
    }
}

impl From<r2d2::Error> for Error {
    fn from(error: r2d2::Error) -> Error {
        Error::Unavailable(error.to_string())
    }
}
