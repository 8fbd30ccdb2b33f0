-- aviary schema 3: instances (one guest each) and their IPv4 address leases.

CREATE TABLE instances (
        id              TEXT PRIMARY KEY,
        service_id      INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
        version_id      INTEGER NOT NULL REFERENCES versions (id) ON DELETE RESTRICT,
        state           TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'booting', 'ready', 'draining', 'stopped', 'failed',
                                         'crash-loop')),
        ip              TEXT,
        mac             TEXT NOT NULL,
        domain_uuid     TEXT,
        qemu_pid        INTEGER,
        created_at      INTEGER NOT NULL,
        running_at      INTEGER,
        ready_at        INTEGER,
        stopped_at      INTEGER,
        stop_reason     TEXT,
        restarts        INTEGER NOT NULL DEFAULT 0,
        next_start_at   INTEGER
) STRICT;

CREATE INDEX instances_service ON instances (service_id, state);
CREATE INDEX instances_version ON instances (version_id);

-- An address belongs to at most one instance; the row goes when the instance lets it go.
CREATE TABLE leases (
        ip           TEXT PRIMARY KEY,
        instance_id  TEXT NOT NULL UNIQUE REFERENCES instances (id) ON DELETE CASCADE,
        created_at   INTEGER NOT NULL
) STRICT;
