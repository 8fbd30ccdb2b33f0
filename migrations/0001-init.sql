-- aviary schema 1: blobs, images and their immutable versions, services, the audit log.
-- Times are microseconds since the epoch (UTC).

CREATE TABLE blobs (
        digest      TEXT PRIMARY KEY CHECK (length(digest) = 71 AND substr(digest, 1, 7) = 'sha256:'),
        size        INTEGER NOT NULL CHECK (size >= 0),
        created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE images (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        created_at  INTEGER NOT NULL
) STRICT;

CREATE TABLE versions (
        id             INTEGER PRIMARY KEY,
        image_id       INTEGER NOT NULL REFERENCES images (id) ON DELETE CASCADE,
        tag            TEXT NOT NULL,
        digest         TEXT NOT NULL UNIQUE,
        manifest       TEXT NOT NULL,
        kernel_digest  TEXT NOT NULL REFERENCES blobs (digest),
        initrd_digest  TEXT REFERENCES blobs (digest),
        cmdline        TEXT NOT NULL,
        memory_mib     INTEGER NOT NULL CHECK (memory_mib BETWEEN 16 AND 65536),
        vcpus          INTEGER NOT NULL CHECK (vcpus BETWEEN 1 AND 64),
        port           INTEGER NOT NULL CHECK (port BETWEEN 1 AND 65535),
        labels         TEXT NOT NULL DEFAULT '{}',
        state          TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'revoked')),
        revoked_at     INTEGER,
        revoke_reason  TEXT,
        created_at     INTEGER NOT NULL,
        UNIQUE (image_id, tag)
) STRICT;

CREATE INDEX versions_kernel ON versions (kernel_digest);
CREATE INDEX versions_initrd ON versions (initrd_digest);

-- A version never changes; the database refuses it too, not only the API.
CREATE TRIGGER versions_immutable
BEFORE UPDATE OF image_id, tag, digest, manifest, kernel_digest, initrd_digest, cmdline,
                 memory_mib, vcpus, port, labels, created_at ON versions
BEGIN
        SELECT RAISE(ABORT, 'image versions are immutable');
END;

CREATE TRIGGER versions_revoked_stays_revoked
BEFORE UPDATE OF state ON versions WHEN OLD.state = 'revoked'
BEGIN
        SELECT RAISE(ABORT, 'a revoked version stays revoked');
END;

CREATE TABLE services (
        id                 INTEGER PRIMARY KEY,
        name               TEXT NOT NULL UNIQUE,
        listen             TEXT UNIQUE,
        port               INTEGER CHECK (port BETWEEN 1 AND 65535),
        replicas           INTEGER NOT NULL DEFAULT 1 CHECK (replicas BETWEEN 0 AND 64),
        restart_policy     TEXT NOT NULL DEFAULT 'always'
                           CHECK (restart_policy IN ('always', 'on-failure', 'never')),
        hc_path            TEXT NOT NULL DEFAULT '/',
        hc_interval_ms     INTEGER NOT NULL DEFAULT 2000,
        hc_timeout_ms      INTEGER NOT NULL DEFAULT 1000,
        hc_rise            INTEGER NOT NULL DEFAULT 1,
        hc_fall            INTEGER NOT NULL DEFAULT 3,
        stable_version_id  INTEGER REFERENCES versions (id) ON DELETE RESTRICT,
        generation         INTEGER NOT NULL DEFAULT 1,
        created_at         INTEGER NOT NULL,
        updated_at         INTEGER NOT NULL
) STRICT;

CREATE INDEX services_stable_version ON services (stable_version_id);

CREATE TABLE events (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        time        INTEGER NOT NULL,
        actor       TEXT NOT NULL,
        action      TEXT NOT NULL,
        resource    TEXT NOT NULL,
        result      TEXT NOT NULL,
        status      INTEGER,
        request_id  TEXT,
        detail      TEXT
) STRICT;

CREATE INDEX events_resource ON events (resource, id);
