/* Guest networking: the bridge (created and configured through netlink with libnl when
 * missing) and IPv4 address leases kept in SQLite. */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

typedef struct Subnet {
        uint32_t network;         /* host byte order */
        unsigned prefix;          /* 8..30 */
        uint32_t gateway;         /* the bridge's own address: network + 1 */
} Subnet;

/* "10.88.0.0/24" → Subnet. -EINVAL on a bad or too small subnet, or one whose address has
 * host bits set ("10.88.0.1/24"): we never guess which network was meant. */
int subnet_parse(const char *cidr, Subnet *ret);
/* Strict dotted quad → address in host byte order. -EINVAL if it is not one. */
int ip_parse(const char *s, uint32_t *ret);
/* Dotted quads for an address / the netmask of the subnet. out needs 16 bytes. */
void ip_format(uint32_t ip, char out[static 16]);
void subnet_netmask(const Subnet *s, char out[static 16]);

/* Makes sure bridge NAME exists, is up and carries the subnet's gateway address.
 * CREATE false: it must already exist (an operator's bridge); -ENOENT if not.
 * -ENOTTY when a link of that name exists but is not a bridge; -EINVAL on a name that
 * cannot be an interface name. Failures are logged here. */
int net_bridge_ensure(const char *name, const Subnet *subnet, bool create);
/* Deletes bridge NAME (tests). -ENOENT when there is none, -ENOTTY when NAME is not a bridge. */
int net_bridge_remove(const char *name);

/* Leases the lowest free address of SUBNET (not network, gateway or broadcast) to
 * INSTANCE; an instance that already has one inside SUBNET gets the same (a lease outside
 * it, left from an earlier configuration, is replaced). -EADDRNOTAVAIL when full,
 * AVIARY_E_INSTANCE_NOT_FOUND when INSTANCE is not in the store. Joins the caller's transaction. */
int net_lease_acquire(Store *s, const Subnet *subnet, const char *instance, char ret_ip[static 16]);
/* Frees INSTANCE's address; 0 also when it had none. */
int net_lease_release(Store *s, const char *instance);
