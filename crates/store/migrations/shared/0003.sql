-- A type's resources in row order: a search with no criteria but the type (and a bulk export)
-- pages through its keyset cursor on this index instead of sorting every row of the type.
CREATE INDEX resources_by_type_row ON resources (partition, type, row_id);
