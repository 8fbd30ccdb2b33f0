/* Random bytes from getrandom(2) (random.h). */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/random.h>

#include "random.h"

int random_bytes(void *buf, size_t n) {
        uint8_t *p = buf;

        while (n > 0) {
                ssize_t k = getrandom(p, n, 0);
                if (k < 0) {
                        if (errno == EINTR)
                                continue;
                        return -errno;
                }
                p += k;
                n -= (size_t) k;
        }
        return 0;
}

int random_hex(char *out, size_t n) {
        static const char digits[] = "0123456789abcdef";
        uint8_t raw[64];

        for (size_t done = 0; done < n;) {
                size_t chunk = n - done < sizeof raw ? n - done : sizeof raw;
                int r = random_bytes(raw, chunk);
                if (r < 0)
                        return r;
                for (size_t i = 0; i < chunk; i++) {
                        out[2 * (done + i)] = digits[raw[i] >> 4];
                        out[2 * (done + i) + 1] = digits[raw[i] & 15];
                }
                done += chunk;
        }
        out[2 * n] = 0;
        return 0;
}
