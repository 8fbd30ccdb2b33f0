/* A documented outcome on its way to the client: the code from api/errors.h plus a
 * human message. Functions return the (positive) code after filling one of these. */
#pragma once

#include <stddef.h>

#include "errors.h"
#include "macro.h"

typedef struct ApiError {
        AviaryError code;
        char message[512];
} ApiError;

/* Escapes S in place (SIZE bytes, text_escape()): a message goes out as a JSON string, which
 * jansson refuses (losing the whole reply) unless it is UTF-8, and clients print it: bytes that
 * are not UTF-8 (a character cut by a size limit, or quoted from the input) and control
 * characters quoted from the input come out as visible escapes. */
void api_message_escape(char *s, size_t size);

/* Fill E (if not NULL) and return CODE, a positive value; the message is escaped (above). */
int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) _printf_(3, 4);
