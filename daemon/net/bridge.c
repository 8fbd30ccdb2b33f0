/* The guest bridge, through rtnetlink (libnl-route): created when missing (if allowed),
 * given the subnet's gateway address and brought up. Everything here is idempotent, so
 * aviaryd runs it on every start. */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <string.h>

#include <netlink/addr.h>
#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>
#include <netlink/route/link/bridge.h>

#include "log.h"
#include "net.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_sock *, nl_socket_free);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_link *, rtnl_link_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct rtnl_addr *, rtnl_addr_put);
DEFINE_TRIVIAL_CLEANUP_FUNC(struct nl_addr *, nl_addr_put);

/* libnl reports its own NLE_* codes; callers get a negative errno like everywhere else. */
static int errno_from_nl(int nl_error) {
        switch (nl_error < 0 ? -nl_error : nl_error) {
        case NLE_NOMEM: return -ENOMEM;
        case NLE_EXIST: return -EEXIST;
        case NLE_INVAL: return -EINVAL;
        case NLE_RANGE: return -ERANGE;
        case NLE_OPNOTSUPP: return -EOPNOTSUPP;
        case NLE_AF_NOSUPPORT: return -EAFNOSUPPORT;
        case NLE_OBJ_NOTFOUND:
        case NLE_NODEV: return -ENOENT;
        case NLE_NOADDR: return -EADDRNOTAVAIL;
        case NLE_BUSY: return -EBUSY;
        case NLE_AGAIN: return -EAGAIN;
        case NLE_INTR: return -EINTR;
        case NLE_NOACCESS: return -EACCES;
        case NLE_PERM: return -EPERM;
        default: return -EIO;
        }
}

static int log_nl_error(int nl_error, const char *name, const char *what) {
        log_error("Bridge %s: cannot %s: %s", name, what, nl_geterror(nl_error));
        return errno_from_nl(nl_error);
}

static bool link_name_valid(const char *name) {
        size_t n = name ? strlen(name) : 0;

        if (n == 0 || n >= IFNAMSIZ || streq(name, ".") || streq(name, ".."))
                return false;
        for (const char *p = name; *p; p++)
                if (*p == '/' || *p == ':' || *p <= ' ' || *p == 0x7f)
                        return false;
        return true;
}

static int netlink_open(const char *name, struct nl_sock **ret) {
        _cleanup_(nl_socket_freep) struct nl_sock *sk = nl_socket_alloc();
        int err;

        if (!sk)
                return log_oom();
        err = nl_connect(sk, NETLINK_ROUTE);
        if (err < 0)
                return log_nl_error(err, name, "open a netlink socket");
        *ret = TAKE_PTR(sk);
        return 0;
}

/* 0 with the link, -ENOENT (not logged) when there is none, another error (logged). */
static int link_get(struct nl_sock *sk, const char *name, struct rtnl_link **ret) {
        int err = rtnl_link_get_kernel(sk, 0, name, ret);

        if (err == -NLE_OBJ_NOTFOUND || err == -NLE_NODEV)
                return -ENOENT;
        if (err < 0)
                return log_nl_error(err, name, "look up the link");
        return 0;
}

static int refuse_non_bridge(struct rtnl_link *link, const char *name) {
        const char *type = rtnl_link_get_type(link);

        log_error("Link %s exists but is a %s device, not a bridge; refusing to use it.", name,
                  type ? type : "plain");
        return -ENOTTY;
}

static int bridge_create(struct nl_sock *sk, const char *name) {
        _cleanup_(rtnl_link_putp) struct rtnl_link *link = rtnl_link_bridge_alloc();
        int err;

        if (!link)
                return log_oom();
        rtnl_link_set_name(link, name);
        err = rtnl_link_add(sk, link, NLM_F_CREATE | NLM_F_EXCL);
        /* Someone else created it meanwhile: the caller checks what it is. */
        if (err < 0 && err != -NLE_EXIST)
                return log_nl_error(err, name, "create the bridge");
        if (err == 0)
                log_info("Created bridge %s.", name);
        return 0;
}

static int nl_addr_from_ip(uint32_t ip, struct nl_addr **ret) {
        uint32_t be = htonl(ip);

        *ret = nl_addr_build(AF_INET, &be, sizeof be);
        return *ret ? 0 : -ENOMEM;
}

static int bridge_add_gateway(struct nl_sock *sk, struct rtnl_link *link, const char *name, const Subnet *subnet) {
        _cleanup_(rtnl_addr_putp) struct rtnl_addr *addr = rtnl_addr_alloc();
        _cleanup_(nl_addr_putp) struct nl_addr *local = NULL, *broadcast = NULL;
        char text[16];
        int err;

        if (!addr || nl_addr_from_ip(subnet->gateway, &local) < 0 ||
            nl_addr_from_ip(subnet->network | (UINT32_MAX >> subnet->prefix), &broadcast) < 0)
                return log_oom();

        rtnl_addr_set_ifindex(addr, rtnl_link_get_ifindex(link));
        rtnl_addr_set_family(addr, AF_INET);
        err = rtnl_addr_set_local(addr, local);
        if (err < 0)
                return log_nl_error(err, name, "set up the gateway address");
        rtnl_addr_set_prefixlen(addr, (int) subnet->prefix);
        rtnl_addr_set_broadcast(addr, broadcast);

        err = rtnl_addr_add(sk, addr, NLM_F_EXCL);
        if (err == -NLE_EXIST)
                return 0;
        if (err < 0) {
                ip_format(subnet->gateway, text);
                log_error("Bridge %s: cannot add address %s/%u: %s", name, text, subnet->prefix, nl_geterror(err));
                return errno_from_nl(err);
        }
        return 0;
}

static int link_set_up(struct nl_sock *sk, struct rtnl_link *link, const char *name) {
        _cleanup_(rtnl_link_putp) struct rtnl_link *change = NULL;
        int err;

        if (rtnl_link_get_flags(link) & IFF_UP)
                return 0;
        change = rtnl_link_alloc();
        if (!change)
                return log_oom();
        rtnl_link_set_flags(change, IFF_UP);
        err = rtnl_link_change(sk, link, change, 0);
        if (err < 0)
                return log_nl_error(err, name, "set the link up");
        return 0;
}

int net_bridge_ensure(const char *name, const Subnet *subnet, bool create) {
        _cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
        _cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
        int r;

        if (!link_name_valid(name))
                return log_error_errno(-EINVAL, "\"%s\" is not a valid bridge name", name ? name : "");
        r = netlink_open(name, &sk);
        if (r < 0)
                return r;

        r = link_get(sk, name, &link);
        if (r == -ENOENT) {
                if (!create)
                        return log_error_errno(r, "Bridge %s does not exist, and aviaryd is configured not to create it",
                                               name);
                r = bridge_create(sk, name);
                if (r < 0)
                        return r;
                r = link_get(sk, name, &link);
                if (r == -ENOENT)
                        return log_error_errno(r, "Bridge %s vanished right after it was created", name);
        }
        if (r < 0)
                return r;
        if (!rtnl_link_is_bridge(link))
                return refuse_non_bridge(link, name);

        r = bridge_add_gateway(sk, link, name, subnet);
        if (r < 0)
                return r;
        return link_set_up(sk, link, name);
}

int net_bridge_remove(const char *name) {
        _cleanup_(nl_socket_freep) struct nl_sock *sk = NULL;
        _cleanup_(rtnl_link_putp) struct rtnl_link *link = NULL;
        int r, err;

        if (!link_name_valid(name))
                return -EINVAL;
        r = netlink_open(name, &sk);
        if (r < 0)
                return r;
        r = link_get(sk, name, &link);
        if (r < 0)
                return r;
        if (!rtnl_link_is_bridge(link))
                return refuse_non_bridge(link, name);
        err = rtnl_link_delete(sk, link);
        if (err < 0)
                return log_nl_error(err, name, "delete the bridge");
        return 0;
}
