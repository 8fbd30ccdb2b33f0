-- aviary schema 8: services may sleep when idle and share a listener (matched by host and path
-- prefix), and an instance may be asleep, with a memory snapshot to wake from.
-- aviary: rebuilds tables
-- (services.listen loses its UNIQUE and instances.state gains 'asleep': SQLite changes neither
-- in place, so both tables are rebuilt with foreign keys off; the runner checks them after.)

CREATE TABLE services_new (
        id                 INTEGER PRIMARY KEY,
        name               TEXT NOT NULL UNIQUE,
        listen             TEXT,
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
        updated_at         INTEGER NOT NULL,
        boot_timeout_ms    INTEGER CHECK (boot_timeout_ms IS NULL OR boot_timeout_ms > 0),
        -- On a shared listener: the Host names (a JSON array; "*.example.com" wildcards) and the
        -- path prefix this service answers; NULL: any.
        match_hosts        TEXT,
        match_path_prefix  TEXT,
        -- Scale to zero: asleep after this long without a request (NULL: never), woken by a cold
        -- boot or from a memory snapshot.
        idle_ms            INTEGER CHECK (idle_ms IS NULL OR idle_ms > 0),
        wake               TEXT NOT NULL DEFAULT 'boot' CHECK (wake IN ('boot', 'snapshot'))
) STRICT;
INSERT INTO services_new (id, name, listen, port, replicas, restart_policy, hc_path, hc_interval_ms, hc_timeout_ms,
                          hc_rise, hc_fall, stable_version_id, generation, created_at, updated_at, boot_timeout_ms)
        SELECT id, name, listen, port, replicas, restart_policy, hc_path, hc_interval_ms, hc_timeout_ms, hc_rise,
               hc_fall, stable_version_id, generation, created_at, updated_at, boot_timeout_ms
        FROM services;
DROP TABLE services;
ALTER TABLE services_new RENAME TO services;
CREATE INDEX services_stable_version ON services (stable_version_id);
CREATE INDEX services_listen ON services (listen);

CREATE TABLE instances_new (
        id              TEXT PRIMARY KEY,
        service_id      INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
        version_id      INTEGER NOT NULL REFERENCES versions (id) ON DELETE RESTRICT,
        state           TEXT NOT NULL DEFAULT 'pending'
                        CHECK (state IN ('pending', 'booting', 'ready', 'draining', 'stopped', 'failed',
                                         'crash-loop', 'asleep')),
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
        next_start_at   INTEGER,
        drain_until     INTEGER,
        accel           TEXT CHECK (accel IS NULL OR accel IN ('kvm', 'tcg')),
        -- An asleep guest's memory, saved through libvirt: the file, and the version and
        -- accelerator it was taken with (a snapshot of anything else is never restored).
        snapshot          TEXT,
        snapshot_version  INTEGER,
        snapshot_accel    TEXT CHECK (snapshot_accel IS NULL OR snapshot_accel IN ('kvm', 'tcg'))
) STRICT;
INSERT INTO instances_new (id, service_id, version_id, state, ip, mac, domain_uuid, qemu_pid, created_at, running_at,
                           ready_at, stopped_at, stop_reason, restarts, next_start_at, drain_until, accel)
        SELECT id, service_id, version_id, state, ip, mac, domain_uuid, qemu_pid, created_at, running_at, ready_at,
               stopped_at, stop_reason, restarts, next_start_at, drain_until, accel
        FROM instances;
DROP TABLE instances;
ALTER TABLE instances_new RENAME TO instances;
CREATE INDEX instances_service ON instances (service_id, state);
CREATE INDEX instances_version ON instances (version_id);
