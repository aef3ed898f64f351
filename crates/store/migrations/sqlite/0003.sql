-- Correlated checks look index rows up by (resource_row, param): make those indexes cover it.
DROP INDEX token_index_by_resource;
CREATE INDEX token_index_by_resource ON token_index (resource_row, param, code, system);
DROP INDEX string_index_by_resource;
CREATE INDEX string_index_by_resource ON string_index (resource_row, param, normalized);
DROP INDEX date_index_by_resource;
CREATE INDEX date_index_by_resource ON date_index (resource_row, param, low, high);
DROP INDEX number_index_by_resource;
CREATE INDEX number_index_by_resource ON number_index (resource_row, param, value);
DROP INDEX quantity_index_by_resource;
CREATE INDEX quantity_index_by_resource ON quantity_index (resource_row, param, value);
DROP INDEX uri_index_by_resource;
CREATE INDEX uri_index_by_resource ON uri_index (resource_row, param, value);
