/* Request ids (requestid.h): a per-thread ChaCha20 keystream, keyed once from the kernel. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "random.h"
#include "requestid.h"

#define ROTL32(v, n) (((v) << (n)) | ((v) >> (32 - (n))))
#define QR(a, b, c, d)                                                                                     \
        (a += b, d ^= a, d = ROTL32(d, 16), c += d, b ^= c, b = ROTL32(b, 12), a += b, d ^= a,            \
         d = ROTL32(d, 8), c += d, b ^= c, b = ROTL32(b, 7))

static void chacha20_block(const uint32_t in[16], uint32_t out[16]) {
        uint32_t x[16];

        memcpy(x, in, sizeof x);
        for (int i = 0; i < 10; i++) {
                QR(x[0], x[4], x[8], x[12]);
                QR(x[1], x[5], x[9], x[13]);
                QR(x[2], x[6], x[10], x[14]);
                QR(x[3], x[7], x[11], x[15]);
                QR(x[0], x[5], x[10], x[15]);
                QR(x[1], x[6], x[11], x[12]);
                QR(x[2], x[7], x[8], x[13]);
                QR(x[3], x[4], x[9], x[14]);
        }
        for (int i = 0; i < 16; i++)
                out[i] = x[i] + in[i];
}

static _Thread_local struct {
        bool seeded;
        uint32_t state[16];
        uint32_t block[16];
        unsigned used; /* 16-byte ids taken from BLOCK (4 per block) */
} request_ids;

int request_id_new(char *out, size_t n) {
        static const char hex[] = "0123456789abcdef";
        const uint8_t *p;

        if (n == 0 || n > 16)
                return -EINVAL;

        if (!request_ids.seeded) {
                static const uint32_t sigma[4] = {0x61707865, 0x3320646e, 0x79622d32, 0x6b206574};
                int r = random_bytes(request_ids.state + 4, 12 * sizeof(uint32_t)); /* key, counter, nonce */
                if (r < 0)
                        return r;
                memcpy(request_ids.state, sigma, sizeof sigma);
                request_ids.used = 4;
                request_ids.seeded = true;
        }
        if (request_ids.used == 4) {
                chacha20_block(request_ids.state, request_ids.block);
                if (++request_ids.state[12] == 0)
                        request_ids.state[13]++;
                request_ids.used = 0;
        }
        p = (const uint8_t *) (request_ids.block + 4 * request_ids.used++);
        for (size_t i = 0; i < n; i++) {
                out[2 * i] = hex[p[i] >> 4];
                out[2 * i + 1] = hex[p[i] & 15];
        }
        out[2 * n] = 0;
        return 0;
}
