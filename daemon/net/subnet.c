/* IPv4 subnet arithmetic: parsing "a.b.c.d/n" strictly and printing addresses, so the
 * bridge, the leases and the command-line template agree on one notation. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "net.h"

int ip_parse(const char *s, uint32_t *ret) {
        struct in_addr a;

        /* inet_pton takes exactly four decimal octets: no "10.1", no hex, no leading zeros. */
        if (!s || inet_pton(AF_INET, s, &a) != 1)
                return -EINVAL;
        *ret = ntohl(a.s_addr);
        return 0;
}

static uint32_t prefix_mask(unsigned prefix) {
        return prefix == 0 ? 0 : UINT32_MAX << (32 - prefix);
}

int subnet_parse(const char *cidr, Subnet *ret) {
        char addr[INET_ADDRSTRLEN];
        const char *slash, *p;
        unsigned prefix = 0;
        uint32_t network;

        if (!cidr)
                return -EINVAL;
        slash = strchr(cidr, '/');
        if (!slash || (size_t) (slash - cidr) >= sizeof addr)
                return -EINVAL;
        memcpy(addr, cidr, (size_t) (slash - cidr));
        addr[slash - cidr] = '\0';
        if (ip_parse(addr, &network) < 0)
                return -EINVAL;

        /* One or two decimal digits, no sign, space or leading zero. */
        p = slash + 1;
        if (p[0] < '1' || p[0] > '9')
                return -EINVAL;
        for (; *p; p++) {
                if (*p < '0' || *p > '9' || p - slash > 2)
                        return -EINVAL;
                prefix = prefix * 10 + (unsigned) (*p - '0');
        }
        /* /31 and /32 leave no room for a gateway plus a guest. */
        if (prefix < 8 || prefix > 30)
                return -EINVAL;
        if (network & ~prefix_mask(prefix))
                return -EINVAL;

        *ret = (Subnet) { .network = network, .prefix = prefix, .gateway = network + 1 };
        return 0;
}

void ip_format(uint32_t ip, char out[static 16]) {
        snprintf(out, 16, "%u.%u.%u.%u", ip >> 24, (ip >> 16) & 0xff, (ip >> 8) & 0xff, ip & 0xff);
}

void subnet_netmask(const Subnet *s, char out[static 16]) {
        ip_format(prefix_mask(s->prefix), out);
}
