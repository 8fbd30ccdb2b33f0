/* ApiError helpers. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "apierror.h"
#include "text.h"

void api_message_escape(char *s, size_t size) {
        char escaped[2048];

        text_escape(s, strlen(s), escaped, sizeof escaped < size ? sizeof escaped : size);
        memcpy(s, escaped, strlen(escaped) + 1);
}

int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) {
        va_list ap;

        if (e) {
                e->code = code;
                va_start(ap, fmt);
                vsnprintf(e->message, sizeof e->message, fmt, ap);
                va_end(ap);
                api_message_escape(e->message, sizeof e->message);
        }
        return (int) code;
}
