/* A documented outcome on its way to the client: the code from api/errors.h plus a
 * human message. Functions return the (positive) code after filling one of these. */
#pragma once

#include "errors.h"
#include "macro.h"

typedef struct ApiError {
        AviaryError code;
        char message[512];
} ApiError;

/* Replaces each byte of S that starts no valid UTF-8 sequence with '?': a message goes out as
 * a JSON string, which jansson refuses (losing the whole reply) unless it is UTF-8. A message
 * can hold a character cut by its size limit, or invalid bytes quoted from the input. */
void api_message_make_utf8(char *s);

/* Fill E (if not NULL) and return CODE, a positive value; the message is made UTF-8 (above). */
int api_error_set(ApiError *e, AviaryError code, const char *fmt, ...) _printf_(3, 4);
