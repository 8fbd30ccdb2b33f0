/* Time helpers. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "macro.h"
#include "timeutil.h"

static usec_t now(clockid_t clock) {
        struct timespec ts;

        clock_gettime(clock, &ts);
        return (usec_t) ts.tv_sec * USEC_PER_SEC + (usec_t) ts.tv_nsec / 1000;
}

usec_t now_realtime(void) {
        return now(CLOCK_REALTIME);
}

usec_t now_monotonic(void) {
        return now(CLOCK_MONOTONIC);
}

void format_rfc3339(usec_t t, char out[static 32]) {
        time_t sec = (time_t) (t / USEC_PER_SEC);
        struct tm tm;
        char buf[24];

        gmtime_r(&sec, &tm);
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(out, 32, "%s.%03uZ", buf, (unsigned) ((t % USEC_PER_SEC) / 1000));
}

int duration_parse_ms(const char *s, uint64_t *ret_ms) {
        static const struct {
                const char *suffix;
                uint64_t ms;
        } units[] = { { "ms", 1 }, { "s", 1000 }, { "m", 60000 }, { "h", 3600000 } };
        unsigned long long v = 0;
        const char *p = s;

        if (!s || !*s)
                return -EINVAL;
        for (; *p >= '0' && *p <= '9'; p++) {
                v = v * 10 + (unsigned) (*p - '0');
                if (v > 1000000000ULL)
                        return -ERANGE;
        }
        if (p == s)
                return -EINVAL;
        for (size_t i = 0; i < ELEMENTSOF(units); i++)
                if (streq(p, units[i].suffix)) {
                        *ret_ms = v * units[i].ms;
                        return 0;
                }
        return -EINVAL;
}

void duration_format_ms(uint64_t ms, char out[static 32]) {
        if (ms != 0 && ms % 3600000 == 0)
                snprintf(out, 32, "%lluh", (unsigned long long) (ms / 3600000));
        else if (ms != 0 && ms % 60000 == 0)
                snprintf(out, 32, "%llum", (unsigned long long) (ms / 60000));
        else if (ms % 1000 == 0)
                snprintf(out, 32, "%llus", (unsigned long long) (ms / 1000));
        else
                snprintf(out, 32, "%llums", (unsigned long long) ms);
}
