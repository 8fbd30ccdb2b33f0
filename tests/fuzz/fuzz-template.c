/* Fuzzes the kernel command-line template (template_validate, template_expand). Input:
 * NUL-separated fields: the template, then the values of ip, prefix, netmask, gateway,
 * instance, service and version (a missing one is NULL). Invariants: validate and expand
 * agree; an error points at a stray brace or unknown placeholder inside the template and
 * leaves no output; a success equals an independent expansion (so no NUL inside, nothing
 * lost), and with brace-free values and no "{{"/"}}" escapes no brace survives at all. */
#include <errno.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "template.h"

static const char *const names[] = {"ip", "prefix", "netmask", "gateway", "instance", "service", "version"};

/* The grammar as the header states it, written out separately: returns the expansion (a
 * malloc'd string, its length in *ret_len) or NULL with the offending span in *ret_bad_*. */
static char *reference_expand(const char *t, const char *const values[7], size_t *ret_len,
                              size_t *ret_bad_at, size_t *ret_bad_len) {
        size_t n = strlen(t), cap = 16, len = 0;
        char *out = malloc(cap);

        FUZZ_CHECK(out, "out of memory");
        for (size_t i = 0; i < n;) {
                const char *piece;
                size_t piece_len;

                if (t[i] == '{' && t[i + 1] == '{')
                        piece = "{", piece_len = 1, i += 2;
                else if (t[i] == '}' && t[i + 1] == '}')
                        piece = "}", piece_len = 1, i += 2;
                else if (t[i] == '}') {
                        *ret_bad_at = i, *ret_bad_len = 1;
                        free(out);
                        return NULL;
                } else if (t[i] == '{') {
                        size_t close = i + 1;
                        ssize_t found = -1;
                        while (close < n && t[close] != '}')
                                close++;
                        for (size_t k = 0; close < n && k < ELEMENTSOF(names); k++)
                                if (close - i - 1 == strlen(names[k]) &&
                                    memcmp(t + i + 1, names[k], close - i - 1) == 0)
                                        found = (ssize_t) k;
                        if (found < 0) {
                                *ret_bad_at = i, *ret_bad_len = close < n ? close - i + 1 : n - i;
                                free(out);
                                return NULL;
                        }
                        piece = values[found] ? values[found] : "", piece_len = strlen(piece), i = close + 1;
                } else
                        piece = t + i, piece_len = 1, i++;
                while (len + piece_len + 1 > cap) {
                        out = realloc(out, cap *= 2);
                        FUZZ_CHECK(out, "out of memory");
                }
                memcpy(out + len, piece, piece_len);
                len += piece_len;
        }
        out[len] = 0;
        *ret_len = len;
        return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        FuzzFields f;
        const char *tmpl, *values[7], *bad = NULL;
        size_t bad_len = 0, want_len = 0, want_bad_at = 0, want_bad_len = 0;
        char sentinel[1], *out = sentinel;
        bool plain;
        int r, v;

        FUZZ_CHECK(fuzz_fields_split(data, size, &f) == 0, "out of memory");
        tmpl = fuzz_field(&f, 0);
        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                values[i] = fuzz_field(&f, i + 1);
        TemplateVars vars = {
                .ip = values[0],
                .prefix = values[1],
                .netmask = values[2],
                .gateway = values[3],
                .instance = values[4],
                .service = values[5],
                .version = values[6],
        };
        _cleanup_free_ char *want = reference_expand(tmpl, values, &want_len, &want_bad_at, &want_bad_len);

        v = template_validate(tmpl, &bad, &bad_len);
        r = template_expand(tmpl, &vars, &out);
        FUZZ_CHECK(v == 0 || v == -EINVAL, "template_validate returned %d", v);
        FUZZ_CHECK(r == v, "template_expand %d but template_validate %d", r, v);
        FUZZ_CHECK((r == 0) == (want != NULL), "template_expand %d, the grammar says %s", r,
                   want ? "valid" : "invalid");
        if (r < 0) {
                FUZZ_CHECK(out == sentinel, "output written on failure");
                FUZZ_CHECK(bad == tmpl + want_bad_at && bad_len == want_bad_len,
                           "error at offset %td+%zu, expected %zu+%zu", bad - tmpl, bad_len, want_bad_at,
                           want_bad_len);
                FUZZ_CHECK(*bad == '{' || *bad == '}', "error points at '%c', not a brace", *bad);
                fuzz_fields_free(&f);
                return 0;
        }
        FUZZ_CHECK(out && out != sentinel, "no output on success");
        FUZZ_CHECK(strlen(out) == want_len && streq(out, want), "expanded to '%s', expected '%s'", out,
                   want);

        plain = !strstr(tmpl, "{{") && !strstr(tmpl, "}}");
        for (size_t i = 0; i < ELEMENTSOF(values); i++)
                plain = plain && (!values[i] || !strpbrk(values[i], "{}"));
        if (plain)
                FUZZ_CHECK(!strpbrk(out, "{}"), "a brace survived expansion: '%s'", out);
        for (size_t i = 0; plain && i < ELEMENTSOF(names); i++) {
                char placeholder[16];
                snprintf(placeholder, sizeof placeholder, "{%s}", names[i]);
                FUZZ_CHECK(!strstr(out, placeholder), "%s left in '%s'", placeholder, out);
        }
        free(out);
        fuzz_fields_free(&f);
        return 0;
}
