/* A minimal TAP producer for the C unit tests: ok(), is_int(), is_str(), then
 * tap_done() prints the plan and returns the exit status. */
#pragma once

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static unsigned tap_count, tap_failed;

__attribute__((format(printf, 2, 3))) static inline int ok(int cond, const char *fmt, ...) {
        va_list ap;

        tap_count++;
        if (!cond)
                tap_failed++;
        printf("%sok %u - ", cond ? "" : "not ", tap_count);
        va_start(ap, fmt);
        vprintf(fmt, ap);
        va_end(ap);
        printf("\n");
        fflush(stdout);
        return cond;
}

#define is_int(got, want, ...)                                                                   \
        do {                                                                                     \
                long long _g = (long long) (got), _w = (long long) (want);                       \
                if (!ok(_g == _w, __VA_ARGS__))                                                  \
                        printf("#   got %lld, want %lld (%s)\n", _g, _w, #got);                  \
        } while (0)

#define is_str(got, want, ...)                                                                   \
        do {                                                                                     \
                const char *_g = (got), *_w = (want);                                            \
                if (!ok(_g && _w && strcmp(_g, _w) == 0, __VA_ARGS__))                           \
                        printf("#   got '%s', want '%s'\n", _g ? _g : "(null)", _w ? _w : "(null)"); \
        } while (0)

static inline int tap_done(void) {
        printf("1..%u\n", tap_count);
        if (tap_failed)
                printf("# %u of %u failed\n", tap_failed, tap_count);
        return tap_failed ? 1 : 0;
}
