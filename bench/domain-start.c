/* What in the domain XML costs start time: aviaryd's own XML (virt_domain_xml()) and variants
 * of it, started through libvirt's embedded QEMU driver as aviaryd starts them, in interleaved
 * rounds. Per variant: virDomainCreateXML's time, the time to the guest's first console byte, to
 * "guest-app: started" (the test image's init running) and to "guest-app: listening" (its NIC up,
 * serving; -1: never, as without a NIC), and virDomainDestroy's time. With
 * --reaper the process is the child subreaper of its QEMUs (virt/virt-reaper.c), as aviaryd is.
 * Usage: domain-start ROOT KERNEL INITRD BRIDGE ROUNDS [--reaper] [--sandbox-off] [VARIANT...]
 * Prints one line per variant: name, then medians in ms (create, first byte, started, listening, destroy),
 * or the error libvirt gave. bench/domain-start.sh runs it. */
#include <errno.h>
#include <fcntl.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "virt-reaper.h"
#include "virt.h"

#define MAX_ROUNDS 64

typedef struct Variant {
        const char *name;
        const char *from, *to; /* one text edit of aviaryd's XML (NULL: none) */
        const char *from2, *to2;
        bool no_nic;
        double create[MAX_ROUNDS], first[MAX_ROUNDS], started[MAX_ROUNDS], listening[MAX_ROUNDS], destroy[MAX_ROUNDS];
        unsigned n;
        char error[300];
} Variant;

static Variant variants[] = {
        { .name = "aviaryd" },
        { .name = "no-panic", .from = "<panic model=\"isa\"/>", .to = "" },
        { .name = "no-acpi", .from = "<acpi/>", .to = "" },
        { .name = "no-nic", .no_nic = true },
        { .name = "q35", .from = "machine=\"pc\"", .to = "machine=\"q35\"" },
        /* microvm has no PCI bus: its NIC on virtio-mmio, and no ISA pvpanic. */
        { .name = "microvm", .from = "machine=\"pc\"", .to = "machine=\"microvm\"", .from2 = "<model type=\"virtio\"/>",
          .to2 = "<model type=\"virtio\"/><address type=\"virtio-mmio\"/>" },
        { .name = "microvm-no-nic", .from = "machine=\"pc\"", .to = "machine=\"microvm\"", .no_nic = true },
        { .name = "tb-cache-32", .from = ">64</tb-cache>", .to = ">32</tb-cache>" },
};

/* libvirt's default event loop, which the embedded driver needs, on a thread of its own. */
static void *event_main(void *arg) {
        for (;;)
                virEventRunDefaultImpl();
        return arg;
}

static double now_ms(void) {
        struct timespec ts;

        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec * 1e3 + (double) ts.tv_nsec / 1e6;
}

static char *replace(const char *s, const char *from, const char *to) {
        const char *at = from ? strstr(s, from) : NULL;
        char *out;

        if (!at)
                return strdup(s);
        out = malloc(strlen(s) - strlen(from) + strlen(to) + 1);
        if (!out)
                return NULL;
        memcpy(out, s, (size_t) (at - s));
        strcpy(out + (at - s), to);
        strcat(out, at + strlen(from));
        return out;
}

static char *file_text(const char *path) {
        static char buf[65536];
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        ssize_t n;

        if (fd < 0)
                return NULL;
        n = read(fd, buf, sizeof buf - 1);
        close(fd);
        buf[n > 0 ? n : 0] = 0;
        return buf;
}

/* ROOT/etc/qemu.conf as aviaryd writes it (virt.c, embed_root_prepare), and with SANDBOX_OFF
 * QEMU's seccomp filter off (-sandbox off). */
/* aviaryd's qemu.conf (daemon/virt/virt.c, embed_root_prepare): CPU_PROPS keeps libvirt's
 * default of reading the started guest's CPU back one QMP qom-get per property. */
static int write_qemu_conf(const char *root, bool sandbox_off, bool cpu_props) {
        char path[4200];
        FILE *f;

        snprintf(path, sizeof path, "%s/etc", root);
        if (mkdir(path, 0750) < 0 && errno != EEXIST)
                return -errno;
        snprintf(path, sizeof path, "%s/etc/qemu.conf", root);
        f = fopen(path, "we");
        if (!f)
                return -errno;
        fprintf(f, "stdio_handler = \"file\"\nuser = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n%s%s",
                sandbox_off ? "seccomp_sandbox = 0\n" : "",
                cpu_props ? "" : "capability_filters = [ \"cpu-unavailable-features\" ]\n");
        return fclose(f) == 0 ? 0 : -errno;
}

static int cmp(const void *a, const void *b) {
        double x = *(const double *) a, y = *(const double *) b;
        return x < y ? -1 : x > y;
}

static double median(double *v, unsigned n) {
        double s[MAX_ROUNDS];

        if (n == 0)
                return -1;
        memcpy(s, v, n * sizeof *v);
        qsort(s, n, sizeof *s, cmp);
        return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static void one(virConnectPtr conn, Variant *v, const char *root, const char *kernel, const char *initrd,
                const char *bridge, unsigned round) {
        char console[4200], name[64], *xml = NULL, *a, *b;
        VirtDomainSpec spec;
        virDomainPtr dom;
        double t0, t1, first = -1, started = -1, listening = -1, t2, t3;
        bool done = false;

        snprintf(console, sizeof console, "%s/console-%s-%u.log", root, v->name, round);
        snprintf(name, sizeof name, "bench-%s-%u", v->name, round);
        unlink(console);
        spec = (VirtDomainSpec) {
                .name = name, .instance = name, .service = "bench", .version = "app:1", .kernel = kernel,
                .initrd = initrd, .cmdline = "console=ttyS0 panic=-1 quiet app.ip=10.99.0.2/24 app.gw=10.99.0.1 app.port=8080",
                .memory_mib = 128, .vcpus = 1, .bridge = v->no_nic ? NULL : bridge, .console_path = console,
        };
        if (virt_domain_xml(&spec, &xml) < 0)
                exit(2);
        a = replace(xml, v->from, v->to);
        b = replace(a, v->from2, v->to2);
        free(xml);
        free(a);
        t0 = now_ms();
        dom = virDomainCreateXML(conn, b, 0);
        t1 = now_ms();
        free(b);
        if (!dom) {
                virErrorPtr e = virGetLastError();
                snprintf(v->error, sizeof v->error, "%s", e && e->message ? e->message : "failed");
                return;
        }
        /* The guest's progress, from its console file (polled every millisecond, 20 s at most):
         * the first byte, the app's init running, the app listening on its NIC (or giving up
         * on a NIC that never appeared). */
        while (now_ms() - t0 < 20000 && !done) {
                const char *text = file_text(console);
                if (first < 0 && text && text[0])
                        first = now_ms() - t0;
                if (started < 0 && text && strstr(text, "guest-app: started"))
                        started = now_ms() - t0;
                if (text && strstr(text, "guest-app: listening"))
                        listening = now_ms() - t0;
                done = listening >= 0 || (text && strstr(text, "did not appear"));
                usleep(1000);
        }
        t2 = now_ms();
        if (virDomainDestroy(dom) < 0)
                fprintf(stderr, "%s: destroy failed\n", v->name);
        t3 = now_ms();
        virDomainFree(dom);
        v->create[v->n] = t1 - t0;
        v->first[v->n] = first;
        v->started[v->n] = started;
        v->listening[v->n] = listening;
        v->destroy[v->n] = t3 - t2;
        v->n++;
        fprintf(stderr, "round %u %-14s create %7.1f  first byte %7.1f  started %7.1f  listening %7.1f  destroy %7.1f ms\n",
                round, v->name, t1 - t0, first, started, listening, t3 - t2);
        unlink(console);
}

static int run(int argc, char **argv) {
        char uri[4200];
        const char *root, *kernel, *initrd, *bridge;
        unsigned rounds, n_variants = sizeof variants / sizeof variants[0];
        bool reaper = false, sandbox_off = false, cpu_props = false, chosen[sizeof variants / sizeof variants[0]] = {}, any = false;
        VirtReaper *r = NULL;
        virConnectPtr conn;
        sigset_t mask;

        if (argc < 6) {
                fprintf(stderr, "usage: domain-start ROOT KERNEL INITRD BRIDGE ROUNDS [--reaper] [--sandbox-off] [--cpu-props] [VARIANT...]\n");
                return 2;
        }
        root = argv[1], kernel = argv[2], initrd = argv[3], bridge = argv[4];
        rounds = (unsigned) atoi(argv[5]);
        if (rounds < 1 || rounds > MAX_ROUNDS)
                return 2;
        for (int i = 6; i < argc; i++) {
                if (strcmp(argv[i], "--reaper") == 0) {
                        reaper = true;
                        continue;
                }
                if (strcmp(argv[i], "--sandbox-off") == 0) {
                        sandbox_off = true;
                        continue;
                }
                if (strcmp(argv[i], "--cpu-props") == 0) {
                        cpu_props = true;
                        continue;
                }
                for (unsigned k = 0; k < n_variants; k++)
                        if (strcmp(argv[i], variants[k].name) == 0)
                                chosen[k] = any = true;
        }
        /* As aviaryd's main() does: SIGCHLD blocked in every thread, the reaper takes it. */
        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        if (reaper && virt_reaper_new(&r) < 0)
                return 1;
        if (write_qemu_conf(root, sandbox_off, cpu_props) < 0)
                return 1;
        pthread_t loop;
        if (virEventRegisterDefaultImpl() < 0 || pthread_create(&loop, NULL, event_main, NULL) != 0)
                return 1;
        snprintf(uri, sizeof uri, "qemu:///embed?root=%s", root);
        conn = virConnectOpen(uri);
        if (!conn)
                return 1;
        /* The capability probe (seconds) is not a start's cost: a throwaway start first. */
        one(conn, &variants[0], root, kernel, initrd, bridge, 0);
        variants[0].n = 0;
        for (unsigned round = 1; round <= rounds; round++)
                for (unsigned k = 0; k < n_variants; k++) {
                        /* Rotate the order each round, so no variant always runs first. */
                        Variant *v = &variants[(k + round) % n_variants];
                        if ((!any || chosen[v - variants]) && !v->error[0])
                                one(conn, v, root, kernel, initrd, bridge, round);
                }
        printf("%-14s %10s %12s %10s %10s %10s   (medians of %u rounds, ms%s%s)\n", "variant", "create", "first byte",
               "started", "listening", "destroy", rounds, reaper ? ", subreaper" : ", no subreaper",
               sandbox_off ? ", seccomp_sandbox = 0" : "");
        for (unsigned k = 0; k < n_variants; k++) {
                Variant *v = &variants[k];
                if (any && !chosen[k])
                        continue;
                if (v->error[0])
                        printf("%-14s refused: %s\n", v->name, v->error);
                else
                        printf("%-14s %10.1f %12.1f %10.1f %10.1f %10.1f\n", v->name, median(v->create, v->n),
                               median(v->first, v->n), median(v->started, v->n), median(v->listening, v->n),
                               median(v->destroy, v->n));
        }
        virConnectClose(conn);
        virt_reaper_free(r);
        return 0;
}

typedef struct Args {
        int argc;
        char **argv;
        int ret;
} Args;

static void *run_thread(void *userdata) {
        Args *a = userdata;

        a->ret = run(a->argc, a->argv);
        return NULL;
}

/* libvirt runs on a thread of its own, as on aviaryd's libvirt worker: the reaper takes only
 * the main thread's children (re-parented QEMUs), never those libvirt forks and waits for. */
int main(int argc, char **argv) {
        Args a = { .argc = argc, .argv = argv };
        pthread_t t;
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGCHLD);
        pthread_sigmask(SIG_BLOCK, &mask, NULL);
        if (pthread_create(&t, NULL, run_thread, &a) != 0)
                return 1;
        pthread_join(t, NULL);
        return a.ret;
}
