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

static void put_digits(char *p, unsigned v, int n) {
        while (n-- > 0) {
                p[n] = (char) ('0' + v % 10);
                v /= 10;
        }
}

/* Without gmtime_r, strftime and snprintf (a list of events formats two times per row): the
 * civil date from days since the epoch (Howard Hinnant's days_from_civil, inverted). */
void format_rfc3339(usec_t t, char out[static 32]) {
        uint64_t sec = t / USEC_PER_SEC, days = sec / 86400, rem = sec % 86400;
        int64_t z = (int64_t) days + 719468, era = z / 146097;
        unsigned doe = (unsigned) (z - era * 146097);
        unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
        unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        unsigned mp = (5 * doy + 2) / 153;
        unsigned day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
        unsigned year = (unsigned) (yoe + era * 400 + (month <= 2));

        if (year > 9999) /* not a date this API will see: keep the format's width */
                year = 9999;
        put_digits(out, year, 4);
        out[4] = '-';
        put_digits(out + 5, month, 2);
        out[7] = '-';
        put_digits(out + 8, day, 2);
        out[10] = 'T';
        put_digits(out + 11, (unsigned) (rem / 3600), 2);
        out[13] = ':';
        put_digits(out + 14, (unsigned) (rem / 60 % 60), 2);
        out[16] = ':';
        put_digits(out + 17, (unsigned) (rem % 60), 2);
        out[19] = '.';
        put_digits(out + 20, (unsigned) ((t % USEC_PER_SEC) / 1000), 3);
        out[23] = 'Z';
        out[24] = 0;
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
