-- aviary schema 4: rollouts (a service moving from its stable version to a new one) and the
-- drain deadline of instances leaving service.

CREATE TABLE rollouts (
        id                INTEGER PRIMARY KEY,
        service_id        INTEGER NOT NULL REFERENCES services (id) ON DELETE CASCADE,
        -- The versions by id while they exist, and by name for the history after they are
        -- deleted (a version in an unfinished rollout cannot be deleted: store_version_users).
        from_version_id   INTEGER REFERENCES versions (id) ON DELETE SET NULL,
        to_version_id     INTEGER REFERENCES versions (id) ON DELETE SET NULL,
        from_label        TEXT,
        to_label          TEXT NOT NULL,
        strategy          TEXT NOT NULL,                 -- expanded JSON: never depends on defaults
        phase             TEXT NOT NULL CHECK (phase IN ('Progressing', 'Paused', 'Healthy', 'Degraded')),
        step_index        INTEGER NOT NULL DEFAULT 0 CHECK (step_index >= 0),
        step_started_at   INTEGER NOT NULL,
        canary_weight     INTEGER NOT NULL DEFAULT 0 CHECK (canary_weight BETWEEN 0 AND 10000),
        paused            INTEGER NOT NULL DEFAULT 0 CHECK (paused IN (0, 1)),  -- by the pause action
        pause_until       INTEGER,                       -- a timed pause step ends then
        salt              INTEGER NOT NULL,              -- stickiness buckets
        analysis          TEXT NOT NULL DEFAULT '{}',    -- counters and the last window, JSON
        message           TEXT NOT NULL DEFAULT '',
        abort_reason      TEXT,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL,
        finished_at       INTEGER
) STRICT;

-- At most one rollout in progress per service.
CREATE UNIQUE INDEX rollouts_active ON rollouts (service_id) WHERE phase IN ('Progressing', 'Paused');
CREATE INDEX rollouts_service ON rollouts (service_id, id);
CREATE INDEX rollouts_to_version ON rollouts (to_version_id);
CREATE INDEX rollouts_from_version ON rollouts (from_version_id);

-- A draining instance gets no new requests; its guest stops when its last request finished
-- or at this time, whichever comes first.
ALTER TABLE instances ADD COLUMN drain_until INTEGER;
