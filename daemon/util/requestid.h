/* Request ids for the API and the proxy: 2*N hex digits (N <= 16 bytes) of a per-thread ChaCha20
 * keystream whose key and nonce come from random_bytes() (the kernel's CSPRNG) once per thread.
 * As unguessable as random_hex(), without a getrandom() per request. */
#pragma once

#include <stddef.h>

/* Into OUT (2*N+1 bytes); 0, or -errno when the thread's key could not be drawn (the next call
 * tries again). */
int request_id_new(char *out, size_t n);
