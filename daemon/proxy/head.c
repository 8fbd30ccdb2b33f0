/* Message heads in the proxy: collection, the framing rules, rendering (head.h). The rules are
 * RFC 9112's, applied strictly where being lenient would let the proxy and the next hop read one
 * message differently: Debian's http_parser is built non-strict and accepts a blank before a
 * field's colon, a blank at the start of a line and a tab in the request target. */
#include <errno.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include "head.h"
#include "macro.h"
#include "names.h"

/* ---- collecting ---- */

void head_reset(Head *h) {
        h->len = h->first_len = 0;
        h->n = 0;
        h->where = HEAD_FIRST;
        h->overflow = h->folded = h->prev_lf = false;
}

void head_add(Head *h, HeadPart part, const char *at, size_t n) {
        if (h->overflow)
                return;
        if (n > sizeof h->store - h->len) {
                h->overflow = true;
                return;
        }
        if (part == HEAD_NAME && h->where != HEAD_NAME) {
                if (h->n >= PROXY_MAX_HEADERS) {
                        h->overflow = true;
                        return;
                }
                h->fields[h->n].name = h->len;
                h->fields[h->n].name_len = 0;
                h->fields[h->n].value = h->len;
                h->fields[h->n].value_len = 0;
                h->n++;
        } else if (part == HEAD_VALUE && h->where != HEAD_VALUE) {
                if (h->n == 0) {
                        h->overflow = true;
                        return;
                }
                h->fields[h->n - 1].value = h->len;
        }
        h->where = part;
        memcpy(h->store + h->len, at, n);
        h->len += n;
        if (part == HEAD_FIRST)
                h->first_len += n;
        else if (part == HEAD_NAME)
                h->fields[h->n - 1].name_len += n;
        else
                h->fields[h->n - 1].value_len += n;
}

void head_scan(Head *h, const char *data, size_t n) {
        for (size_t i = 0; i < n; i++) {
                if (h->prev_lf && (data[i] == ' ' || data[i] == '\t'))
                        h->folded = true;
                h->prev_lf = data[i] == '\n';
        }
}

/* ---- reading fields ---- */

static bool is_blank(char ch) {
        return ch == ' ' || ch == '\t';
}

static void trim(const char **s, size_t *len) {
        while (*len > 0 && is_blank(**s))
                (*s)++, (*len)--;
        while (*len > 0 && is_blank((*s)[*len - 1]))
                (*len)--;
}

bool head_field_is(const Head *h, unsigned i, const char *name) {
        return h->fields[i].name_len == strlen(name) &&
               strncasecmp(h->store + h->fields[i].name, name, h->fields[i].name_len) == 0;
}

const char *head_field_value(const Head *h, unsigned i, size_t *ret_len) {
        const char *v = h->store + h->fields[i].value;
        size_t len = h->fields[i].value_len;

        trim(&v, &len);
        *ret_len = len;
        return v;
}

const char *head_header(const Head *h, const char *name, size_t *ret_len) {

        for (unsigned i = 0; i < h->n; i++)
                if (head_field_is(h, i, name))
                        return head_field_value(h, i, ret_len);
        return NULL;
}

const char *head_cookie(const Head *h, const char *name, size_t *ret_len) {
        size_t name_len = strlen(name);

        for (unsigned i = 0; i < h->n; i++) {
                const char *v, *end;
                size_t len;

                if (!head_field_is(h, i, "Cookie"))
                        continue;
                v = head_field_value(h, i, &len);
                end = v + len;
                while (v < end) {
                        const char *key = v, *pair_end, *eq, *value;
                        size_t key_len, value_len;

                        while (v < end && *v != ';')
                                v++;
                        pair_end = v;
                        if (v < end)
                                v++; /* past the ';' */
                        eq = memchr(key, '=', (size_t) (pair_end - key));
                        if (!eq)
                                continue;
                        key_len = (size_t) (eq - key);
                        trim(&key, &key_len);
                        if (key_len != name_len || memcmp(key, name, name_len) != 0)
                                continue;
                        value = eq + 1;
                        value_len = (size_t) (pair_end - value);
                        trim(&value, &value_len);
                        *ret_len = value_len;
                        return value;
                }
        }
        return NULL;
}

static unsigned count_named(const Head *h, const char *name, unsigned *ret_first) {
        unsigned n = 0;

        for (unsigned i = h->n; i-- > 0;)
                if (head_field_is(h, i, name)) {
                        n++;
                        *ret_first = i;
                }
        return n;
}

static bool equal_nocase(const char *s, size_t len, const char *word) {
        return len == strlen(word) && strncasecmp(s, word, len) == 0;
}

/* Field names are tokens (RFC 9110 5.1); http_parser lets a blank through. */
static bool is_tchar(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               (c && strchr("!#$%&'*+-.^_`|~", c));
}

/* Whether field I is hop-by-hop: a fixed list plus every name a Connection field lists. The fields
 * the proxy writes itself are left out when rendering whatever this says, so a Connection field
 * cannot remove them. */
static bool is_fixed_hop_by_hop(const Head *h, unsigned i) {
        static const char *const fixed[] = {"Connection", "Keep-Alive", "Proxy-Connection",  "TE",
                                            "Trailer",    "Upgrade",    "Proxy-Authenticate"};

        for (size_t k = 0; k < ELEMENTSOF(fixed); k++)
                if (head_field_is(h, i, fixed[k]))
                        return true;
        return false;
}

/* Renderers that know the head has no Connection field call is_fixed_hop_by_hop() instead:
 * the scan of every Connection field per field is then skipped. */
static bool is_hop_by_hop(const Head *h, unsigned i) {
        const char *name = h->store + h->fields[i].name;
        size_t name_len = h->fields[i].name_len;

        if (is_fixed_hop_by_hop(h, i))
                return true;
        for (unsigned j = 0; j < h->n; j++) {
                if (!head_field_is(h, j, "Connection"))
                        continue;
                const char *v = h->store + h->fields[j].value, *end = v + h->fields[j].value_len;
                while (v < end) {
                        while (v < end && (is_blank(*v) || *v == ','))
                                v++;
                        const char *t = v;
                        while (v < end && *v != ',' && !is_blank(*v))
                                v++;
                        if ((size_t) (v - t) == name_len && strncasecmp(t, name, name_len) == 0)
                                return true;
                }
        }
        return false;
}

/* ---- checking ---- */

/* The rules both directions share: no obs-fold, token names, and framing the parser and any next
 * hop must read alike: at most one Transfer-Encoding, and then exactly "chunked" (http_parser
 * takes "gzip, chunked" as chunked and would forward the body without its coding). http_parser
 * itself refuses two Content-Length fields, a Content-Length with a Transfer-Encoding, bare CRs and
 * control characters in values. */
static int check_common(const Head *h, const http_parser *p, const char **ret_why) {
        unsigned te = 0;

        if (h->folded) {
                *ret_why = "A header line begins with whitespace (obsolete line folding).";
                return -EBADMSG;
        }
        for (unsigned i = 0; i < h->n; i++)
                for (size_t k = 0; k < h->fields[i].name_len; k++)
                        if (!is_tchar(h->store[h->fields[i].name + k])) {
                                *ret_why = "A header field name is not a token (whitespace before the colon?).";
                                return -EBADMSG;
                        }
        if (count_named(h, "Transfer-Encoding", &te) > 1) {
                *ret_why = "More than one Transfer-Encoding field.";
                return -EBADMSG;
        }
        if (count_named(h, "Transfer-Encoding", &te) == 1) {
                size_t len;
                const char *v = head_field_value(h, te, &len);
                if (!equal_nocase(v, len, "chunked") || !(p->flags & F_CHUNKED)) {
                        *ret_why = "Transfer-Encoding other than exactly chunked.";
                        return -EBADMSG;
                }
        }
        return 0;
}

/* A Host value: empty, or host[:port] as http_parser's URL parser reads an authority, with no
 * userinfo. */
static bool host_is_valid(const char *host, size_t len) {
        struct http_parser_url u;
        char url[300];
        int n;

        if (len == 0)
                return true;
        if (len > 255)
                return false;
        memcpy(url, "http://", 7);
        memcpy(url + 7, host, len);
        url[7 + len] = '/';
        n = (int) len + 8;
        http_parser_url_init(&u);
        if (http_parser_parse_url(url, (size_t) n, 0, &u) != 0)
                return false;
        return (u.field_set & ~(1 << UF_PORT)) == ((1 << UF_SCHEMA) | (1 << UF_HOST) | (1 << UF_PATH)) &&
               u.field_data[UF_PATH].off == n - 1;
}

/* An absolute-form target (RFC 9112 3.2.2): forwarded in origin form, with its authority as Host. */
static int absolute_form(const char *url, size_t len, RequestForward *f, const char **ret_why) {
        struct http_parser_url u;
        size_t authority, end;

        http_parser_url_init(&u);
        if (http_parser_parse_url(url, len, 0, &u) != 0 || !(u.field_set & (1 << UF_SCHEMA)) ||
            !(u.field_set & (1 << UF_HOST)) ||
            !equal_nocase(url + u.field_data[UF_SCHEMA].off, u.field_data[UF_SCHEMA].len, "http")) {
                *ret_why = "The request target is neither a path nor an http:// URL.";
                return 400;
        }
        if (u.field_set & (1 << UF_USERINFO)) {
                *ret_why = "The request target carries user information.";
                return 400;
        }
        authority = u.field_data[UF_SCHEMA].off + u.field_data[UF_SCHEMA].len + 3; /* past "://" */
        end = len;
        if (u.field_set & (1 << UF_FRAGMENT))
                end = u.field_data[UF_FRAGMENT].off - 1u;
        if (u.field_set & (1 << UF_QUERY))
                end = u.field_data[UF_QUERY].off - 1u;
        if (u.field_set & (1 << UF_PATH))
                end = u.field_data[UF_PATH].off;
        f->host = url + authority;
        f->host_len = end - authority;
        if (!(u.field_set & (1 << UF_PATH))) {
                if (u.field_set & (1 << UF_QUERY)) {
                        *ret_why = "The request target has a query but no path.";
                        return 400;
                }
                f->target = "/", f->target_len = 1;
        } else {
                f->target = url + u.field_data[UF_PATH].off;
                f->target_len = u.field_data[UF_PATH].len;
                if (u.field_set & (1 << UF_QUERY))
                        f->target_len = u.field_data[UF_QUERY].off + u.field_data[UF_QUERY].len -
                                        u.field_data[UF_PATH].off;
        }
        return 0;
}

int head_check_request(const Head *h, const http_parser *p, RequestForward *ret, const char **ret_why) {
        RequestForward f = {.target = h->store, .target_len = h->first_len};
        unsigned host = 0, id = 0, n_host;
        int r;

        if (p->http_major != 1) {
                *ret_why = "Only HTTP/1.0 and HTTP/1.1 are supported.";
                return 505;
        }
        if (check_common(h, p, ret_why) < 0)
                return 400;
        /* The target goes into the backend's request line as is: visible ASCII only, so no
         * blank, tab or other byte can make the backend split the line elsewhere. */
        if (f.target_len == 0) {
                *ret_why = "The request target is empty.";
                return 400;
        }
        for (size_t k = 0; k < f.target_len; k++)
                if (f.target[k] < 0x21 || f.target[k] > 0x7e) {
                        *ret_why = "The request target holds a byte that is not visible ASCII.";
                        return 400;
                }
        n_host = count_named(h, "Host", &host);
        if (n_host > 1 || (n_host == 0 && p->http_minor >= 1)) {
                *ret_why = "An HTTP/1.1 request needs exactly one Host field.";
                return 400;
        }
        if (n_host == 1) {
                f.host = head_field_value(h, host, &f.host_len);
                if (!host_is_valid(f.host, f.host_len)) {
                        *ret_why = "The Host field is not a valid host[:port].";
                        return 400;
                }
        } else
                f.host = "", f.host_len = 0;
        if (f.target[0] != '/' && !(f.target_len == 1 && f.target[0] == '*')) {
                r = absolute_form(f.target, f.target_len, &f, ret_why);
                if (r != 0)
                        return r;
                if (!host_is_valid(f.host, f.host_len) || f.host_len == 0) {
                        *ret_why = "The request target's authority is not a valid host[:port].";
                        return 400;
                }
        }
        /* The client's request id is kept when there is exactly one and it is what the API
         * accepts as one (request_id_is_valid); otherwise the proxy makes its own. */
        if (count_named(h, "X-Request-Id", &id) == 1) {
                char copy[72];
                size_t len;
                const char *v = head_field_value(h, id, &len);

                if (len < sizeof copy) {
                        memcpy(copy, v, len);
                        copy[len] = 0;
                        if (request_id_is_valid(copy))
                                f.request_id = v, f.request_id_len = len;
                }
        }
        *ret = f;
        return 0;
}

int head_check_response(const Head *h, const http_parser *p, const char **ret_why) {
        return check_common(h, p, ret_why);
}

/* ---- rendering ---- */

/* Appends, no printf: a head is a few dozen memcpy()s (a vsnprintf per line cost a quarter of
 * the proxy's user time). */
static int out_add(HeadOut *o, const char *s, size_t n) {
        if (n > o->size - o->len)
                return -ENOBUFS;
        memcpy(o->data + o->len, s, n);
        o->len += n;
        return 0;
}

#define OUT_LIT(o, lit) out_add((o), (lit), sizeof(lit) - 1)

static int out_str(HeadOut *o, const char *s) {
        return out_add(o, s, strlen(s));
}

static int out_uint(HeadOut *o, uint64_t v) {
        char buf[24];
        size_t i = sizeof buf;

        do {
                buf[--i] = (char) ('0' + v % 10);
                v /= 10;
        } while (v);
        return out_add(o, buf + i, sizeof buf - i);
}

/* Copies field I ("Name: value", the value trimmed). */
static int out_field(HeadOut *o, const Head *h, unsigned i) {
        size_t len;
        const char *v = head_field_value(h, i, &len);
        int r = out_add(o, h->store + h->fields[i].name, h->fields[i].name_len);

        if (r >= 0)
                r = OUT_LIT(o, ": ");
        if (r >= 0)
                r = out_add(o, v, len);
        if (r >= 0)
                r = OUT_LIT(o, "\r\n");
        return r;
}

static int out_framing(HeadOut *o, Framing framing, uint64_t length) {
        int r;

        if (framing == FRAMING_CHUNKED)
                return OUT_LIT(o, "Transfer-Encoding: chunked\r\n");
        if (framing != FRAMING_LENGTH)
                return 0;
        r = OUT_LIT(o, "Content-Length: ");
        if (r >= 0)
                r = out_uint(o, length);
        if (r >= 0)
                r = OUT_LIT(o, "\r\n");
        return r;
}

/* Fields of a request the proxy writes itself: never copied, whatever a Connection field says. */
static bool written_by_proxy(const Head *h, unsigned i) {
        static const char *const own[] = {"Host",         "Content-Length",    "Transfer-Encoding",
                                          "X-Forwarded-For", "X-Forwarded-Proto", "X-Forwarded-Host",
                                          "X-Request-Id"};

        for (size_t k = 0; k < ELEMENTSOF(own); k++)
                if (head_field_is(h, i, own[k]))
                        return true;
        return false;
}

int head_render_request(const Head *h, const char *method, const RequestForward *f, Framing framing,
                        uint64_t length, const char *client_ip, const char *request_id, HeadOut *out) {
        bool first = true, connection = false;
        int r;

        for (unsigned i = 0; i < h->n && !connection; i++)
                connection = head_field_is(h, i, "Connection");
        r = out_str(out, method);
        if (r >= 0)
                r = OUT_LIT(out, " ");
        if (r >= 0)
                r = out_add(out, f->target, f->target_len);
        if (r >= 0)
                r = OUT_LIT(out, " HTTP/1.1\r\n");
        for (unsigned i = 0; r >= 0 && i < h->n; i++)
                if (!written_by_proxy(h, i) && !(connection ? is_hop_by_hop(h, i) : is_fixed_hop_by_hop(h, i)))
                        r = out_field(out, h, i);
        if (r >= 0)
                r = OUT_LIT(out, "Host: ");
        if (r >= 0)
                r = out_add(out, f->host, f->host_len);
        if (r >= 0)
                r = OUT_LIT(out, "\r\n");
        if (r >= 0)
                r = out_framing(out, framing, length);
        /* X-Forwarded-For: every one the client sent, in order, then the client itself. */
        if (r >= 0)
                r = OUT_LIT(out, "X-Forwarded-For: ");
        for (unsigned i = 0; r >= 0 && i < h->n; i++) {
                size_t len;
                const char *v;

                if (!head_field_is(h, i, "X-Forwarded-For"))
                        continue;
                v = head_field_value(h, i, &len);
                if (len == 0)
                        continue;
                if (!first)
                        r = OUT_LIT(out, ", ");
                if (r >= 0)
                        r = out_add(out, v, len);
                first = false;
        }
        if (r >= 0 && !first)
                r = OUT_LIT(out, ", ");
        if (r >= 0)
                r = out_str(out, client_ip);
        if (r >= 0)
                r = OUT_LIT(out, "\r\nX-Forwarded-Proto: http\r\n");
        if (r >= 0 && f->host_len > 0) {
                r = OUT_LIT(out, "X-Forwarded-Host: ");
                if (r >= 0)
                        r = out_add(out, f->host, f->host_len);
                if (r >= 0)
                        r = OUT_LIT(out, "\r\n");
        }
        if (r >= 0)
                r = OUT_LIT(out, "X-Request-Id: ");
        if (r >= 0)
                r = out_str(out, request_id);
        if (r >= 0)
                r = OUT_LIT(out, "\r\n\r\n");
        return r;
}

int head_render_response(const Head *h, unsigned status, Framing framing, uint64_t length,
                         const char *connection, HeadOut *out) {
        bool has_connection = false;
        int r;

        for (unsigned i = 0; i < h->n && !has_connection; i++)
                has_connection = head_field_is(h, i, "Connection");
        r = OUT_LIT(out, "HTTP/1.1 ");
        if (r >= 0)
                r = out_uint(out, status);
        if (r >= 0)
                r = OUT_LIT(out, " ");
        if (r >= 0)
                r = out_add(out, h->store, h->first_len);
        if (r >= 0)
                r = OUT_LIT(out, "\r\n");
        for (unsigned i = 0; r >= 0 && i < h->n; i++)
                if (!(has_connection ? is_hop_by_hop(h, i) : is_fixed_hop_by_hop(h, i)) &&
                    !head_field_is(h, i, "Content-Length") && !head_field_is(h, i, "Transfer-Encoding"))
                        r = out_field(out, h, i);
        if (r >= 0)
                r = out_framing(out, framing, length);
        if (r >= 0 && connection) {
                r = OUT_LIT(out, "Connection: ");
                if (r >= 0)
                        r = out_str(out, connection);
                if (r >= 0)
                        r = OUT_LIT(out, "\r\n");
        }
        if (r >= 0)
                r = OUT_LIT(out, "\r\n");
        return r;
}
