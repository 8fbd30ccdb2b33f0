/* virt/ against the real embedded QEMU driver: a guest outlives the process that started
 * it (killed with SIGKILL, or closing cleanly), a new process opening the same root finds it
 * with the same QEMU pid and can destroy it at once, and a guest kernel panic arrives as
 * STOPPED/crashed; a QEMU capability probe left by a killed process is killed at the next open
 * (not a process its pid file names that is no probe of that root). No NIC, so no traffic
 * leaves the host. Needs root and the test guest
 * image (tests/guest/build-image); skipped otherwise. */
#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <libvirt/libvirt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "macro.h"
#include "tap.h"
#include "timeutil.h"
#include "virt/virt.h"

static char root[] = "/var/tmp/aviary-test-virt-embed.XXXXXX";
static char uri[128], kernel[128], initrd[128], console_path[128];
static sd_event *loop;

typedef struct Seen {
        int stopped;
        char instance[64], reason[32];
} Seen;

static void on_event(Virt *v, const char *instance, const char *uuid, VirtEventKind kind, const char *reason,
                     void *userdata) {
        Seen *s = userdata;

        if (kind != VIRT_EVENT_STOPPED)
                return;
        s->stopped++;
        snprintf(s->instance, sizeof s->instance, "%s", instance);
        snprintf(s->reason, sizeof s->reason, "%s", reason);
}

static int find_first(const VirtDomainInfo *d, void *userdata) {
        *(VirtDomainInfo *) userdata = *d;
        return 1;
}

static VirtDomainSpec spec(const char *instance, const char *cmdline) {
        static char name[64];

        snprintf(name, sizeof name, "aviary-%s", instance);
        return (VirtDomainSpec){
                .name = name,
                .instance = instance,
                .service = "embed",
                .version = "embed:1",
                .kernel = kernel,
                .initrd = initrd,
                .cmdline = cmdline,
                .memory_mib = 128,
                .vcpus = 1,
                .console_path = console_path,
                /* This is about the embedded driver (adoption, events, console), not the
                 * accelerator: whether KVM runs guests is the controller's trial to find out
                 * (test-bootwatch, test-accel), and on our machines it does not. */
                .kvm = false,
        };
}

static int copy_file(const char *from, const char *to) {
        _cleanup_close_ int in = open(from, O_RDONLY | O_CLOEXEC);
        _cleanup_close_ int out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        char buf[65536];
        ssize_t n;

        if (in < 0 || out < 0)
                return -errno;
        while ((n = read(in, buf, sizeof buf)) > 0)
                if (write(out, buf, n) != n)
                        return -EIO;
        return n < 0 ? -errno : 0;
}

static bool pid_alive(pid_t pid) {
        return pid > 0 && kill(pid, 0) == 0;
}

static bool wait_pid_gone(pid_t pid, unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;

        while (pid_alive(pid) && now_monotonic() < end)
                usleep(50000);
        return !pid_alive(pid);
}

static bool run_until_stopped(Seen *seen, unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;

        while (!seen->stopped && now_monotonic() < end)
                (void) sd_event_run(loop, 50 * USEC_PER_MSEC);
        return seen->stopped > 0;
}

/* Whether the console log shows NEEDLE within MS (0: now). */
/* Whether NEEDLE shows in the console file from byte FROM on (the file is shared: FROM skips
 * what earlier guests wrote), waiting up to MS. */
static bool wait_console_from(long from, const char *needle, unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;

        do {
                _cleanup_free_ char *text = NULL;
                _cleanup_(fclosep) FILE *f = fopen(console_path, "re");
                size_t n = 0;

                if (f && fseek(f, from, SEEK_SET) == 0 && getdelim(&text, &n, 0, f) > 0 && strstr(text, needle))
                        return true;
                usleep(100000);
        } while (now_monotonic() < end);
        return false;
}

static bool wait_console(const char *needle, unsigned ms) {
        return wait_console_from(0, needle, ms);
}

static long console_size(void) {
        struct stat st;

        return stat(console_path, &st) == 0 ? (long) st.st_size : 0;
}

/* Alt+SysRq+C through the guest's PS/2 keyboard, over a second connection to the same
 * embedded driver (tests may use libvirt; the daemon outside virt/ may not). */
static bool send_sysrq_crash(const char *uuid) {
        unsigned keys[] = {56 /* KEY_LEFTALT */, 99 /* KEY_SYSRQ */, 46 /* KEY_C */};
        virConnectPtr conn = virConnectOpen(uri);
        virDomainPtr dom = conn ? virDomainLookupByUUIDString(conn, uuid) : NULL;
        bool sent = dom && virDomainSendKey(dom, VIR_KEYCODE_SET_LINUX, 0, keys, ELEMENTSOF(keys), 0) == 0;

        if (dom)
                virDomainFree(dom);
        if (conn)
                virConnectClose(conn);
        return sent;
}

/* QEMU's argv joined by spaces (malloc'd), or NULL. */
static char *qemu_cmdline(pid_t pid) {
        char path[64], *text = calloc(1, 65536);
        _cleanup_(fclosep) FILE *f = NULL;
        size_t len;

        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        f = fopen(path, "re");
        if (!f || !text) {
                free(text);
                return NULL;
        }
        len = fread(text, 1, 65535, f);
        for (size_t i = 0; i < len; i++)
                if (text[i] == 0)
                        text[i] = ' ';
        return text;
}

/* After a failure: SIGKILL any QEMU still running from our root, found by its pid file.
 * (run/qemu/driver.pid holds the pid of the process running the driver: us.) */
static void kill_leftover_guests(void) {
        char pattern[256];
        glob_t g;

        snprintf(pattern, sizeof pattern, "%s/libvirt/run/qemu/*.pid", root);
        if (glob(pattern, 0, NULL, &g) != 0)
                return;
        for (size_t i = 0; i < g.gl_pathc; i++) {
                _cleanup_(fclosep) FILE *f = fopen(g.gl_pathv[i], "re");
                int pid;

                if (strstr(g.gl_pathv[i], "/driver.pid"))
                        continue;
                if (f && fscanf(f, "%d", &pid) == 1 && pid > 1 && pid != getpid()) {
                        printf("# killing leftover QEMU %d\n", pid);
                        kill(pid, SIGKILL);
                }
        }
        globfree(&g);
}

/* Child: opens the root, starts a guest, reports it on FD, then waits to be killed. */
static _Noreturn void child_start(int fd) {
        VirtDomainSpec s = spec("adopt", "console=ttyS0 panic=-1 app.version=embed");
        VirtDomainInfo info = {};
        Virt *v = NULL;

        if (sd_event_default(&loop) < 0 || virt_event_loop_attach(loop) < 0 ||
            virt_open(uri, NULL, NULL, &v) < 0 || virt_domain_start(v, &s, &info) < 0) {
                fprintf(stderr, "child: %s\n", virt_last_error());
                _exit(1);
        }
        (void) !write(fd, &info, sizeof info);
        for (;;)
                pause();
}

/* Child: opens the root, checks it sees the guest, closes cleanly and exits. */
static _Noreturn void child_look(const char *uuid) {
        VirtDomainInfo found = {};
        Virt *v = NULL;

        if (sd_event_default(&loop) < 0 || virt_event_loop_attach(loop) < 0 ||
            virt_open(uri, NULL, NULL, &v) < 0)
                _exit(1);
        (void) virt_domain_list(v, find_first, &found);
        virt_close(v);
        _exit(uuid[0] && streq(found.uuid, uuid) ? 0 : 2);
}

int main(void) {
        const char *image = getenv("AVIARY_GUEST_IMAGE_DIR") ?: "/var/tmp/aviary-guest-image";
        VirtDomainInfo started = {}, found = {};
        Seen seen = {};
        Virt *v = NULL;
        int fds[2], status;
        pid_t child;
        usec_t t0;

        if (geteuid() != 0) {
                printf("1..0 # SKIP needs root (the embedded QEMU driver)\n");
                return 0;
        }
        if (access("/usr/bin/qemu-system-x86_64", X_OK) < 0) {
                printf("1..0 # SKIP qemu-system-x86_64 not installed\n");
                return 0;
        }
        if (!mkdtemp(root))
                return printf("Bail out! mkdtemp\n"), 1;
        snprintf(uri, sizeof uri, "qemu:///embed?root=%s/libvirt", root);
        snprintf(kernel, sizeof kernel, "%s/vmlinuz", root);
        snprintf(initrd, sizeof initrd, "%s/initrd.img", root);
        snprintf(console_path, sizeof console_path, "%s/console.log", root);
        {
                char from_kernel[512], from_initrd[512];

                snprintf(from_kernel, sizeof from_kernel, "%s/vmlinuz", image);
                snprintf(from_initrd, sizeof from_initrd, "%s/initrd.img", image);
                /* Copies, so the test hands QEMU only files it owns and removes. */
                if (copy_file(from_kernel, kernel) < 0 || copy_file(from_initrd, initrd) < 0) {
                        printf("1..0 # SKIP no test guest image in %s (tests/guest/build-image)\n", image);
                        return 0;
                }
        }
        printf("# root %s, tcg\n", root);

        /* 1. A process starts a guest and dies by SIGKILL. */
        if (pipe(fds) < 0)
                return 1;
        child = fork();
        if (child == 0)
                child_start(fds[1]);
        close(fds[1]);
        is_int(read(fds[0], &started, sizeof started), sizeof started, "child started a guest");
        close(fds[0]);
        if (!started.uuid[0]) {
                kill(child, SIGKILL);
                waitpid(child, NULL, 0);
                printf("# kept %s\n", root);
                return tap_done();
        }
        /* Console output first, to show below that a later guest appends to the file. */
        ok(wait_console("Command line:", 20000), "guest writes its console file");
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        ok(started.qemu_pid > 0, "QEMU pid %d from the embed root's pid file", (int) started.qemu_pid);
        ok(pid_alive(started.qemu_pid), "guest outlives its starter's SIGKILL");
        {
                _cleanup_free_ char *args = qemu_cmdline(started.qemu_pid);

                ok(args && strstr(args, "pvpanic"), "QEMU has a pvpanic device");
                ok(args && !strstr(args, "\"id\":\"usb\""), "QEMU has no USB controller");
                ok(args && strstr(args, "tcg,tb-size=64"), "TCG translation cache bounded");
        }

        /* 2. Another process opens the root, sees the guest, closes cleanly. */
        child = fork();
        if (child == 0)
                child_look(started.uuid);
        waitpid(child, &status, 0);
        ok(WIFEXITED(status) && WEXITSTATUS(status) == 0, "a second process lists the guest, then closes");
        ok(pid_alive(started.qemu_pid), "guest outlives a clean close and exit");

        /* 2b. A QEMU capability probe left by a killed process: libvirt starts it with -S
         * -daemonize and a QMP socket in ROOT/lib/qemu/qmp-XXXXXX, and it waits there for a
         * client that is gone, for ever. Planted the way libvirt starts it, with a decoy: a
         * probe directory whose pid file names a process that is not that probe's QEMU. */
        char probe_dir[128], decoy_dir[128], cmd[2048], pidfile[160];
        pid_t probe_pid = 0, decoy = fork();

        if (decoy == 0) {
                execlp("sleep", "sleep", "120", (char *) NULL);
                _exit(127);
        }
        snprintf(probe_dir, sizeof probe_dir, "%s/libvirt/lib/qemu/qmp-Test01", root);
        snprintf(decoy_dir, sizeof decoy_dir, "%s/libvirt/lib/qemu/qmp-Decoy1", root);
        snprintf(cmd, sizeof cmd,
                 "mkdir -p %s %s && echo %d > %s/qmp.pid && qemu-system-x86_64 -S -no-user-config -nodefaults "
                 "-nographic -machine none,accel=tcg -qmp unix:%s/qmp.monitor,server=on,wait=off "
                 "-pidfile %s/qmp.pid -daemonize",
                 probe_dir, decoy_dir, (int) decoy, decoy_dir, probe_dir, probe_dir);
        is_int(system(cmd), 0, "a leftover capability probe QEMU is planted (and a decoy)");
        snprintf(pidfile, sizeof pidfile, "%s/qmp.pid", probe_dir);
        {
                _cleanup_(fclosep) FILE *f = fopen(pidfile, "re");
                int n = 0;

                if (f && fscanf(f, "%d", &n) == 1)
                        probe_pid = n;
        }
        ok(probe_pid > 0 && pid_alive(probe_pid), "the probe QEMU runs (pid %d)", (int) probe_pid);

        /* 3. We adopt it: same uuid, same pid, and can act on it at once. */
        if (sd_event_default(&loop) < 0 || virt_event_loop_attach(loop) < 0)
                return printf("Bail out! event loop\n"), 1;
        t0 = now_monotonic();
        is_int(virt_open(uri, on_event, &seen, &v), 0, "open the same root");
        printf("# open took %llu ms\n", (unsigned long long) ((now_monotonic() - t0) / USEC_PER_MSEC));
        ok(probe_pid > 0 && wait_pid_gone(probe_pid, 5000), "open killed the leftover probe QEMU");
        ok(access(probe_dir, F_OK) < 0 && errno == ENOENT, "and removed its directory");
        ok(waitpid(decoy, NULL, WNOHANG) == 0, "a pid file naming another process kills nothing");
        kill(decoy, SIGKILL);
        waitpid(decoy, NULL, 0);
        if (probe_pid > 0)
                kill(probe_pid, SIGKILL);
        if (!v) {
                kill_leftover_guests();
                return tap_done();
        }
        is_int(virt_domain_list(v, find_first, &found), 1, "list finds a domain right after open");
        is_str(found.uuid, started.uuid, "same uuid");
        is_str(found.instance, "adopt", "metadata instance");
        is_int(found.qemu_pid, started.qemu_pid, "same QEMU pid");
        is_int(virt_domain_destroy(v, started.uuid), 0, "destroy right after open");
        ok(run_until_stopped(&seen, 5000), "STOPPED event");
        is_str(seen.instance, "adopt", "for our instance");
        is_str(seen.reason, "destroyed", "reason destroyed");
        ok(wait_pid_gone(started.qemu_pid, 5000), "QEMU gone");

        /* 4. A guest kernel panic reaches us as STOPPED/crashed: pvpanic tells QEMU, and
         * on_crash=destroy ends the domain. The panic is a SysRq crash sent as keys, once
         * the app has loaded the pvpanic drivers (without them panic=-1 only reboots, and
         * with on_reboot=destroy that reads as "shutdown"). */
        {
                VirtDomainSpec s = spec("panic", "console=ttyS0 panic=-1 quiet sysrq_always_enabled");
                long from = console_size(); /* the first guest may have loaded them too */

                seen = (Seen){};
                is_int(virt_domain_start(v, &s, &started), 0, "start a guest to crash");
                ok(wait_console_from(from, "loaded module pvpanic_pci.ko", 30000), "guest loaded its pvpanic drivers");
                ok(send_sysrq_crash(started.uuid), "SysRq-C sent");
                ok(run_until_stopped(&seen, 10000), "STOPPED event for the panic");
                is_str(seen.instance, "panic", "for our instance");
                is_str(seen.reason, "crashed", "reason crashed");
                ok(wait_pid_gone(started.qemu_pid, 5000), "QEMU gone after the panic");
        }

        /* The shared file holds both guests' output: libvirt appended instead of truncating. */
        ok(wait_console("app.version=embed", 0) && wait_console("sysrq triggered crash", 0),
           "console file appended across guests");

        found = (VirtDomainInfo){};
        is_int(virt_domain_list(v, find_first, &found), 0, "nothing left running");
        virt_close(v);
        kill_leftover_guests();
        if (!tap_failed) {
                char *argv[] = {"rm", "-rf", root, NULL};

                if (fork() == 0)
                        execvp("rm", argv), _exit(127);
                wait(NULL);
        } else
                printf("# kept %s\n", root);
        return tap_done();
}
