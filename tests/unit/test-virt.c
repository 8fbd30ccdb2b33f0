/* virt/ against libvirt's test driver, and libvirt's event contract on our sd-event loop:
 * timers (periodic, every iteration, disabled), handles (events, pause), deferred free
 * callbacks, and a wake-up from another thread. Tests may use libvirt's public event API;
 * daemon code outside virt/ may not. */
#include <libvirt/libvirt.h>
#include <pthread.h>
#include <stdlib.h>
#include <unistd.h>

#include "macro.h"
#include "tap.h"
#include "timeutil.h"
#include "virt/virt.h"
#include "virt/virt-queue.h"

static sd_event *loop;

/* Runs the loop until *flag turns true or MS pass; returns *flag. */
static bool run_until(const bool *flag, unsigned ms) {
        usec_t end = now_monotonic() + ms * USEC_PER_MSEC;

        while (!*flag && now_monotonic() < end)
                (void) sd_event_run(loop, 10 * USEC_PER_MSEC);
        return *flag;
}

static void run_for(unsigned ms) {
        bool never = false;

        (void) run_until(&never, ms);
}

/* ---- the event contract ---- */

typedef struct Probe {
        int fired;
        usec_t last_fired, min_gap; /* monotonic; the shortest time between two calls */
        int stop_after; /* disable (timer) or remove after this many calls */
        int last_events;
        bool in_callback;
        bool freed, freed_inside_callback;
        bool done;
} Probe;

static void probe_free(void *opaque) {
        Probe *p = opaque;

        p->freed = true;
        p->freed_inside_callback = p->in_callback;
}

static void on_timeout(int timer, void *opaque) {
        Probe *p = opaque;
        usec_t now = now_monotonic();

        if (p->fired > 0 && (p->min_gap == 0 || now - p->last_fired < p->min_gap))
                p->min_gap = now - p->last_fired;
        p->last_fired = now;
        p->in_callback = true;
        if (++p->fired == p->stop_after) {
                virEventUpdateTimeout(timer, -1);
                p->done = true;
        }
        p->in_callback = false;
}

static void on_timeout_remove(int timer, void *opaque) {
        Probe *p = opaque;

        p->in_callback = true;
        p->fired++;
        virEventRemoveTimeout(timer);
        p->in_callback = false;
}

static void on_handle(int watch, int fd, int events, void *opaque) {
        Probe *p = opaque;
        char c;

        p->fired++;
        p->last_events = events;
        if (events & VIR_EVENT_HANDLE_READABLE)
                (void) !read(fd, &c, 1);
}

static void *arm_from_thread(void *arg) {
        struct timespec ts = {0, 50 * 1000000L};

        nanosleep(&ts, NULL);
        virEventUpdateTimeout(*(int *) arg, 0);
        return NULL;
}

static void test_timers(void) {
        Probe periodic = {.stop_after = -1}, every = {.stop_after = 3}, off = {}, once = {},
              remote = {.stop_after = 1};
        int t_periodic, t_every, t_off, t_once, t_remote;
        pthread_t thread;
        usec_t start;

        t_periodic = virEventAddTimeout(20, on_timeout, &periodic, NULL);
        t_every = virEventAddTimeout(0, on_timeout, &every, NULL);
        t_off = virEventAddTimeout(-1, on_timeout, &off, NULL);
        t_once = virEventAddTimeout(0, on_timeout_remove, &once, probe_free);
        ok(t_periodic > 0 && t_every > 0 && t_off > 0 && t_once > 0, "timers added");

        run_for(210);
        /* A count in 210 ms says more about the machine's load than about the timer (it flaked
         * on a loaded 2-core machine under ASan). The contract: it fires again and again, and
         * never sooner than 20 ms after the last time (1 ms for the clock's rounding). */
        for (usec_t end = now_monotonic() + 5 * USEC_PER_SEC; periodic.fired < 6 && now_monotonic() < end;)
                (void) sd_event_run(loop, 10 * USEC_PER_MSEC);
        ok(periodic.fired >= 6, "20 ms timer keeps firing (%d times)", periodic.fired);
        ok(periodic.min_gap >= 19 * USEC_PER_MSEC, "and never sooner than 20 ms after the last time (shortest gap %.1f ms)",
           (double) periodic.min_gap / USEC_PER_MSEC);
        is_int(every.fired, 3, "0 ms timer fired every iteration until disabled in its callback");
        is_int(off.fired, 0, "-1 timer never fired");
        is_int(once.fired, 1, "timer removed in its callback fired once");
        ok(once.freed && !once.freed_inside_callback, "its free callback ran later, outside the callback");

        virEventUpdateTimeout(t_off, 30);
        run_for(100);
        ok(off.fired >= 2, "re-enabled timer fires (%d)", off.fired);
        is_int(virEventRemoveTimeout(t_off), 0, "remove timer");
        is_int(virEventRemoveTimeout(t_off), -1, "second remove refused");
        is_int(virEventRemoveTimeout(t_periodic), 0, "remove periodic timer");
        is_int(virEventRemoveTimeout(t_every), 0, "remove disabled timer");

        /* libvirt arms its event-flush timer from its own threads; the loop must wake up. */
        t_remote = virEventAddTimeout(-1, on_timeout, &remote, NULL);
        pthread_create(&thread, NULL, arm_from_thread, &t_remote);
        start = now_monotonic();
        while (!remote.done && now_monotonic() - start < 2 * USEC_PER_SEC)
                (void) sd_event_run(loop, 5 * USEC_PER_SEC); /* blocks: only a wake-up ends it */
        pthread_join(thread, NULL);
        ok(remote.done && now_monotonic() - start < USEC_PER_SEC,
           "timer armed from another thread woke the loop");
        virEventRemoveTimeout(t_remote);
        run_for(20);
}

static void test_handles(void) {
        Probe p = {};
        int fds[2], watch;

        if (pipe(fds) < 0)
                return (void) ok(0, "pipe");
        watch = virEventAddHandle(fds[0], VIR_EVENT_HANDLE_READABLE, on_handle, &p, probe_free);
        ok(watch > 0, "handle added");
        run_for(30);
        is_int(p.fired, 0, "quiet pipe: no callback");

        (void) !write(fds[1], "x", 1);
        run_for(30);
        is_int(p.fired, 1, "readable pipe: one callback (the byte was read)");
        is_int(p.last_events, VIR_EVENT_HANDLE_READABLE, "events say READABLE");

        virEventUpdateHandle(watch, 0);
        (void) !write(fds[1], "x", 1);
        run_for(30);
        is_int(p.fired, 1, "paused handle: no callback");
        close(fds[1]);
        run_for(30);
        is_int(p.fired, 1, "paused handle: not even for hang-up");

        virEventUpdateHandle(watch, VIR_EVENT_HANDLE_READABLE);
        run_for(30);
        ok(p.fired >= 2, "resumed handle sees the waiting byte");
        ok(p.last_events & VIR_EVENT_HANDLE_HANGUP, "and the hang-up");

        is_int(virEventRemoveHandle(watch), 0, "remove handle");
        ok(!p.freed, "free callback not run inside remove");
        run_for(30);
        ok(p.freed, "free callback ran on the loop");
        close(fds[0]);
}

/* ---- the test driver ---- */

typedef struct Seen {
        int started, stopped, paused;
        char instance[64], reason[64];
} Seen;

static void on_virt_event(Virt *v, const char *instance, const char *uuid, VirtEventKind kind, const char *reason,
                          void *userdata) {
        Seen *s = userdata;

        if (kind == VIRT_EVENT_STARTED)
                s->started++;
        else if (kind == VIRT_EVENT_PAUSED)
                s->paused++;
        else
                s->stopped++;
        snprintf(s->instance, sizeof s->instance, "%s", instance);
        snprintf(s->reason, sizeof s->reason, "%s", reason);
}

typedef struct Listed {
        int count;
        VirtDomainInfo last;
} Listed;

static int collect(const VirtDomainInfo *d, void *userdata) {
        Listed *l = userdata;

        l->count++;
        l->last = *d;
        return 0;
}

static int refuse(const VirtDomainInfo *d, void *userdata) {
        return -ECANCELED;
}

static void test_driver(void) {
        VirtDomainSpec spec = {
                .name = "aviary-i-1",
                .instance = "i-1",
                .service = "web",
                .version = "web:1.0",
                .kernel = "/nonexistent/vmlinuz",
                .initrd = "/nonexistent/initrd",
                .cmdline = "console=ttyS0",
                .memory_mib = 64,
                .vcpus = 1,
                .console_path = "/nonexistent/console.log",
        };
        Seen seen = {};
        Listed listed = {};
        VirtDomainInfo info = {};
        Virt *v = NULL;
        usec_t t0 = now_monotonic();
        bool started, stopped;

        is_int(virt_open("test:///default", on_virt_event, &seen, &v), 0, "open test:///default");
        if (!v)
                return;
        ok(now_monotonic() - t0 < USEC_PER_SEC, "open does not wait on a driver with nothing to reconnect");

        /* The test driver does not look at kernel paths. */
        is_int(virt_domain_start(v, &spec, &info), 0, "start domain from our XML");
        is_int(strlen(info.uuid), 36, "uuid filled");
        is_str(info.name, spec.name, "name filled");
        is_int(info.qemu_pid, 0, "no pid file for test://");

        is_int(virt_domain_list(v, collect, &listed), 0, "list");
        is_int(listed.count, 1, "only our domain listed (the driver's own 'test' domain is not ours)");
        is_str(listed.last.uuid, info.uuid, "listed uuid");
        is_str(listed.last.instance, "i-1", "metadata instance");
        is_str(listed.last.service, "web", "metadata service");
        is_str(listed.last.version, "web:1.0", "metadata version");
        ok(listed.last.running, "running");
        is_int(virt_domain_list(v, refuse, NULL), -ECANCELED, "callback error ends the listing");

        started = false;
        for (int i = 0; i < 100 && !seen.started; i++)
                run_for(10);
        started = seen.started == 1;
        ok(started, "STARTED event arrived through sd-event");
        is_str(seen.instance, "i-1", "event names the instance");
        is_str(seen.reason, "booted", "start reason");

        /* Paused behind our back (another libvirt client here; an internal error of KVM or an
         * I/O error in real life): an event, and the listing says so. */
        {
                virConnectPtr other = virConnectOpen("test:///default");
                virDomainPtr dom = other ? virDomainLookupByUUIDString(other, info.uuid) : NULL;

                ok(dom && virDomainSuspend(dom) == 0, "another client pauses the domain");
                for (int i = 0; i < 100 && !seen.paused; i++)
                        run_for(10);
                is_int(seen.paused, 1, "PAUSED event arrived");
                is_str(seen.reason, "paused by a libvirt client", "with libvirt's reason for the pause");
                listed = (Listed){};
                virt_domain_list(v, collect, &listed);
                ok(listed.count == 1 && listed.last.paused, "the listing shows it paused");
                is_str(listed.last.pause_reason, "paused by a libvirt client", "with the reason");
                ok(dom && virDomainResume(dom) == 0, "resumed");
                listed = (Listed){};
                virt_domain_list(v, collect, &listed);
                ok(listed.count == 1 && !listed.last.paused, "the listing shows it running again");
                run_for(50);
                is_int(seen.paused, 1, "resuming is no second pause");
                if (dom)
                        virDomainFree(dom);
                if (other)
                        virConnectClose(other);
        }

        /* Save (the domain is gone) and restore (it is back, ours, the same). */
        {
                char path[] = "/tmp/aviary-test-virt-save.XXXXXX";
                int fd = mkstemp(path);
                VirtDomainInfo back = {};
                close(fd);
                unlink(path);
                is_int(virt_domain_save(v, info.uuid, path), 0, "save the domain's memory");
                listed = (Listed){};
                virt_domain_list(v, collect, &listed);
                is_int(listed.count, 0, "saved: the domain is gone");
                is_int(virt_domain_restore(v, path, &back), 0, "restore it");
                is_str(back.instance, "i-1", "restored: our metadata");
                is_str(back.uuid, info.uuid, "the same uuid");
                listed = (Listed){};
                virt_domain_list(v, collect, &listed);
                is_int(listed.count, 1, "listed again");
                unlink(path);
                is_int(virt_domain_restore(v, path, &back), -ENOENT, "a missing save file: -ENOENT");
                FILE *f = fopen(path, "we");
                fputs("not a save image", f);
                fclose(f);
                is_int(virt_domain_restore(v, path, &back), -EIO, "a damaged save file: -EIO");
                ok(strlen(virt_last_error()) > 0, "with libvirt's words: %s", virt_last_error());
                unlink(path);
                is_int(virt_domain_save(v, "00000000-0000-0000-0000-000000000000", path), -ENOENT,
                       "saving an unknown domain: -ENOENT");
                for (int i = 0; i < 100 && seen.stopped == 0; i++)
                        run_for(10);
                ok(seen.stopped == 1, "the save was one STOPPED event (%d)", seen.stopped);
                run_for(50);
                seen.stopped = 0;
        }

        is_int(virt_domain_start(v, &spec, &info), -EIO, "same name twice refused");
        ok(strlen(virt_last_error()) > 0 && !strstr(virt_last_error(), "no libvirt error"), "last error: %s",
           virt_last_error());

        is_int(virt_domain_destroy(v, info.uuid), 0, "destroy");
        is_int(virt_domain_destroy(v, info.uuid), -ENOENT, "destroy again: -ENOENT");
        is_int(virt_domain_destroy(v, "00000000-0000-0000-0000-000000000000"), -ENOENT,
               "unknown uuid: -ENOENT");
        for (int i = 0; i < 100 && !seen.stopped; i++)
                run_for(10);
        stopped = seen.stopped == 1;
        ok(stopped, "STOPPED event arrived");
        is_str(seen.reason, "destroyed", "stop reason");

        listed = (Listed){};
        is_int(virt_domain_list(v, collect, &listed), 0, "list again");
        is_int(listed.count, 0, "list empty");
        v = virt_close(v);
        ok(v == NULL, "close");
}

/* A stop of aviaryd drops the libvirt jobs not started, but not the destroys: their guests'
 * rows already say stopped, and a guest left running then ran on with nothing to stop it
 * (README's tour removed its services, saw every instance stopped, stopped aviaryd: six QEMUs
 * ran on). */
static void test_queue_stop(void) {
        enum { N = 40 };
        VirtDomainInfo info[N] = {};
        Listed listed = {};
        Seen seen = {};
        VirtQueue *q = NULL;
        Virt *v = NULL;
        unsigned started = 0;

        is_int(virt_open("test:///default", on_virt_event, &seen, &v), 0, "open test:///default (the queue)");
        if (!v)
                return;
        for (unsigned i = 0; i < N; i++) {
                char name[48], instance[32];
                snprintf(instance, sizeof instance, "q-%u", i);
                snprintf(name, sizeof name, "aviary-%s", instance);
                VirtDomainSpec spec = { .name = name, .instance = instance, .service = "web", .version = "web:1.0",
                                        .kernel = "/nonexistent/vmlinuz", .cmdline = "console=ttyS0",
                                        .memory_mib = 64, .vcpus = 1, .console_path = "/nonexistent/console.log" };
                started += virt_domain_start(v, &spec, &info[i]) == 0;
        }
        is_int(started, N, "%d domains run", N);
        is_int(virt_queue_new(v, loop, &q), 0, "a libvirt worker");
        for (unsigned i = 0; q && i < N; i++)
                virt_queue_destroy(q, info[i].uuid, "q", NULL, NULL);
        q = virt_queue_free(q); /* at once: most destroys are still queued */
        is_int(virt_domain_list(v, collect, &listed), 0, "list after the worker stopped");
        is_int(listed.count, 0, "every domain whose destroy was queued is gone (%d left)", listed.count);
        v = virt_close(v);
}

/* Why a domain stopped, from libvirt's log: an exit a listing saw before its event (the
 * controller's instance_gone_unseen) is a clean power-off only when the log says so. The text
 * is the shape libvirt 9.0's embedded QEMU driver writes (STATE/libvirt/log/qemu/NAME.log). */
static void test_log_stop_reason(void) {
        static const char start1[] =
                "2026-12-04 15:34:07.700+0000: starting up libvirt version: 9.0.0, package: 9.0.0-4+deb12u2 (Debian), "
                "qemu version: 7.2.0Debian 1:7.2+dfsg-7+deb12u7, kernel: 6.18.44-fc-v1147, hostname: ci\n"
                "LC_ALL=C \\\n/usr/bin/qemu-system-x86_64 \\\n-name guest=aviary-onf-1,debug-threads=on \\\n"
                "-no-shutdown \\\n-boot strict=on\n"
                "char device redirected to /dev/pts/3 (label charserial0)\n";
        char out[32], text[2048], tiny[4];

        is_int(virt_log_stop_reason(start1, out, sizeof out), -ENOENT, "a running start: no stop reason");
        snprintf(text, sizeof text, "%s2026-12-04 15:34:31.017+0000: shutting down, reason=crashed\n", start1);
        is_int(virt_log_stop_reason(text, out, sizeof out), 0, "a crash: found");
        is_str(out, "crashed", "a crash: crashed");
        snprintf(text, sizeof text,
                 "%s2026-12-04 15:34:31.017+0000: shutting down, reason=crashed\n"
                 "%s2026-12-04 15:34:35.510+0000: shutting down, reason=shutdown\n", start1, start1);
        is_int(virt_log_stop_reason(text, out, sizeof out), 0, "a power-off after a crash and a restart: found");
        is_str(out, "shutdown", "the last start's reason: shutdown");
        snprintf(text, sizeof text, "2026-12-04 15:34:31.017+0000: shutting down, reason=shutdown\n%s", start1);
        is_int(virt_log_stop_reason(text, out, sizeof out), -ENOENT,
               "the previous start's power-off says nothing of the running one");
        snprintf(text, sizeof text, "%s2026-12-04 15:34:31.017+0000: shutting down, reason=from-snapshot\n", start1);
        virt_log_stop_reason(text, out, sizeof out);
        is_str(out, "from-snapshot", "a reason with a dash");
        snprintf(text, sizeof text, "%s2026-12-04 15:34:31.017+0000: shutting down, reason=\n", start1);
        is_int(virt_log_stop_reason(text, out, sizeof out), -ENOENT, "an empty reason is none");
        snprintf(text, sizeof text, "%s2026-12-04 15:34:31.017+0000: shutting down, reason=destroyed\n", start1);
        is_int(virt_log_stop_reason(text, tiny, sizeof tiny), -ENOENT, "a reason longer than OUT is none, not cut");
}

int main(void) {
        if (sd_event_default(&loop) < 0 || virt_event_loop_attach(loop) < 0) {
                printf("Bail out! event loop\n");
                return 1;
        }
        is_int(virt_event_loop_attach(loop), -EBUSY, "attach twice refused");
        test_timers();
        test_handles();
        test_driver();
        test_queue_stop();
        test_log_stop_reason();
        ok(!virt_kvm_available() || access("/dev/kvm", R_OK | W_OK) == 0,
           "kvm availability matches /dev/kvm");
        sd_event_unref(loop);
        return tap_done();
}
