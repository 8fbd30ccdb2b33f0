/* The proxy's choices per request, as pure state machines without I/O: stable or canary by
 * weight (smooth weighted round-robin, exact per cycle), sticky buckets for clients that must
 * keep their version, and the next ready guest inside a group. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Weights are in basis points of all traffic: 0 (no canary) .. SPLIT_BASIS_POINTS (all canary). */
#define SPLIT_BASIS_POINTS 10000u

typedef enum SplitGroup {
        SPLIT_STABLE = 0,
        SPLIT_CANARY = 1,
        _SPLIT_GROUP_MAX,
} SplitGroup;

const char *split_group_to_string(SplitGroup g);

/* Smooth weighted round-robin between two groups (nginx's algorithm): over every cycle of
 * 10000 / gcd(weight, 10000) picks the canary gets exactly its share, spread evenly (any window
 * of n picks is within 1 of n * weight / 10000). Not locked: it lives on the proxy's event loop. */
typedef struct VersionSplit {
        unsigned canary_bp;               /* as set, clamped to SPLIT_BASIS_POINTS */
        int64_t weight[_SPLIT_GROUP_MAX]; /* reduced by the gcd, so the cycle is as short as can be */
        int64_t current[_SPLIT_GROUP_MAX];
        int64_t total;
} VersionSplit;

void split_init(VersionSplit *s, unsigned canary_bp);
/* Takes effect for the next pick. A new weight starts a new cycle (the old one's partial counts
 * would otherwise skew the first cycle at the new weight); setting the same weight again is a
 * no-op, so a reconciler that re-applies weights does not disturb the cycle. */
void split_set_weight(VersionSplit *s, unsigned canary_bp);
SplitGroup split_pick(VersionSplit *s);

/* A rollout's header route (setHeaderRoute): a request that matches any rule goes to the canary
 * whatever the weight, before stickiness and weights. */
typedef enum HeaderRuleKind {
        HEADER_RULE_HEADER,     /* header NAME is exactly VALUE */
        HEADER_RULE_COOKIE,     /* cookie NAME is exactly VALUE */
        HEADER_RULE_SOURCE,     /* the client's address is in NET/MASK */
} HeaderRuleKind;

typedef struct HeaderRule {
        HeaderRuleKind kind;
        char name[64];
        char value[128];
        uint32_t net, mask;     /* network byte order */
} HeaderRule;

#define HEADER_RULES_MAX 8

/* Stickiness: the client's key (a cookie or header value, LEN bytes, need not be
 * NUL-terminated) hashed with HMAC-SHA256 keyed by the rollout's SALT into one of 10000
 * buckets. The same key and salt always give the same bucket; a new rollout (new salt)
 * reshuffles clients. Only an allocation failure inside OpenSSL can make the hash fail; then the
 * last bucket (9999) is returned, which is canary only at full weight, so the client fails
 * toward stable. */
unsigned sticky_bucket(const char *key, size_t len, uint64_t salt);
/* Canary iff BUCKET < CANARY_BP: as the weight rises, buckets only ever move from stable to
 * canary, so a client never goes back to the old version mid-rollout. */
SplitGroup sticky_pick(unsigned bucket, unsigned canary_bp);

/* Guest choice inside one group: equal-weight smooth round-robin over the slots that are ready
 * and not ejected. Slot i stands for the caller's i-th backend; this set holds only what the
 * choice needs. */
#define BACKEND_SET_MAX 256

typedef struct BackendSlot {
        bool ready;   /* health checks pass (active checks, rise/fall) */
        bool ejected; /* passive ejection after consecutive 5xx or connect failures */
        int64_t current;
} BackendSlot;

typedef struct BackendSet {
        size_t n;
        BackendSlot slot[BACKEND_SET_MAX];
} BackendSet;

/* N slots (clamped to BACKEND_SET_MAX), all unready and not ejected. */
void backend_set_init(BackendSet *set, size_t n);
/* Changing who is eligible restarts the rotation, so every eligible backend gets an equal share
 * from the next pick on. Out-of-range indices are ignored. */
void backend_set_ready(BackendSet *set, size_t i, bool ready);
void backend_set_ejected(BackendSet *set, size_t i, bool ejected);
bool backend_usable(const BackendSet *set, size_t i);
/* The index of the next backend to use, or -1 when none is ready and not ejected. */
int backend_pick(BackendSet *set);
