/* Message heads in the proxy: collected from http_parser's callbacks, checked against the
 * proxy's framing rules (docs/security.md, "The service proxy's framing"), and rendered for the
 * next hop. The framing a rendered head carries (Content-Length or Transfer-Encoding) is written
 * from what the parser decided, never copied from the received fields, so no field the peer sent
 * (nor a Connection header naming one) can change how the next hop delimits the message. No I/O
 * here; proxy.c drives it. */
#pragma once

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PROXY_HEAD_MAX (8 * 1024) /* a request or response head beyond this is refused */
#define PROXY_MAX_HEADERS 100

typedef enum HeadPart {
        HEAD_FIRST, /* the request target, or the response's reason phrase */
        HEAD_NAME,
        HEAD_VALUE,
} HeadPart;

/* A message head as http_parser delivers it, in pieces, copied into one bounded store. */
typedef struct Head {
        char store[PROXY_HEAD_MAX];
        size_t len;
        size_t first_len; /* URL (request) or reason (response), at store[0] */
        struct {
                size_t name, name_len, value, value_len;
        } fields[PROXY_MAX_HEADERS];
        unsigned n;
        HeadPart where;
        bool overflow;
        bool folded;  /* a line began with a blank: obs-fold, or whitespace before a field */
        bool prev_lf; /* head_scan() saw a line end last */
} Head;

void head_reset(Head *h);
void head_add(Head *h, HeadPart part, const char *at, size_t n);
/* Looks at the raw bytes of the head as the parser consumes them (call it with exactly the bytes
 * one http_parser_execute() consumed while in the head, in order): http_parser joins a line that
 * begins with a blank to the field before (obs-fold) without telling, so this is where it shows. */
void head_scan(Head *h, const char *data, size_t n);

/* Whether field I is named NAME (case-insensitive). */
bool head_field_is(const Head *h, unsigned i, const char *name);
/* The value of field I without surrounding blanks; points into the head's store. */
const char *head_field_value(const Head *h, unsigned i, size_t *ret_len);

/* The first field named NAME (case-insensitive), trimmed, NULL when absent; see
 * proxy_request_header(). */
const char *head_header(const Head *h, const char *name, size_t *ret_len);
/* The value of the first cookie named exactly NAME in the Cookie fields; see proxy_request_cookie(). */
const char *head_cookie(const Head *h, const char *name, size_t *ret_len);

/* What a request head forwards, decided by head_check_request(): pointers into the head's store
 * (or string constants), valid while the head is. */
typedef struct RequestForward {
        const char *target; /* origin-form (or "*"); an absolute-form target is rewritten */
        size_t target_len;
        const char *host; /* the Host to send: from an absolute-form target, else the one received */
        size_t host_len;
        const char *request_id; /* the client's one X-Request-Id when it is sane, else NULL */
        size_t request_id_len;
} RequestForward;

/* Checks a complete request head that P parsed. Returns 0 and fills *RET, or the HTTP status to
 * answer (400, 505) with *RET_WHY saying why (a constant string). */
int head_check_request(const Head *h, const http_parser *p, RequestForward *ret, const char **ret_why);
/* Checks a complete response head that P parsed: 0, or -EBADMSG with *RET_WHY (the proxy answers
 * 502 then). */
int head_check_response(const Head *h, const http_parser *p, const char **ret_why);

/* A bounded output area: rendering fails with -ENOBUFS rather than write past SIZE. */
typedef struct HeadOut {
        char *data;
        size_t size, len;
} HeadOut;

typedef enum Framing {
        FRAMING_NONE,    /* no body, or one delimited by closing the connection */
        FRAMING_LENGTH,  /* Content-Length: length */
        FRAMING_CHUNKED, /* Transfer-Encoding: chunked, chunks written by the proxy */
} Framing;

/* Renders the request head for the backend: the request line with F's target, the received
 * fields minus hop-by-hop ones and those the proxy writes itself, then Host, the framing, and
 * X-Forwarded-For (the received ones joined, plus CLIENT_IP), X-Forwarded-Proto, X-Forwarded-Host
 * and X-Request-Id (REQUEST_ID). */
int head_render_request(const Head *h, const char *method, const RequestForward *f, Framing framing,
                        uint64_t length, const char *client_ip, const char *request_id, HeadOut *out);
/* Renders a response head for the client: the status line, the received fields minus hop-by-hop
 * and framing ones, the framing, and "Connection: CONNECTION" when CONNECTION is not NULL. */
int head_render_response(const Head *h, unsigned status, Framing framing, uint64_t length,
                         const char *connection, HeadOut *out);
