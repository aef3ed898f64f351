-- Leases: a named piece of work (an export job) held by one server process until an instant.
-- A table of its own, not platform records: a holder renews its lease every few seconds, and
-- taking one must say atomically whether it was free.
CREATE TABLE leases (
    name    {text} NOT NULL PRIMARY KEY,
    owner   {text} NOT NULL,
    expires {int}  NOT NULL -- microseconds since the Unix epoch
){clustered};
