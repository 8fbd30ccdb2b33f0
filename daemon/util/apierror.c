/* ApiError helpers. */
#include <stdarg.h>
#include <stdio.h>

#include "apierror.h"

/* Drops a UTF-8 sequence that the size limit cut short at the end of S (LEN bytes): the
 * message goes out as a JSON string, and jansson refuses invalid UTF-8, so the reply would be
 * lost with it. */
static void utf8_drop_cut_tail(char *s, size_t len) {
        size_t start = len;
        unsigned want;

        while (start > 0 && len - start < 4 && ((unsigned char) s[start - 1] & 0xc0) == 0x80)
                start--;
        if (start == 0 || (unsigned char) s[start - 1] < 0xc0)
                return; /* ends in ASCII or in stray continuation bytes: nothing was cut */
        start--;
        unsigned char lead = (unsigned char) s[start];
        want = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : 2;
        if (len - start < want)
                s[start] = 0;
}

int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) {
        va_list ap;
        int n;

        if (e) {
                e->code = code;
                va_start(ap, fmt);
                n = vsnprintf(e->message, sizeof e->message, fmt, ap);
                va_end(ap);
                if (n >= (int) sizeof e->message)
                        utf8_drop_cut_tail(e->message, sizeof e->message - 1);
        }
        return (int) code;
}
