-- aviary schema 2: remembered answers to POSTs that carried an Idempotency-Key.

CREATE TABLE idempotency_keys (
        actor         TEXT NOT NULL,
        key           TEXT NOT NULL,
        method        TEXT NOT NULL,
        path          TEXT NOT NULL,
        request_hash  TEXT NOT NULL,
        status        INTEGER NOT NULL,
        response      TEXT NOT NULL,
        etag          TEXT,
        location      TEXT,
        created_at    INTEGER NOT NULL,
        PRIMARY KEY (actor, key)
) STRICT;

CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);
