/* Outgoing webhooks (control/webhook.c) against a small HTTP server on 127.0.0.1 in a thread:
 * the request as sent (method, path, headers, body, signature), retries with backoff until a
 * 2xx, giving up after the retries, a per-attempt timeout against a server that never answers,
 * and a URL that is not http(s). The loop never blocks: everything runs through sd-event. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "tap.h"
#include "timeutil.h"
#include "webhook.h"

typedef struct Server {
        int fd;
        unsigned port;
        int fail_first;     /* answer 500 to this many requests, then 200 */
        bool silent;        /* accept, read, never answer */
        int requests;
        char last[4096];    /* the last request, head and body */
        pthread_mutex_t lock;
} Server;

static void *serve(void *arg) {
        Server *s = arg;

        for (;;) {
                int c = accept(s->fd, NULL, NULL);
                char buf[4096];
                ssize_t n, total = 0;
                if (c < 0)
                        return NULL;
                /* Read until the head and a Content-Length's worth of body are in. */
                for (;;) {
                        n = read(c, buf + total, sizeof buf - 1 - (size_t) total);
                        if (n <= 0)
                                break;
                        total += n;
                        buf[total] = 0;
                        char *end = strstr(buf, "\r\n\r\n"), *cl = strcasestr(buf, "Content-Length:");
                        if (end && (!cl || total - (end + 4 - buf) >= atol(cl + 15)))
                                break;
                }
                pthread_mutex_lock(&s->lock);
                s->requests++;
                snprintf(s->last, sizeof s->last, "%.*s", (int) total, buf);
                bool fail = s->requests <= s->fail_first;
                pthread_mutex_unlock(&s->lock);
                if (s->silent) {
                        sleep(5);
                        close(c);
                        continue;
                }
                const char *answer = fail ? "HTTP/1.1 500 Oops\r\nContent-Length: 4\r\nConnection: close\r\n\r\nfail"
                                          : "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nyes";
                (void) !write(c, answer, strlen(answer));
                close(c);
        }
}

static bool server_start(Server *s) {
        struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof sa;
        pthread_t t;

        pthread_mutex_init(&s->lock, NULL);
        s->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (s->fd < 0 || bind(s->fd, (struct sockaddr *) &sa, sizeof sa) < 0 || listen(s->fd, 16) < 0 ||
            getsockname(s->fd, (struct sockaddr *) &sa, &len) < 0)
                return false;
        s->port = ntohs(sa.sin_port);
        return pthread_create(&t, NULL, serve, s) == 0 && pthread_detach(t) == 0;
}

typedef struct Outcome {
        int calls;
        WebhookResult result;
} Outcome;

static void on_done(const WebhookResult *r, void *userdata) {
        Outcome *o = userdata;
        o->calls++;
        o->result = *r;
}

static sd_event *loop;

static void run_until(Outcome *o, uint64_t max_usec) {
        uint64_t start = now_monotonic();
        while (o->calls == 0 && now_monotonic() - start < max_usec)
                (void) sd_event_run(loop, 100 * USEC_PER_MSEC);
}

int main(void) {
        Server ok_server = { .fail_first = 2 }, silent = { .silent = true };
        WebhookClient *c = NULL;
        char url[128], signature[128], header[160];
        Outcome o = {};
        const char *body = "{\"action\":\"rollout.abort\",\"rollout\":7}";

        alarm(60);
        ok(server_start(&ok_server) && server_start(&silent), "test servers on 127.0.0.1");
        ok(sd_event_new(&loop) >= 0 && webhook_client_new(loop, &c) == 0, "a client on an event loop");

        /* Two 500s, then a 200: three attempts, a success. */
        snprintf(url, sizeof url, "http://127.0.0.1:%u/hooks/aviary", ok_server.port);
        WebhookRequest r = { .url = url, .body = body, .secret = "s3cret", .event = "rollout.abort",
                             .timeout_usec = 2 * USEC_PER_SEC, .retries = 3, .backoff_usec = 50 * USEC_PER_MSEC };
        is_int(webhook_send(c, &r, on_done, &o), 0, "a delivery starts");
        is_int(webhook_in_flight(c), 1, "one in flight");
        run_until(&o, 10 * USEC_PER_SEC);
        is_int(o.calls, 1, "done is called once");
        ok(o.result.ok, "it succeeded (%s)", o.result.error);
        is_int(o.result.attempts, 3, "on the third attempt (two 500s before)");
        is_int(o.result.status, 200, "status 200");
        is_str(o.result.body, "yes", "the answer's body is kept");
        is_int(webhook_in_flight(c), 0, "nothing in flight after");
        ok(strncmp(ok_server.last, "POST /hooks/aviary HTTP/1.1\r\n", 29) == 0, "a POST to the URL's path");
        ok(strstr(ok_server.last, "Content-Type: application/json\r\n") != NULL, "JSON");
        ok(strstr(ok_server.last, "X-Aviary-Event: rollout.abort\r\n") != NULL, "the event named in a header");
        ok(strstr(ok_server.last, body) != NULL, "the body as given");
        /* The signature: recompute it with the t the request carries. */
        const char *sig = strstr(ok_server.last, "X-Aviary-Signature: t=");
        unsigned long long t = sig ? strtoull(sig + 22, NULL, 10) : 0;
        ok(sig && webhook_signature("s3cret", t, body, signature) == 0, "a signature header with t=%llu", t);
        snprintf(header, sizeof header, "X-Aviary-Signature: %s\r\n", signature);
        ok(strstr(ok_server.last, header) != NULL, "that verifies: HMAC-SHA256 of \"t.\" and the body");
        webhook_signature("other", t, body, signature);
        snprintf(header, sizeof header, "X-Aviary-Signature: %s\r\n", signature);
        ok(strstr(ok_server.last, header) == NULL, "and another secret does not");
        ok(t > 1700000000ULL && t <= now_realtime() / USEC_PER_SEC + 1, "t is now, in Unix seconds");

        /* Always failing: the retries run out. */
        o = (Outcome) {};
        ok_server.fail_first = 1000;
        r.retries = 2;
        webhook_send(c, &r, on_done, &o);
        run_until(&o, 10 * USEC_PER_SEC);
        ok(o.calls == 1 && !o.result.ok, "a server that always fails: done, not ok");
        is_int(o.result.attempts, 3, "after 1 + 2 retries");
        is_str(o.result.error, "HTTP 500", "the error names the last status");

        /* A server that never answers: each attempt ends at its timeout. */
        o = (Outcome) {};
        snprintf(url, sizeof url, "http://127.0.0.1:%u/", silent.port);
        WebhookRequest slow = { .url = url, .body = "{}", .timeout_usec = 300 * USEC_PER_MSEC, .retries = 0 };
        uint64_t start = now_monotonic();
        webhook_send(c, &slow, on_done, &o);
        run_until(&o, 10 * USEC_PER_SEC);
        ok(o.calls == 1 && !o.result.ok, "a silent server: not ok");
        ok(strstr(o.result.error, "imeout") != NULL || strstr(o.result.error, "timed out") != NULL,
           "the error says it timed out: %s", o.result.error);
        ok(now_monotonic() - start < 4 * USEC_PER_SEC, "at the attempt's timeout, not the server's 5 s");
        ok(strstr(silent.last, "X-Aviary-Signature") == NULL, "no secret: no signature header");

        /* A GET, as an external metric's query is sent. */
        o = (Outcome) {};
        ok_server.fail_first = 0;
        ok_server.requests = 0;
        snprintf(url, sizeof url, "http://127.0.0.1:%u/api/v1/query?query=up", ok_server.port);
        WebhookRequest query = { .url = url, .get = true, .timeout_usec = 2 * USEC_PER_SEC };
        webhook_send(c, &query, on_done, &o);
        run_until(&o, 10 * USEC_PER_SEC);
        ok(o.calls == 1 && o.result.ok, "a GET succeeds");
        ok(strncmp(ok_server.last, "GET /api/v1/query?query=up HTTP/1.1\r\n", 37) == 0, "it is a GET of the URL");
        ok(strstr(ok_server.last, "Content-Length") == NULL, "without a body");

        /* Refused at once. */
        WebhookRequest bad = { .url = "file:///etc/passwd", .body = "{}" };
        is_int(webhook_send(c, &bad, on_done, &o), -EINVAL, "a file:// URL is refused");
        bad.url = "ftp://example/";
        is_int(webhook_send(c, &bad, on_done, &o), -EINVAL, "an ftp:// URL is refused");

        /* Freeing the client with a delivery in flight calls nothing. */
        o = (Outcome) {};
        webhook_send(c, &slow, on_done, &o);
        c = webhook_client_free(c);
        is_int(o.calls, 0, "freeing cancels: done is not called");
        sd_event_unref(loop);
        return tap_done();
}
