/* Suggestions for typos: the optimal string alignment distance (Levenshtein plus adjacent
 * transpositions, so "stesp" is one edit from "steps"), and the closest candidates. Close
 * means at most two edits, and fewer than half the letters typed (so "tcsh" suggests nothing), or
 * what was typed is the start of the candidate ("serv" for "service"), as kubectl does. */
#include <ctype.h>
#include <stdint.h>
#include <string.h>

#include "macro.h"
#include "suggest.h"

#define SUGGEST_MAX_EDITS 2
#define SUGGEST_MAX_LENGTH 64

size_t suggest_distance(const char *a, const char *b) {
        size_t n = strlen(a), m = strlen(b);
        /* Three rows of the dynamic-programming table: i-2, i-1, i. */
        size_t rows[3][SUGGEST_MAX_LENGTH + 1];

        if (n > SUGGEST_MAX_LENGTH || m > SUGGEST_MAX_LENGTH)
                return SIZE_MAX;
        for (size_t j = 0; j <= m; j++)
                rows[0][j] = j;
        for (size_t i = 1; i <= n; i++) {
                /* The rows are used in turn: row i is i % 3, so i - 1 and i - 2 are the other two. */
                size_t *cur = rows[i % 3], *prev = rows[(i + 2) % 3], *two = rows[(i + 1) % 3];
                cur[0] = i;
                for (size_t j = 1; j <= m; j++) {
                        char x = (char) tolower((unsigned char) a[i - 1]), y = (char) tolower((unsigned char) b[j - 1]);
                        size_t cost = x != y;
                        size_t best = prev[j] + 1;
                        if (cur[j - 1] + 1 < best)
                                best = cur[j - 1] + 1;
                        if (prev[j - 1] + cost < best)
                                best = prev[j - 1] + cost;
                        if (i > 1 && j > 1 && x == tolower((unsigned char) b[j - 2]) &&
                            tolower((unsigned char) a[i - 2]) == y && two[j - 2] + 1 < best)
                                best = two[j - 2] + 1;
                        cur[j] = best;
                }
        }
        return rows[n % 3][m];
}

static bool is_prefix(const char *typed, const char *candidate) {
        size_t n = strlen(typed);
        return n >= 2 && n < strlen(candidate) && strncasecmp(typed, candidate, n) == 0;
}

void suggest_add(Suggestions *s, const char *candidate) {
        size_t d = suggest_distance(s->typed, candidate);

        if (d == 0)
                return; /* what was typed is no typo of itself */
        if (!(d <= SUGGEST_MAX_EDITS && 2 * d < strlen(s->typed)) && !is_prefix(s->typed, candidate))
                return;
        if (s->n_best > 0 && d > s->distance)
                return;
        if (s->n_best == 0 || d < s->distance) {
                s->n_best = 0;
                s->distance = d;
        }
        for (size_t i = 0; i < s->n_best; i++)
                if (streq(s->best[i], candidate))
                        return;
        if (s->n_best < SUGGEST_MAX)
                s->best[s->n_best++] = candidate;
}

const char *suggest_text(const Suggestions *s, const char *prefix) {
        static char text[512];
        size_t at = 0;

        text[0] = '\0';
        for (size_t i = 0; i < s->n_best && at < sizeof(text); i++) {
                const char *sep = i == 0 ? " Did you mean " : i + 1 == s->n_best ? " or " : ", ";
                at += (size_t) snprintf(text + at, sizeof(text) - at, "%s\"%s%s\"", sep, prefix, s->best[i]);
        }
        if (s->n_best > 0 && at < sizeof(text))
                snprintf(text + at, sizeof(text) - at, "?");
        return text;
}
