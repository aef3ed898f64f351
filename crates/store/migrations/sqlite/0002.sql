-- Search: one narrow table per search-parameter kind, keyed by resource row and parameter id.
CREATE TABLE string_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    normalized   TEXT    NOT NULL, -- lower case, accents removed: prefix and contains search
    exact        TEXT    NOT NULL
);
CREATE INDEX string_index_lookup ON string_index (param, normalized, resource_row);
CREATE INDEX string_index_by_resource ON string_index (resource_row);
CREATE TABLE date_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    low          INTEGER NOT NULL, -- microseconds since the Unix epoch, inclusive
    high         INTEGER NOT NULL  -- inclusive
);
CREATE INDEX date_index_lookup ON date_index (param, low, high, resource_row);
CREATE INDEX date_index_by_resource ON date_index (resource_row);
CREATE TABLE number_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    value        REAL    NOT NULL
);
CREATE INDEX number_index_lookup ON number_index (param, value, resource_row);
CREATE INDEX number_index_by_resource ON number_index (resource_row);
CREATE TABLE quantity_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    value        REAL    NOT NULL,
    system       TEXT,
    code         TEXT,
    unit         TEXT
);
CREATE INDEX quantity_index_lookup ON quantity_index (param, value, resource_row);
CREATE INDEX quantity_index_by_resource ON quantity_index (resource_row);
CREATE TABLE reference_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    target_type  TEXT, -- the local target, when the reference names one
    target_id    TEXT,
    url          TEXT  -- absolute and canonical references as written (without |version)
);
CREATE INDEX reference_index_lookup ON reference_index (param, target_id, target_type, resource_row);
CREATE INDEX reference_index_target ON reference_index (target_id, target_type, param);
CREATE INDEX reference_index_url ON reference_index (param, url);
CREATE INDEX reference_index_by_resource ON reference_index (resource_row, param);
CREATE TABLE uri_index (
    resource_row INTEGER NOT NULL REFERENCES resources (row_id),
    param        INTEGER NOT NULL,
    value        TEXT    NOT NULL
);
CREATE INDEX uri_index_lookup ON uri_index (param, value, resource_row);
CREATE INDEX uri_index_by_resource ON uri_index (resource_row);
CREATE INDEX resources_by_type_updated ON resources (partition, type, last_updated);
