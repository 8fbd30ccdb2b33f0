/* IPv4 address leases: each instance gets the lowest free host address of the subnet,
 * recorded in SQLite so an address survives a daemon restart and is never given twice. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "net.h"

/* The first and last address a guest may have: after the gateway, before the broadcast. */
static void lease_range(const Subnet *subnet, uint32_t *ret_first, uint32_t *ret_last) {
        uint32_t broadcast = subnet->network | (UINT32_MAX >> subnet->prefix);

        *ret_first = subnet->gateway + 1;
        *ret_last = broadcast - 1;
}

/* The addresses of the range leased now, as numbers (others, from an earlier subnet, skipped). */
typedef struct Taken {
        uint32_t first, last;
        uint32_t *ip;
        size_t n, allocated;
} Taken;

static int taken_add(const char *text, void *userdata) {
        Taken *t = userdata;
        uint32_t ip;

        if (ip_parse(text, &ip) < 0 || ip < t->first || ip > t->last)
                return 0;
        if (t->n == t->allocated) {
                size_t want = t->allocated ? t->allocated * 2 : 64;
                uint32_t *p = realloc(t->ip, want * sizeof *p);
                if (!p)
                        return -ENOMEM;
                t->ip = p;
                t->allocated = want;
        }
        t->ip[t->n++] = ip;
        return 0;
}

static int cmp_u32(const void *a, const void *b) {
        uint32_t x = *(const uint32_t *) a, y = *(const uint32_t *) b;
        return x < y ? -1 : x > y;
}

/* The lowest address of [FIRST, LAST] nobody holds, or 0 when all are taken: one read of the
 * leases and a sort, not a lookup per address (booting N guests looked N²/2 times). */
static int lowest_free(Store *s, uint32_t first, uint32_t last, uint32_t *ret) {
        Taken t = { .first = first, .last = last };
        uint32_t ip = first;
        int r = store_lease_list(s, taken_add, &t);

        if (r < 0) {
                free(t.ip);
                return r;
        }
        if (t.n > 0) /* qsort's base must not be NULL, even for no element */
                qsort(t.ip, t.n, sizeof *t.ip, cmp_u32);
        for (size_t i = 0; i < t.n && t.ip[i] <= ip; i++)
                if (t.ip[i] == ip)
                        ip++; /* sorted, no duplicates (ip is the table's key): the next may be free */
        free(t.ip);
        *ret = ip <= last && ip >= first ? ip : 0;
        return 0;
}

int net_lease_acquire(Store *s, const Subnet *subnet, const char *instance, char ret_ip[static 16]) {
        _cleanup_(store_rollbackp) Store *tx = NULL;
        InstanceRecord record = {};
        uint32_t first, last, ip;
        char text[16];
        int r;

        lease_range(subnet, &first, &last);

        r = store_begin(s);
        if (r < 0)
                return r;
        tx = s;

        /* Checked first, or the lease's foreign key would fail as an anonymous constraint. */
        r = store_instance_get(s, instance, &record);
        instance_record_done(&record);
        if (r != 0)
                return r;

        r = store_lease_get(s, instance, text);
        if (r == 0) {
                if (ip_parse(text, &ip) == 0 && ip >= first && ip <= last)
                        goto done;
                /* The subnet was reconfigured: the old address is unreachable on the bridge. */
                log_notice("Instance %s holds %s, outside the guest subnet; leasing a new address.", instance, text);
                r = store_lease_delete(s, instance);
                if (r < 0)
                        return r;
        } else if (r != AVIARY_E_NOT_FOUND)
                return r;

        /* Lowest free first: addresses stay predictable and dense. */
        r = lowest_free(s, first, last, &ip);
        if (r < 0)
                return r;
        if (ip == 0) {
                char network[16];
                ip_format(subnet->network, network);
                return log_warning_errno(-EADDRNOTAVAIL, "No free address left in %s/%u for instance %s", network,
                                         subnet->prefix, instance);
        }
        ip_format(ip, text);
        r = store_lease_insert(s, text, instance);
        if (r < 0)
                return r;

done:
        r = store_commit(TAKE_PTR(tx));
        if (r < 0)
                return r;
        memcpy(ret_ip, text, sizeof text);
        return 0;
}

int net_lease_release(Store *s, const char *instance) {
        /* A single DELETE is atomic on its own; it joins the caller's transaction if any. */
        return store_lease_delete(s, instance);
}
