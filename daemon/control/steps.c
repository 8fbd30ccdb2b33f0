/* Check and webhook steps, and the end-of-rollout hooks (steps.h). One entry per running
 * (rollout, step); a check sends its requests one after the other (each guest, each repeat,
 * each request), so a rollout has at most one request in flight and a slow guest costs only
 * its own timeout. An entry whose rollout ended while a request was in flight is freed when
 * that request returns. */
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "random.h"
#include "steps.h"
#include "timeutil.h"
#include "webhook.h"

#define MAX_ENTRIES 64
#define GATE_POLL_USEC (5 * USEC_PER_SEC)   /* a gate that said no is asked again after this */

typedef struct Entry {
        StepRunner *runner;
        bool used;
        bool in_flight;
        bool abandoned;                /* forgotten while in flight: freed when the request returns */
        int64_t rollout, step;
        StepKind kind;
        CheckSpec check;
        WebhookSpec webhook;
        StepJob targets;               /* the guests and port (its pointers unused) */
        char *body;
        size_t guest, repeat, request; /* a check's next request */
        usec_t next_at;                /* a gate's next poll (monotonic) */
        unsigned polls;
        StepOutcome outcome;
        char detail[512];
} Entry;

struct StepRunner {
        WebhookClient *client;
        char key[65];
        Entry entry[MAX_ENTRIES];
};

static void entry_free(Entry *e) {
        free(e->body);
        *e = (Entry) {};
}

/* The key in KEY_PATH, made when missing. */
static int key_load(const char *path, char key[static 65]) {
        uint8_t raw[32];
        FILE *f = fopen(path, "re");
        int fd;

        if (f) {
                bool ok = fgets(key, 65, f) && strlen(key) == 64;
                fclose(f);
                if (ok)
                        return 0;
        }
        if (random_bytes(raw, sizeof raw) < 0)
                return -EIO;
        for (size_t i = 0; i < sizeof raw; i++)
                snprintf(key + 2 * i, 3, "%02x", raw[i]);
        fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0)
                return -errno;
        if (write(fd, key, 64) != 64 || write(fd, "\n", 1) != 1 || fsync(fd) < 0) {
                int k = -errno;
                close(fd);
                return k ? k : -EIO;
        }
        return close(fd) < 0 ? -errno : 0;
}

int step_runner_new(sd_event *e, const char *key_path, StepRunner **ret) {
        StepRunner *r = calloc(1, sizeof *r);
        int k;

        if (!r)
                return -ENOMEM;
        k = webhook_client_new(e, &r->client);
        if (k < 0) {
                free(r);
                return k;
        }
        if (key_path && (k = key_load(key_path, r->key)) < 0) {
                log_warning_errno(k, "Cannot read or make the webhook signing key %s; webhooks go unsigned", key_path);
                r->key[0] = 0;
        }
        *ret = r;
        return 0;
}

StepRunner *step_runner_free(StepRunner *r) {
        if (!r)
                return NULL;
        webhook_client_free(r->client); /* no callback comes after this */
        for (size_t i = 0; i < MAX_ENTRIES; i++)
                entry_free(&r->entry[i]);
        free(r);
        return NULL;
}

const char *step_runner_key(const StepRunner *r) {
        return r && r->key[0] ? r->key : NULL;
}

static void finish(Entry *e, StepOutcome outcome, const char *fmt, ...) _printf_(3, 4);
static void finish(Entry *e, StepOutcome outcome, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(e->detail, sizeof e->detail, fmt, ap);
        va_end(ap);
        e->outcome = outcome;
}

/* The start of an answer's body as one line of printable text. */
static void body_excerpt(const char *body, char out[static 121]) {
        size_t n = 0;

        for (; body[n] && n < 120; n++)
                out[n] = body[n] >= ' ' && body[n] < 0x7f ? body[n] : ' ';
        out[n] = 0;
}

static int check_send(Entry *e);

static void on_check_done(const WebhookResult *res, void *userdata) {
        Entry *e = userdata;
        const CheckRequest *q = &e->check.request[e->request];
        const char *ip = e->targets.guest[e->guest].ip, *id = e->targets.guest[e->guest].instance;
        char excerpt[121];
        bool status_ok, body_ok;

        e->in_flight = false;
        if (e->abandoned) {
                entry_free(e);
                return;
        }
        body_excerpt(res->body, excerpt);
        status_ok = q->status ? res->status == (long) q->status : res->status >= 200 && res->status < 300;
        body_ok = !q->body_contains[0] || strstr(res->body, q->body_contains);
        if (res->status == 0) {
                finish(e, STEP_OUTCOME_FAILED, "check: %s %s on %s:%u (instance %s), try %zu of %u: no answer: %.200s", q->method,
                       q->path, ip, e->targets.port, id, e->repeat + 1, e->check.repeat, res->error);
                return;
        }
        if (!status_ok || !body_ok) {
                char want[160];
                if (!status_ok)
                        snprintf(want, sizeof want, "status %u", q->status ? q->status : 200);
                else
                        snprintf(want, sizeof want, "a body containing \"%s\"", q->body_contains);
                finish(e, STEP_OUTCOME_FAILED,
                       "check: %s %s on %s:%u (instance %s), try %zu of %u: status %ld, expected %s%s; body: %s", q->method,
                       q->path, ip, e->targets.port, id, e->repeat + 1, e->check.repeat, res->status, want,
                       q->status ? "" : " (any 2xx)", excerpt[0] ? excerpt : "(empty)");
                return;
        }
        /* Next: the next request, then the next repeat, then the next guest. */
        if (++e->request >= e->check.n_requests) {
                e->request = 0;
                if (++e->repeat >= e->check.repeat) {
                        e->repeat = 0;
                        e->guest++;
                }
        }
        if (e->guest >= e->targets.n_guests) {
                finish(e, STEP_OUTCOME_PASSED, "check passed: %zu request(s) x %u on %zu canary guest(s)", e->check.n_requests,
                       e->check.repeat, e->targets.n_guests);
                return;
        }
        if (check_send(e) < 0)
                finish(e, STEP_OUTCOME_FAILED, "check: cannot send a request");
}

static int check_send(Entry *e) {
        const CheckRequest *q = &e->check.request[e->request];
        char url[320];
        int k;

        snprintf(url, sizeof url, "http://%s:%u%s", e->targets.guest[e->guest].ip, e->targets.port, q->path);
        WebhookRequest req = {
                .url = url,
                .method = q->method,
                .timeout_usec = e->check.timeout_ms * USEC_PER_MSEC,
                .retries = 0,
        };
        k = webhook_send(e->runner->client, &req, on_check_done, e);
        if (k == 0)
                e->in_flight = true;
        return k;
}

static int webhook_step_send(Entry *e);

static void on_webhook_done(const WebhookResult *res, void *userdata) {
        Entry *e = userdata;
        char excerpt[121];

        e->in_flight = false;
        if (e->abandoned) {
                entry_free(e);
                return;
        }
        body_excerpt(res->body, excerpt);
        if (res->ok) {
                finish(e, STEP_OUTCOME_PASSED, "webhook %.200s answered %ld%s%s", e->webhook.url, res->status,
                       excerpt[0] ? ": " : "", excerpt);
                return;
        }
        if (e->webhook.gate) {
                /* Not yet: ask again later (the rollout's progressDeadline bounds the wait). */
                snprintf(e->detail, sizeof e->detail, "gate %.200s: %s%ld%.100s%.100s (asked %u times)", e->webhook.url,
                         res->status ? "answered " : "no answer: ", res->status, res->status ? "" : res->error,
                         excerpt[0] ? excerpt : "", e->polls);
                e->next_at = now_monotonic() + GATE_POLL_USEC;
                return;
        }
        if (res->status)
                finish(e, STEP_OUTCOME_FAILED, "webhook %.200s answered %ld after %u attempt(s)%s%s", e->webhook.url, res->status,
                       res->attempts, excerpt[0] ? ": " : "", excerpt);
        else
                finish(e, STEP_OUTCOME_FAILED, "webhook %.200s: no answer after %u attempt(s): %.200s", e->webhook.url, res->attempts,
                       res->error);
}

static int webhook_step_send(Entry *e) {
        WebhookRequest req = {
                .url = e->webhook.url,
                .body = e->body ? e->body : "{}",
                .secret = e->runner->key[0] ? e->runner->key : NULL,
                .event = e->webhook.gate ? "rollout.gate" : "rollout.webhook",
                .timeout_usec = e->webhook.timeout_ms * USEC_PER_MSEC,
                /* A gate asks again every GATE_POLL_USEC anyway. */
                .retries = e->webhook.gate ? 0 : e->webhook.retries,
        };
        int k = webhook_send(e->runner->client, &req, on_webhook_done, e);

        if (k == 0) {
                e->in_flight = true;
                e->polls++;
        }
        return k;
}

static Entry *entry_find(StepRunner *r, int64_t rollout, int64_t step) {
        for (size_t i = 0; i < MAX_ENTRIES; i++)
                if (r->entry[i].used && !r->entry[i].abandoned && r->entry[i].rollout == rollout &&
                    r->entry[i].step == step)
                        return &r->entry[i];
        return NULL;
}

static Entry *entry_new(StepRunner *r) {
        for (size_t i = 0; i < MAX_ENTRIES; i++)
                if (!r->entry[i].used) {
                        r->entry[i] = (Entry) {.used = true, .runner = r};
                        return &r->entry[i];
                }
        return NULL;
}

void step_runner_forget(StepRunner *r, int64_t rollout) {
        for (size_t i = 0; r && i < MAX_ENTRIES; i++) {
                Entry *e = &r->entry[i];
                if (!e->used || e->rollout != rollout)
                        continue;
                if (e->in_flight)
                        e->abandoned = true;
                else
                        entry_free(e);
        }
}

StepOutcome step_runner_poll(StepRunner *r, const StepJob *job, char *detail, size_t size) {
        Entry *e = entry_find(r, job->rollout, job->step);
        int k = 0;

        if (!e) {
                /* A new step of this rollout: what was known of its earlier steps goes. */
                step_runner_forget(r, job->rollout);
                e = entry_new(r);
                if (!e) {
                        snprintf(detail, size, "too many steps running at once; trying again");
                        return STEP_OUTCOME_RUNNING;
                }
                e->rollout = job->rollout;
                e->step = job->step;
                e->kind = job->kind;
                if (job->kind == STEP_CHECK) {
                        e->check = *job->check;
                        e->targets.n_guests = job->n_guests < STEP_MAX_GUESTS ? job->n_guests : STEP_MAX_GUESTS;
                        memcpy(e->targets.guest, job->guest, sizeof e->targets.guest);
                        e->targets.port = job->port;
                        if (e->targets.n_guests == 0)
                                finish(e, STEP_OUTCOME_FAILED, "check: no canary guest is ready");
                        else
                                k = check_send(e);
                } else {
                        e->webhook = *job->webhook;
                        e->body = strdup(job->body ? job->body : "{}");
                        k = e->body ? webhook_step_send(e) : -ENOMEM;
                }
                if (k < 0)
                        finish(e, STEP_OUTCOME_FAILED, "cannot start the %s step: %s",
                               job->kind == STEP_CHECK ? "check" : "webhook", strerror(-k));
        } else if (e->kind == STEP_WEBHOOK && e->webhook.gate && e->outcome == STEP_OUTCOME_RUNNING && !e->in_flight &&
                   now_monotonic() >= e->next_at) {
                /* The gate said no: ask again, with the rollout's status now. */
                char *body = strdup(job->body ? job->body : "{}");
                if (body) {
                        free(e->body);
                        e->body = body;
                }
                if (webhook_step_send(e) < 0)
                        e->next_at = now_monotonic() + GATE_POLL_USEC;
        }
        snprintf(detail, size, "%s", e->detail);
        return e->outcome;
}

static void on_hook_done(const WebhookResult *res, void *userdata) {
        char *what = userdata;

        if (!res->ok)
                log_warning("Hook %s failed after %u attempt(s): %s%ld %s", what, res->attempts,
                            res->status ? "status " : "", res->status, res->error);
        free(what);
}

int step_runner_hook(StepRunner *r, const WebhookSpec *w, const char *event, const char *body) {
        char *what;
        int k;

        if (!w->url[0])
                return 0;
        if (asprintf(&what, "%s to %s", event, w->url) < 0)
                return -ENOMEM;
        WebhookRequest req = {
                .url = w->url,
                .body = body,
                .secret = r->key[0] ? r->key : NULL,
                .event = event,
                .timeout_usec = w->timeout_ms * USEC_PER_MSEC,
                .retries = w->retries,
        };
        k = webhook_send(r->client, &req, on_hook_done, what);
        if (k < 0)
                free(what);
        return k;
}
