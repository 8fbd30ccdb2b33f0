/* Address leases on a real SQLite store: lowest free address first, never one address
 * twice, reuse after release, same instance same address, -EADDRNOTAVAIL when full, and
 * the lease is part of the caller's transaction. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "net/net.h"
#include "tap.h"

static int64_t service_id, version_id;

/* One image, version and service that every test instance belongs to. */
static void make_service(Store *s) {
        const char *kernel = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
        VersionRecord v = { .tag = "1.0", .cmdline = "", .labels = "{}", .manifest = "{}", .memory_mib = 64,
                            .vcpus = 1, .port = 80 };
        ServiceRecord sv = { .name = "web", .replicas = 1, .restart_policy = "always", .hc_path = "/",
                             .hc_interval_ms = 2000, .hc_timeout_ms = 1000, .hc_rise = 1, .hc_fall = 3 };
        int64_t image_id = 0;

        store_blob_add(s, kernel, 1);
        store_image_ensure(s, "img", &image_id);
        strcpy(v.kernel, kernel);
        strcpy(v.digest, "sha256:2222222222222222222222222222222222222222222222222222222222222222");
        is_int(store_version_insert(s, image_id, &v), 0, "a version to run");
        sv.stable_version_id = v.id;
        is_int(store_service_insert(s, &sv), 0, "a service to own the instances");
        version_id = v.id;
        service_id = sv.id;
}

static int make_instance(Store *s, const char *id) {
        InstanceRecord r = { .service_id = service_id, .version_id = version_id };

        snprintf(r.id, sizeof r.id, "%s", id);
        snprintf(r.mac, sizeof r.mac, "52:54:00:00:00:01");
        return store_instance_insert(s, &r);
}

static void test_order_reuse_full(Store *s) {
        Subnet net;
        char ip[16];
        const char *names[] = { "a", "b", "c", "d", "e", "f", "g" };

        subnet_parse("10.77.0.0/29", &net); /* .0 network, .1 gateway, .2-.6 guests, .7 broadcast */
        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                make_instance(s, names[i]);

        is_int(net_lease_acquire(s, &net, "a", ip), 0, "a gets an address");
        is_str(ip, "10.77.0.2", "the first one after the gateway");
        is_int(net_lease_acquire(s, &net, "b", ip), 0, "b gets an address");
        is_str(ip, "10.77.0.3", "the next one");
        is_int(net_lease_acquire(s, &net, "c", ip), 0, "c gets an address");
        is_str(ip, "10.77.0.4", "and the next");

        is_int(net_lease_acquire(s, &net, "a", ip), 0, "a asks again");
        is_str(ip, "10.77.0.2", "and keeps its address");

        is_int(net_lease_release(s, "b"), 0, "b releases its address");
        is_int(net_lease_release(s, "b"), 0, "releasing twice is harmless");
        is_int(net_lease_acquire(s, &net, "d", ip), 0, "d gets an address");
        is_str(ip, "10.77.0.3", "the lowest free one: b's old address");

        is_int(net_lease_acquire(s, &net, "e", ip), 0, "e gets an address");
        is_str(ip, "10.77.0.5", "after the taken ones");
        is_int(net_lease_acquire(s, &net, "f", ip), 0, "f gets an address");
        is_str(ip, "10.77.0.6", "the last before the broadcast");
        strcpy(ip, "unchanged");
        is_int(net_lease_acquire(s, &net, "g", ip), -EADDRNOTAVAIL, "a full subnet says so");
        is_str(ip, "unchanged", "and leaves the output alone");
        is_int(net_lease_acquire(s, &net, "a", ip), 0, "an instance with a lease still gets it when full");
        is_str(ip, "10.77.0.2", "its own");

        is_int(store_instance_delete(s, "e"), 0, "deleting an instance");
        is_int(net_lease_acquire(s, &net, "g", ip), 0, "frees its address for the next");
        is_str(ip, "10.77.0.5", "which gets it");

        for (size_t i = 0; i < ELEMENTSOF(names); i++)
                net_lease_release(s, names[i]);
}

static void test_slash30(Store *s) {
        Subnet net;
        char ip[16];

        subnet_parse("10.77.1.0/30", &net); /* a single guest address: .2 */
        make_instance(s, "p");
        make_instance(s, "q");
        is_int(net_lease_acquire(s, &net, "p", ip), 0, "a /30 has room for one guest");
        is_str(ip, "10.77.1.2", "between gateway and broadcast");
        is_int(net_lease_acquire(s, &net, "q", ip), -EADDRNOTAVAIL, "a second guest in a /30 gets none");
        net_lease_release(s, "p");
        is_int(net_lease_acquire(s, &net, "q", ip), 0, "after a release it fits");
        is_str(ip, "10.77.1.2", "into the same address");
        net_lease_release(s, "q");
}

static void test_never_twice(Store *s) {
        enum { N = 252 }; /* .2 to .253: one short of full */
        static unsigned char seen[256];
        Subnet net;
        char ip[16], id[32];
        uint32_t addr;
        unsigned distinct = 0, outside = 0, failed = 0;

        subnet_parse("10.77.2.0/24", &net);
        store_begin(s);
        for (unsigned i = 0; i < N; i++) {
                snprintf(id, sizeof id, "many-%03u", i);
                make_instance(s, id);
        }
        store_commit(s);

        for (unsigned i = 0; i < N; i++) {
                snprintf(id, sizeof id, "many-%03u", i);
                if (net_lease_acquire(s, &net, id, ip) != 0 || ip_parse(ip, &addr) != 0) {
                        failed++;
                        continue;
                }
                if ((addr & 0xffffff00) != net.network || (addr & 0xff) < 2 || (addr & 0xff) > 254)
                        outside++;
                else if (!seen[addr & 0xff]++)
                        distinct++;
        }
        is_int(failed, 0, "%u instances all get an address", N);
        is_int(outside, 0, "none is the network, gateway, broadcast or outside the subnet");
        is_int(distinct, N, "no address is given twice");

        snprintf(id, sizeof id, "many-%03u", 17);
        is_int(net_lease_acquire(s, &net, id, ip), 0, "asking again");
        is_str(ip, "10.77.2.19", "returns the address it got in order");

        make_instance(s, "one-more");
        make_instance(s, "too-many");
        is_int(net_lease_acquire(s, &net, "one-more", ip), 0, "the 253rd guest");
        is_str(ip, "10.77.2.254", "takes the last address");
        is_int(net_lease_acquire(s, &net, "too-many", ip), -EADDRNOTAVAIL, "the 254th finds the /24 full");
}

static void test_transactions_and_errors(Store *s) {
        Subnet net, moved;
        char ip[16], got[16];

        subnet_parse("10.77.3.0/24", &net);
        make_instance(s, "tx");

        is_int(store_begin(s), 0, "an outer transaction");
        is_int(net_lease_acquire(s, &net, "tx", ip), 0, "a lease inside it");
        is_str(ip, "10.77.3.2", "the first address");
        is_int(store_rollback(s), 0, "the outer transaction rolls back");
        is_int(store_lease_get(s, "tx", got), AVIARY_E_NOT_FOUND, "and the lease went with it");

        is_int(net_lease_acquire(s, &net, "no-such-instance", ip), AVIARY_E_INSTANCE_NOT_FOUND,
               "an unknown instance gets no address");

        is_int(net_lease_acquire(s, &net, "tx", ip), 0, "a lease");
        is_str(ip, "10.77.3.2", "in the first subnet");
        subnet_parse("10.77.4.0/24", &moved);
        is_int(net_lease_acquire(s, &moved, "tx", ip), 0, "after the subnet is reconfigured");
        is_str(ip, "10.77.4.2", "the instance gets an address in the new one");
        is_int(store_lease_get(s, "tx", got), 0, "it holds one lease");
        is_str(got, "10.77.4.2", "the new one");
}

int main(void) {
        char dir[] = "/tmp/aviary-test-lease-XXXXXX";
        char path[256];
        Store *s = NULL;

        if (!mkdtemp(dir))
                return 2;
        snprintf(path, sizeof path, "%s/aviary.db", dir);
        if (store_open(path, &s) < 0) {
                printf("Bail out! cannot open a store at %s\n", path);
                return 1;
        }
        make_service(s);
        test_order_reuse_full(s);
        test_slash30(s);
        test_never_twice(s);
        test_transactions_and_errors(s);
        is_int(store_check(s), 0, "the database is sound");
        store_close(s);

        snprintf(path, sizeof path, "%s/aviary.db", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/aviary.db-wal", dir);
        unlink(path);
        snprintf(path, sizeof path, "%s/aviary.db-shm", dir);
        unlink(path);
        rmdir(dir);
        return tap_done();
}
