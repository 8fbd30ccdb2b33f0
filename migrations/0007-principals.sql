-- aviary schema 7: idempotency keys belong to a caller's stable identity, not to a name or an
-- address (issue 14), and token names the daemon uses itself are reserved.
--
-- A key was remembered under the actor string ("token:NAME@ADDR", "uid:U gid:G"): the same
-- token from another address ran the request again, and a token re-created under an old name
-- (or named "bootstrap") replayed its answers. Now the principal is "uid:U" on the unix socket,
-- "token:ID" for an API token (its row id; its keys go when it is revoked) and "bootstrap" for
-- the token of token_file. Keys from before are carried over where the principal is clear.

ALTER TABLE idempotency_keys RENAME COLUMN actor TO principal;

-- A token named "bootstrap" (or "aviaryd") makes "token:bootstrap@..." ambiguous: drop those keys.
DELETE FROM idempotency_keys
WHERE principal GLOB 'token:bootstrap@*' AND EXISTS (SELECT 1 FROM tokens WHERE name = 'bootstrap');
UPDATE OR IGNORE idempotency_keys SET principal = 'bootstrap' WHERE principal GLOB 'token:bootstrap@*';
UPDATE OR IGNORE idempotency_keys
SET principal = 'token:' || (SELECT id FROM tokens
                             WHERE name = substr(principal, 7, instr(principal, '@') - 7))
WHERE principal GLOB 'token:*@*'
  AND EXISTS (SELECT 1 FROM tokens WHERE name = substr(principal, 7, instr(principal, '@') - 7));
UPDATE OR IGNORE idempotency_keys SET principal = substr(principal, 1, instr(principal, ' ') - 1)
WHERE principal GLOB 'uid:* gid:*';
-- What could not be carried over (a revoked token's, or two addresses' keys that now meet).
DELETE FROM idempotency_keys WHERE principal GLOB '*@*' OR principal GLOB '* *';

-- Names the daemon uses in actors are not token names: an existing one is renamed NAME-ID.
UPDATE tokens SET name = name || '-' || id WHERE name IN ('bootstrap', 'aviaryd');
