/* Conditions on numbers (condition.h). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "condition.h"

static const char *skip_blanks(const char *s) {
        while (*s == ' ' || *s == '\t')
                s++;
        return s;
}

/* A finite number at *S, advancing *S past it. */
static int number(const char **s, double *ret) {
        char *end;
        double v;

        *s = skip_blanks(*s);
        if (!**s || strchr("+-.0123456789", **s) == NULL)
                return -EINVAL;
        errno = 0;
        v = strtod(*s, &end);
        if (end == *s || errno || !isfinite(v))
                return -EINVAL;
        *s = end;
        *ret = v;
        return 0;
}

int condition_parse(const char *text, Condition *ret) {
        static const struct {
                const char *text;
                ConditionOp op;
        } ops[] = { { "<=", COND_LE }, { ">=", COND_GE }, { "==", COND_EQ }, { "<", COND_LT }, { ">", COND_GT } };
        const char *s = skip_blanks(text ? text : "");
        Condition c = {};

        for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
                if (strncmp(s, ops[i].text, strlen(ops[i].text)) == 0) {
                        s += strlen(ops[i].text);
                        c.op = ops[i].op;
                        if (number(&s, &c.a) < 0 || *skip_blanks(s))
                                return -EINVAL;
                        *ret = c;
                        return 0;
                }
        /* A range: split at "..", which a number never holds. */
        const char *dots = strstr(s, "..");
        char first[64];
        const char *f = first;
        if (!dots || (size_t) (dots - s) >= sizeof first)
                return -EINVAL;
        memcpy(first, s, (size_t) (dots - s));
        first[dots - s] = 0;
        c.op = COND_RANGE;
        s = dots + 2;
        if (number(&f, &c.a) < 0 || *skip_blanks(f) || number(&s, &c.b) < 0 || *skip_blanks(s) || c.a > c.b)
                return -EINVAL;
        *ret = c;
        return 0;
}

bool condition_holds(const Condition *c, double v) {
        if (isnan(v))
                return false;
        switch (c->op) {
        case COND_LT:
                return v < c->a;
        case COND_LE:
                return v <= c->a;
        case COND_GT:
                return v > c->a;
        case COND_GE:
                return v >= c->a;
        case COND_EQ:
                return v == c->a;
        case COND_RANGE:
                return v >= c->a && v <= c->b;
        }
        return false;
}

void condition_format(const Condition *c, char out[static 64]) {
        static const char *const names[] = { [COND_LT] = "<", [COND_LE] = "<=", [COND_GT] = ">", [COND_GE] = ">=",
                                             [COND_EQ] = "==" };
        if (c->op == COND_RANGE)
                snprintf(out, 64, "%g..%g", c->a, c->b);
        else
                snprintf(out, 64, "%s %g", names[c->op], c->a);
}
