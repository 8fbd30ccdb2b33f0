/* Running a routed request's handler: reads run as they are; changes run inside one
 * transaction together with their audit event and, for POSTs with an Idempotency-Key,
 * the remembered answer. */
#pragma once

#include <jansson.h>

#include "request.h"

/* Returns what the handler returned (0, positive AVIARY_E_*, negative errno). */
int dispatch_request(Request *r);

