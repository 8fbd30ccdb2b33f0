/* Blob files under <state>/blobs/sha256/<hex>: streamed into an anonymous temporary
 * file while hashed, and linked into place only when the digest matches, so a half-written
 * or wrong blob is never visible under its name. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "apierror.h"

typedef struct BlobFiles BlobFiles;
typedef struct BlobUpload BlobUpload;

int blobfiles_open(const char *state_dir, BlobFiles **ret);
BlobFiles *blobfiles_free(BlobFiles *b);
DEFINE_TRIVIAL_CLEANUP_FUNC(BlobFiles *, blobfiles_free);

/* Opens the blob's file for reading; -ENOENT when absent. */
int blobfiles_open_read(BlobFiles *b, const char *digest, int *ret_fd, uint64_t *ret_size);
int blobfiles_exists(BlobFiles *b, const char *digest);
/* The absolute path of a blob's file into out (PATH_MAX bytes), for libvirt's <kernel>. */
int blobfiles_path(BlobFiles *b, const char *digest, char *out, size_t size);
int blobfiles_remove(BlobFiles *b, const char *digest);
/* Calls fn for every blob file present (by digest). */
int blobfiles_foreach(BlobFiles *b, int (*fn)(const char *digest, void *userdata), void *userdata);

int blob_upload_begin(BlobFiles *b, const char *digest, BlobUpload **ret);
int blob_upload_write(BlobUpload *u, const void *data, size_t n);
uint64_t blob_upload_size(const BlobUpload *u);
/* Verifies the digest, makes the data durable and links it into place. Returns 0,
 * AVIARY_E_DIGEST_MISMATCH (E filled; nothing kept) or negative errno. */
int blob_upload_commit(BlobUpload *u, ApiError *e);
/* Whether the commit put the blob's name in place (false when a file of that name was
 * there already): the one who must remove it if the blob's row is not written after all. */
bool blob_upload_created_name(const BlobUpload *u);
/* Drops an upload (committed or not); NULL-safe. */
BlobUpload *blob_upload_free(BlobUpload *u);
DEFINE_TRIVIAL_CLEANUP_FUNC(BlobUpload *, blob_upload_free);
