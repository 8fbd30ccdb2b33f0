/* Prometheus text exposition (promtext.h). */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "macro.h"
#include "promtext.h"

static void append(PromText *p, const char *s, size_t n) {
        if (p->failed)
                return;
        if (p->len + n + 1 > p->allocated) {
                size_t want = p->allocated ? p->allocated * 2 : 4096;
                while (want < p->len + n + 1)
                        want *= 2;
                char *d = realloc(p->data, want);
                if (!d) {
                        p->failed = true;
                        return;
                }
                p->data = d;
                p->allocated = want;
        }
        memcpy(p->data + p->len, s, n);
        p->len += n;
        p->data[p->len] = 0;
}

static void appends(PromText *p, const char *s) {
        append(p, s, strlen(s));
}

static void appendf(PromText *p, const char *fmt, ...) _printf_(2, 3);
static void appendf(PromText *p, const char *fmt, ...) {
        char buf[128];
        va_list ap;
        int n;

        va_start(ap, fmt);
        n = vsnprintf(buf, sizeof buf, fmt, ap);
        va_end(ap);
        if (n > 0)
                append(p, buf, (size_t) n < sizeof buf ? (size_t) n : sizeof buf - 1);
}

/* A label value or HELP text: backslash, double quote (values only) and newline escaped. */
static void append_escaped(PromText *p, const char *s, bool quote) {
        for (; *s; s++) {
                if (*s == '\\')
                        appends(p, "\\\\");
                else if (*s == '\n')
                        appends(p, "\\n");
                else if (*s == '"' && quote)
                        appends(p, "\\\"");
                else
                        append(p, s, 1);
        }
}

void promtext_family(PromText *p, const char *name, const char *type, const char *help) {
        appendf(p, "# HELP %s ", name);
        append_escaped(p, help, false);
        appendf(p, "\n# TYPE %s %s\n", name, type);
}

static void append_labels(PromText *p, const char *const *labels, const char *extra_name, const char *extra_value) {
        bool any = false;

        for (size_t i = 0; labels && labels[i] && labels[i + 1]; i += 2) {
                appends(p, any ? "," : "{");
                appends(p, labels[i]);
                appends(p, "=\"");
                append_escaped(p, labels[i + 1], true);
                appends(p, "\"");
                any = true;
        }
        if (extra_name) {
                appends(p, any ? "," : "{");
                appends(p, extra_name);
                appends(p, "=\"");
                appends(p, extra_value);
                appends(p, "\"");
                any = true;
        }
        if (any)
                appends(p, "}");
}

static void append_value(PromText *p, double v) {
        if (isnan(v))
                appends(p, "NaN");
        else if (isinf(v))
                appends(p, v > 0 ? "+Inf" : "-Inf");
        else if (v == (double) (int64_t) v && fabs(v) < 9e15)
                appendf(p, "%lld", (long long) v);
        else
                appendf(p, "%.17g", v);
}

void promtext_sample(PromText *p, const char *name, const char *const *labels, double value) {
        appends(p, name);
        append_labels(p, labels, NULL, NULL);
        appends(p, " ");
        append_value(p, value);
        appends(p, "\n");
}

void promtext_sample_u64(PromText *p, const char *name, const char *const *labels, uint64_t value) {
        appends(p, name);
        append_labels(p, labels, NULL, NULL);
        appendf(p, " %llu\n", (unsigned long long) value);
}

void promtext_histogram(PromText *p, const char *name, const char *const *labels, const double *bounds,
                        const uint64_t *counts, size_t n, double sum) {
        uint64_t cumulative = 0;
        char le[64];

        for (size_t i = 0; i <= n; i++) {
                cumulative += counts[i];
                if (i < n)
                        snprintf(le, sizeof le, "%.15g", bounds[i]); /* "0.1", not 0.10000000000000001 */
                else
                        snprintf(le, sizeof le, "+Inf");
                appendf(p, "%s_bucket", name);
                append_labels(p, labels, "le", le);
                appendf(p, " %llu\n", (unsigned long long) cumulative);
        }
        appendf(p, "%s_sum", name);
        append_labels(p, labels, NULL, NULL);
        appends(p, " ");
        append_value(p, sum);
        appendf(p, "\n%s_count", name);
        append_labels(p, labels, NULL, NULL);
        appendf(p, " %llu\n", (unsigned long long) cumulative);
}

char *promtext_take(PromText *p, size_t *ret_len) {
        char *d = p->failed ? NULL : p->data;

        if (p->failed)
                free(p->data);
        if (d && ret_len)
                *ret_len = p->len;
        if (!d && !p->failed) {
                d = strdup("");
                if (ret_len)
                        *ret_len = 0;
        }
        *p = (PromText) {};
        return d;
}

void promtext_done(PromText *p) {
        free(p->data);
        *p = (PromText) {};
}
