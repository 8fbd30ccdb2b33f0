/* Wall-clock times as microseconds since the epoch, RFC 3339 formatting, and the
 * duration strings of the API ("500ms", "5s", "2m", "1h"). */
#pragma once

#include <stdint.h>

typedef uint64_t usec_t;
#define USEC_PER_MSEC 1000ULL
#define USEC_PER_SEC 1000000ULL

usec_t now_realtime(void);
usec_t now_monotonic(void);
/* "2026-11-25T07:00:00.123Z" into out (at least 32 bytes). */
void format_rfc3339(usec_t t, char out[static 32]);
/* Parses a duration into milliseconds. Returns 0 or -EINVAL. */
int duration_parse_ms(const char *s, uint64_t *ret_ms);
/* Shortest exact form of a duration: "1h", "90s", "1500ms". out needs 32 bytes. */
void duration_format_ms(uint64_t ms, char out[static 32]);
