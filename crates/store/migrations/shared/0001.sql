-- Platform records: versioned JSON documents of the security layer (users, clients,
-- accounts, devices…), each of a kind, with the lookup keys its kind declares.
CREATE TABLE records (
    kind       {text} NOT NULL,
    id         {text} NOT NULL,
    version    {int}  NOT NULL,
    updated    {int}  NOT NULL, -- microseconds since the Unix epoch
    updated_by {text} NOT NULL,
    deleted    {flag} NOT NULL,
    body       {text} NOT NULL, -- JSON; empty for a deleted record
    PRIMARY KEY (kind, id)
){clustered};
CREATE TABLE record_history (
    kind       {text} NOT NULL,
    id         {text} NOT NULL,
    version    {int}  NOT NULL,
    updated    {int}  NOT NULL,
    updated_by {text} NOT NULL,
    deleted    {flag} NOT NULL,
    body       {text} NOT NULL,
    PRIMARY KEY (kind, id, version)
){clustered};
CREATE TABLE record_keys (
    kind  {text} NOT NULL,
    name  {text} NOT NULL,
    value {text} NOT NULL,
    id    {text} NOT NULL,
    PRIMARY KEY (kind, name, value, id)
){clustered};
CREATE INDEX record_keys_by_record ON record_keys (kind, id);
