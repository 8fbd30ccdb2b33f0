/* Durations and RFC 3339 times. */
#include "tap.h"
#include "timeutil.h"

static void parses(const char *s, long long want) {
        uint64_t ms = 0;
        int r = duration_parse_ms(s, &ms);
        ok(r == 0 && (long long) ms == want, "'%s' is %lld ms", s, want);
}

int main(void) {
        char buf[32];
        uint64_t ms;

        parses("500ms", 500);
        parses("5s", 5000);
        parses("2m", 120000);
        parses("1h", 3600000);
        parses("0s", 0);
        ok(duration_parse_ms("", &ms) < 0, "empty refused");
        ok(duration_parse_ms("5", &ms) < 0, "unit required");
        ok(duration_parse_ms("s", &ms) < 0, "number required");
        ok(duration_parse_ms("5 s", &ms) < 0, "space refused");
        ok(duration_parse_ms("-5s", &ms) < 0, "negative refused");
        ok(duration_parse_ms("5d", &ms) < 0, "unknown unit refused");
        ok(duration_parse_ms("99999999999999s", &ms) < 0, "overflow refused");

        duration_format_ms(2000, buf);
        is_str(buf, "2s", "2000 ms formats as 2s");
        duration_format_ms(1500, buf);
        is_str(buf, "1500ms", "1500 ms stays in ms");
        duration_format_ms(120000, buf);
        is_str(buf, "2m", "120000 ms formats as 2m");
        duration_format_ms(7200000, buf);
        is_str(buf, "2h", "hours");

        format_rfc3339(1764054000123456ULL, buf);
        is_str(buf, "2025-11-25T07:00:00.123Z", "RFC 3339 with milliseconds");
        return tap_done();
}
