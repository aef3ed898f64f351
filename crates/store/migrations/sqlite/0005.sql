-- Index tables clustered on (resource_row, param, seq), WITHOUT ROWID: a resource's rows for
-- one parameter lie together, so the table itself serves what the *_by_resource indexes did
-- (correlated checks, deletes, sorting) and a row costs two b-tree inserts rather than three.
-- seq numbers a resource's rows within one table, which makes the key unique.
CREATE TABLE token_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, system TEXT, code TEXT NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO token_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, system, code FROM token_index;
DROP TABLE token_index;
ALTER TABLE token_index_clustered RENAME TO token_index;
CREATE INDEX token_index_lookup ON token_index (param, code, system, resource_row);
CREATE TABLE string_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, normalized TEXT NOT NULL, exact TEXT NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO string_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, normalized, exact FROM string_index;
DROP TABLE string_index;
ALTER TABLE string_index_clustered RENAME TO string_index;
CREATE INDEX string_index_lookup ON string_index (param, normalized, resource_row);
CREATE TABLE date_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, low INTEGER NOT NULL, high INTEGER NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO date_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, low, high FROM date_index;
DROP TABLE date_index;
ALTER TABLE date_index_clustered RENAME TO date_index;
CREATE INDEX date_index_lookup ON date_index (param, low, high, resource_row);
CREATE TABLE number_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, value REAL NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO number_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, value FROM number_index;
DROP TABLE number_index;
ALTER TABLE number_index_clustered RENAME TO number_index;
CREATE INDEX number_index_lookup ON number_index (param, value, resource_row);
CREATE TABLE quantity_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, value REAL NOT NULL, system TEXT, code TEXT, unit TEXT,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO quantity_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, value, system, code, unit FROM quantity_index;
DROP TABLE quantity_index;
ALTER TABLE quantity_index_clustered RENAME TO quantity_index;
CREATE INDEX quantity_index_lookup ON quantity_index (param, value, resource_row);
CREATE TABLE reference_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, target_type TEXT, target_id TEXT, url TEXT,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO reference_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, target_type, target_id, url FROM reference_index;
DROP TABLE reference_index;
ALTER TABLE reference_index_clustered RENAME TO reference_index;
CREATE INDEX reference_index_lookup ON reference_index (param, target_id, target_type, resource_row);
CREATE INDEX reference_index_url ON reference_index (param, url) WHERE url IS NOT NULL;
CREATE TABLE uri_index_clustered (
    resource_row INTEGER NOT NULL, param INTEGER NOT NULL, seq INTEGER NOT NULL, value TEXT NOT NULL,
    PRIMARY KEY (resource_row, param, seq)
) WITHOUT ROWID;
INSERT INTO uri_index_clustered
    SELECT resource_row, param, ROW_NUMBER() OVER (PARTITION BY resource_row ORDER BY rowid) - 1, value FROM uri_index;
DROP TABLE uri_index;
ALTER TABLE uri_index_clustered RENAME TO uri_index;
CREATE INDEX uri_index_lookup ON uri_index (param, value, resource_row);
