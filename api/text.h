/* Text from outside: UTF-8 decoding, the one rule for which characters a user string may hold
 * (docs/api.md, "Text"), and the one escaping for everything that goes to a log or into an error
 * message, so that no input can end a log line, forge one or drive a terminal. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The length (1-4) of the well-formed UTF-8 character at S (N bytes available) with its code
 * point in *RET_CP, or 0 when S does not start one (overlong, surrogate, truncated...). */
size_t utf8_char(const char *s, size_t n, uint32_t *ret_cp);

/* Characters no user string may hold and no log line shows raw: C0 controls, DEL, C1 controls
 * (U+0080-U+009F), the line and paragraph separators U+2028/U+2029, the bidirectional
 * formatting controls (U+061C, U+200E, U+200F, U+202A-U+202E, U+2066-U+2069), U+FEFF, and
 * the noncharacters (U+FDD0-U+FDEF and U+xFFFE/U+xFFFF). */
bool unicode_is_unprintable(uint32_t cp);

/* S (N bytes) is UTF-8 holding no unprintable character (and so no NUL). */
bool text_is_printable(const char *s, size_t n);

/* Writes S (N bytes) to OUT (SIZE bytes, always NUL-terminated, cut before an escape or character
 * that does not fit): '\' as "\\", LF, CR and TAB as "\n", "\r", "\t", other C0 controls, DEL and
 * bytes that are not UTF-8 as "\xNN", other unprintable characters as "\uNNNN". Returns the
 * length written. */
size_t text_escape(const char *s, size_t n, char *out, size_t size);
