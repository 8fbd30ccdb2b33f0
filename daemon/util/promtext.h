/* The Prometheus text exposition format, version 0.0.4: families with # HELP and # TYPE,
 * samples with escaped label values, histograms with cumulative buckets, _sum and _count.
 * Writes into a growing buffer; a failed allocation sticks (promtext_take() then NULL). */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct PromText {
        char *data;
        size_t len, allocated;
        bool failed;
} PromText;

/* LABELS: NULL-terminated name/value pairs, { "service", "web", "code", "2xx", NULL }. */
void promtext_family(PromText *p, const char *name, const char *type, const char *help);
void promtext_sample(PromText *p, const char *name, const char *const *labels, double value);
void promtext_sample_u64(PromText *p, const char *name, const char *const *labels, uint64_t value);
/* A histogram: BOUNDS (ascending, N of them, in the family's unit) and the COUNTS per bucket
 * (N + 1: the last is above every bound); cumulated here, with _sum and _count. */
void promtext_histogram(PromText *p, const char *name, const char *const *labels, const double *bounds,
                        const uint64_t *counts, size_t n, double sum);
/* The text (malloc'd, NUL-terminated), or NULL after an allocation failure; P is reset. */
char *promtext_take(PromText *p, size_t *ret_len);
void promtext_done(PromText *p);
