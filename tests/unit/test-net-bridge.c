/* The bridge through netlink, inside a network namespace of this test's own (root only):
 * created up with its gateway address, ensured again without change, an operator's missing
 * bridge reported, a link that is not a bridge refused, and removed. Nothing here touches
 * the host's network namespace: the test stops unless unshare() gave it a fresh one. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <netlink/addr.h>
#include <netlink/cache.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>
#include <netlink/route/link/veth.h>

#include "net/net.h"
#include "tap.h"

static struct nl_sock *sk;

static struct rtnl_link *link_get(const char *name) {
        struct rtnl_link *link = NULL;
        return rtnl_link_get_kernel(sk, 0, name, &link) < 0 ? NULL : link;
}

static int link_count(void) {
        struct nl_cache *cache = NULL;
        int n;

        if (rtnl_link_alloc_cache(sk, AF_UNSPEC, &cache) < 0)
                return -1;
        n = nl_cache_nitems(cache);
        nl_cache_free(cache);
        return n;
}

/* The IPv4 addresses of IFINDEX as "a.b.c.d/n" joined by spaces, into out. Returns how many. */
static int ipv4_addresses(int ifindex, char *out, size_t size) {
        struct nl_cache *cache = NULL;
        int n = 0;

        out[0] = '\0';
        if (rtnl_addr_alloc_cache(sk, &cache) < 0)
                return -1;
        for (struct nl_object *o = nl_cache_get_first(cache); o; o = nl_cache_get_next(o)) {
                struct rtnl_addr *a = (struct rtnl_addr *) o;
                char buf[64];

                if (rtnl_addr_get_ifindex(a) != ifindex || rtnl_addr_get_family(a) != AF_INET)
                        continue;
                if (!inet_ntop(AF_INET, nl_addr_get_binary_addr(rtnl_addr_get_local(a)), buf, sizeof buf))
                        continue;
                snprintf(out + strlen(out), size - strlen(out), "%s%s/%d", n ? " " : "", buf,
                         rtnl_addr_get_prefixlen(a));
                n++;
        }
        nl_cache_free(cache);
        return n;
}

static void check_bridge_state(const char *when) {
        struct rtnl_link *link = link_get("aviary-t0");
        char addrs[256];

        ok(link != NULL, "%s: aviary-t0 exists", when);
        if (!link)
                return;
        ok(rtnl_link_is_bridge(link), "%s: it is a bridge", when);
        ok(rtnl_link_get_flags(link) & IFF_UP, "%s: it is up", when);
        is_int(ipv4_addresses(rtnl_link_get_ifindex(link), addrs, sizeof addrs), 1, "%s: it has one IPv4 address",
               when);
        is_str(addrs, "10.99.0.1/24", "%s: the gateway address with the subnet's prefix", when);
        rtnl_link_put(link);
}

/* A second opinion from iproute2, run in this process' namespace. */
static void check_with_ip(void) {
        char line[512] = "";
        FILE *p;

        if (access("/usr/sbin/ip", X_OK) != 0 && access("/sbin/ip", X_OK) != 0) {
                ok(1, "ip agrees # SKIP iproute2 not installed");
                return;
        }
        p = popen("ip -4 -o addr show dev aviary-t0", "r");
        if (p) {
                if (!fgets(line, sizeof line, p))
                        line[0] = '\0';
                pclose(p);
        }
        ok(strstr(line, "inet 10.99.0.1/24") != NULL, "ip -4 addr show agrees: %s", strtok(line, "\n") ?: "(nothing)");
}

static void set_down(const char *name) {
        struct rtnl_link *link = link_get(name), *change = rtnl_link_alloc();

        rtnl_link_unset_flags(change, IFF_UP);
        ok(link && rtnl_link_change(sk, link, change, 0) == 0, "an operator sets %s down", name);
        rtnl_link_put(change);
        if (link)
                rtnl_link_put(link);
}

static void diag_type(struct rtnl_link *link) {
        const char *type = link ? rtnl_link_get_type(link) : NULL;
        printf("# the non-bridge link is of type %s\n", type ? type : "(none)");
}

/* An operator's bridge: made elsewhere, down, without an address; aviaryd only configures it. */
static void test_operator_bridge(void) {
        struct rtnl_link *link;
        Subnet other;
        char addrs[256] = "";

        is_int(rtnl_link_bridge_add(sk, "aviary-t1"), 0, "an operator creates bridge aviary-t1");
        subnet_parse("10.98.0.0/16", &other);
        is_int(net_bridge_ensure("aviary-t1", &other, false), 0, "ensure without creating configures it");
        link = link_get("aviary-t1");
        ok(link && (rtnl_link_get_flags(link) & IFF_UP), "it is up");
        is_int(link ? ipv4_addresses(rtnl_link_get_ifindex(link), addrs, sizeof addrs) : -1, 1, "with one address");
        is_str(addrs, "10.98.0.1/16", "its gateway address");
        is_int(net_bridge_remove("aviary-t1"), 0, "and it is removed");
        if (link)
                rtnl_link_put(link);
}

static void test_not_a_bridge(const Subnet *net) {
        struct rtnl_link *dummy = rtnl_link_alloc(), *got;
        char addrs[256];
        int err;

        is_int(net_bridge_ensure("lo", net, true), -ENOTTY, "the loopback link is refused as a bridge");
        got = link_get("lo");
        is_int(got ? ipv4_addresses(rtnl_link_get_ifindex(got), addrs, sizeof addrs) : -1, 0,
               "and gets no address");
        if (got)
                rtnl_link_put(got);

        /* A dummy link; kernels without the dummy driver get one end of a veth pair instead. */
        rtnl_link_set_name(dummy, "aviary-d0");
        err = rtnl_link_set_type(dummy, "dummy");
        if (err == 0)
                err = rtnl_link_add(sk, dummy, NLM_F_CREATE | NLM_F_EXCL);
        rtnl_link_put(dummy);
        if (err < 0)
                err = rtnl_link_veth_add(sk, "aviary-d0", "aviary-d1", getpid());
        if (err < 0) {
                ok(1, "a link that is no bridge is refused # SKIP cannot create dummy or veth links: %s",
                   nl_geterror(err));
                return;
        }
        got = link_get("aviary-d0");
        diag_type(got);
        is_int(net_bridge_ensure("aviary-d0", net, true), -ENOTTY, "a link that is no bridge is refused");
        is_int(net_bridge_ensure("aviary-d0", net, false), -ENOTTY, "also when creation is off");
        if (got)
                rtnl_link_put(got);
        got = link_get("aviary-d0");
        ok(got != NULL, "the link is still there");
        if (got) {
                is_int(ipv4_addresses(rtnl_link_get_ifindex(got), addrs, sizeof addrs), 0, "without an address");
                ok(!(rtnl_link_get_flags(got) & IFF_UP), "and still down");
                is_int(net_bridge_remove("aviary-d0"), -ENOTTY, "net_bridge_remove refuses it too");
                rtnl_link_delete(sk, got);
                rtnl_link_put(got);
        }
}

int main(void) {
        Subnet net;
        struct rtnl_link *link;

        if (geteuid() != 0) {
                printf("1..0 # SKIP not root\n");
                return 0;
        }
        /* From here on this process lives in its own, empty network namespace. */
        if (unshare(CLONE_NEWNET) < 0) {
                printf("1..0 # SKIP cannot create a network namespace: %s\n", strerror(errno));
                return 0;
        }
        sk = nl_socket_alloc();
        if (!sk || nl_connect(sk, NETLINK_ROUTE) < 0) {
                printf("Bail out! no rtnetlink socket\n");
                return 1;
        }
        /* A fresh namespace has only lo; anything else means we are not where we think. */
        if (link_count() != 1) {
                printf("Bail out! the new network namespace is not empty; not touching it\n");
                return 1;
        }

        subnet_parse("10.99.0.0/24", &net);

        is_int(net_bridge_ensure("aviary-t0", &net, true), 0, "ensure creates aviary-t0");
        check_bridge_state("created");
        check_with_ip();

        is_int(net_bridge_ensure("aviary-t0", &net, true), 0, "ensure again");
        check_bridge_state("ensured twice");

        set_down("aviary-t0");
        is_int(net_bridge_ensure("aviary-t0", &net, false), 0, "ensure an existing bridge without creating");
        check_bridge_state("after it was set down");

        test_operator_bridge();

        is_int(net_bridge_ensure("aviary-t9", &net, false), -ENOENT, "a missing bridge with creation off");
        link = link_get("aviary-t9");
        ok(link == NULL, "is not created");
        if (link)
                rtnl_link_put(link);

        is_int(net_bridge_ensure("", &net, true), -EINVAL, "an empty name is refused");
        is_int(net_bridge_ensure("aviary-much-too-long0", &net, true), -EINVAL, "a name over 15 bytes is refused");
        is_int(net_bridge_ensure("a/b", &net, true), -EINVAL, "a name with a slash is refused");

        test_not_a_bridge(&net);

        is_int(net_bridge_remove("aviary-t0"), 0, "the bridge is removed");
        link = link_get("aviary-t0");
        ok(link == NULL, "and is gone");
        if (link)
                rtnl_link_put(link);
        is_int(net_bridge_remove("aviary-t0"), -ENOENT, "removing it again says there is none");
        is_int(link_count(), 1, "only lo is left");

        nl_socket_free(sk);
        return tap_done();
}
