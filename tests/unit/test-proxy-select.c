/* The proxy's choices: the version split exact per cycle and evenly spread, weight changes at
 * the next pick, sticky buckets that keep clients on their version, and guest rotation. */
#include <stdio.h>
#include <string.h>

#include "proxy/select.h"
#include "tap.h"

static unsigned gcd(unsigned a, unsigned b) {
        while (b) {
                unsigned t = a % b;
                a = b;
                b = t;
        }
        return a;
}

/* Canary count over one full cycle, and whether every prefix stays within 1 of its ideal share. */
static void check_cycle(unsigned bp) {
        VersionSplit s;
        unsigned cycle = SPLIT_BASIS_POINTS / gcd(bp, SPLIT_BASIS_POINTS);
        unsigned canary = 0, worst_prefix = 0;

        split_init(&s, bp);
        for (unsigned n = 1; n <= cycle; n++) {
                canary += split_pick(&s) == SPLIT_CANARY;
                /* |canary * 10000 - n * bp| < 10000 means within one request of exact */
                long long dev = (long long) canary * SPLIT_BASIS_POINTS - (long long) n * bp;
                if (dev < 0)
                        dev = -dev;
                if (dev >= SPLIT_BASIS_POINTS)
                        worst_prefix++;
        }
        is_int(canary, (unsigned long long) cycle * bp / SPLIT_BASIS_POINTS,
               "weight %u bp: canary count over a cycle of %u", bp, cycle);
        is_int(worst_prefix, 0, "weight %u bp: every prefix within one request of exact", bp);

        /* The next cycle is the same again. */
        canary = 0;
        for (unsigned n = 0; n < cycle; n++)
                canary += split_pick(&s) == SPLIT_CANARY;
        is_int(canary, (unsigned long long) cycle * bp / SPLIT_BASIS_POINTS,
               "weight %u bp: second cycle exact too", bp);
}

static void test_split(void) {
        static const unsigned weights[] = {1000, 5000, 9000, 1, 0, 10000, 2500, 333, 9999};

        for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
                check_cycle(weights[i]);

        VersionSplit s;
        split_init(&s, 1);
        is_int(s.total, 10000, "1 bp: the cycle is 10000 requests long");
        split_init(&s, 2500);
        is_int(s.total, 4, "25%%: weights reduced by the gcd, a cycle of 4");

        /* At 10%, any window of 100 consecutive picks holds 9, 10 or 11 canary picks. */
        static SplitGroup seq[20000];
        unsigned prefix[20001] = {0}, bad = 0;
        split_init(&s, 1000);
        for (unsigned i = 0; i < 20000; i++) {
                seq[i] = split_pick(&s);
                prefix[i + 1] = prefix[i] + (seq[i] == SPLIT_CANARY);
        }
        for (unsigned i = 0; i + 100 <= 20000; i++) {
                unsigned c = prefix[i + 100] - prefix[i];
                if (c < 9 || c > 11)
                        bad++;
        }
        is_int(bad, 0, "10%%: every window of 100 has 10 +- 1 canary picks");
        unsigned longest_stable = 0, run = 0;
        for (unsigned i = 0; i < 20000; i++) {
                run = seq[i] == SPLIT_STABLE ? run + 1 : 0;
                if (run > longest_stable)
                        longest_stable = run;
        }
        is_int(longest_stable, 9, "10%%: canary every 10th request, never bunched");

        split_init(&s, 10000);
        is_int(split_pick(&s), SPLIT_CANARY, "10000 bp: first pick is canary");
        split_init(&s, 0);
        is_int(split_pick(&s), SPLIT_STABLE, "0 bp: first pick is stable");
        split_init(&s, 20000);
        is_int(s.canary_bp, 10000, "weights above 10000 clamp to all canary");
        is_int(split_pick(&s), SPLIT_CANARY, "and pick canary");
}

static void test_split_weight_change(void) {
        VersionSplit s, fresh;

        /* Mid-cycle at 10%, go to 100%: the very next pick is canary. */
        split_init(&s, 1000);
        for (unsigned i = 0; i < 37; i++)
                (void) split_pick(&s);
        split_set_weight(&s, 10000);
        is_int(split_pick(&s), SPLIT_CANARY, "raised to 100%% mid-cycle: the next pick is canary");

        /* Abort: canary to 0 mid-cycle, no canary pick at all afterwards. */
        split_init(&s, 5000);
        (void) split_pick(&s);
        split_set_weight(&s, 0);
        unsigned canary = 0;
        for (unsigned i = 0; i < 1000; i++)
                canary += split_pick(&s) == SPLIT_CANARY;
        is_int(canary, 0, "set to 0 mid-cycle: no canary pick afterwards");

        /* From 10% to 50% after 7 picks: from the next pick on it is a fresh split at 50%. */
        split_init(&s, 1000);
        for (unsigned i = 0; i < 7; i++)
                (void) split_pick(&s);
        split_set_weight(&s, 5000);
        split_init(&fresh, 5000);
        unsigned diff = 0;
        canary = 0;
        for (unsigned i = 0; i < 100; i++) {
                SplitGroup g = split_pick(&s);
                diff += g != split_pick(&fresh);
                canary += g == SPLIT_CANARY;
        }
        is_int(diff, 0, "changed weight: the same sequence as a split started at the new weight");
        is_int(canary, 50, "and exactly 50 of the next 100 are canary");

        /* Setting the same weight again does not disturb the cycle. */
        VersionSplit a, b;
        split_init(&a, 1000);
        split_init(&b, 1000);
        diff = 0;
        for (unsigned i = 0; i < 1000; i++) {
                if (i % 3 == 0)
                        split_set_weight(&a, 1000);
                diff += split_pick(&a) != split_pick(&b);
        }
        is_int(diff, 0, "re-applying the same weight is a no-op");
}

/* A small deterministic generator, so the test sees the same keys each run. */
static uint64_t rng_state = 0x9e3779b97f4a7c15u;
static uint64_t rng(void) {
        rng_state ^= rng_state << 13;
        rng_state ^= rng_state >> 7;
        rng_state ^= rng_state << 17;
        return rng_state;
}

#define N_KEYS 10000

static void test_sticky(void) {
        static char keys[N_KEYS][40];
        static unsigned bucket[N_KEYS];
        const uint64_t salt = 0x1234abcd5678ef01u;

        for (unsigned i = 0; i < N_KEYS; i++) {
                snprintf(keys[i], sizeof keys[i], "session=%016llx", (unsigned long long) rng());
                bucket[i] = sticky_bucket(keys[i], strlen(keys[i]), salt);
        }

        unsigned same = 0, in_range = 0, other_salt_same = 0;
        for (unsigned i = 0; i < N_KEYS; i++) {
                same += sticky_bucket(keys[i], strlen(keys[i]), salt) == bucket[i];
                in_range += bucket[i] < SPLIT_BASIS_POINTS;
                other_salt_same += sticky_bucket(keys[i], strlen(keys[i]), salt + 1) == bucket[i];
        }
        is_int(same, N_KEYS, "the same key and salt give the same bucket");
        is_int(in_range, N_KEYS, "buckets are in 0..9999");
        ok(other_salt_same < 20, "another salt reshuffles the buckets (%u of %u unchanged)", other_salt_same,
           N_KEYS);

        is_int(sticky_bucket("abcdef", 3, salt), sticky_bucket("abc", 3, salt),
               "only LEN bytes of the key count (no NUL needed)");
        ok(sticky_bucket("abc", 3, salt) != sticky_bucket("abd", 3, salt) ||
                   sticky_bucket("abc", 3, salt + 7) != sticky_bucket("abd", 3, salt + 7),
           "neighbouring keys land apart");
        ok(sticky_bucket(NULL, 0, salt) < SPLIT_BASIS_POINTS, "an empty key has a bucket too");

        static const unsigned weights[] = {100, 1000, 2500, 5000, 9000, 9900};
        for (size_t w = 0; w < sizeof weights / sizeof weights[0]; w++) {
                unsigned canary = 0;
                for (unsigned i = 0; i < N_KEYS; i++)
                        canary += sticky_pick(bucket[i], weights[w]) == SPLIT_CANARY;
                /* within +-1.5 percentage points: |canary/N - w/10000| <= 0.015 */
                long long dev = (long long) canary * SPLIT_BASIS_POINTS - (long long) weights[w] * N_KEYS;
                if (dev < 0)
                        dev = -dev;
                ok(dev <= 150LL * N_KEYS, "weight %u bp: %u of %u keys on canary", weights[w], canary,
                   N_KEYS);
        }

        unsigned all_stable = 0, all_canary = 0;
        for (unsigned i = 0; i < N_KEYS; i++) {
                all_stable += sticky_pick(bucket[i], 0) == SPLIT_STABLE;
                all_canary += sticky_pick(bucket[i], 10000) == SPLIT_CANARY;
        }
        is_int(all_stable, N_KEYS, "weight 0: every client on stable");
        is_int(all_canary, N_KEYS, "weight 10000: every client on canary");

        /* As the weight rises step by step, no client goes from canary back to stable. */
        unsigned moved_back = 0;
        for (unsigned i = 0; i < N_KEYS; i++) {
                SplitGroup was = SPLIT_STABLE;
                for (unsigned w = 0; w <= SPLIT_BASIS_POINTS; w += 250) {
                        SplitGroup now = sticky_pick(bucket[i], w);
                        if (was == SPLIT_CANARY && now == SPLIT_STABLE)
                                moved_back++;
                        was = now;
                }
        }
        is_int(moved_back, 0, "raising the weight never moves a client from canary back to stable");
}

static void count_picks(BackendSet *set, unsigned n, unsigned counts[static BACKEND_SET_MAX],
                        unsigned *ret_none) {
        memset(counts, 0, BACKEND_SET_MAX * sizeof counts[0]);
        *ret_none = 0;
        for (unsigned i = 0; i < n; i++) {
                int b = backend_pick(set);
                if (b < 0)
                        (*ret_none)++;
                else
                        counts[b]++;
        }
}

static void test_backends(void) {
        BackendSet set;
        unsigned counts[BACKEND_SET_MAX], none;

        backend_set_init(&set, 0);
        is_int(backend_pick(&set), -1, "empty set: no backend");

        backend_set_init(&set, 4);
        is_int(backend_pick(&set), -1, "nothing ready yet: no backend");
        for (size_t i = 0; i < 4; i++)
                backend_set_ready(&set, i, true);

        count_picks(&set, 400, counts, &none);
        ok(counts[0] == 100 && counts[1] == 100 && counts[2] == 100 && counts[3] == 100 && none == 0,
           "4 ready: 100 picks each of 400 (%u %u %u %u)", counts[0], counts[1], counts[2], counts[3]);

        /* Each group of 4 consecutive picks visits every backend once. */
        unsigned bad = 0;
        for (unsigned round = 0; round < 25; round++) {
                unsigned seen = 0;
                for (unsigned i = 0; i < 4; i++)
                        seen |= 1u << backend_pick(&set);
                bad += seen != 0xf;
        }
        is_int(bad, 0, "every round of 4 picks visits all 4");

        (void) backend_pick(&set); /* mid-rotation */
        backend_set_ejected(&set, 1, true);
        count_picks(&set, 300, counts, &none);
        ok(counts[0] == 100 && counts[1] == 0 && counts[2] == 100 && counts[3] == 100,
           "backend 1 ejected: skipped, the other 3 share equally (%u %u %u %u)", counts[0], counts[1],
           counts[2], counts[3]);

        backend_set_ready(&set, 3, false);
        count_picks(&set, 100, counts, &none);
        ok(counts[0] == 50 && counts[2] == 50 && counts[1] == 0 && counts[3] == 0,
           "and backend 3 unready: 0 and 2 share (%u %u)", counts[0], counts[2]);

        ok(!backend_usable(&set, 1) && !backend_usable(&set, 3) && backend_usable(&set, 0),
           "backend_usable says which are eligible");

        backend_set_ejected(&set, 0, true);
        backend_set_ready(&set, 2, false);
        is_int(backend_pick(&set), -1, "none ready and not ejected: -1");

        backend_set_ejected(&set, 1, false); /* 1 is ready again after ejection ends */
        backend_set_ejected(&set, 0, false);
        count_picks(&set, 100, counts, &none);
        ok(counts[0] == 50 && counts[1] == 50 && none == 0, "back from ejection: equal shares again (%u %u)",
           counts[0], counts[1]);

        backend_set_ready(&set, 99, true); /* out of range: ignored */
        is_int(set.n, 4, "out-of-range index ignored");
        backend_set_init(&set, BACKEND_SET_MAX + 10);
        is_int(set.n, BACKEND_SET_MAX, "size clamps to BACKEND_SET_MAX");
}

int main(void) {
        test_split();
        test_split_weight_change();
        test_sticky();
        test_backends();
        return tap_done();
}
