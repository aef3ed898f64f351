-- Index rows are only ever written with their resource row, in the same transaction, and a
-- resource row is never deleted (a delete writes a tombstone): the foreign keys guarded
-- nothing, yet each index row paid for a lookup in resources and a row lock on it (a WAL
-- record of its own), most of the cost of writing index rows.
ALTER TABLE token_index DROP CONSTRAINT token_index_resource_row_fkey;
ALTER TABLE string_index DROP CONSTRAINT string_index_resource_row_fkey;
ALTER TABLE date_index DROP CONSTRAINT date_index_resource_row_fkey;
ALTER TABLE number_index DROP CONSTRAINT number_index_resource_row_fkey;
ALTER TABLE quantity_index DROP CONSTRAINT quantity_index_resource_row_fkey;
ALTER TABLE reference_index DROP CONSTRAINT reference_index_resource_row_fkey;
ALTER TABLE uri_index DROP CONSTRAINT uri_index_resource_row_fkey;
-- As in SQLite: fewer b-trees per reference row. Reverse includes and _has find targets
-- through reference_index_lookup (param first), and only absolute or canonical references
-- have a url.
DROP INDEX reference_index_target;
DROP INDEX reference_index_url;
CREATE INDEX reference_index_url ON reference_index (param, url) WHERE url IS NOT NULL;
