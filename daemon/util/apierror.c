/* ApiError helpers. */
#include <stdarg.h>
#include <stdio.h>

#include "apierror.h"

int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) {
        va_list ap;

        if (e) {
                e->code = code;
                va_start(ap, fmt);
                vsnprintf(e->message, sizeof e->message, fmt, ap);
                va_end(ap);
        }
        return (int) code;
}
