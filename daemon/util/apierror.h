/* A documented outcome on its way to the client: the code from api/errors.h plus a
 * human message. Functions return the (positive) code after filling one of these. */
#pragma once

#include "errors.h"
#include "macro.h"

typedef struct ApiError {
        AviaryError code;
        char message[512];
} ApiError;

/* Fill E (if not NULL) and return CODE, a positive value. */
int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) _printf_(3, 4);
