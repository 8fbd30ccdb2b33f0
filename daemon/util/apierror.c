/* ApiError helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "apierror.h"
#include "names.h"

void api_message_make_utf8(char *s) {
        size_t n = strlen(s);

        for (size_t i = 0; i < n;) {
                unsigned char c = (unsigned char) s[i];
                size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;

                if (len <= n - i && utf8_is_valid(s + i, len))
                        i += len;
                else
                        s[i++] = '?';
        }
}

int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) {
        va_list ap;

        if (e) {
                e->code = code;
                va_start(ap, fmt);
                vsnprintf(e->message, sizeof e->message, fmt, ap);
                va_end(ap);
                api_message_make_utf8(e->message);
        }
        return (int) code;
}
