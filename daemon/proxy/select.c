/* Version split, sticky buckets and guest choice for the proxy; see select.h. The weighted
 * choice is nginx's smooth weighted round-robin (ngx_http_upstream_get_peer), which is exact per
 * cycle, so tests can check the split to the request. */
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <string.h>

#include "select.h"

const char *split_group_to_string(SplitGroup g) {
        switch (g) {
        case SPLIT_STABLE:
                return "stable";
        case SPLIT_CANARY:
                return "canary";
        default:
                return NULL;
        }
}

static unsigned gcd(unsigned a, unsigned b) {
        while (b) {
                unsigned t = a % b;
                a = b;
                b = t;
        }
        return a;
}

static void split_reset(VersionSplit *s, unsigned canary_bp) {
        if (canary_bp > SPLIT_BASIS_POINTS)
                canary_bp = SPLIT_BASIS_POINTS;

        unsigned g = gcd(canary_bp, SPLIT_BASIS_POINTS); /* gcd(0, 10000) = 10000 */
        *s = (VersionSplit){
                .canary_bp = canary_bp,
                .weight = {[SPLIT_STABLE] = (SPLIT_BASIS_POINTS - canary_bp) / g,
                           [SPLIT_CANARY] = canary_bp / g},
                .total = SPLIT_BASIS_POINTS / g,
        };
}

void split_init(VersionSplit *s, unsigned canary_bp) {
        split_reset(s, canary_bp);
}

void split_set_weight(VersionSplit *s, unsigned canary_bp) {
        if (canary_bp > SPLIT_BASIS_POINTS)
                canary_bp = SPLIT_BASIS_POINTS;
        if (canary_bp == s->canary_bp)
                return;
        split_reset(s, canary_bp);
}

SplitGroup split_pick(VersionSplit *s) {
        SplitGroup best = SPLIT_STABLE;

        for (SplitGroup g = 0; g < _SPLIT_GROUP_MAX; g++) {
                s->current[g] += s->weight[g];
                /* A group of weight 0 is never chosen, even on a tie at 0. */
                if (s->weight[g] > 0 && (s->weight[best] == 0 || s->current[g] > s->current[best]))
                        best = g;
        }
        s->current[best] -= s->total;
        return best;
}

unsigned sticky_bucket(const char *key, size_t len, uint64_t salt) {
        unsigned char salt_bytes[8], md[EVP_MAX_MD_SIZE];
        unsigned md_len = 0;
        uint64_t h = 0;

        /* Fixed byte order, so buckets survive a move to another architecture. */
        for (unsigned i = 0; i < 8; i++)
                salt_bytes[i] = (unsigned char) (salt >> (8 * i));

        if (!HMAC(EVP_sha256(), salt_bytes, sizeof salt_bytes, (const unsigned char *) (key ? key : ""),
                  key ? len : 0, md, &md_len) ||
            md_len < 8)
                return SPLIT_BASIS_POINTS - 1;

        for (unsigned i = 0; i < 8; i++)
                h = (h << 8) | md[i];
        /* 2^64 mod 10000 is tiny next to 2^64: the bias is below 1e-15. */
        return (unsigned) (h % SPLIT_BASIS_POINTS);
}

SplitGroup sticky_pick(unsigned bucket, unsigned canary_bp) {
        return bucket < canary_bp ? SPLIT_CANARY : SPLIT_STABLE;
}

void backend_set_init(BackendSet *set, size_t n) {
        memset(set, 0, sizeof *set);
        set->n = n < BACKEND_SET_MAX ? n : BACKEND_SET_MAX;
}

bool backend_usable(const BackendSet *set, size_t i) {
        return i < set->n && set->slot[i].ready && !set->slot[i].ejected;
}

static void backend_set_restart(BackendSet *set) {
        for (size_t i = 0; i < set->n; i++)
                set->slot[i].current = 0;
}

void backend_set_ready(BackendSet *set, size_t i, bool ready) {
        if (i >= set->n || set->slot[i].ready == ready)
                return;
        set->slot[i].ready = ready;
        backend_set_restart(set);
}

void backend_set_ejected(BackendSet *set, size_t i, bool ejected) {
        if (i >= set->n || set->slot[i].ejected == ejected)
                return;
        set->slot[i].ejected = ejected;
        backend_set_restart(set);
}

int backend_pick(BackendSet *set) {
        int best = -1;
        int64_t total = 0;

        for (size_t i = 0; i < set->n; i++) {
                if (!backend_usable(set, i))
                        continue;
                set->slot[i].current += 1; /* every backend weighs 1 */
                total += 1;
                if (best < 0 || set->slot[i].current > set->slot[best].current)
                        best = (int) i;
        }
        if (best >= 0)
                set->slot[best].current -= total;
        return best;
}
