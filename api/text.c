/* UTF-8, printable text and escaping (text.h). */
#include <stdio.h>
#include <string.h>

#include "text.h"

size_t utf8_char(const char *s, size_t n, uint32_t *ret_cp) {
        const unsigned char *p = (const unsigned char *) s;
        uint32_t cp;
        size_t len;

        if (n == 0)
                return 0;
        if (p[0] < 0x80) {
                *ret_cp = p[0];
                return 1;
        }
        if (p[0] >= 0xc2 && p[0] <= 0xdf)
                len = 2, cp = p[0] & 0x1f;
        else if (p[0] >= 0xe0 && p[0] <= 0xef)
                len = 3, cp = p[0] & 0x0f;
        else if (p[0] >= 0xf0 && p[0] <= 0xf4)
                len = 4, cp = p[0] & 0x07;
        else
                return 0;
        if (n < len)
                return 0;
        for (size_t i = 1; i < len; i++) {
                if ((p[i] & 0xc0) != 0x80)
                        return 0;
                cp = (cp << 6) | (p[i] & 0x3f);
        }
        if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
            (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
                return 0;
        *ret_cp = cp;
        return len;
}

bool unicode_is_unprintable(uint32_t cp) {
        return cp < 0x20 || (cp >= 0x7f && cp <= 0x9f) || cp == 0x061c || cp == 0x200e || cp == 0x200f ||
               cp == 0x2028 || cp == 0x2029 || (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069) ||
               cp == 0xfeff || (cp >= 0xfdd0 && cp <= 0xfdef) || (cp & 0xfffe) == 0xfffe;
}

bool text_is_printable(const char *s, size_t n) {
        for (size_t i = 0; i < n;) {
                uint32_t cp;
                size_t len = utf8_char(s + i, n - i, &cp);

                if (len == 0 || unicode_is_unprintable(cp))
                        return false;
                i += len;
        }
        return true;
}

size_t text_escape(const char *s, size_t n, char *out, size_t size) {
        size_t o = 0;

        if (size == 0)
                return 0;
        for (size_t i = 0; i < n;) {
                char piece[8];
                uint32_t cp = 0;
                size_t len = utf8_char(s + i, n - i, &cp), k;

                if (len == 0) { /* not UTF-8: the byte itself */
                        k = (size_t) snprintf(piece, sizeof piece, "\\x%02x", (unsigned char) s[i]);
                        len = 1;
                } else if (cp == '\\')
                        k = (size_t) snprintf(piece, sizeof piece, "\\\\");
                else if (cp == '\n')
                        k = (size_t) snprintf(piece, sizeof piece, "\\n");
                else if (cp == '\r')
                        k = (size_t) snprintf(piece, sizeof piece, "\\r");
                else if (cp == '\t')
                        k = (size_t) snprintf(piece, sizeof piece, "\\t");
                else if (cp < 0x20 || cp == 0x7f)
                        k = (size_t) snprintf(piece, sizeof piece, "\\x%02x", (unsigned) cp);
                else if (unicode_is_unprintable(cp))
                        k = (size_t) snprintf(piece, sizeof piece, "\\u%04X", (unsigned) cp);
                else {
                        memcpy(piece, s + i, len);
                        k = len;
                }
                if (o + k >= size)
                        break;
                memcpy(out + o, piece, k);
                o += k;
                i += len;
        }
        out[o] = 0;
        return o;
}
