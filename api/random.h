/* Random bytes for ids, secrets, salts and MAC addresses: the kernel's CSPRNG (getrandom), the
 * one source the daemon and the CLI use. Nothing falls back to a weaker or constant source: a
 * caller that cannot get randomness fails, loudly. */
#pragma once

#include <stddef.h>

/* Fills BUF with N random bytes; 0, or -errno (the kernel could not give them). */
int random_bytes(void *buf, size_t n);
/* 2*N lowercase hex digits from N random bytes, NUL-terminated, into OUT (2*N+1 bytes); 0 or
 * -errno as random_bytes(). */
int random_hex(char *out, size_t n);
