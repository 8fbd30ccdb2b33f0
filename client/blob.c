/* Content-addressed upload: hash the file locally (OpenSSL EVP), HEAD the blob, PUT it from
 * the open file only when missing. The daemon re-hashes and refuses a mismatch, so a file
 * that changes between hashing and upload cannot be stored under the wrong digest. */
#include <inttypes.h>
#include <openssl/evp.h>
#include <stdbool.h>
#include <sys/stat.h>

#include "blob.h"
#include "output.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(EVP_MD_CTX *, EVP_MD_CTX_free);

static int file_sha256(FILE *f, char ret[static BLOB_DIGEST_SIZE]) {
        _cleanup_(EVP_MD_CTX_freep) EVP_MD_CTX *ctx = EVP_MD_CTX_new();
        unsigned char buffer[64 * 1024], md[EVP_MAX_MD_SIZE];
        unsigned md_size = 0;
        size_t n;

        if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1)
                return -ENOMEM;
        while ((n = fread(buffer, 1, sizeof(buffer), f)) > 0)
                if (EVP_DigestUpdate(ctx, buffer, n) != 1)
                        return -EIO;
        if (ferror(f))
                return -EIO;
        if (EVP_DigestFinal_ex(ctx, md, &md_size) != 1 || md_size != 32)
                return -EIO;
        int at = snprintf(ret, BLOB_DIGEST_SIZE, "sha256:");
        for (unsigned i = 0; i < md_size; i++)
                at += snprintf(ret + at, BLOB_DIGEST_SIZE - at, "%02x", md[i]);
        return 0;
}

/* HEAD the blob: whether the daemon has it, or the reported error. */
static int blob_exists(HttpClient *http, const char *path, bool *ret) {
        _cleanup_(http_reply_done) HttpReply reply = {};
        HttpRequest req = {.method = "HEAD", .path = path};

        int r = http_request(http, &req, &reply);
        if (r < 0)
                return r;
        if (reply.status == 200 || reply.status == 404) {
                *ret = reply.status == 200;
                return 0;
        }
        r = http_reply_check(&reply);
        return r != 0 ? r : -EPROTO;
}

int blob_push(HttpClient *http, const char *label, const char *filename,
              char ret_digest[static BLOB_DIGEST_SIZE]) {
        _cleanup_fclose_ FILE *f = fopen(filename, "rbe");
        _cleanup_(http_reply_done) HttpReply reply = {};
        _cleanup_free_ char *path = NULL;
        char digest[BLOB_DIGEST_SIZE];
        bool exists;
        struct stat st;
        int r;

        if (!f || fstat(fileno(f), &st) < 0) {
                r = negative_errno();
                output_error("cannot open %s file %s: %s", label, filename, strerror(-r));
                return r;
        }
        if (!S_ISREG(st.st_mode)) {
                output_error("%s file %s is not a regular file", label, filename);
                return -EINVAL;
        }
        r = file_sha256(f, digest);
        if (r < 0) {
                output_error("cannot hash %s file %s: %s", label, filename, strerror(-r));
                return r;
        }
        r = http_path(&path, "v1", "blobs", digest, NULL);
        if (r < 0)
                return r;

        r = blob_exists(http, path, &exists);
        if (r != 0)
                return r;
        if (exists) {
                fprintf(stderr, "%s %s already present, skipped\n", label, digest);
        } else {
                HttpRequest req = {
                        .method = "PUT",
                        .path = path,
                        .upload = f,
                        .upload_size = (uint64_t) st.st_size,
                        .progress = label,
                };
                r = http_exchange(http, &req, &reply);
                if (r != 0)
                        return r;
                fprintf(stderr, "%s %s uploaded (%" PRIu64 " bytes)\n", label, digest,
                        (uint64_t) st.st_size);
        }
        memcpy(ret_digest, digest, BLOB_DIGEST_SIZE);
        return 0;
}
