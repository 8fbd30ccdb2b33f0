/* SHA-256 through OpenSSL's EVP interface, for blobs (streamed) and version manifests. */
#pragma once

#include <stddef.h>

#include "macro.h"
#include "names.h"

typedef struct Digest Digest;

int digest_new(Digest **ret);
Digest *digest_free(Digest *d);
int digest_update(Digest *d, const void *data, size_t n);
/* Writes "sha256:<hex>" (DIGEST_STR_LEN + 1 bytes) into out. */
int digest_final(Digest *d, char out[static DIGEST_STR_LEN + 1]);
/* One-shot digest of a buffer. */
int digest_buffer(const void *data, size_t n, char out[static DIGEST_STR_LEN + 1]);

DEFINE_TRIVIAL_CLEANUP_FUNC(Digest *, digest_free);
