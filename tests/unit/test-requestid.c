/* Request ids (util/requestid.c): hex of the asked length from a per-thread keystream, distinct,
 * and a key drawn from the kernel once per thread rather than a getrandom() per id. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "requestid.h"
#include "tap.h"

static char other_thread_id[33];

static void *draw(void *arg) {
        request_id_new(other_thread_id, 16);
        return NULL;
}

static int cmp(const void *a, const void *b) {
        return strcmp(a, b);
}

int main(void) {
        static char ids[4096][33];
        pthread_t t;
        bool hex = true, distinct = true;

        for (unsigned i = 0; i < 4096; i++) {
                if (request_id_new(ids[i], 16) < 0)
                        hex = false;
                hex = hex && strlen(ids[i]) == 32 && strspn(ids[i], "0123456789abcdef") == 32;
        }
        ok(hex, "4096 ids of 32 lowercase hex digits");
        qsort(ids, 4096, sizeof ids[0], cmp);
        for (unsigned i = 1; i < 4096; i++)
                distinct = distinct && strcmp(ids[i - 1], ids[i]) != 0;
        ok(distinct, "all of them different");
        char short_id[25];
        is_int(request_id_new(short_id, 12), 0, "12 bytes give 24 digits");
        is_int((int) strlen(short_id), 24, "...24 of them");
        is_int(request_id_new(short_id, 17), -EINVAL, "more than 16 bytes is refused");
        pthread_create(&t, NULL, draw, NULL);
        pthread_join(t, NULL);
        ok(strlen(other_thread_id) == 32 && !bsearch(other_thread_id, ids, 4096, sizeof ids[0], cmp),
           "another thread's stream is its own (keyed apart): none of its ids is one of ours");
        return tap_done();
}
