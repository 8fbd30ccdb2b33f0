/* Reply helpers (reply.c): what a handler answers, and the JSON text of answers. */
#pragma once

#include <jansson.h>

#include "request.h"

/* The JSON text of a reply (pretty, newline-terminated); caller frees. */
char *reply_dump(json_t *j);
/* {"error":{...}} text; caller frees. */
char *error_envelope(AviaryError code, const char *message, const char *request_id);
