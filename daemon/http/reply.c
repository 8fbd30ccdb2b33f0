/* The reply helpers the handlers and dispatch use: setting a request's answer, and the JSON
 * text of answers and error envelopes. No I/O: server.c sends what they set. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

int reply_json(Request *r, unsigned status, json_t *j) {
        json_decref(r->reply);
        r->status = status;
        r->reply = j;
        return j ? 0 : -ENOMEM;
}

int reply_bytes(Request *r, unsigned status, char *buf, size_t size) {
        free(r->reply_text);
        r->status = status;
        r->reply_text = buf;
        r->reply_text_size = buf ? size : 0;
        return buf ? 0 : -ENOMEM;
}

int reply_text(Request *r, unsigned status, char *text) {
        return reply_bytes(r, status, text, text ? strlen(text) : 0);
}

int reply_error(Request *r, AviaryError code, const char *fmt, ...) {
        va_list ap;

        r->error.code = code;
        va_start(ap, fmt);
        vsnprintf(r->error.message, sizeof r->error.message, fmt, ap);
        va_end(ap);
        return (int) code;
}

void request_set_resource(Request *r, const char *fmt, ...) {
        va_list ap;

        va_start(ap, fmt);
        vsnprintf(r->resource, sizeof r->resource, fmt, ap);
        va_end(ap);
}

char *error_envelope(AviaryError code, const char *message, const char *request_id) {
        json_t *j = json_pack("{s:{s:s,s:s,s:s}}", "error", "code", aviary_error_code(code), "message", message,
                              "request_id", request_id);
        char *text = j ? json_dumps(j, JSON_COMPACT) : NULL;

        json_decref(j);
        if (text) {
                size_t n = strlen(text);
                char *nl = realloc(text, n + 2);
                if (nl) {
                        nl[n] = '\n', nl[n + 1] = 0;
                        text = nl;
                }
        }
        return text;
}

char *reply_dump(json_t *j) {
        char *text = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15)), *nl;
        size_t n;

        if (!text)
                return NULL;
        n = strlen(text);
        nl = realloc(text, n + 2);
        if (!nl)
                return text;
        nl[n] = '\n', nl[n + 1] = 0;
        return nl;
}
