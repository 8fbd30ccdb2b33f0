/* Text from outside (util/text.c) and the log writer that uses it: which characters a user
 * string may hold, and that no logged value can end a log line, forge one or reach a terminal
 * as a control sequence (issue 14, items 4 and 9). */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "names.h"
#include "tap.h"
#include "text.h"

static void test_printable(void) {
        static const struct {
                const char *s;
                size_t n;
                bool printable;
                const char *what;
        } cases[] = {
                {"hello", 5, true, "ASCII"},
                {"h\xc3\xa9llo \xf0\x9f\x90\xa6", 11, true, "accents and an emoji"},
                {"", 0, true, "empty"},
                {"a\0b", 3, false, "NUL"},
                {"a\nb", 3, false, "LF"},
                {"a\tb", 3, false, "TAB"},
                {"\x1b[2J", 4, false, "ESC"},
                {"a\x7f", 2, false, "DEL"},
                {"\xc2\x85", 2, false, "U+0085 (NEL, a C1 control)"},
                {"\xc2\x9b", 2, false, "U+009B (CSI, a C1 control)"},
                {"\xc2\xa0", 2, true, "U+00A0 (no-break space) is printable"},
                {"\xe2\x80\xa8", 3, false, "U+2028 line separator"},
                {"\xe2\x80\xae", 3, false, "U+202E right-to-left override"},
                {"\xe2\x81\xa6", 3, false, "U+2066 left-to-right isolate"},
                {"\xef\xbb\xbf", 3, false, "U+FEFF"},
                {"\xef\xbf\xbe", 3, false, "U+FFFE"},
                {"\xf0\x9f\xbf\xbf", 4, false, "U+1FFFF"},
                {"\x85", 1, false, "a lone 0x85 byte (not UTF-8)"},
                {"\xc0\xaf", 2, false, "overlong"},
                {"\xed\xa0\x80", 3, false, "a surrogate"},
        };

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++)
                is_int(text_is_printable(cases[i].s, cases[i].n), cases[i].printable, "printable: %s", cases[i].what);
        /* Labels follow the same rule (docs/api.md promises printable UTF-8). */
        ok(!label_value_is_valid("a\xc2\x85"), "a label value with U+0085 is refused");
        ok(!label_value_is_valid("a\xc2\x9b[2J"), "a label value with U+009B is refused");
        ok(label_value_is_valid("caf\xc3\xa9"), "a label value with an accent is fine");
}

static void test_escape(void) {
        static const struct {
                const char *in;
                size_t n;
                const char *out;
        } cases[] = {
                {"plain", 5, "plain"},
                {"a\nb\r\tc", 6, "a\\nb\\r\\tc"},
                {"\x1b[2J", 4, "\\x1b[2J"},
                {"back\\slash", 10, "back\\\\slash"},
                {"nul\0x", 5, "nul\\x00x"},
                {"\x7f", 1, "\\x7f"},
                {"\xc2\x85\xc2\x9b", 4, "\\u0085\\u009B"},
                {"\xe2\x80\xa8", 3, "\\u2028"},
                {"\xff\xfe", 2, "\\xff\\xfe"},
                {"caf\xc3\xa9", 5, "caf\xc3\xa9"},
        };
        char out[64];

        for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
                text_escape(cases[i].in, cases[i].n, out, sizeof out);
                is_str(out, cases[i].out, "escape case %zu", i);
        }
        /* Cut before an escape that does not fit, never inside one or inside a character. */
        text_escape("ab\ncd", 5, out, 4);
        is_str(out, "ab", "cut before a whole escape");
        text_escape("a\xc3\xa9", 3, out, 3);
        is_str(out, "a", "cut before a whole character");
}

/* The probe's request path (issue 14 item 4): a forged log line and a screen-clearing escape. */
static void test_log_line(void) {
        char path[] = "/tmp/aviary-test-log-XXXXXX", buf[8192];
        int fd = mkstemp(path), saved = dup(STDERR_FILENO);
        ssize_t n;
        unsigned lines = 0;

        ok(fd >= 0 && saved >= 0, "log capture file");
        fflush(stderr);
        dup2(fd, STDERR_FILENO);
        log_info("%s %s → 404 [%s]", "GET",
                 "/v1/x\n06:00:00.000 aviaryd info: POST /v1/tokens → 201 [uid:0 x]\x1b[2J\r\xc2\x9b""31m", "tcp:1");
        log_full_errno(LOG_WARNING, 0, "HTTP: %s", "peer said \r\nforged");
        fflush(stderr);
        dup2(saved, STDERR_FILENO);
        close(saved);
        n = pread(fd, buf, sizeof buf - 1, 0);
        close(fd);
        unlink(path);
        buf[n > 0 ? n : 0] = 0;
        for (char *p = buf; *p; p++)
                lines += *p == '\n';
        is_int(lines, 2, "two log calls wrote two lines");
        ok(!strchr(buf, '\x1b') && !strchr(buf, '\r') && !strstr(buf, "\xc2\x9b"),
           "no ESC, CR or C1 control reached the log");
        ok(strstr(buf, "/v1/x\\n06:00:00.000 aviaryd info: POST") != NULL, "the newline shows as \\n");
        ok(strstr(buf, "\\x1b[2J\\r\\u009B31m") != NULL, "the escape sequences show escaped");
}

int main(void) {
        test_printable();
        test_escape();
        test_log_line();
        return tap_done();
}
