/* SHA-256 via OpenSSL EVP. */
#include <errno.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>

#include "digest.h"
#include "macro.h"

struct Digest {
        EVP_MD_CTX *ctx;
};

int digest_new(Digest **ret) {
        Digest *d = calloc(1, sizeof *d);

        if (!d)
                return -ENOMEM;
        d->ctx = EVP_MD_CTX_new();
        if (!d->ctx || EVP_DigestInit_ex(d->ctx, EVP_sha256(), NULL) != 1) {
                digest_free(d);
                return -EIO;
        }
        *ret = d;
        return 0;
}

Digest *digest_free(Digest *d) {
        if (d) {
                EVP_MD_CTX_free(d->ctx);
                free(d);
        }
        return NULL;
}

int digest_update(Digest *d, const void *data, size_t n) {
        return EVP_DigestUpdate(d->ctx, data, n) == 1 ? 0 : -EIO;
}

int digest_final(Digest *d, char out[static DIGEST_STR_LEN + 1]) {
        unsigned char md[EVP_MAX_MD_SIZE];
        unsigned len = 0;

        if (EVP_DigestFinal_ex(d->ctx, md, &len) != 1 || len != 32)
                return -EIO;
        memcpy(out, "sha256:", 7);
        for (unsigned i = 0; i < len; i++)
                snprintf(out + 7 + 2 * i, 3, "%02x", md[i]);
        return 0;
}

int digest_buffer(const void *data, size_t n, char out[static DIGEST_STR_LEN + 1]) {
        _cleanup_(digest_freep) Digest *d = NULL;
        int r;

        r = digest_new(&d);
        if (r < 0)
                return r;
        r = digest_update(d, data, n);
        if (r < 0)
                return r;
        return digest_final(d, out);
}
