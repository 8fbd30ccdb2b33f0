/* Outgoing webhooks (webhook.h): libcurl's multi interface driven by sd-event. libcurl tells
 * us which sockets to watch and when to call it back; a delivery that fails waits out its
 * backoff on a timer of its own and tries again. */
#include <curl/curl.h>
#include <errno.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "macro.h"
#include "timeutil.h"
#include "webhook.h"

typedef struct Delivery Delivery;

typedef struct Watch {
        curl_socket_t fd;
        sd_event_source *source;
        struct Watch *next;
} Watch;

struct WebhookClient {
        sd_event *event;
        CURLM *multi;
        sd_event_source *timer;
        Watch *watches;
        Delivery *deliveries;
        unsigned n;
};

struct Delivery {
        WebhookClient *client;
        CURL *easy;
        struct curl_slist *headers;
        char *url, *body, *secret, *event;
        bool get, head;
        uint64_t timeout_usec, backoff_usec;
        unsigned retries;
        sd_event_source *retry;
        WebhookResult result;
        size_t body_len;          /* of result.body */
        WebhookDone done;
        void *userdata;
        Delivery *next;
};

int webhook_signature(const char *secret, uint64_t t, const char *body, char out[static 128]) {
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned mac_len = 0;
        _cleanup_free_ char *message = NULL;
        int n;

        /* What is signed: "T." and the body, so an old delivery cannot be replayed as new. */
        if (asprintf(&message, "%llu.%s", (unsigned long long) t, body) < 0)
                return -ENOMEM;
        if (!HMAC(EVP_sha256(), secret, (int) strlen(secret), (const unsigned char *) message, strlen(message), mac,
                  &mac_len))
                return -EIO;
        n = snprintf(out, 128, "t=%llu,v1=", (unsigned long long) t);
        for (unsigned i = 0; i < mac_len && n + 2 < 128; i++)
                n += snprintf(out + n, 128 - (size_t) n, "%02x", mac[i]);
        return 0;
}

static void delivery_free(Delivery *d) {
        if (!d)
                return;
        if (d->easy) {
                curl_multi_remove_handle(d->client->multi, d->easy);
                curl_easy_cleanup(d->easy);
        }
        curl_slist_free_all(d->headers);
        sd_event_source_disable_unref(d->retry);
        free(d->url);
        free(d->body);
        if (d->secret)
                explicit_bzero(d->secret, strlen(d->secret));
        free(d->secret);
        free(d->event);
        free(d);
}

static void delivery_unlink(Delivery *d) {
        for (Delivery **p = &d->client->deliveries; *p; p = &(*p)->next)
                if (*p == d) {
                        *p = d->next;
                        d->client->n--;
                        return;
                }
}

static size_t on_body(char *data, size_t size, size_t n, void *userdata) {
        Delivery *d = userdata;
        size_t len = size * n, room = sizeof d->result.body - 1 - d->body_len;
        size_t take = len < room ? len : room;

        memcpy(d->result.body + d->body_len, data, take);
        d->body_len += take;
        d->result.body[d->body_len] = 0;
        return len;
}

/* (Re)builds the easy handle of D for one attempt and hands it to the multi handle. */
static int attempt_start(Delivery *d) {
        char signature[128], header[200];
        uint64_t now = now_realtime() / USEC_PER_SEC;

        if (d->easy) {
                curl_multi_remove_handle(d->client->multi, d->easy);
                curl_easy_cleanup(d->easy);
        }
        curl_slist_free_all(d->headers);
        d->headers = NULL;
        d->body_len = 0;
        d->result.body[0] = 0;
        d->easy = curl_easy_init();
        if (!d->easy)
                return -ENOMEM;
        if (!d->get && !d->head)
                d->headers = curl_slist_append(d->headers, "Content-Type: application/json");
        d->headers = curl_slist_append(d->headers, "Accept: application/json");
        d->headers = curl_slist_append(d->headers, "User-Agent: aviaryd-webhook");
        d->headers = curl_slist_append(d->headers, "Expect:");
        if (d->event) {
                snprintf(header, sizeof header, "X-Aviary-Event: %s", d->event);
                d->headers = curl_slist_append(d->headers, header);
        }
        if (d->secret && d->secret[0]) {
                if (webhook_signature(d->secret, now, d->body, signature) < 0)
                        return -EIO;
                snprintf(header, sizeof header, "X-Aviary-Signature: %s", signature);
                d->headers = curl_slist_append(d->headers, header);
        }
        if (!d->headers)
                return -ENOMEM;
        curl_easy_setopt(d->easy, CURLOPT_URL, d->url);
        curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(d->easy, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(d->easy, CURLOPT_FOLLOWLOCATION, 0L);
        curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->headers);
        if (d->head)
                curl_easy_setopt(d->easy, CURLOPT_NOBODY, 1L);
        else if (d->get)
                curl_easy_setopt(d->easy, CURLOPT_HTTPGET, 1L);
        else {
                curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
                curl_easy_setopt(d->easy, CURLOPT_POSTFIELDSIZE, (long) strlen(d->body));
        }
        curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS, (long) (d->timeout_usec / USEC_PER_MSEC));
        curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
        curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
        d->result.attempts++;
        return curl_multi_add_handle(d->client->multi, d->easy) == CURLM_OK ? 0 : -EIO;
}

static void delivery_finish(Delivery *d) {
        WebhookResult result = d->result;
        WebhookDone done = d->done;
        void *userdata = d->userdata;

        delivery_unlink(d);
        delivery_free(d);
        if (done)
                done(&result, userdata);
}

static int on_retry(sd_event_source *s, uint64_t usec, void *userdata) {
        Delivery *d = userdata;

        d->retry = sd_event_source_disable_unref(d->retry);
        if (attempt_start(d) < 0) {
                snprintf(d->result.error, sizeof d->result.error, "cannot start another attempt");
                delivery_finish(d);
        }
        return 0;
}

/* One attempt of D ended with CODE. */
static void attempt_done(Delivery *d, CURLcode code) {
        long status = 0;

        curl_easy_getinfo(d->easy, CURLINFO_RESPONSE_CODE, &status);
        d->result.status = code == CURLE_OK ? status : 0;
        d->result.ok = code == CURLE_OK && status >= 200 && status < 300;
        if (d->result.ok)
                d->result.error[0] = 0;
        else if (code != CURLE_OK)
                snprintf(d->result.error, sizeof d->result.error, "%s", curl_easy_strerror(code));
        else
                snprintf(d->result.error, sizeof d->result.error, "HTTP %ld", status);
        if (d->result.ok || d->result.attempts > d->retries) {
                delivery_finish(d);
                return;
        }
        uint64_t wait = d->backoff_usec << (d->result.attempts - 1 < 16 ? d->result.attempts - 1 : 16);
        if (sd_event_add_time_relative(d->client->event, &d->retry, CLOCK_MONOTONIC, wait, 10 * USEC_PER_MSEC, on_retry,
                                       d) < 0)
                delivery_finish(d);
}

static void check_done(WebhookClient *c) {
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(c->multi, &left))) {
                Delivery *d = NULL;
                if (msg->msg != CURLMSG_DONE)
                        continue;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **) &d);
                if (d)
                        attempt_done(d, msg->data.result);
        }
}

static int on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        WebhookClient *c = userdata;
        int running, action = 0;

        if (revents & EPOLLIN)
                action |= CURL_CSELECT_IN;
        if (revents & EPOLLOUT)
                action |= CURL_CSELECT_OUT;
        if (revents & (EPOLLERR | EPOLLHUP))
                action |= CURL_CSELECT_ERR;
        curl_multi_socket_action(c->multi, fd, action, &running);
        check_done(c);
        return 0;
}

static int on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        WebhookClient *c = userdata;
        int running;

        curl_multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(c);
        return 0;
}

/* libcurl: watch FD for WHAT (or stop). */
static int socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *socketp) {
        WebhookClient *c = userp;
        Watch *w = NULL, **p;
        uint32_t events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0);

        for (p = &c->watches; *p; p = &(*p)->next)
                if ((*p)->fd == fd) {
                        w = *p;
                        break;
                }
        if (what == CURL_POLL_REMOVE) {
                if (w) {
                        *p = w->next;
                        sd_event_source_disable_unref(w->source);
                        free(w);
                }
                return 0;
        }
        if (!w) {
                w = calloc(1, sizeof *w);
                if (!w)
                        return -1;
                w->fd = fd;
                if (sd_event_add_io(c->event, &w->source, fd, events, on_io, c) < 0) {
                        free(w);
                        return -1;
                }
                w->next = c->watches;
                c->watches = w;
                return 0;
        }
        return sd_event_source_set_io_events(w->source, events) < 0 ? -1 : 0;
}

/* libcurl: call me back in TIMEOUT_MS (-1: never). */
static int timer_cb(CURLM *multi, long timeout_ms, void *userp) {
        WebhookClient *c = userp;

        if (timeout_ms < 0)
                return sd_event_source_set_enabled(c->timer, SD_EVENT_OFF) < 0 ? -1 : 0;
        if (sd_event_source_set_time_relative(c->timer, (uint64_t) timeout_ms * USEC_PER_MSEC) < 0 ||
            sd_event_source_set_enabled(c->timer, SD_EVENT_ONESHOT) < 0)
                return -1;
        return 0;
}

int webhook_client_new(sd_event *e, WebhookClient **ret) {
        WebhookClient *c;
        int r;

        if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
                return -EIO;
        c = calloc(1, sizeof *c);
        if (!c)
                return -ENOMEM;
        c->event = sd_event_ref(e);
        c->multi = curl_multi_init();
        if (!c->multi) {
                webhook_client_free(c);
                return -ENOMEM;
        }
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
        curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
        r = sd_event_add_time_relative(e, &c->timer, CLOCK_MONOTONIC, 0, 1 * USEC_PER_MSEC, on_timer, c);
        if (r >= 0)
                r = sd_event_source_set_enabled(c->timer, SD_EVENT_OFF);
        if (r < 0) {
                webhook_client_free(c);
                return r;
        }
        *ret = c;
        return 0;
}

WebhookClient *webhook_client_free(WebhookClient *c) {
        if (!c)
                return NULL;
        while (c->deliveries) {
                Delivery *d = c->deliveries;
                c->deliveries = d->next;
                delivery_free(d);
        }
        while (c->watches) {
                Watch *w = c->watches;
                c->watches = w->next;
                sd_event_source_disable_unref(w->source);
                free(w);
        }
        if (c->multi)
                curl_multi_cleanup(c->multi);
        sd_event_source_disable_unref(c->timer);
        sd_event_unref(c->event);
        free(c);
        return NULL;
}

unsigned webhook_in_flight(const WebhookClient *c) {
        return c ? c->n : 0;
}

int webhook_send(WebhookClient *c, const WebhookRequest *r, WebhookDone done, void *userdata) {
        Delivery *d;
        int k;

        if (!r->url || (strncmp(r->url, "http://", 7) != 0 && strncmp(r->url, "https://", 8) != 0) ||
            (r->method && !streq(r->method, "GET") && !streq(r->method, "HEAD")))
                return -EINVAL;
        bool head = r->method && streq(r->method, "HEAD");
        bool get = r->get || (r->method && streq(r->method, "GET"));
        if (!r->body && !get && !head)
                return -EINVAL;
        d = calloc(1, sizeof *d);
        if (!d)
                return -ENOMEM;
        *d = (Delivery) {
                .client = c,
                .url = strdup(r->url),
                .body = strdup(r->body ? r->body : ""),
                .get = get,
                .head = head,
                .secret = r->secret ? strdup(r->secret) : NULL,
                .event = r->event ? strdup(r->event) : NULL,
                .timeout_usec = r->timeout_usec ? r->timeout_usec : 10 * USEC_PER_SEC,
                .backoff_usec = r->backoff_usec ? r->backoff_usec : USEC_PER_SEC,
                .retries = r->retries,
                .done = done,
                .userdata = userdata,
        };
        if (!d->url || !d->body || (r->secret && !d->secret) || (r->event && !d->event)) {
                delivery_free(d);
                return -ENOMEM;
        }
        d->next = c->deliveries;
        c->deliveries = d;
        c->n++;
        k = attempt_start(d);
        if (k < 0) {
                delivery_unlink(d);
                delivery_free(d);
                return k;
        }
        return 0;
}
