/* The raw side of bench/create-rate.py: N virDomainCreateXML calls in a row on
 * test:///default, with the domain XML aviaryd writes for its guests (virt_domain_xml(), one
 * name per domain), and nothing else: no database, no API, no addresses. Prints the rate.
 * Usage: libvirt-create N */
#include <libvirt/libvirt.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "virt.h"

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
        int n = argc > 1 ? atoi(argv[1]) : 50;
        virConnectPtr conn = virConnectOpen("test:///default");
        char **xml = calloc((size_t) n, sizeof *xml);
        double t0;

        if (!conn || !xml)
                return 1;
        for (int i = 0; i < n; i++) {
                char name[64], instance[64], mac[32];
                snprintf(name, sizeof name, "aviary-bench-%04d", i);
                snprintf(instance, sizeof instance, "bench-%04d", i);
                snprintf(mac, sizeof mac, "52:54:00:00:%02x:%02x", i / 256, i % 256);
                VirtDomainSpec spec = {.name = name, .instance = instance, .service = "bench", .version = "app:1.0",
                                       .kernel = "/var/lib/aviary/blobs/sha256/kernel", .initrd = NULL,
                                       .cmdline = "console=ttyS0 ip=10.88.0.2::10.88.0.1:255.255.255.0",
                                       .memory_mib = 128, .vcpus = 1, .bridge = "aviary0", .mac = mac,
                                       .console_path = "/tmp/console.log", .kvm = false};
                if (virt_domain_xml(&spec, &xml[i]) < 0)
                        return 1;
        }
        t0 = now();
        for (int i = 0; i < n; i++) {
                virDomainPtr d = virDomainCreateXML(conn, xml[i], 0);
                if (!d)
                        return 1;
                virDomainFree(d);
        }
        printf("%.1f\n", n / (now() - t0));
        virConnectClose(conn);
        return 0;
}
