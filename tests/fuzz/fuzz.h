/* Shared by the fuzz harnesses: the libFuzzer entry points and FUZZ_CHECK, which reports a
 * broken invariant and aborts, so libFuzzer (or the replay runner) records the input. */
#pragma once

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
/* Optional one-time set-up; the replay runner calls it too when a harness defines it. */
int LLVMFuzzerInitialize(int *argc, char ***argv);

#define FUZZ_CHECK(cond, ...)                                                                               \
        do {                                                                                                \
                if (!(cond)) {                                                                              \
                        fprintf(stderr, "%s:%d: invariant broken: %s: ", __FILE__, __LINE__, #cond);        \
                        fprintf(stderr, __VA_ARGS__);                                                       \
                        fprintf(stderr, "\n");                                                              \
                        abort();                                                                            \
                }                                                                                           \
        } while (0)

/* The fuzz input cut into NUL-separated fields, each a NUL-terminated copy: field N is
 * fields[N], NULL past the last one. Free with fuzz_fields_free(). */
typedef struct FuzzFields {
        char *copy;
        char **fields;
        size_t n;
} FuzzFields;

static inline int fuzz_fields_split(const uint8_t *data, size_t size, FuzzFields *ret) {
        size_t n = 1;

        for (size_t i = 0; i < size; i++)
                n += data[i] == 0;
        ret->copy = malloc(size + 1);
        ret->fields = calloc(n + 1, sizeof *ret->fields);
        if (!ret->copy || !ret->fields) {
                free(ret->copy);
                free(ret->fields);
                return -1;
        }
        if (size > 0)
                memcpy(ret->copy, data, size);
        ret->copy[size] = 0;
        ret->n = 0;
        for (char *p = ret->copy; ret->n < n; p += strlen(p) + 1)
                ret->fields[ret->n++] = p;
        return 0;
}

static inline const char *fuzz_field(const FuzzFields *f, size_t i) {
        return i < f->n ? f->fields[i] : NULL;
}

static inline void fuzz_fields_free(FuzzFields *f) {
        free(f->copy);
        free(f->fields);
}
