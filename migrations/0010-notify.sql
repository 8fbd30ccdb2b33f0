-- aviary schema 10: a service's rollout notifications.

-- JSON array of {"url": "http(s)://...", "secret": "..."} (the secret optional); NULL: none.
-- Each rollout event of the service is POSTed to each URL, signed with its secret.
ALTER TABLE services ADD COLUMN notify TEXT;
