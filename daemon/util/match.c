/* Host and path-prefix matching on a shared listener (match.h). */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "match.h"

bool match_host_pattern_valid(const char *p) {
        size_t n;

        if (!p)
                return false;
        if (strncmp(p, "*.", 2) == 0)
                p += 2;
        n = strlen(p);
        if (n == 0 || n > 253 || p[0] == '.' || p[n - 1] == '.' || strstr(p, ".."))
                return false;
        for (const char *c = p; *c; c++)
                if (!(islower((unsigned char) *c) || isdigit((unsigned char) *c) || *c == '-' || *c == '.'))
                        return false;
        return true;
}

bool match_path_prefix_valid(const char *prefix) {
        if (!prefix || prefix[0] != '/' || strlen(prefix) > 256)
                return false;
        for (const char *c = prefix; *c; c++)
                if (*c <= ' ' || *c >= 0x7f)
                        return false;
        return true;
}

static const char *prefix_of(const Match *m) {
        return m->path_prefix && m->path_prefix[0] ? m->path_prefix : "/";
}

/* How well HOST matches PATTERN: exactly beats any wildcard, and a longer wildcard beats a
 * shorter one (*.a.example.com before *.example.com); 0: not at all. */
static long host_score(const char *pattern, const char *host) {
        size_t h = strlen(host), s;

        if (strncmp(pattern, "*.", 2) != 0)
                return strcasecmp(pattern, host) == 0 ? 1000 : 0;
        s = strlen(pattern + 1); /* ".example.com" */
        return h > s && strcasecmp(host + h - s, pattern + 1) == 0 ? (long) s : 0;
}

long match_score(const Match *m, const char *host, const char *path) {
        const char *prefix = prefix_of(m);
        long best = 0;
        char name[256];
        size_t n;

        if (strncmp(path ? path : "/", prefix, strlen(prefix)) != 0)
                return -1;
        if (m->n_hosts > 0) {
                /* The Host header's name, without a port. */
                n = host ? strcspn(host, ":") : 0;
                if (n == 0 || n >= sizeof name)
                        return -1;
                memcpy(name, host, n);
                name[n] = 0;
                if (name[n - 1] == '.') /* "example.com." names the same host */
                        name[n - 1] = 0;
                for (size_t i = 0; i < m->n_hosts; i++) {
                        long s = host_score(m->hosts[i], name);
                        if (s > best)
                                best = s;
                }
                if (best == 0)
                        return -1;
        }
        /* Host specificity first (exact, longer wildcards, any), then the prefix's length (< 1000). */
        return best * 1000 + (long) strlen(prefix);
}

bool match_conflict(const Match *a, const Match *b, char *what, size_t size) {
        if (strcmp(prefix_of(a), prefix_of(b)) != 0)
                return false;
        if (a->n_hosts == 0 || b->n_hosts == 0) {
                if (a->n_hosts == 0 && b->n_hosts == 0) {
                        snprintf(what, size, "any host, path prefix %s", prefix_of(a));
                        return true;
                }
                return false; /* a named host always beats "any" */
        }
        for (size_t i = 0; i < a->n_hosts; i++)
                for (size_t j = 0; j < b->n_hosts; j++)
                        if (strcmp(a->hosts[i], b->hosts[j]) == 0) {
                                snprintf(what, size, "host %s, path prefix %s", a->hosts[i], prefix_of(a));
                                return true;
                        }
        return false;
}
