/* Blob upload for `image push`: hash a local file with SHA-256 (streamed, never read whole),
 * ask the daemon whether it already has that blob, and stream it up only when it does not. */
#pragma once

#include "http.h"

/* "sha256:" + 64 hex digits + NUL */
#define BLOB_DIGEST_SIZE 72

/* Makes sure the daemon has the file's blob; LABEL ("kernel") names it in messages.
 * Writes "sha256:<hex>" to ret_digest. Errors are reported. */
int blob_push(HttpClient *http, const char *label, const char *filename,
              char ret_digest[static BLOB_DIGEST_SIZE]);
