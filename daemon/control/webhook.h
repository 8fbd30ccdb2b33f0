/* Outgoing webhooks: a JSON POST to an operator's URL, signed, with a deadline and bounded
 * retries, done by libcurl's multi interface on the caller's sd-event loop, so the loop never
 * waits on a remote server (rollout notifications, gates, hooks).
 *
 * Signature: the header X-Aviary-Signature: t=UNIX_SECONDS,v1=HEX, where HEX is the
 * HMAC-SHA256, with the webhook's secret, of "UNIX_SECONDS." followed by the body. A receiver
 * recomputes it and refuses an old t (replay). docs/observability.md, "Notifications". */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <systemd/sd-event.h>

typedef struct WebhookClient WebhookClient;

typedef struct WebhookRequest {
        const char *url;          /* http:// or https:// */
        bool get;                 /* a GET (a metrics query) instead of a POST of BODY */
        const char *method;       /* "GET" or "HEAD" (a check step's request) overrides GET; NULL: by GET */
        const char *body;         /* JSON text for a POST; copied */
        const char *secret;       /* signs the body when not NULL or empty; copied */
        const char *event;        /* X-Aviary-Event, e.g. "rollout.abort"; copied, may be NULL */
        uint64_t timeout_usec;    /* per attempt, connect and answer */
        unsigned retries;         /* more attempts after the first, on a failure */
        uint64_t backoff_usec;    /* before the first retry; doubles each time */
} WebhookRequest;

typedef struct WebhookResult {
        bool ok;                  /* a 2xx answer */
        long status;              /* the last answer's HTTP status, 0 when none came */
        unsigned attempts;
        char error[256];          /* why the last attempt failed ("" when ok) */
        char body[8192];          /* the start of the last answer's body */
} WebhookResult;

/* Called once per webhook_send(), on the loop, when it succeeded or ran out of attempts. */
typedef void (*WebhookDone)(const WebhookResult *result, void *userdata);

int webhook_client_new(sd_event *e, WebhookClient **ret);
/* Cancels every delivery in flight: their DONE is not called. */
WebhookClient *webhook_client_free(WebhookClient *c);

/* Starts a delivery; 0, or -EINVAL for a URL that is not http(s), -ENOMEM. */
int webhook_send(WebhookClient *c, const WebhookRequest *r, WebhookDone done, void *userdata);
/* Deliveries in flight (for bounds and tests). */
unsigned webhook_in_flight(const WebhookClient *c);

/* The signature header's value for BODY at time T with SECRET, into OUT (128 bytes). */
int webhook_signature(const char *secret, uint64_t t, const char *body, char out[static 128]);
