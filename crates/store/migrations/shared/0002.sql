-- Expiring lists: keys remembered until an instant (a client assertion's `jti` until its
-- `exp`, a revoked token's id until the token would have expired). A table of its own, not
-- platform records: the token endpoint and every FHIR request touch it, and an insert must
-- say atomically whether the key was new.
CREATE TABLE expiring (
    list    {text} NOT NULL,
    key     {text} NOT NULL,
    expires {int}  NOT NULL, -- microseconds since the Unix epoch
    PRIMARY KEY (list, key)
){clustered};
-- Expired rows are purged oldest first, a bounded batch at a time.
CREATE INDEX expiring_by_expiry ON expiring (expires);
