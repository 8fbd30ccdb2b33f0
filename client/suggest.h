/* "Did you mean ...?" for a mistyped command, option or value: the candidates closest to what
 * was typed by Damerau-Levenshtein distance (adjacent transpositions count one), or those it
 * is a prefix of. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define SUGGEST_MAX 4

typedef struct Suggestions {
        const char *typed;
        const char *best[SUGGEST_MAX]; /* borrowed */
        size_t n_best;
        size_t distance; /* of those in best */
} Suggestions;

/* The optimal string alignment distance between A and B, ignoring ASCII case. */
size_t suggest_distance(const char *a, const char *b);

/* Considers CANDIDATE; keeps it when it is close to what was typed and at least as close as
 * the best so far. */
void suggest_add(Suggestions *s, const char *candidate);

/* " Did you mean \"x\"?" (or "\"x\" or \"y\"") with PREFIX before each, or "" when nothing
 * was close. Returns a static buffer. */
const char *suggest_text(const Suggestions *s, const char *prefix);
