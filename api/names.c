/* Allow-list checks. Each accepts exactly the documented grammar (docs/api.md). */
#include <string.h>

#include "names.h"
#include "text.h"

static bool is_lower_alnum(char c) {
        return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c) {
        return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool name_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n < 1 || n > 63 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_lower_alnum(s[i]) && s[i] != '-')
                        return false;
        return true;
}

bool tag_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n < 1 || n > 128 || !(is_alnum(s[0]) || s[0] == '_'))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && !strchr("._-", s[i]))
                        return false;
        return true;
}

bool label_key_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n < 1 || n > 63 || !is_alnum(s[0]))
                return false;
        for (size_t i = 0; i < n; i++)
                if (!is_alnum(s[i]) && !strchr("._/-", s[i]))
                        return false;
        return true;
}

bool label_value_is_valid(const char *s) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        return n <= 256 && text_is_printable(s, n);
}

bool digest_is_valid(const char *s) {
        if (!s || strncmp(s, "sha256:", 7) != 0 || strlen(s) != DIGEST_STR_LEN)
                return false;
        for (const char *p = s + 7; *p; p++)
                if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
                        return false;
        return true;
}

static bool printable_ascii(const char *s, size_t max) {
        size_t n;

        if (!s)
                return false;
        n = strlen(s);
        if (n < 1 || n > max)
                return false;
        for (size_t i = 0; i < n; i++)
                if (s[i] < 0x21 || s[i] > 0x7e)
                        return false;
        return true;
}

bool idempotency_key_is_valid(const char *s) {
        return printable_ascii(s, 255);
}

bool request_id_is_valid(const char *s) {
        return printable_ascii(s, 64);
}

bool utf8_is_valid(const char *s, size_t n) {
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_char(s + i, n - i, &cp);

                if (len == 0)
                        return false;
                i += len;
        }
        return true;
}
