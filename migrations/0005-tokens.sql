-- aviary schema 5: API tokens for the TCP listener. Only a hash of each secret is kept; the
-- secret is shown once, when the token is created.

CREATE TABLE tokens (
        id            INTEGER PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        scope         TEXT NOT NULL CHECK (scope IN ('read', 'deploy', 'admin')),
        hash          TEXT NOT NULL UNIQUE CHECK (length(hash) = 64),  -- hex SHA-256 of the secret
        prefix        TEXT NOT NULL,                                   -- its first characters, to recognise it
        created_at    INTEGER NOT NULL,
        created_by    TEXT NOT NULL,
        last_used_at  INTEGER
) STRICT;
