/* Command-line template expansion. Grammar: literal text, "{name}" for a known variable,
 * "{{" and "}}" for literal braces. Everything else is an error. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "macro.h"
#include "template.h"

static const char *const var_names[] = { "ip", "prefix", "netmask", "gateway", "instance", "service", "version" };

static const char *var_value(const TemplateVars *v, size_t index) {
        const char *values[] = { v->ip, v->prefix, v->netmask, v->gateway, v->instance, v->service, v->version };
        return values[index] ? values[index] : "";
}

/* Walks the template; calls emit() for each literal run or variable. Returns 0 or -EINVAL. */
static int template_walk(const char *tmpl, const char **ret_bad, size_t *ret_bad_len,
                         void (*emit)(void *ctx, const char *s, size_t n, ssize_t var), void *ctx) {
        const char *p = tmpl;

        while (*p) {
                if (p[0] == '{' && p[1] == '{') {
                        emit(ctx, "{", 1, -1);
                        p += 2;
                } else if (p[0] == '}' && p[1] == '}') {
                        emit(ctx, "}", 1, -1);
                        p += 2;
                } else if (*p == '{') {
                        const char *end = strchr(p, '}');
                        ssize_t found = -1;

                        if (end)
                                for (size_t i = 0; i < ELEMENTSOF(var_names); i++)
                                        if (strlen(var_names[i]) == (size_t) (end - p - 1) &&
                                            strncmp(var_names[i], p + 1, (size_t) (end - p - 1)) == 0)
                                                found = (ssize_t) i;
                        if (found < 0) {
                                if (ret_bad) {
                                        *ret_bad = p;
                                        *ret_bad_len = end ? (size_t) (end - p + 1) : strlen(p);
                                }
                                return -EINVAL;
                        }
                        emit(ctx, NULL, 0, found);
                        p = end + 1;
                } else if (*p == '}') {
                        if (ret_bad) {
                                *ret_bad = p;
                                *ret_bad_len = 1;
                        }
                        return -EINVAL;
                } else {
                        size_t n = strcspn(p, "{}");
                        emit(ctx, p, n, -1);
                        p += n;
                }
        }
        return 0;
}

static void emit_nothing(void *ctx, const char *s, size_t n, ssize_t var) {
}

int template_validate(const char *tmpl, const char **ret_bad, size_t *ret_bad_len) {
        return template_walk(tmpl, ret_bad, ret_bad_len, emit_nothing, NULL);
}

typedef struct Expansion {
        FILE *out;
        const TemplateVars *vars;
} Expansion;

static void emit_text(void *ctx, const char *s, size_t n, ssize_t var) {
        Expansion *x = ctx;

        if (var >= 0)
                fputs(var_value(x->vars, (size_t) var), x->out);
        else
                fwrite(s, 1, n, x->out);
}

int template_expand(const char *tmpl, const TemplateVars *vars, char **ret) {
        char *buf = NULL;
        size_t size = 0;
        Expansion x = { .vars = vars };
        int r;

        x.out = open_memstream(&buf, &size);
        if (!x.out)
                return -ENOMEM;
        r = template_walk(tmpl, NULL, NULL, emit_text, &x);
        if (fclose(x.out) != 0 && r == 0)
                r = -ENOMEM;
        if (r < 0) {
                free(buf);
                return r;
        }
        *ret = buf;
        return 0;
}
