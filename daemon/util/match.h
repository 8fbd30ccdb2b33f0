/* Which service of a shared listener a request is for: each service may name Host patterns
 * ("api.example.com", or "*.example.com" for any name under it) and a path prefix. The most
 * specific match wins: an exact host before a wildcard, a wildcard before "any host"; then the
 * longest path prefix. Two services on one listener conflict when some request would match both
 * equally well. Pure; used by the API (refusing conflicts) and the proxy (routing). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define MATCH_MAX_HOSTS 16

typedef struct Match {
        const char *hosts[MATCH_MAX_HOSTS]; /* lowercase; "*.example.com" wildcards */
        size_t n_hosts;                     /* 0: any host */
        const char *path_prefix;            /* NULL or "": "/" */
} Match;

/* A host pattern as a service may declare it: a DNS name of letters, digits, '-' and '.', in
 * lowercase, or one under a leading "*.". */
bool match_host_pattern_valid(const char *pattern);
/* A path prefix: starts with '/', printable ASCII without spaces, at most 256 bytes. */
bool match_path_prefix_valid(const char *prefix);

/* How well M matches a request for HOST (its Host header without the port, any case) and PATH
 * (the request target's path): -1 not at all, else a score where more is more specific. */
long match_score(const Match *m, const char *host, const char *path);
/* Whether A and B would both match some request equally well (so neither may be added to a
 * listener that has the other); *RET_WHAT describes the overlap ("host api.example.com, path /v2/"). */
bool match_conflict(const Match *a, const Match *b, char *ret_what, size_t size);
