-- The audit log (see store::audit). Entries are appended in hash chains: one chain per
-- writer lane of a process, so concurrent writers never wait on one row. Each chain's head
-- (its last sequence number and hash) is updated in the same transaction as its entries, so a
-- deleted last entry is found as surely as any other.
CREATE TABLE audit_chains (
    chain     {text} NOT NULL PRIMARY KEY,
    created   {int}  NOT NULL, -- microseconds since the Unix epoch
    last_seq  {int}  NOT NULL,
    last_hash {text} NOT NULL
){clustered};

-- One row per event: its chain position, when it was recorded, what kind of event it is, the
-- event as JSON, and the keyed hash over the previous entry's hash and this entry's columns.
CREATE TABLE audit_entries (
    chain    {text} NOT NULL,
    seq      {int}  NOT NULL,
    recorded {int}  NOT NULL,
    category {text} NOT NULL,
    action   {text} NOT NULL,
    outcome  {text} NOT NULL,
    body     {text} NOT NULL,
    hash     {text} NOT NULL,
    PRIMARY KEY (chain, seq)
){clustered};
CREATE INDEX audit_entries_recorded ON audit_entries (recorded);

-- Who and what an entry can be found by (agent, account, entity, patient), newest first per
-- term: an audit search by any of them drives from here. Entries are appended with their
-- terms in audit_pending_terms, in arrival order; a background fold moves them here sorted,
-- many at once, so that the term index's random pages are written once per fold rather than
-- once per event. Searches read both.
CREATE TABLE audit_terms (
    term     {text} NOT NULL,
    recorded {int}  NOT NULL,
    chain    {text} NOT NULL,
    seq      {int}  NOT NULL,
    PRIMARY KEY (term, recorded, chain, seq)
){clustered};

CREATE TABLE audit_pending_terms (
    id       {serial},
    term     {text} NOT NULL,
    recorded {int}  NOT NULL,
    chain    {text} NOT NULL,
    seq      {int}  NOT NULL
);
