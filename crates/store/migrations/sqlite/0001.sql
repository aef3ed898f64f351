CREATE TABLE resources (
    row_id       INTEGER PRIMARY KEY,
    partition    TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    logical_id   TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, -- microseconds since the Unix epoch
    deleted      INTEGER NOT NULL,
    body         TEXT    NOT NULL, -- JSON exactly as served; empty for a tombstone
    UNIQUE (partition, type, logical_id)
);
CREATE TABLE resource_history (
    history_id   INTEGER PRIMARY KEY, -- grows with every write: the history order
    partition    TEXT    NOT NULL,
    type         TEXT    NOT NULL,
    logical_id   TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL,
    method       TEXT    NOT NULL,
    deleted      INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    UNIQUE (partition, type, logical_id, version)
);
CREATE INDEX resource_history_by_type ON resource_history (partition, type, history_id);
CREATE INDEX resource_history_by_partition ON resource_history (partition, history_id);
CREATE TABLE token_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL, -- fhir::search::param_id of the SearchParameter URL
    system       TEXT,
    code         TEXT    NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (param, code, system, resource_row);
CREATE INDEX token_index_by_resource ON token_index (resource_row);
