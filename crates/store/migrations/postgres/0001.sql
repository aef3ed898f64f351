CREATE TABLE resources (
    row_id       BIGSERIAL PRIMARY KEY,
    partition    TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    logical_id   TEXT COLLATE "C" NOT NULL,
    version      BIGINT   NOT NULL,
    last_updated BIGINT   NOT NULL, -- microseconds since the Unix epoch
    deleted      SMALLINT NOT NULL, -- 0 or 1, as in SQLite, so the shared SQL reads the same
    body         TEXT     NOT NULL, -- JSON exactly as served; empty for a tombstone
    UNIQUE (partition, type, logical_id)
);
CREATE INDEX resources_by_type_updated ON resources (partition, type, last_updated);
CREATE TABLE resource_history (
    history_id   BIGSERIAL PRIMARY KEY, -- grows with every write: the history order
    partition    TEXT COLLATE "C" NOT NULL,
    type         TEXT COLLATE "C" NOT NULL,
    logical_id   TEXT COLLATE "C" NOT NULL,
    version      BIGINT   NOT NULL,
    last_updated BIGINT   NOT NULL,
    method       TEXT     NOT NULL,
    deleted      SMALLINT NOT NULL,
    body         TEXT     NOT NULL,
    UNIQUE (partition, type, logical_id, version)
);
CREATE INDEX resource_history_by_type ON resource_history (partition, type, history_id);
CREATE INDEX resource_history_by_partition ON resource_history (partition, history_id);
-- The registry's staleness check: the newest SearchParameter version in any partition.
CREATE INDEX resource_history_by_type_only ON resource_history (type, history_id);
CREATE TABLE token_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL, -- fhir::search::param_id of the SearchParameter URL
    system       TEXT COLLATE "C",
    code         TEXT COLLATE "C" NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (param, code, system, resource_row);
CREATE INDEX token_index_by_resource ON token_index (resource_row, param, code, system);
CREATE TABLE string_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    normalized   TEXT COLLATE "C" NOT NULL, -- lower case, accents removed
    exact        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX string_index_lookup ON string_index (param, normalized, resource_row);
CREATE INDEX string_index_by_resource ON string_index (resource_row, param, normalized);
CREATE TABLE date_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    low          BIGINT NOT NULL, -- microseconds since the Unix epoch, inclusive
    high         BIGINT NOT NULL  -- inclusive
);
CREATE INDEX date_index_lookup ON date_index (param, low, high, resource_row);
CREATE INDEX date_index_by_resource ON date_index (resource_row, param, low, high);
CREATE TABLE number_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL
);
CREATE INDEX number_index_lookup ON number_index (param, value, resource_row);
CREATE INDEX number_index_by_resource ON number_index (resource_row, param, value);
CREATE TABLE quantity_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    value        DOUBLE PRECISION NOT NULL,
    system       TEXT COLLATE "C",
    code         TEXT COLLATE "C",
    unit         TEXT COLLATE "C"
);
CREATE INDEX quantity_index_lookup ON quantity_index (param, value, resource_row);
CREATE INDEX quantity_index_by_resource ON quantity_index (resource_row, param, value);
CREATE TABLE reference_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    target_type  TEXT COLLATE "C", -- the local target, when the reference names one
    target_id    TEXT COLLATE "C",
    url          TEXT COLLATE "C"  -- absolute and canonical references as written
);
CREATE INDEX reference_index_lookup ON reference_index (param, target_id, target_type, resource_row);
CREATE INDEX reference_index_target ON reference_index (target_id, target_type, param);
CREATE INDEX reference_index_url ON reference_index (param, url);
CREATE INDEX reference_index_by_resource ON reference_index (resource_row, param);
CREATE TABLE uri_index (
    resource_row BIGINT NOT NULL REFERENCES resources (row_id),
    param        BIGINT NOT NULL,
    value        TEXT COLLATE "C" NOT NULL
);
CREATE INDEX uri_index_lookup ON uri_index (param, value, resource_row);
CREATE INDEX uri_index_by_resource ON uri_index (resource_row, param, value);
