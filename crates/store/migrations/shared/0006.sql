-- Rate-limit token buckets (see store::buckets): one row per limited key (an account, a
-- device), so that every server process takes from one bucket.
CREATE TABLE rate_buckets (
    key     {text} NOT NULL PRIMARY KEY,
    tokens  {int}  NOT NULL, -- thousandths of a request
    updated {int}  NOT NULL, -- microseconds since the Unix epoch
    refused {int}  NOT NULL  -- requests refused since the bucket was made or reset
){clustered};
