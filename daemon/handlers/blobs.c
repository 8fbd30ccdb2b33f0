/* /v1/blobs: content-addressed files. PUT streams into blobfiles while hashing; the row
 * is written (with its audit event) only after the file is durably in place. */
#include <string.h>

#include "blobfiles.h"
#include "handlers.h"
#include "log.h"
#include "settings.h"
#include "blobfiles.h"

static json_t *blob_to_json(const BlobRecord *b) {
        return json_pack("{s:s, s:I, s:o}", "digest", b->digest, "size", (json_int_t) b->size, "created_at",
                         json_time(b->created_at));
}

static int digest_param(Request *r, const char **ret) {
        const char *d = request_param(r, 0);

        if (!digest_is_valid(d))
                return reply_error(r, AVIARY_E_INVALID_DIGEST,
                                   "invalid digest '%.80s': expected sha256: and 64 lowercase hex digits", d);
        *ret = d;
        return 0;
}

static int blob_list_one(const BlobRecord *b, void *userdata) {
        return json_array_append_new(userdata, blob_to_json(b)) < 0 ? -ENOMEM : 0;
}

int blob_list(Request *r) {
        json_t *items = json_array();
        const char *after;
        unsigned limit;
        int k;

        k = request_page(r, &limit, &after);
        if (k == 0)
                k = store_blob_list(r->ctx->store, after, limit, blob_list_one, items);
        return reply_page(r, k, items, limit, "digest");
}

int blob_get(Request *r) {
        BlobRecord b;
        const char *digest = NULL;
        int k = digest_param(r, &digest);

        if (k != 0)
                return k;
        k = store_blob_get(r->ctx->store, digest, &b);
        if (k > 0)
                return reply_error(r, AVIARY_E_BLOB_NOT_FOUND, "blob %s not found", digest);
        if (k < 0)
                return k;
        k = blobfiles_open_read(r->ctx->blobs, digest, &r->reply_fd, &r->reply_fd_size);
        if (k < 0)
                return k;
        snprintf(r->etag, sizeof r->etag, "\"%.32s\"", digest + 7);
        r->status = 200;
        return 0;
}

int blob_put_begin(Request *r) {
        BlobRecord b;
        const char *digest = NULL;
        int k = digest_param(r, &digest);

        if (k != 0)
                return k;
        request_set_resource(r, "blob/%s", digest);
        k = store_blob_get(r->ctx->store, digest, &b);
        if (k < 0)
                return k;
        if (k == 0 && blobfiles_exists(r->ctx->blobs, digest)) {
                /* Already here: answer now and skip the upload. */
                r->unchanged = true;
                return reply_json(r, 200, blob_to_json(&b));
        }
        return blob_upload_begin(r->ctx->blobs, digest, &r->upload);
}

int blob_put_data(Request *r, const char *data, size_t size) {
        return blob_upload_write(r->upload, data, size);
}

/* The file is in place before its row is written; when the row's transaction fails (the
 * disk is full), a file without a row must not stay visible. Only this request linked it,
 * and nothing else ran in between. */
static void blob_remove_uncommitted(Request *r) {
        int k = blobfiles_remove(r->ctx->blobs, request_param(r, 0));
        if (k < 0)
                log_warning_errno(k, "Cannot remove the file of blob %s, whose row was not written "
                                  "(it goes at the next start)", request_param(r, 0));
}

int blob_put_finish(Request *r) {
        BlobRecord b;
        const char *digest = request_param(r, 0);
        int k;

        if (r->status) /* answered by blob_put_begin */
                return 0;
        k = blob_upload_commit(r->upload, &r->error);
        if (k != 0)
                return k;
        if (blob_upload_created_name(r->upload))
                r->after_rollback = blob_remove_uncommitted;
        k = store_blob_add(r->ctx->store, digest, (int64_t) blob_upload_size(r->upload));
        if (k < 0)
                return k;
        if (k == 0)
                r->unchanged = true;
        k = store_blob_get(r->ctx->store, digest, &b);
        if (k != 0)
                return k < 0 ? k : -EIO;
        snprintf(r->location, sizeof r->location, "/v1/blobs/%s", digest);
        return reply_json(r, r->unchanged ? 200 : 201, blob_to_json(&b));
}

static void blob_remove_file(Request *r) {
        int k = blobfiles_remove(r->ctx->blobs, request_param(r, 0));
        if (k < 0)
                log_warning_errno(k, "Cannot remove the file of deleted blob %s", request_param(r, 0));
}

int blob_delete(Request *r) {
        const char *digest = NULL;
        int k = digest_param(r, &digest);

        if (k != 0)
                return k;
        request_set_resource(r, "blob/%s", digest);
        k = store_blob_delete(r->ctx->store, digest);
        if (k == AVIARY_E_BLOB_IN_USE)
                return reply_error(r, k, "blob %s is used by an image version; delete the version first", digest);
        if (k == AVIARY_E_BLOB_NOT_FOUND)
                return reply_error(r, k, "blob %s not found", digest);
        if (k != 0)
                return k;
        /* The file goes only once the row's removal is committed: a file without a row is
         * harmless (swept at start), a row without its file is not. */
        r->after_commit = blob_remove_file;
        r->status = 204;
        return 0;
}
