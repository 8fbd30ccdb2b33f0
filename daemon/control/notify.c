/* Rollout notifications (notify.h). The committed events are read after the last one seen, on
 * the loop after each commit; a bounded queue holds the deliveries, and each URL has at most one
 * in flight, so a receiver sees the events in order and a failing one delays no other. A full
 * queue drops the newest and says so in the log. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "notify.h"
#include "timeutil.h"
#include "webhook.h"

#define QUEUE_MAX 512
#define READ_BATCH 64
#define NOTIFY_TIMEOUT_USEC (10 * USEC_PER_SEC)
#define NOTIFY_RETRIES 3

typedef struct Delivery {
        char *url, *secret, *body, *action, *resource;
        int64_t event;
} Delivery;

#define IN_FLIGHT_MAX 16

struct Notifier {
        sd_event *event;
        Store *store;
        WebhookClient *client;
        sd_event_source *defer;
        char *global_url, *global_secret;
        int64_t last_id;
        Delivery queue[QUEUE_MAX];     /* waiting, oldest first */
        size_t n;
        /* In flight: at most one per URL, so each receiver sees its events in order and a
         * receiver that fails (retrying for seconds) holds up no other. */
        struct InFlight {
                Notifier *notifier;
                bool used;
                Delivery d;
        } flight[IN_FLIGHT_MAX];
        unsigned dropped;
};

static void delivery_done(Delivery *d) {
        free(d->url);
        free(d->secret);
        free(d->body);
        free(d->action);
        free(d->resource);
        *d = (Delivery) {};
}

static void send_next(Notifier *n);

static void on_sent(const WebhookResult *res, void *userdata) {
        struct InFlight *f = userdata;
        Notifier *n = f->notifier;

        if (!res->ok) {
                json_auto_t *detail = json_pack("{s:s, s:I, s:s, s:i, s:i, s:s}", "url", f->d.url, "event",
                                                (json_int_t) f->d.event, "action", f->d.action, "status",
                                                (int) res->status, "attempts", (int) res->attempts, "error", res->error);
                EventRecord e = { .actor = "aviaryd", .action = "notify.failed", .resource = f->d.resource,
                                  .result = "failed", .detail_json = detail };
                log_warning("Notification of event %lld (%s) to %s failed after %u attempt(s): %s%ld %s",
                            (long long) f->d.event, f->d.action, f->d.url, res->attempts, res->status ? "status " : "",
                            res->status, res->status ? "" : res->error);
                if (store_event_append(n->store, &e) < 0)
                        log_warning("Cannot record the failed notification (%s)", store_last_error());
        }
        delivery_done(&f->d);
        f->used = false;
        send_next(n);
}

static bool url_in_flight(Notifier *n, const char *url) {
        for (size_t i = 0; i < IN_FLIGHT_MAX; i++)
                if (n->flight[i].used && streq(n->flight[i].d.url, url))
                        return true;
        return false;
}

/* Starts the oldest waiting delivery of each URL that has none in flight. */
static void send_next(Notifier *n) {
        for (size_t i = 0; i < n->n;) {
                struct InFlight *f = NULL;
                bool blocked = url_in_flight(n, n->queue[i].url);

                /* An earlier waiting delivery to the same URL goes first. */
                for (size_t k = 0; k < i && !blocked; k++)
                        blocked = streq(n->queue[k].url, n->queue[i].url);
                for (size_t k = 0; k < IN_FLIGHT_MAX && !f && !blocked; k++)
                        if (!n->flight[k].used)
                                f = &n->flight[k];
                if (!f) {
                        i++;
                        continue;
                }
                *f = (struct InFlight) { .notifier = n, .used = true, .d = n->queue[i] };
                memmove(&n->queue[i], &n->queue[i + 1], (n->n - i - 1) * sizeof n->queue[0]);
                n->n--;
                n->queue[n->n] = (Delivery) {};
                WebhookRequest req = {
                        .url = f->d.url,
                        .body = f->d.body,
                        .secret = f->d.secret,
                        .event = f->d.action,
                        .timeout_usec = NOTIFY_TIMEOUT_USEC,
                        .retries = NOTIFY_RETRIES,
                        .backoff_usec = USEC_PER_SEC,
                };
                if (webhook_send(n->client, &req, on_sent, f) < 0) {
                        log_warning("Cannot send the notification of event %lld to %s", (long long) f->d.event, f->d.url);
                        delivery_done(&f->d);
                        f->used = false;
                }
        }
}

static void enqueue(Notifier *n, const char *url, const char *secret, const char *body, const EventRecord *e) {
        Delivery *d;

        if (n->n >= QUEUE_MAX) {
                if (n->dropped++ % 100 == 0)
                        log_warning("The notification queue is full (%d): event %lld to %s is dropped", QUEUE_MAX,
                                    (long long) e->id, url);
                return;
        }
        d = &n->queue[n->n];
        *d = (Delivery) {
                .url = strdup(url),
                .secret = secret ? strdup(secret) : NULL,
                .body = strdup(body),
                .action = strdup(e->action),
                .resource = strdup(e->resource ? e->resource : ""),
                .event = e->id,
        };
        if (!d->url || !d->body || !d->action || !d->resource || (secret && !d->secret)) {
                delivery_done(d);
                return;
        }
        n->n++;
}

/* The event as GET /v1/events shows it. */
static char *event_body(const EventRecord *e) {
        json_error_t jerr;
        char time[32];
        json_auto_t *j;

        format_rfc3339(e->time, time);
        j = json_pack("{s:I, s:s, s:s, s:s, s:s, s:s, s:i, s:s?, s:o}", "id", (json_int_t) e->id, "time", time, "actor",
                      e->actor, "action", e->action, "resource", e->resource, "result", e->result, "status", e->status,
                      "request_id", e->request_id, "detail", e->detail ? json_loads(e->detail, 0, &jerr) : json_null());
        return j ? json_dumps(j, JSON_COMPACT) : NULL;
}

static int event_one(const EventRecord *e, void *userdata) {
        Notifier *n = userdata;
        _cleanup_(service_record_done) ServiceRecord s = {};
        _cleanup_free_ char *body = NULL;
        json_auto_t *targets = NULL;
        json_t *t;
        size_t i;

        if (e->id > n->last_id)
                n->last_id = e->id;
        if (strncmp(e->action, "rollout.", 8) != 0 || !e->resource || strncmp(e->resource, "service/", 8) != 0)
                return 0;
        if (store_service_get(n->store, e->resource + 8, &s) == 0 && s.notify)
                targets = json_loads(s.notify, 0, NULL);
        if (!targets && !n->global_url)
                return 0;
        body = event_body(e);
        if (!body)
                return -ENOMEM;
        json_array_foreach(targets, i, t)
                enqueue(n, json_string_value(json_object_get(t, "url")), json_string_value(json_object_get(t, "secret")),
                        body, e);
        if (n->global_url)
                enqueue(n, n->global_url, n->global_secret, body, e);
        return 0;
}

static int on_defer(sd_event_source *s, void *userdata) {
        Notifier *n = userdata;
        int64_t before = n->last_id;
        int k;

        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        k = store_event_list(n->store, n->last_id, READ_BATCH, NULL, event_one, n);
        if (k < 0)
                log_warning_errno(k, "Cannot read the events to notify (%s)", store_last_error());
        else if (n->last_id - before >= READ_BATCH)
                sd_event_source_set_enabled(s, SD_EVENT_ONESHOT); /* more to read */
        send_next(n);
        return 0;
}

void notifier_wake(void *userdata) {
        Notifier *n = userdata;

        if (n && n->defer)
                sd_event_source_set_enabled(n->defer, SD_EVENT_ONESHOT);
}

unsigned notifier_pending(const Notifier *n) {
        unsigned k = 0;

        for (size_t i = 0; n && i < IN_FLIGHT_MAX; i++)
                k += n->flight[i].used;
        return n ? (unsigned) n->n + k : 0;
}

int notifier_new(sd_event *e, Store *store, const char *global_url, const char *global_secret, Notifier **ret) {
        Notifier *n = calloc(1, sizeof *n);
        int k;

        if (!n)
                return -ENOMEM;
        n->event = e;
        n->store = store;
        n->global_url = global_url ? strdup(global_url) : NULL;
        n->global_secret = global_secret ? strdup(global_secret) : NULL;
        k = webhook_client_new(e, &n->client);
        if (k >= 0)
                k = sd_event_add_defer(e, &n->defer, on_defer, n);
        if (k >= 0)
                k = sd_event_source_set_enabled(n->defer, SD_EVENT_OFF);
        if (k >= 0)
                k = store_event_last_id(store, &n->last_id);
        if (k < 0) {
                notifier_free(n);
                return k;
        }
        *ret = n;
        return 0;
}

Notifier *notifier_free(Notifier *n) {
        if (!n)
                return NULL;
        sd_event_source_disable_unref(n->defer);
        webhook_client_free(n->client);
        for (size_t i = 0; i < QUEUE_MAX; i++)
                delivery_done(&n->queue[i]);
        for (size_t i = 0; i < IN_FLIGHT_MAX; i++)
                delivery_done(&n->flight[i].d);
        free(n->global_url);
        free(n->global_secret);
        free(n);
        return NULL;
}
