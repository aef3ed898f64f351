-- Fewer b-trees to update per write: reverse includes and _has look targets up through
-- reference_index_lookup (param first), and only absolute or canonical references have a url.
DROP INDEX reference_index_target;
DROP INDEX reference_index_url;
CREATE INDEX reference_index_url ON reference_index (param, url) WHERE url IS NOT NULL;
