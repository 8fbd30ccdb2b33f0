/* aviary API error codes: the one table mapping each documented outcome to its
 * wire code and HTTP status. Shared by the daemon (replies) and the CLI (messages). */
#pragma once

/* X(enum-suffix, "wire-code", http-status) */
#define AVIARY_ERRORS(X)                                        \
        X(OK, "ok", 200)                                        \
        X(BAD_REQUEST, "bad-request", 400)                      \
        X(MALFORMED_JSON, "malformed-json", 400)                \
        X(INVALID_NAME, "invalid-name", 400)                    \
        X(INVALID_DIGEST, "invalid-digest", 400)                \
        X(INVALID_QUERY, "invalid-query", 400)                  \
        X(DIGEST_MISMATCH, "digest-mismatch", 400)              \
        X(UNAUTHORIZED, "unauthorized", 401)                    \
        X(FORBIDDEN, "forbidden", 403)                          \
        X(NOT_FOUND, "not-found", 404)                          \
        X(BLOB_NOT_FOUND, "blob-not-found", 404)                \
        X(IMAGE_NOT_FOUND, "image-not-found", 404)              \
        X(VERSION_NOT_FOUND, "version-not-found", 404)          \
        X(SERVICE_NOT_FOUND, "service-not-found", 404)          \
        X(INSTANCE_NOT_FOUND, "instance-not-found", 404)        \
        X(ROLLOUT_NOT_FOUND, "rollout-not-found", 404)          \
        X(TOKEN_NOT_FOUND, "token-not-found", 404)              \
        X(METHOD_NOT_ALLOWED, "method-not-allowed", 405)        \
        X(VERSION_IMMUTABLE, "version-immutable", 405)          \
        X(IMAGE_EXISTS, "image-exists", 409)                    \
        X(VERSION_EXISTS, "version-exists", 409)                \
        X(VERSION_IN_USE, "version-in-use", 409)                \
        X(VERSION_REVOKED, "version-revoked", 409)              \
        X(BLOB_IN_USE, "blob-in-use", 409)                      \
        X(SERVICE_EXISTS, "service-exists", 409)                \
        X(LISTEN_IN_USE, "listen-in-use", 409)                  \
        X(IDEMPOTENCY_IN_FLIGHT, "idempotency-in-flight", 409)  \
        X(INSTANCE_STOPPED, "instance-stopped", 409)            \
        X(ROLLOUT_STATE, "rollout-state", 409)                  \
        X(ROLLOUT_IN_PROGRESS, "rollout-in-progress", 409)      \
        X(ROLLOUT_DEGRADED, "rollout-degraded", 409)            \
        X(SCALE_TO_ZERO_OFF, "scale-to-zero-off", 409)          \
        X(TOKEN_EXISTS, "token-exists", 409)                    \
        X(PRECONDITION_FAILED, "precondition-failed", 412)      \
        X(PAYLOAD_TOO_LARGE, "payload-too-large", 413)          \
        X(UNSUPPORTED_MEDIA_TYPE, "unsupported-media-type", 415) \
        X(INVALID_FIELD, "invalid-field", 422)                  \
        X(UNKNOWN_FIELD, "unknown-field", 422)                  \
        X(MISSING_FIELD, "missing-field", 422)                  \
        X(INVALID_TEMPLATE, "invalid-template", 422)            \
        X(BLOB_MISSING, "blob-missing", 422)                    \
        X(IDEMPOTENCY_KEY_REUSED, "idempotency-key-reused", 422) \
        X(PRECONDITION_REQUIRED, "precondition-required", 428)  \
        X(TOO_MANY_REQUESTS, "too-many-requests", 429)          \
        X(HEADERS_TOO_LARGE, "headers-too-large", 431)          \
        X(INTERNAL, "internal", 500)                            \
        X(RUNTIME, "runtime-error", 502)                        \
        X(UNAVAILABLE, "unavailable", 503)                      \
        X(WAIT_TIMEOUT, "wait-timeout", 504)                    \
        X(STORAGE_FULL, "storage-full", 507)

typedef enum AviaryError {
#define AVIARY_ERROR_ENUM(name, code, status) AVIARY_E_##name,
        AVIARY_ERRORS(AVIARY_ERROR_ENUM)
#undef AVIARY_ERROR_ENUM
        _AVIARY_E_MAX,
} AviaryError;

/* Wire code ("image-not-found") of an error; never NULL. */
const char *aviary_error_code(AviaryError e);
/* HTTP status of an error. */
unsigned aviary_error_status(AviaryError e);
/* Error whose wire code is CODE, or AVIARY_E_INTERNAL if unknown. */
AviaryError aviary_error_from_code(const char *code);

#define AVIARY_API_VERSION "v1"
