-- aviary schema 9: every abort says what kind of failure ended it, for CI jobs to act on.

-- NULL unless the rollout was aborted.
ALTER TABLE rollouts ADD COLUMN abort_kind TEXT CHECK (abort_kind IS NULL OR abort_kind IN
        ('analysis', 'check', 'webhook', 'unhealthy', 'deadline', 'manual', 'superseded'));

-- Aborts recorded before: their kind from the reason's words (control/rollout.c wrote them).
UPDATE rollouts SET abort_kind = CASE
        WHEN abort_reason LIKE 'superseded%' THEN 'superseded'
        WHEN abort_reason LIKE 'aborted by%' THEN 'manual'
        WHEN abort_reason LIKE 'analysis failed%' THEN 'analysis'
        WHEN abort_reason LIKE 'progress deadline%' THEN 'deadline'
        WHEN abort_reason LIKE 'the canary version % was revoked%' THEN 'manual'
        ELSE 'unhealthy' END
WHERE abort_reason IS NOT NULL;
