/* IPv4 address leases: each instance gets the lowest free host address of the subnet,
 * recorded in SQLite so an address survives a daemon restart and is never given twice. */
#include <errno.h>
#include <string.h>

#include "log.h"
#include "net.h"

/* The first and last address a guest may have: after the gateway, before the broadcast. */
static void lease_range(const Subnet *subnet, uint32_t *ret_first, uint32_t *ret_last) {
        uint32_t broadcast = subnet->network | (UINT32_MAX >> subnet->prefix);

        *ret_first = subnet->gateway + 1;
        *ret_last = broadcast - 1;
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

        /* Lowest free first: addresses stay predictable and dense. A linear scan is fine for
         * the subnets a host bridge carries; each probe is one indexed lookup. */
        for (ip = first; ip <= last; ip++) {
                ip_format(ip, text);
                r = store_lease_taken(s, text);
                if (r < 0)
                        return r;
                if (r == 0)
                        break;
        }
        if (ip > last) {
                char network[16];
                ip_format(subnet->network, network);
                return log_warning_errno(-EADDRNOTAVAIL, "No free address left in %s/%u for instance %s", network,
                                         subnet->prefix, instance);
        }
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
