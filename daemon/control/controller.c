/* The controller. One pass: remove orphan domains, notice guests that are gone, let each
 * service's plan start or stop instances, boot pending instances whose backoff has passed.
 * A pass runs when kicked (API change, libvirt event) and every PASS_USEC as a safety net;
 * booting instances are probed every TICK_USEC until their health check answers, and active
 * rollouts are moved on the same tick (control/driver.c). Services that scale to zero sleep in
 * the pass after their idle time and wake when their proxy holds a request ("sleep and wake";
 * docs/scale-to-zero.md). */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bootwatch.h"
#include "controller.h"
#include "driver.h"
#include "log.h"
#include "settings.h"
#include "net.h"
#include "plan.h"
#include "probe.h"
#include "random.h"
#include "rollout.h"
#include "telemetry.h"
#include "template.h"
#include "traffic.h"
#include "virt.h"
#include "virt-queue.h"
#include "virt-reaper.h"

#define TICK_USEC (250 * USEC_PER_MSEC)
#define PASS_TICKS 8                          /* a full pass every 2 s */
#define PROBE_TIMEOUT_USEC (500 * USEC_PER_MSEC)
/* A booting guest is probed again as soon as its last probe ended and this passed, so "ready"
 * follows its first answer within a few ms rather than up to a tick. */
#define PROBE_EVERY_USEC (20 * USEC_PER_MSEC)
#define QUICK_EXIT_USEC (60 * USEC_PER_SEC)   /* dying sooner than this after ready counts toward crash-loop */
#define CRASH_LOOP_LIMIT 3
#define BACKOFF_MAX_USEC (30 * USEC_PER_SEC)
#define MAX_PROBES 256
#define DRAIN_TIMEOUT_USEC (30 * USEC_PER_SEC) /* in-flight requests of a stopping guest may take this long */
#define MAX_AWAKE 256                          /* scale-to-zero services tracked (traffic.c serves 256) */
/* API changes within this long after a pass share the next one (controller_changed): a pass
 * reads every service, so one per POST made creating N services one by one cost N² reads. */
#define CHANGED_COALESCE_USEC (5 * USEC_PER_MSEC)
#define DIRTY_MAX 16 /* services changed between two passes that a pass may take alone; more: all */

struct Controller {
        sd_event *event;
        VirtQueue *jobs;        /* libvirt calls, on their worker thread */
        VirtReaper *reaper;     /* the embedded driver's QEMUs are our children (NULL otherwise) */
        Store *store;
        BlobFiles *blobs;
        const Settings *settings;
        RoutingFdStore fds;
        Virt *virt;
        Traffic *traffic;
        RolloutDriver *rollouts;
        Subnet subnet;
        KvmTrial kvm;
        char console_dir[4096];
        char snapshot_dir[4096];      /* wake: snapshot: the guests' saved memory, one file per instance */
        sd_event_source *kick, *tick;
        sd_event_source *changed;     /* the pass for API changes that came too soon after the last */
        usec_t pass_at;               /* when the last pass began (monotonic) */
        /* What the next kicked pass covers: every service, or only those the API changed
         * (controller_changed_service) since the last pass. */
        bool dirty_all;
        unsigned n_dirty;
        char dirty[DIRTY_MAX][64];
        sd_event_source *probe_timer; /* readiness probes of booting guests, every PROBE_EVERY_USEC */
        unsigned ticks;
        /* What is known of each booting guest beyond its row (in memory: after a restart the
         * deadline still holds, from running_at; the console baseline is unknown). */
        struct BootWatch {
                char id[64];                  /* a booting instance ("" free) */
                usec_t running_at;            /* the boot watched */
                bool probing;                 /* a readiness probe is in flight... */
                usec_t probe_running_at;      /* ...of this boot */
                bool seen;                    /* still booting in this tick */
                int64_t console_at_boot;      /* console file size at the start; -1 unknown */
                char last_error[128];         /* the last readiness probe's failure ("" none yet) */
                char ip[16];                  /* what its readiness probe asks ("" not yet known) */
                unsigned port;
                char path[257];
        } boot[MAX_PROBES];
        bool listing;           /* a listing of the domains is on the libvirt worker */
        bool results_tx;        /* a batch of libvirt results is one transaction (results_begin) */
        bool virt_inline;       /* the first pass at start: libvirt calls on this thread, waited for */
        /* Domain starts queued on the libvirt worker ("" free). */
        struct Starting {
                char id[64];
                int64_t console_before;       /* console file size before the start */
                bool kvm;                     /* started under KVM */
                char version[320];            /* "image:tag" */
                char ip[16];                  /* its lease (the row gets it with the boot) */
                char kvm_failed[600];         /* its start under KVM failed: why ("" no) */
                bool restoring;               /* a restore from its snapshot, not a cold boot */
        } starting[MAX_PROBES];
        /* Scale to zero: what is known of each awake service that may sleep (in memory: after a
         * restart an awake service's idle time counts from the start). */
        struct Awake {
                int64_t service_id;           /* 0 free */
                usec_t since;                 /* awake, or seen awake, since (realtime) */
                usec_t wake_started;          /* a wake is under way since; 0 none */
                char why[32];                 /* what woke it */
                bool fell_back;               /* this wake fell back from a snapshot to a cold boot */
                bool seen;                    /* still a service at this pass */
        } awake[MAX_AWAKE];
        /* A sleep through the API: guests whose rows it wrote asleep, stopped once the request's
         * transaction committed (controller_service_sleep_committed), never if it rolled back. */
        struct ApiSleep {
                char id[64];
                char uuid[37];
                char ip[16];
                bool save;                    /* wake: snapshot, and the guest was ready */
        } api_sleep[MAX_PROBES];
        size_t n_api_sleep;
};

typedef struct InstanceList {
        InstanceRecord *items;
        size_t n, allocated;
} InstanceList;

static void instance_list_done(InstanceList *l) {
        for (size_t i = 0; i < l->n; i++)
                instance_record_done(&l->items[i]);
        free(l->items);
        *l = (InstanceList) {};
}

static int instance_list_add(const InstanceRecord *r, void *userdata) {
        InstanceList *l = userdata;

        if (l->n == l->allocated) {
                size_t want = l->allocated ? l->allocated * 2 : 16;
                InstanceRecord *p = realloc(l->items, want * sizeof *p);
                if (!p)
                        return -ENOMEM;
                l->items = p;
                l->allocated = want;
        }
        l->items[l->n] = *r;
        l->items[l->n].stop_reason = r->stop_reason ? strdup(r->stop_reason) : NULL;
        l->items[l->n].snapshot = r->snapshot ? strdup(r->snapshot) : NULL;
        l->n++;
        return 0;
}

/* The instances of SERVICE_ID (0: all) that hold or want a guest: stopped and failed rows are
 * history the controller never acts on, however many there are. */
static int instances_load(Controller *c, int64_t service_id, InstanceList *ret) {
        *ret = (InstanceList) {};
        return store_instance_list_active(c->store, service_id, instance_list_add, ret);
}

/* ---- recording ---- */

/* Writes R (inserted when new, else updated) and an audit event about it (none when ACTION is
 * NULL) in one transaction. Takes DETAIL. Relaxed (store_begin_relaxed()): an instance's row
 * describes a guest, which a crash of the host ends too, or a wish the next pass derives again
 * from its service; an API write that follows flushes it with its own. */
static int instance_write(Controller *c, InstanceRecord *r, bool new, const char *action, json_t *detail) {
        Store *s = c->store;
        json_auto_t *owned = detail; /* taken: freed on return */
        char resource[96];
        EventRecord e = { .actor = "aviaryd", .action = action, .resource = resource, .result = r->state,
                          .detail_json = detail };
        int k;

        snprintf(resource, sizeof resource, "instance/%s", r->id);
        k = store_begin_relaxed(s);
        if (k < 0)
                return k;
        k = new ? store_instance_insert(s, r) : store_instance_update(s, r);
        if (k == 0 && action)
                k = store_event_append(s, &e);
        if (k != 0) {
                store_rollback(s);
                return k < 0 ? k : -EIO;
        }
        k = store_commit(s);
        if (k == 0 && action)
                telemetry_instance_change(action, r->state,
                                          r->ready_at > r->running_at ? r->ready_at - r->running_at : 0);
        return k;
}

static int instance_commit(Controller *c, InstanceRecord *r, const char *action, json_t *detail) {
        return instance_write(c, r, false, action, detail);
}

static void set_reason(InstanceRecord *r, const char *reason) {
        free(r->stop_reason);
        r->stop_reason = reason ? strdup(reason) : NULL;
}

static void instance_release(Controller *c, InstanceRecord *r) {
        int k = net_lease_release(c->store, r->id);
        if (k < 0)
                log_warning_errno(k, "Cannot release the address of %s", r->id);
        r->ip[0] = 0;
        r->domain_uuid[0] = 0;
        r->qemu_pid = 0;
}

/* The guest at IP (may be "") is gone: out of the proxies' tables, and requests waiting on
 * it go elsewhere now rather than time out (traffic_backend_gone). */
static void guest_gone(Controller *c, const char *ip) {
        if (!ip[0])
                return;
        traffic_sync(c->traffic);
        traffic_backend_gone(c->traffic, ip);
}

static void on_destroyed(void *userdata, const char *tag, int r, const char *error) {
        if (r < 0 && r != -ENOENT)
                log_warning("Instance %s: cannot stop its guest: %s", tag, error);
}

/* Stops domain UUID of instance ID on the libvirt worker: the loop goes on meanwhile. A start
 * queued after it (the same instance booting again, under the same domain name) runs after it. */
static void guest_destroy(Controller *c, const char *uuid, const char *id) {
        /* At start, before the loop runs (the first pass, before READY=1), a destroy is done
         * when the pass is: what READY=1 promises includes the orphans being gone. */
        if (c->virt_inline) {
                int k = virt_domain_destroy(c->virt, uuid);
                on_destroyed(c, id, k, virt_last_error());
                return;
        }
        if (virt_queue_destroy(c->jobs, uuid, id, on_destroyed, c) < 0)
                log_oom();
}

static void kvm_trial_note_tcg_failed(Controller *c, const InstanceRecord *r);
static void service_woke(Controller *c, const InstanceRecord *r);
static void service_wake_check(Controller *c, InstanceRecord *r, const char *reason);
static void service_wake_fell_back(Controller *c, const InstanceRecord *r);

/* ---- snapshots (wake: snapshot) ---- */

static void snapshot_path(Controller *c, const char *id, char out[static 4200]) {
        snprintf(out, 4200, "%s/%s.save", c->snapshot_dir, id);
}

/* R's snapshot is used, or may not be: its file goes, and the row forgets it (the caller writes
 * the row). A snapshot is restored once at most. */
static void snapshot_forget(InstanceRecord *r) {
        if (r->snapshot && unlink(r->snapshot) < 0 && errno != ENOENT)
                log_warning_errno(errno, "Instance %s: cannot remove its snapshot %s", r->id, r->snapshot);
        free(r->snapshot);
        r->snapshot = NULL;
        r->snapshot_version = 0;
        r->snapshot_accel[0] = 0;
}

/* The memory of asleep instance ID was saved into PATH (tag ID), or not (R < 0). */
static void on_saved(void *userdata, const char *id, int k, const char *error) {
        Controller *c = userdata;
        _cleanup_(instance_record_done) InstanceRecord r = {};
        char path[4200];
        struct stat st;

        snapshot_path(c, id, path);
        if (store_instance_get(c->store, id, &r) != 0 || !streq(r.state, "asleep") || r.snapshot) {
                /* Woken (or gone) while its memory was being saved: it boots cold. */
                (void) unlink(path);
                return;
        }
        if (k < 0) {
                log_warning("Instance %s: cannot save its memory (%s): it wakes by a cold boot.", id, error);
                (void) unlink(path);
                instance_commit(c, &r, "instance.snapshot-failed", json_pack("{s:s}", "reason", error));
                return;
        }
        r.snapshot = strdup(path);
        r.snapshot_version = r.version_id;
        snprintf(r.snapshot_accel, sizeof r.snapshot_accel, "%s", r.accel);
        log_info("Instance %s: asleep, its memory saved (%lld MiB).", id,
                 stat(path, &st) == 0 ? (long long) (st.st_size >> 20) : -1LL);
        instance_commit(c, &r, "instance.snapshot",
                        json_pack("{s:I}", "bytes", (json_int_t) (stat(path, &st) == 0 ? st.st_size : 0)));
}

/* At start: snapshot files no asleep instance names (its service was deleted while it slept,
 * or aviaryd stopped during a save) are removed. Names are instance ids, which never contain '/'. */
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir);

static void snapshots_prune(Controller *c) {
        _cleanup_(closedirp) DIR *d = opendir(c->snapshot_dir);
        struct dirent *de;

        while (d && (de = readdir(d))) {
                _cleanup_(instance_record_done) InstanceRecord r = {};
                char id[64], path[4200];
                size_t n = strlen(de->d_name);

                if (de->d_name[0] == '.' || n < 6 || n - 5 >= sizeof id || !streq(de->d_name + n - 5, ".save"))
                        continue;
                snprintf(id, sizeof id, "%.*s", (int) (n - 5), de->d_name);
                snapshot_path(c, id, path);
                if (store_instance_get(c->store, id, &r) == 0 && r.snapshot && streq(r.snapshot, path))
                        continue;
                log_info("Removing snapshot %s: no asleep instance of ours wants it.", path);
                if (unlink(path) < 0)
                        log_warning_errno(errno, "Cannot remove %s", path);
        }
}

/* Puts R's running guest to sleep: its memory saved when SNAPSHOT (the domain is gone after),
 * else stopped. */
/* Stops domain UUID of instance ID for a sleep: its memory saved when SAVE (wake: snapshot, a
 * ready guest), else destroyed. */
static void guest_sleep_domain(Controller *c, const char *id, const char *uuid, bool save) {
        char path[4200];

        snapshot_path(c, id, path);
        if (save && !c->virt_inline && virt_queue_save(c->jobs, uuid, path, id, on_saved, c) >= 0)
                return;
        guest_destroy(c, uuid, id);
}

static void guest_sleep(Controller *c, InstanceRecord *r, bool snapshot) {
        if (r->domain_uuid[0])
                guest_sleep_domain(c, r->id, r->domain_uuid, snapshot && streq(r->state, "ready"));
}

/* ---- lifecycle ---- */

/* The libvirt domain name of instance ID (virt.h: "aviary-<instance>"). */
static void domain_name(const char *id, char out[static 96]) {
        snprintf(out, 96, "aviary-%s", id);
}

static void instance_boot(Controller *c, InstanceRecord *r, bool force_tcg, const char *kvm_failed);

/* The guest of booting R failed under KVM while KVM is on trial (WHY says how): stop what is
 * left of it and boot it again at once under TCG, its boot event naming WHY as an abort at
 * start does (the libvirt worker runs the destroy before the start). Not an exit: no restart
 * is counted, since the guest may not be at fault. When no start slot is free, the next pass
 * boots it (under TCG: KVM is suspect now). */
static void instance_retry_tcg(Controller *c, InstanceRecord *r, const char *why) {
        char reason[700];

        if (kvm_trial_failed(&c->kvm, why))
                log_warning("Instance %s: %s. KVM may be unusable on this host: trying QEMU TCG (software emulation); "
                            "if the guest comes up there, KVM is marked unusable.", r->id, why);
        else
                log_notice("Instance %s: %s; trying again under QEMU TCG.", r->id, why);
        if (r->domain_uuid[0])
                guest_destroy(c, r->domain_uuid, r->id);
        snprintf(reason, sizeof reason, "%s; trying again under TCG", why);
        set_reason(r, reason);
        r->domain_uuid[0] = 0;
        r->qemu_pid = 0;
        r->stopped_at = now_realtime();
        r->next_start_at = 0;
        snprintf(r->state, sizeof r->state, "pending");
        if (instance_commit(c, r, "instance.kvm-fallback", json_pack("{s:s}", "reason", why)) == 0)
                instance_boot(c, r, true, why);
        controller_kick(c);
}

/* The guest of R is gone without us asking (ACTION names the event: instance.exit,
 * instance.boot-timeout...). Decides, by restart policy and history, whether it boots again
 * (after a backoff), stays down, or is crash-looping. */
static void instance_exit_as(Controller *c, InstanceRecord *r, const char *reason, bool clean, const char *action) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        usec_t now = now_realtime();
        bool booting = streq(r->state, "booting");
        bool was_running = booting || streq(r->state, "ready");
        bool had_guest = was_running || streq(r->state, "draining");
        bool timed_out = streq(action, "instance.boot-timeout");
        char ip[sizeof r->ip];

        /* Under KVM on trial, a guest that never came up may be KVM's failure, not its own. */
        if (booting && streq(r->accel, "kvm") && kvm_trial_on_trial(&c->kvm)) {
                instance_retry_tcg(c, r, reason);
                return;
        }
        if (booting && streq(r->accel, "tcg"))
                kvm_trial_note_tcg_failed(c, r);

        snprintf(ip, sizeof ip, "%s", r->ip);
        r->domain_uuid[0] = 0;
        r->qemu_pid = 0;
        r->stopped_at = now;
        set_reason(r, reason);
        if (streq(r->state, "draining") || store_service_get_by_id(c->store, r->service_id, &sv) != 0) {
                snprintf(r->state, sizeof r->state, "stopped");
                instance_release(c, r);
        } else if (streq(sv.restart_policy, "never") || (streq(sv.restart_policy, "on-failure") && clean)) {
                snprintf(r->state, sizeof r->state, clean ? "stopped" : "failed");
                instance_release(c, r);
        } else {
                /* A guest that never became ready, or died soon after, counts toward crash-loop;
                 * one that served for a while starts the count again. */
                bool quick = booting || r->ready_at == 0 || r->ready_at < r->running_at ||
                             now - r->ready_at < QUICK_EXIT_USEC;
                r->restarts = quick ? r->restarts + 1 : 1;
                if (r->restarts >= CRASH_LOOP_LIMIT) {
                        char why[700];
                        snprintf(why, sizeof why,
                                 "crash-loop: failed %lld times in a row, each before it was ready or within %llus of it; "
                                 "last: %s",
                                 (long long) r->restarts, (unsigned long long) (QUICK_EXIT_USEC / USEC_PER_SEC), reason);
                        set_reason(r, why);
                        snprintf(r->state, sizeof r->state, "crash-loop");
                        action = "instance.crash-loop";
                        instance_release(c, r);
                } else {
                        usec_t backoff = USEC_PER_SEC << (r->restarts - 1);
                        snprintf(r->state, sizeof r->state, "pending");
                        r->next_start_at = now + (backoff > BACKOFF_MAX_USEC ? BACKOFF_MAX_USEC : backoff);
                }
        }
        log_notice("Instance %s: guest gone (%s); now %s.", r->id, reason, r->state);
        instance_commit(c, r, action, json_pack("{s:s, s:I}", "reason", reason, "restarts", (json_int_t) r->restarts));
        if (had_guest)
                guest_gone(c, ip);
        if (was_running)
                rollout_driver_canary_exit(c->rollouts, r, reason, timed_out);
        if (booting)
                service_wake_check(c, r, reason);
}

static void instance_exited(Controller *c, InstanceRecord *r, const char *reason, bool clean) {
        instance_exit_as(c, r, reason, clean, "instance.exit");
}

/* R's guest is gone and no libvirt event said so yet: a listing saw it first (its event is
 * still on the way), or it ended while aviaryd was down. libvirt's log says why when it
 * stopped the domain; a clean power-off is then no failure, as when the event comes first. */
static void instance_gone_unseen(Controller *c, InstanceRecord *r) {
        char name[96], reason[32], why[64];

        domain_name(r->id, name);
        /* Without a domain of its own, the log's last start is an older guest's. */
        if (!r->domain_uuid[0] || virt_domain_stop_reason(c->virt, name, reason, sizeof reason) < 0) {
                instance_exited(c, r, "the guest is not running", false);
                return;
        }
        snprintf(why, sizeof why, "guest %s", reason);
        instance_exited(c, r, why, streq(reason, "shutdown"));
}

/* The domain of R is paused or crashed although aviaryd never pauses one (an internal error
 * of KVM, an I/O error, a watchdog): a failure, with libvirt's and QEMU's words for it. */
static void instance_paused(Controller *c, InstanceRecord *r, const char *libvirt_reason) {
        char qemu[300] = "", why[600], name[96];

        domain_name(r->id, name);
        (void) virt_domain_log_error(c->virt, name, qemu, sizeof qemu);
        snprintf(why, sizeof why, "its vCPUs stopped (libvirt: %s%s%s)", libvirt_reason, qemu[0] ? "; QEMU: " : "", qemu);
        log_warning("Instance %s: %s; stopping it.", r->id, why);
        if (r->domain_uuid[0]) {
                guest_destroy(c, r->domain_uuid, r->id);
                r->domain_uuid[0] = 0;
        }
        instance_exited(c, r, why, false);
}

/* Takes R out of service: draining (no new requests from the proxy), then its guest stops once
 * its in-flight requests are done or the drain timeout passed (pass_drain). */
static void instance_stop(Controller *c, InstanceRecord *r, const char *reason) {
        snprintf(r->state, sizeof r->state, "draining");
        set_reason(r, reason);
        r->drain_until = now_realtime() + DRAIN_TIMEOUT_USEC;
        instance_commit(c, r, "instance.drain", json_pack("{s:s}", "reason", reason));
        traffic_sync(c->traffic); /* no new requests for it */
}

/* Stops the guest of a draining R for good, its address released. */
static void instance_drained(Controller *c, InstanceRecord *r, const char *how) {
        char ip[sizeof r->ip];

        snprintf(ip, sizeof ip, "%s", r->ip);
        if (r->domain_uuid[0])
                guest_destroy(c, r->domain_uuid, r->id);
        snprintf(r->state, sizeof r->state, "stopped");
        r->stopped_at = now_realtime();
        instance_release(c, r);
        instance_commit(c, r, "instance.stop", json_pack("{s:s, s:s}", "reason", r->stop_reason ? r->stop_reason : "", "drain", how));
        guest_gone(c, ip); /* requests still in flight after the drain timeout */
}

static void pass_drain(Controller *c, InstanceList *l) {
        usec_t now = now_realtime();

        for (size_t i = 0; i < l->n; i++) {
                InstanceRecord *r = &l->items[i];
                if (!streq(r->state, "draining"))
                        continue;
                if (r->ip[0] && traffic_inflight(c->traffic, r->ip) > 0 && now < r->drain_until)
                        continue;
                instance_drained(c, r, now >= r->drain_until && r->drain_until ? "timeout" : "done");
        }
}

static int instance_create(Controller *c, const ServiceRecord *sv, int64_t version_id) {
        InstanceRecord r = { .service_id = sv->id, .version_id = version_id };
        char hex[16];

        int k = random_hex(hex, 4);
        if (k < 0)
                return log_error_errno(k, "Service %s: cannot draw a random instance id", sv->name);
        /* At most 54 characters of the name, so the random part always fits. */
        snprintf(r.id, sizeof r.id, "%.54s-%.8s", sv->name, hex);
        k = random_hex(hex, 3);
        if (k < 0)
                return log_error_errno(k, "Service %s: cannot draw a random MAC address", sv->name);
        snprintf(r.mac, sizeof r.mac, "52:54:00:%c%c:%c%c:%c%c", hex[0], hex[1], hex[2], hex[3], hex[4], hex[5]);
        snprintf(r.state, sizeof r.state, "pending");
        return instance_write(c, &r, true, "instance.create", NULL);
}

/* The blob files V boots from, checked before libvirt sees them: present, a readable regular
 * file, at the size recorded. Left to QEMU, a missing file surfaces late and as "could not
 * load kernel"; this names the blob and the version. Fills KERNEL and INITRD ("" when the
 * version has none) with their paths; 0, or -errno with WHY filled. */
static int boot_files_check(Controller *c, const VersionRecord *v, char kernel[static 4096], char initrd[static 4096],
                            char *why, size_t size) {
        const struct {
                const char *role, *digest;
                char *path;
        } files[] = { { "kernel", v->kernel, kernel }, { "initrd", v->initrd, initrd } };

        initrd[0] = 0;
        for (size_t i = 0; i < ELEMENTSOF(files); i++) {
                _cleanup_close_ int fd = -1;
                BlobRecord b;
                struct stat st;
                int k;

                if (!files[i].digest[0])
                        continue;
                k = blobfiles_path(c->blobs, files[i].digest, files[i].path, 4096);
                if (k < 0) {
                        snprintf(why, size, "%s blob %s of %s:%s has no usable path in the blob store", files[i].role,
                                 files[i].digest, v->image, v->tag);
                        return k;
                }
                fd = open(files[i].path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
                if (fd < 0 || fstat(fd, &st) < 0)
                        k = -errno;
                else
                        k = S_ISREG(st.st_mode) ? 0 : -EBADF;
                if (k < 0) {
                        snprintf(why, size, "%s blob %s of %s:%s cannot be read from the blob store (%s: %s); "
                                 "upload it again", files[i].role, files[i].digest, v->image, v->tag, files[i].path,
                                 fd >= 0 && k == -EBADF ? "not a regular file" : strerror(-k));
                        return k;
                }
                if (store_blob_get(c->store, files[i].digest, &b) == 0 && (int64_t) st.st_size != b.size) {
                        snprintf(why, size, "%s blob %s of %s:%s has %lld bytes in the blob store, %lld recorded; "
                                 "upload it again", files[i].role, files[i].digest, v->image, v->tag,
                                 (long long) st.st_size, (long long) b.size);
                        return -EBADMSG;
                }
        }
        return 0;
}

/* STATE/kvm-unusable: written when KVM was found unusable (accel = auto), so later starts use
 * TCG at once. Its first line is the reason. */
static void kvm_marker_path(Controller *c, char out[static 4200]) {
        snprintf(out, 4200, "%s/kvm-unusable", c->settings->state_dir);
}

/* true when the marker exists; its first line into REASON. */
static bool kvm_marker_read(Controller *c, char *reason, size_t size) {
        char path[4200];
        _cleanup_fclose_ FILE *f = NULL;

        kvm_marker_path(c, path);
        f = fopen(path, "re");
        if (!f)
                return false;
        if (!fgets(reason, (int) size, f))
                snprintf(reason, size, "found unusable before (no reason recorded)");
        reason[strcspn(reason, "\n")] = 0;
        return true;
}

static void kvm_marker_write(Controller *c, const char *reason) {
        char path[4200];
        _cleanup_fclose_ FILE *f = NULL;

        kvm_marker_path(c, path);
        f = fopen(path, "we");
        if (!f || fprintf(f, "%s\nWritten by aviaryd (accel = auto): guests run under QEMU TCG on this host. Delete "
                          "this file to let aviaryd try KVM again.\n", reason) < 0 || fflush(f) != 0)
                log_warning_errno(errno ? errno : EIO, "Cannot write %s; the next aviaryd tries KVM again", path);
}

/* Appends a host-wide audit event (resource "host"). */
static void host_event(Controller *c, const char *action, const char *result, json_t *detail) {
        json_auto_t *owned = detail;
        EventRecord e = { .actor = "aviaryd", .action = action, .resource = "host", .result = result,
                          .detail_json = detail };
        int k = store_event_append(c->store, &e);

        if (k != 0)
                log_warning_errno(k < 0 ? k : EIO, "Cannot record the event %s", action);
}

/* libvirt's messages may span lines (QEMU's stderr quoted whole): a reason is one line. */
static void one_line(char *s) {
        for (char *p = s; *p; p++)
                if (*p == '\n' || *p == '\r' || *p == '\t')
                        *p = ' ';
}

/* ---- boot watch ---- */

typedef struct BootWatch BootWatch;

/* The watch of ID's boot RUNNING_AT: found, or (CREATE) made afresh, or NULL (table full). A
 * watch of an earlier boot of ID is reset. */
static BootWatch *boot_watch(Controller *c, const char *id, usec_t running_at, bool create) {
        BootWatch *free_slot = NULL, *w = NULL;

        for (unsigned i = 0; i < MAX_PROBES; i++) {
                if (streq(c->boot[i].id, id)) {
                        w = &c->boot[i];
                        break;
                }
                if (!c->boot[i].id[0] && !free_slot)
                        free_slot = &c->boot[i];
        }
        if (w && w->running_at == running_at)
                return w;
        if (!create)
                return NULL;
        if (!w)
                w = free_slot;
        if (!w)
                return NULL;
        /* A probe of the earlier boot may still be in flight: keep it, on_probe ignores it. */
        bool probing = w->probing && streq(w->id, id);
        usec_t probe_running_at = w->probe_running_at;
        *w = (BootWatch) { .running_at = running_at, .console_at_boot = -1, .probing = probing,
                           .probe_running_at = probe_running_at };
        snprintf(w->id, sizeof w->id, "%s", id);
        return w;
}

static int64_t console_size(Controller *c, const char *id) {
        char path[4096 + 80];
        struct stat st;

        snprintf(path, sizeof path, "%s/%s.log", c->console_dir, id);
        return stat(path, &st) == 0 ? (int64_t) st.st_size : 0;
}

/* The boot deadlines of the services one look at the booting guests met so far: a service's row
 * is read once per look, not once per booting guest of it. */
typedef struct BootTimeouts {
        struct {
                int64_t service_id;
                usec_t timeout;
        } known[16];
        unsigned n, next;
} BootTimeouts;

/* The boot deadline of R's service. */
static usec_t boot_timeout_of(Controller *c, BootTimeouts *m, const InstanceRecord *r) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        uint64_t ms = c->settings->boot_timeout_ms;
        unsigned i;

        for (i = 0; i < m->n; i++)
                if (m->known[i].service_id == r->service_id)
                        return m->known[i].timeout;
        if (store_service_get_by_id(c->store, r->service_id, &sv) == 0 && sv.boot_timeout_ms > 0)
                ms = (uint64_t) sv.boot_timeout_ms;
        i = m->n < ELEMENTSOF(m->known) ? m->n++ : m->next++ % ELEMENTSOF(m->known);
        m->known[i].service_id = r->service_id;
        m->known[i].timeout = ms * USEC_PER_MSEC;
        return m->known[i].timeout;
}

static void instance_retry_tcg(Controller *c, InstanceRecord *r, const char *why);

/* A domain start on the libvirt worker: what instance_started() needs once it returns. */
static struct Starting *starting_find(Controller *c, const char *id) {
        for (unsigned i = 0; i < MAX_PROBES; i++)
                if (c->starting[i].id[0] && streq(c->starting[i].id, id))
                        return &c->starting[i];
        return NULL;
}

static bool instance_starting(Controller *c, const char *id) {
        return starting_find(c, id) != NULL;
}

static void instance_started(void *userdata, const char *id, int k, const VirtDomainInfo *info, const char *error);
static int instance_probe_target(Controller *c, const InstanceRecord *r, char path[static 257]);

/* Boots R's guest: address lease, command line, then the domain start on the libvirt worker
 * (instance_started() goes on when it returns). A failure is an exit. FORCE_TCG: the start
 * under KVM just failed (KVM_FAILED says how) and this is its try under TCG. */
static void instance_boot(Controller *c, InstanceRecord *r, bool force_tcg, const char *kvm_failed) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        _cleanup_(version_record_done) VersionRecord v = {};
        _cleanup_free_ char *cmdline = NULL;
        char kernel[4096], initrd[4096], console[4096 + 80], prefix[8], netmask[16], gateway[16], version[320];
        char why[600], name[96];
        struct Starting *slot = NULL;
        VirtDomainSpec spec;
        int k;

        if (instance_starting(c, r->id))
                return;
        /* A restart was asked for (controller_instance_restart() records it): the old guest
         * goes first. The libvirt worker runs its jobs in order, so it is gone before the new
         * start; its address stays leased to the instance. */
        if (r->domain_uuid[0]) {
                log_info("Instance %s: stopping its guest for the restart asked for.", r->id);
                guest_destroy(c, r->domain_uuid, r->id);
                r->domain_uuid[0] = 0;
                r->qemu_pid = 0;
                if (store_instance_update(c->store, r) < 0)
                        log_warning("Instance %s: cannot record that its guest stopped (%s)", r->id, store_last_error());
                guest_gone(c, r->ip);
        }
        /* While KVM is on trial, one start under KVM at a time: if QEMU refuses KVM, the next
         * boots must already know (they go to TCG), as when starts ran one by one. */
        if (!force_tcg && kvm_trial_use_kvm(&c->kvm) && kvm_trial_on_trial(&c->kvm))
                for (unsigned i = 0; i < MAX_PROBES; i++)
                        if (c->starting[i].id[0] && c->starting[i].kvm)
                                return; /* the next pass boots it */
        for (unsigned i = 0; i < MAX_PROBES && !slot; i++)
                if (!c->starting[i].id[0])
                        slot = &c->starting[i];
        if (!slot)
                return; /* as many starts queued as there are slots: the next pass boots it */
        if (store_service_get_by_id(c->store, r->service_id, &sv) != 0 ||
            store_version_get_by_id(c->store, r->version_id, &v) != 0) {
                instance_exited(c, r, "its service or version cannot be read", false);
                return;
        }
        if (boot_files_check(c, &v, kernel, initrd, why, sizeof why) < 0) {
                log_warning("Instance %s: cannot boot: %s", r->id, why);
                instance_exited(c, r, why, false);
                return;
        }
        k = net_lease_acquire(c->store, &c->subnet, r->id, r->ip);
        if (k > 0) /* the instance went away meanwhile */
                return;
        if (k < 0) {
                instance_exited(c, r, k == -EADDRNOTAVAIL ? "no free address in the guest subnet" : "cannot lease an address",
                                false);
                return;
        }
        /* Asleep with a snapshot: restored, when it was taken of this version under the
         * accelerator this boot would use; never otherwise. */
        if (r->snapshot) {
                bool kvm = !force_tcg && kvm_trial_use_kvm(&c->kvm);
                if (r->snapshot_version == r->version_id && streq(r->snapshot_accel, kvm ? "kvm" : "tcg")) {
                        *slot = (struct Starting) { .console_before = console_size(c, r->id), .kvm = kvm,
                                                    .restoring = true };
                        snprintf(slot->id, sizeof slot->id, "%s", r->id);
                        snprintf(slot->version, sizeof slot->version, "%s:%s", v.image, v.tag);
                        memcpy(slot->ip, r->ip, sizeof slot->ip);
                        if (virt_queue_restore(c->jobs, r->snapshot, r->id, instance_started, c) >= 0)
                                return;
                        slot->id[0] = 0;
                }
                log_notice("Instance %s: not restoring its snapshot (taken of %s, under %s): booting cold.", r->id,
                           r->snapshot_version == r->version_id ? "this version" : "another version",
                           r->snapshot_accel[0] ? r->snapshot_accel : "?");
                snapshot_forget(r);
                if (store_instance_update(c->store, r) < 0)
                        log_warning("Instance %s: cannot record that its snapshot is gone (%s)", r->id, store_last_error());
        }
        snprintf(prefix, sizeof prefix, "%u", c->subnet.prefix);
        subnet_netmask(&c->subnet, netmask);
        ip_format(c->subnet.gateway, gateway);
        snprintf(version, sizeof version, "%s", v.tag);
        TemplateVars vars = { .ip = r->ip, .prefix = prefix, .netmask = netmask, .gateway = gateway,
                              .instance = r->id, .service = sv.name, .version = version };
        if (template_expand(v.cmdline, &vars, &cmdline) < 0) {
                instance_exited(c, r, "cannot prepare the boot (command line template)", false);
                return;
        }
        snprintf(console, sizeof console, "%s/%s.log", c->console_dir, r->id);
        snprintf(version, sizeof version, "%s:%s", v.image, v.tag);
        domain_name(r->id, name);
        spec = (VirtDomainSpec) {
                .name = name,
                .instance = r->id,
                .service = sv.name,
                .version = version,
                .kernel = kernel,
                .initrd = v.initrd[0] ? initrd : NULL,
                .cmdline = cmdline,
                .memory_mib = (unsigned) v.memory_mib,
                .vcpus = (unsigned) v.vcpus,
                .bridge = c->settings->bridge,
                .mac = r->mac,
                .console_path = console,
                .kvm = !force_tcg && kvm_trial_use_kvm(&c->kvm),
                .kvm_cpu = c->settings->kvm_cpu,
        };
        *slot = (struct Starting) { .console_before = console_size(c, r->id), .kvm = spec.kvm };
        snprintf(slot->id, sizeof slot->id, "%s", r->id);
        snprintf(slot->version, sizeof slot->version, "%s", version);
        memcpy(slot->ip, r->ip, sizeof slot->ip);
        snprintf(slot->kvm_failed, sizeof slot->kvm_failed, "%s", kvm_failed ? kvm_failed : "");
        k = virt_queue_start(c->jobs, &spec, r->id, instance_started, c);
        if (k < 0) {
                slot->id[0] = 0;
                log_oom();
        }
}

/* The domain start of instance ID returned (on the loop again): K and INFO are
 * virt_domain_start()'s, ERROR libvirt's words. */
static void instance_started(void *userdata, const char *id, int k, const VirtDomainInfo *info, const char *error) {
        Controller *c = userdata;
        _cleanup_(instance_record_done) InstanceRecord row = {};
        struct Starting *slot = starting_find(c, id), was;
        InstanceRecord *r = &row;
        char why[600], name[96];

        if (!slot)
                return;
        was = *slot;
        slot->id[0] = 0;
        domain_name(id, name);
        if (store_instance_get(c->store, id, r) != 0 || !streq(r->state, "pending")) {
                /* Stopped or deleted while its domain started: not wanted any more. */
                if (k == 0) {
                        log_info("Instance %s: no longer wanted; stopping the guest that just started.", id);
                        guest_destroy(c, info->uuid, id);
                }
                return;
        }
        if (was.restoring) {
                /* A snapshot is used once, whatever came of it. */
                snapshot_forget(r);
                if (k < 0) {
                        snprintf(why, sizeof why, "restoring its snapshot failed: %s", error && error[0] ? error : strerror(-k));
                        one_line(why);
                        log_warning("Instance %s: %s; booting cold instead.", id, why);
                        set_reason(r, why);
                        instance_commit(c, r, "instance.restore-failed", json_pack("{s:s}", "reason", why));
                        service_wake_fell_back(c, r);
                        instance_boot(c, r, false, NULL);
                        return;
                }
        }
        if (k == -EIO && was.kvm && kvm_trial_on_trial(&c->kvm)) {
                /* QEMU may abort at once on a KVM it cannot use (a CPU feature the nested
                 * hypervisor refuses): that guest gets its try under TCG now. */
                char qemu[300] = "";
                snprintf(why, sizeof why, "QEMU could not start the guest under KVM: %s", error);
                one_line(why);
                if (virt_domain_log_error(c->virt, name, qemu, sizeof qemu) == 0 && !strstr(why, qemu))
                        snprintf(why + strlen(why), sizeof why - strlen(why), " (QEMU: %s)", qemu);
                if (kvm_trial_failed(&c->kvm, why))
                        log_warning("Instance %s: %s. Trying QEMU TCG (software emulation); if the guest comes up "
                                    "there, KVM is marked unusable.", id, why);
                instance_boot(c, r, true, why);
                return;
        }
        if (k < 0) {
                snprintf(why, sizeof why, "boot failed: %s", error && error[0] ? error : strerror(-k));
                one_line(why);
                log_warning("Instance %s: %s", id, why);
                instance_exited(c, r, why, false);
                return;
        }
        memcpy(r->ip, was.ip, sizeof r->ip);
        snprintf(r->accel, sizeof r->accel, "%s", was.kvm ? "kvm" : "tcg");
        snprintf(r->state, sizeof r->state, "booting");
        snprintf(r->domain_uuid, sizeof r->domain_uuid, "%s", info->uuid);
        r->qemu_pid = info->qemu_pid;
        r->running_at = now_realtime();
        r->ready_at = 0;
        r->stopped_at = 0;
        r->next_start_at = 0;
        BootWatch *w = boot_watch(c, r->id, r->running_at, true);
        if (w)
                w->console_at_boot = was.console_before;
        log_info("Instance %s: %s %s at %s under %s (QEMU pid %d).", r->id, was.restoring ? "restored" : "booting",
                 was.version, r->ip, was.kvm ? "KVM" : "TCG", (int) info->qemu_pid);
        instance_commit(c, r, "instance.boot",
                        json_pack("{s:s, s:s, s:s, s:i, s:s, s:s?, s:b}", "version", was.version, "ip", r->ip, "domain",
                                  info->uuid, "qemu_pid", (int) info->qemu_pid, "accel", r->accel, "kvm_failed",
                                  was.kvm_failed[0] ? was.kvm_failed : NULL, "restored", was.restoring));
        /* Probed from now on, not from the next tick. */
        if (w) {
                char path[257];
                int port = instance_probe_target(c, r, path);
                if (port > 0) {
                        memcpy(w->ip, r->ip, sizeof w->ip); /* both 16 bytes, NUL-terminated */
                        w->port = (unsigned) port;
                        snprintf(w->path, sizeof w->path, "%s", path);
                        (void) sd_event_source_set_time_relative(c->probe_timer, PROBE_EVERY_USEC);
                        (void) sd_event_source_set_enabled(c->probe_timer, SD_EVENT_ON);
                }
        }
}

/* ---- readiness ---- */

/* A guest came up under KVM or TCG: what that says about KVM on this host. */
static void kvm_trial_note_ready(Controller *c, const InstanceRecord *r) {
        bool kvm = streq(r->accel, "kvm");

        if (!kvm_trial_ready(&c->kvm, kvm)) {
                if (kvm && c->kvm.setting == ACCEL_AUTO)
                        log_debug("KVM runs guests on this host (instance %s).", r->id);
                return;
        }
        log_error("KVM is unusable on this host: %s. Instance %s came up under QEMU TCG (software emulation) "
                  "instead, and every guest uses TCG from now on, which is several times slower. This is kept in "
                  "%s/kvm-unusable: delete it, or set accel = kvm or tcg, to decide otherwise.",
                  c->kvm.reason, r->id, c->settings->state_dir);
        kvm_marker_write(c, c->kvm.reason);
        host_event(c, "host.kvm-unusable", "tcg",
                   json_pack("{s:s, s:s}", "reason", c->kvm.reason, "instance", r->id));
}

/* A TCG guest failed before it came up while KVM was suspect: that proves nothing about KVM. */
static void kvm_trial_note_tcg_failed(Controller *c, const InstanceRecord *r) {
        if (kvm_trial_tcg_failed(&c->kvm))
                log_notice("Instance %s failed under QEMU TCG as well: the image, not KVM, may be at fault. The next "
                           "boot tries KVM again.", r->id);
}

static void on_probe(const char *id, bool ok, const char *error, void *userdata) {
        Controller *c = userdata;
        _cleanup_(instance_record_done) InstanceRecord r = {};
        BootWatch *w = NULL;
        usec_t probed = 0;
        json_t *detail;

        for (unsigned i = 0; i < MAX_PROBES; i++)
                if (streq(c->boot[i].id, id)) {
                        w = &c->boot[i];
                        break;
                }
        if (!w || !w->probing)
                return;
        w->probing = false;
        probed = w->probe_running_at;
        if (!ok && w->running_at == probed)
                snprintf(w->last_error, sizeof w->last_error, "%s", error ? error : "failed");
        /* A probe of an earlier boot (the guest was restarted meanwhile) proves nothing. */
        if (store_instance_get(c->store, id, &r) != 0 || !streq(r.state, "booting") || r.running_at != probed ||
            !ok)
                return;
        w->id[0] = 0; /* done watching */
        snprintf(r.state, sizeof r.state, "ready");
        r.ready_at = now_realtime();
        detail = json_pack("{s:I, s:s}", "boot_ms", (json_int_t) ((r.ready_at - r.running_at) / USEC_PER_MSEC), "accel",
                           r.accel);
        if (instance_commit(c, &r, "instance.ready", detail) != 0) {
                /* Still booting in the database: the next pass watches it and probes it again. */
                log_warning("Instance %s: its guest answers, but that cannot be recorded (%s); the next pass probes "
                            "it again.",
                            r.id, store_last_error());
                return;
        }
        log_info("Instance %s: ready after %.1fs (%s).", r.id, (double) (r.ready_at - r.running_at) / USEC_PER_SEC,
                 streq(r.accel, "kvm") ? "KVM" : "TCG");
        kvm_trial_note_ready(c, &r);
        traffic_sync(c->traffic); /* held requests (a service waking) go to it now */
        service_woke(c, &r);
        controller_kick(c); /* old instances may go now */
}

/* Where R's readiness is probed: its port and the service's health-check path. */
static int instance_probe_target(Controller *c, const InstanceRecord *r, char path[static 257]) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        _cleanup_(version_record_done) VersionRecord v = {};

        if (store_service_get_by_id(c->store, r->service_id, &sv) != 0 ||
            store_version_get_by_id(c->store, r->version_id, &v) != 0)
                return -ENOENT;
        snprintf(path, 257, "%s", sv.hc_path);
        return (int) (sv.port ? sv.port : v.port);
}

/* Stops the guest of booting R, which missed its deadline: an exit like any other. */
static void instance_boot_timed_out(Controller *c, InstanceRecord *r, usec_t timeout, const BootWatch *w) {
        char path[257] = "/", deadline[32], why[600];
        int port = instance_probe_target(c, r, path);

        boot_timeout_format(timeout, deadline);
        snprintf(why, sizeof why, "not healthy %s after boot: GET %s on %s:%d: %s", deadline, path, r->ip, port,
                 w && w->last_error[0] ? w->last_error : "no health check has answered yet");
        log_warning("Instance %s: %s; stopping it.", r->id, why);
        if (r->domain_uuid[0])
                guest_destroy(c, r->domain_uuid, r->id);
        instance_exit_as(c, r, why, false, "instance.boot-timeout");
}

/* Starts W's next readiness probe unless one is in flight; the probe timer runs while any is
 * watched. */
static void probe_start(Controller *c, BootWatch *w) {
        if (w->probing || !w->ip[0])
                return;
        if (probe_http(c->event, w->id, w->ip, w->port, w->path, PROBE_TIMEOUT_USEC, on_probe, c) >= 0) {
                w->probing = true;
                w->probe_running_at = w->running_at;
        }
        (void) sd_event_source_set_enabled(c->probe_timer, SD_EVENT_ON);
}

/* Every PROBE_EVERY_USEC while guests boot: each gets its next probe as soon as the last one
 * ended. Deadlines stay the tick's (probe_booting), which reads the rows. */
static int on_probe_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Controller *c = userdata;
        bool any = false;

        for (unsigned i = 0; i < MAX_PROBES; i++)
                if (c->boot[i].id[0] && c->boot[i].ip[0]) {
                        any = true;
                        probe_start(c, &c->boot[i]);
                }
        if (!any)
                return sd_event_source_set_enabled(s, SD_EVENT_OFF);
        return sd_event_source_set_time(s, usec + PROBE_EVERY_USEC);
}

/* Readiness is the service's HTTP health check answering 2xx/3xx (probe_http); each booting
 * guest is judged against its deadline (boot_judge). */
static void probe_booting(Controller *c, InstanceList *l) {
        usec_t now = now_realtime();
        BootTimeouts timeouts = {};

        for (unsigned i = 0; i < MAX_PROBES; i++)
                c->boot[i].seen = false;
        for (size_t i = 0; i < l->n; i++) {
                InstanceRecord *r = &l->items[i];
                BootWatch *w;
                char path[257];
                int port;

                if (!streq(r->state, "booting"))
                        continue;
                w = boot_watch(c, r->id, r->running_at, true);
                if (w)
                        w->seen = true;
                if (r->running_at) {
                        usec_t timeout = boot_timeout_of(c, &timeouts, r);
                        BootObservation o = {
                                .now = now,
                                .running_at = r->running_at,
                                .boot_timeout = timeout,
                                .kvm = streq(r->accel, "kvm"),
                                .on_trial = kvm_trial_on_trial(&c->kvm),
                        };
                        /* Only a guest under KVM on trial is judged by its console: no stat of
                         * every booting guest's console file at every pass. */
                        o.console_output = !(o.kvm && o.on_trial) || !w || w->console_at_boot < 0 ||
                                           console_size(c, r->id) > w->console_at_boot;
                        switch (boot_judge(&o)) {
                        case BOOT_TRY_TCG: {
                                char why[300], deadline[32];
                                /* Which deadline passed: the first one (10 s), or the boot's own. */
                                boot_timeout_format(now - r->running_at >= timeout ? timeout
                                                    : timeout < BOOT_KVM_LIFE_USEC ? timeout : BOOT_KVM_LIFE_USEC, deadline);
                                snprintf(why, sizeof why, "no sign of life under KVM %s after boot: %s, and %s",
                                         deadline, o.console_output ? "console output" : "no console output",
                                         w && w->last_error[0] ? w->last_error : "no health check answered");
                                instance_retry_tcg(c, r, why);
                                continue;
                        }
                        case BOOT_TIMED_OUT:
                                instance_boot_timed_out(c, r, timeout, w);
                                continue;
                        default:
                                break;
                        }
                }
                if (!r->ip[0] || !w)
                        continue;
                if (!w->ip[0]) {
                        port = instance_probe_target(c, r, path);
                        if (port <= 0)
                                continue;
                        memcpy(w->ip, r->ip, sizeof w->ip); /* both 16 bytes, NUL-terminated */
                        w->port = (unsigned) port;
                        snprintf(w->path, sizeof w->path, "%s", path);
                }
                probe_start(c, w);
        }
        /* Forget guests no longer booting; a probe in flight clears its own. */
        for (unsigned i = 0; i < MAX_PROBES; i++)
                if (c->boot[i].id[0] && !c->boot[i].seen && !c->boot[i].probing)
                        c->boot[i].id[0] = 0;
}

/* ---- the pass ---- */

static InstanceRecord *instance_of(const InstanceList *l, const char *id) {
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].id, id))
                        return &l->items[i];
        return NULL;
}

static bool has_guest(const InstanceRecord *r) {
        return streq(r->state, "booting") || streq(r->state, "ready") || streq(r->state, "draining");
}

/* Domains and instances that disagree: orphans go, lost guests are exits. DOMAINS is what the
 * libvirt worker listed; RUNNING[i] says whether UUIDS[i] (of an instance that holds a guest,
 * as the rows were when the listing was asked for) runs. The rows are read again here: they may
 * have changed while the listing ran. */
static void pass_actual_apply(Controller *c, const VirtDomainInfo *domains, size_t n_domains, char *const *uuids,
                              const int *running, size_t n_uuids) {
        InstanceList all = {};

        if (instances_load(c, 0, &all) < 0)
                return;
        for (size_t i = 0; i < n_domains; i++) {
                const VirtDomainInfo *d = &domains[i];
                InstanceRecord *r = instance_of(&all, d->instance);
                EventRecord e = { .actor = "aviaryd", .action = "instance.orphan-removed", .result = "stopped" };
                char resource[96];

                if (r && has_guest(r)) {
                        if (d->qemu_pid && r->qemu_pid != d->qemu_pid && streq(r->domain_uuid, d->uuid)) {
                                r->qemu_pid = d->qemu_pid;
                                store_instance_update(c->store, r);
                        }
                        /* A pause whose event was missed (aviaryd was down, say). */
                        if (d->paused && !streq(r->state, "draining") && streq(r->domain_uuid, d->uuid))
                                instance_paused(c, r, d->pause_reason);
                        continue;
                }
                /* Its start is under way, or its row moved on since the listing (a boot that
                 * committed meanwhile): not an orphan. */
                if (r && (instance_starting(c, r->id) || (r->domain_uuid[0] && !streq(r->domain_uuid, d->uuid))))
                        continue;
                /* A restart asked for: the next boot of the row stops it first. */
                if (r && streq(r->state, "pending") && streq(r->domain_uuid, d->uuid))
                        continue;
                log_notice("Removing domain %s: no instance of ours wants it.", d->name);
                guest_destroy(c, d->uuid, d->instance);
                snprintf(resource, sizeof resource, "instance/%s", d->instance);
                e.resource = resource;
                store_event_append(c->store, &e);
        }
        for (size_t i = 0; i < all.n; i++) {
                InstanceRecord *r = &all.items[i];
                bool listed = false, asked = false, gone = false;

                if (!has_guest(r))
                        continue;
                for (size_t k = 0; k < n_domains && !listed; k++)
                        listed = streq(domains[k].instance, r->id);
                for (size_t k = 0; k < n_uuids && !listed && !asked; k++)
                        if (streq(uuids[k], r->domain_uuid)) {
                                asked = true;
                                gone = running[k] == 0;
                        }
                /* Not listed: gone when libvirt confirmed it by uuid. A guest that booted after
                 * the listing was asked for waits for the next pass. */
                if (!listed && (gone || !r->domain_uuid[0]))
                        instance_gone_unseen(c, r);
        }
        instance_list_done(&all);
}

/* What SV wants from the plan, rollouts included. */
static void plan_input(Controller *c, const ServiceRecord *sv, PlanInput *ret) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};
        Strategy st;
        usec_t now = now_realtime(), delay;

        *ret = (PlanInput) { .replicas = sv->replicas, .stable_version_id = sv->stable_version_id };
        if (store_rollout_get_latest(c->store, sv->id, &ro) != 0)
                return;
        if (rollout_strategy(&ro, &st) < 0)
                return;
        if (rollout_is_active(&ro) && ro.to_version_id == sv->stable_version_id)
                return; /* a first deploy: its guests are the stable ones */
        if (rollout_is_active(&ro)) {
                ret->canary_version_id = ro.to_version_id;
                ret->canary_replicas = rollout_canary_wanted(&ro, &st, sv->replicas);
                return;
        }
        /* Finished: the losing side's guests stay a while (inspection, or a quick way back). */
        delay = (ro.phase == ROLLOUT_DEGRADED ? st.abort_scale_down_delay_ms : st.scale_down_delay_ms) * USEC_PER_MSEC;
        if (ro.finished_at && now < ro.finished_at + delay)
                ret->keep_version_id = ro.phase == ROLLOUT_DEGRADED ? ro.to_version_id : ro.from_version_id;
}

/* ---- sleep and wake (scale to zero) ---- */

/* The Awake entry of SERVICE_ID: found, or (CREATE) made (awake since now), or NULL. */
static struct Awake *awake_of(Controller *c, int64_t service_id, bool create) {
        struct Awake *free_slot = NULL;

        for (unsigned i = 0; i < MAX_AWAKE; i++) {
                if (c->awake[i].service_id == service_id)
                        return &c->awake[i];
                if (!c->awake[i].service_id && !free_slot)
                        free_slot = &c->awake[i];
        }
        if (!create || !free_slot)
                return NULL;
        *free_slot = (struct Awake) { .service_id = service_id, .since = now_realtime(), .seen = true };
        return free_slot;
}

/* Appends an audit event about service SERVICE (by aviaryd). Takes DETAIL. */
static void service_event(Controller *c, const char *service, const char *action, const char *result, json_t *detail) {
        json_auto_t *owned = detail;
        char resource[96];
        EventRecord e = { .actor = "aviaryd", .action = action, .resource = resource, .result = result,
                          .detail_json = detail };
        int k;

        snprintf(resource, sizeof resource, "service/%s", service);
        k = store_event_append(c->store, &e);
        if (k != 0)
                log_warning("Cannot record the event %s of service %s (%s)", action, service, store_last_error());
}

static unsigned instances_count(const InstanceList *l, const char *state) {
        unsigned n = 0;

        for (size_t i = 0; i < l->n; i++)
                n += streq(l->items[i].state, state);
        return n;
}

static bool holds_guest_slot(const InstanceRecord *r) {
        return streq(r->state, "pending") || streq(r->state, "booting") || streq(r->state, "ready");
}

/* Puts SV's guests to sleep: every instance of L that has or wants a guest becomes asleep and
 * keeps its address lease and MAC (a woken guest has the same IP and MAC); its guest stops on the
 * libvirt worker. The proxy holds SV's requests from the table this publishes on. WHY becomes the
 * instances' stop_reason. Returns how many went to sleep.
 *
 * DEFER (a sleep through the API, inside the request's transaction): the rows are written now and
 * the guests stop, and the tables change, only once that transaction committed
 * (controller_service_sleep_committed); a refused request (a full disk) leaves them running. */
static unsigned guests_sleep(Controller *c, const ServiceRecord *sv, InstanceList *l, const char *why,
                              bool defer) {
        usec_t now = now_realtime();
        unsigned n = 0;
        struct Awake *a;

        for (size_t i = 0; i < l->n; i++) {
                InstanceRecord *r = &l->items[i];
                struct ApiSleep stop = {};

                if (!holds_guest_slot(r))
                        continue;
                snapshot_forget(r); /* an older one, if any: the guest ran since */
                snprintf(stop.id, sizeof stop.id, "%s", r->id);
                snprintf(stop.uuid, sizeof stop.uuid, "%s", r->domain_uuid);
                snprintf(stop.ip, sizeof stop.ip, "%s", r->ip);
                stop.save = streq(sv->wake, "snapshot") && streq(r->state, "ready");
                if (!defer)
                        guest_sleep(c, r, streq(sv->wake, "snapshot"));
                snprintf(r->state, sizeof r->state, "asleep");
                r->domain_uuid[0] = 0;
                r->qemu_pid = 0;
                r->stopped_at = now;
                r->next_start_at = 0;
                set_reason(r, why);
                if (instance_commit(c, r, NULL, NULL) < 0) {
                        log_warning("Instance %s: cannot record that it sleeps (%s)", r->id, store_last_error());
                        if (defer)
                                continue; /* its row still says what runs: so does its guest */
                }
                if (defer && c->n_api_sleep < ELEMENTSOF(c->api_sleep))
                        c->api_sleep[c->n_api_sleep++] = stop;
                n++;
        }
        a = awake_of(c, sv->id, false);
        if (a)
                a->service_id = 0;
        if (defer)
                return n;
        traffic_sync(c->traffic); /* no guest: requests are held from now on */
        for (size_t i = 0; i < l->n; i++)
                if (streq(l->items[i].state, "asleep") && l->items[i].ip[0])
                        traffic_backend_gone(c->traffic, l->items[i].ip);
        return n;
}

/* Wakes SV: its asleep instances of a version it serves become pending (same address and MAC)
 * and boot at the next pass; asleep instances of any other version stop (the plan starts what
 * the service now wants). WHY says what woke it. Returns how many boot. */
static unsigned guests_wake(Controller *c, const ServiceRecord *sv, InstanceList *l, const char *why) {
        usec_t now = now_realtime();
        PlanInput in;
        unsigned n = 0;
        struct Awake *a;

        plan_input(c, sv, &in);
        for (size_t i = 0; i < l->n; i++) {
                InstanceRecord *r = &l->items[i];
                bool served = sv->replicas > 0 && in.stable_version_id &&
                              (r->version_id == in.stable_version_id ||
                               (in.canary_version_id && r->version_id == in.canary_version_id));

                if (!streq(r->state, "asleep"))
                        continue;
                if (served) {
                        snprintf(r->state, sizeof r->state, "pending");
                        r->next_start_at = 0;
                        r->restarts = 0;
                        set_reason(r, NULL);
                        n++;
                } else {
                        snprintf(r->state, sizeof r->state, "stopped");
                        set_reason(r, "stopped while asleep: the service no longer runs its version");
                        snapshot_forget(r);
                        instance_release(c, r);
                }
                if (instance_commit(c, r, NULL, NULL) < 0)
                        log_warning("Instance %s: cannot record its wake (%s)", r->id, store_last_error());
        }
        a = awake_of(c, sv->id, true);
        if (a) {
                a->since = now;
                a->wake_started = now;
                a->fell_back = false;
                snprintf(a->why, sizeof a->why, "%s", why);
        }
        log_info("Service %s: waking %u guest(s) (%s).", sv->name, n, why);
        controller_kick(c);
        return n;
}

/* Instance R of a waking service is ready: the wake is done. */
static void service_woke(Controller *c, const InstanceRecord *r) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        struct Awake *a = awake_of(c, r->service_id, false);
        usec_t now = now_realtime();

        if (!a || !a->wake_started || store_service_get_by_id(c->store, r->service_id, &sv) != 0)
                return;
        log_info("Service %s: awake, %.2fs after its wake (%s); instance %s serves.", sv.name,
                 (double) (now - a->wake_started) / USEC_PER_SEC, a->why, r->id);
        service_event(c, sv.name, "service.awake", "ready",
                      json_pack("{s:s, s:I, s:s}", "instance", r->id, "wake_ms",
                                (json_int_t) ((now - a->wake_started) / USEC_PER_MSEC), "woken_by", a->why));
        a->wake_started = 0;
        a->since = now;
}

/* Waking instance R's snapshot could not be restored: it boots cold now, the wake's one fallback. */
static void service_wake_fell_back(Controller *c, const InstanceRecord *r) {
        struct Awake *a = awake_of(c, r->service_id, false);

        if (a && a->wake_started)
                a->fell_back = true;
}

/* Booting instance R of its service exited (REASON), its row written (pending again, or given up
 * by its restart policy): when the service was waking and no other guest of it is coming up, a
 * wake: snapshot falls back once to a cold boot at once; otherwise the wake failed, and the
 * requests held for it get a 503 that says why (the instance's stop_reason says it too). */
static void service_wake_check(Controller *c, InstanceRecord *r, const char *reason) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        struct Awake *a = awake_of(c, r->service_id, false);
        InstanceList l = {};
        bool coming = false;
        char why[900];

        if (!a || !a->wake_started || store_service_get_by_id(c->store, r->service_id, &sv) != 0)
                return;
        /* wake: snapshot falls back once: the guest boots cold at once (its snapshot was used),
         * and the held requests wait for that boot. */
        if (streq(sv.wake, "snapshot") && !a->fell_back && streq(r->state, "pending")) {
                a->fell_back = true;
                r->next_start_at = 0;
                log_notice("Instance %s: its wake failed (%s); booting it cold once.", r->id, reason);
                if (instance_commit(c, r, NULL, NULL) < 0)
                        log_warning("Instance %s: cannot record its cold boot (%s)", r->id, store_last_error());
                controller_kick(c);
                return;
        }
        if (instances_load(c, sv.id, &l) == 0)
                for (size_t i = 0; i < l.n && !coming; i++)
                        coming = !streq(l.items[i].id, r->id) &&
                                 (streq(l.items[i].state, "booting") || streq(l.items[i].state, "ready") ||
                                  instance_starting(c, l.items[i].id));
        instance_list_done(&l);
        if (coming)
                return;
        snprintf(why, sizeof why, "service %s could not wake: instance %s: %s", sv.name, r->id, reason);
        log_warning("%s", why);
        service_event(c, sv.name, "service.wake-failed", "failed", json_pack("{s:s, s:s}", "instance", r->id, "reason", reason));
        a->wake_started = 0;
        traffic_wake_failed(c->traffic, sv.name, why);
}

static bool rollout_in_progress(Controller *c, int64_t service_id) {
        _cleanup_(rollout_record_done) RolloutRecord ro = {};

        return store_rollout_get_active(c->store, service_id, &ro) == 0;
}

/* SV, awake, may sleep: when no request came for its idle time (counted from its last request,
 * its wake, or the moment this aviaryd first saw it awake, whichever is last), its guests go to
 * sleep. Never during a rollout (idle counts from the rollout's end), nor while a guest of it
 * boots. True when it went to sleep. */
static bool sleep_if_idle(Controller *c, const ServiceRecord *sv, InstanceList *l, bool rollout) {
        struct Awake *a = awake_of(c, sv->id, true);
        usec_t now = now_realtime(), last, from;
        unsigned ready = instances_count(l, "ready"), n;
        char idle[32], why[96];

        if (!a)
                return false;
        if (rollout) {
                a->since = now;
                return false;
        }
        /* A guest on its way up (the first boot, a scale-up, a restart): idle counts from when
         * none is. */
        if (instances_count(l, "pending") + instances_count(l, "booting") > 0) {
                a->since = now;
                return false;
        }
        last = traffic_last_request(c->traffic, sv->name);
        from = last > a->since ? last : a->since;
        if (a->wake_started || ready == 0 || now < from + (usec_t) sv->idle_ms * USEC_PER_MSEC)
                return false;
        duration_format_ms((uint64_t) sv->idle_ms, idle);
        snprintf(why, sizeof why, "asleep: no request for %s", idle);
        n = guests_sleep(c, sv, l, why, false);
        log_info("Service %s: no request for %s: %u guest(s) asleep.", sv->name, idle, n);
        service_event(c, sv->name, "service.sleep", "asleep",
                      json_pack("{s:s, s:I, s:I}", "reason", "idle", "idle_ms", (json_int_t) sv->idle_ms, "instances",
                                (json_int_t) n));
        return true;
}

/* A worker holds a request for SERVICE, which has no ready guest: wake it, or say why not. */
static void on_wake_request(void *userdata, const char *service) {
        Controller *c = userdata;
        _cleanup_(service_record_done) ServiceRecord sv = {};
        InstanceList l = {};
        char why[700];

        if (store_service_get(c->store, service, &sv) != 0 || instances_load(c, sv.id, &l) < 0)
                return;
        if (instances_count(&l, "asleep") > 0) {
                unsigned n = guests_wake(c, &sv, &l, "request");
                service_event(c, sv.name, "service.wake", "waking",
                              json_pack("{s:s, s:I}", "reason", "request", "instances", (json_int_t) n));
        } else if (instances_count(&l, "ready") > 0)
                traffic_sync(c->traffic); /* the table is behind: the next one releases them */
        else if (instances_count(&l, "pending") + instances_count(&l, "booting") == 0) {
                const InstanceRecord *broken = NULL;
                for (size_t i = 0; i < l.n && !broken; i++)
                        if (l.items[i].stop_reason)
                                broken = &l.items[i];
                snprintf(why, sizeof why, "service %s has no guest that can start%s%s%s%s", sv.name,
                         broken ? ": instance " : "", broken ? broken->id : "", broken ? ": " : "",
                         broken ? broken->stop_reason : "");
                traffic_wake_failed(c->traffic, sv.name, why);
        }
        /* else: pending or booting guests; the requests wait for the first to be ready. */
        instance_list_done(&l);
}

static int pass_service(const ServiceRecord *sv, void *userdata) {
        Controller *c = userdata;
        InstanceList l = {};
        PlanInput in;
        Plan p;
        int k = instances_load(c, sv->id, &l);

        if (k < 0)
                return k;
        {
                struct Awake *a = awake_of(c, sv->id, false);
                if (a)
                        a->seen = true;
        }
        if (instances_count(&l, "asleep") > 0) {
                /* Asleep: nothing to plan, unless something wants it awake. */
                const char *why = rollout_in_progress(c, sv->id)          ? "rollout"
                                  : sv->idle_ms == 0                      ? "scale_to_zero off"
                                  : !sv->stable_version_id || !sv->replicas ? "scaled to 0"
                                                                          : NULL;
                if (why) {
                        unsigned n = guests_wake(c, sv, &l, why);
                        service_event(c, sv->name, "service.wake", "waking",
                                      json_pack("{s:s, s:I}", "reason", why, "instances", (json_int_t) n));
                }
                instance_list_done(&l);
                return 0;
        }
        if (sv->idle_ms > 0 && sleep_if_idle(c, sv, &l, rollout_in_progress(c, sv->id))) {
                instance_list_done(&l);
                return 0;
        }
        if (sv->idle_ms == 0) {
                struct Awake *a = awake_of(c, sv->id, false);
                if (a)
                        a->service_id = 0;
        }
        plan_input(c, sv, &in);
        plan_service(&in, l.items, l.n, &p);
        for (unsigned i = 0; i < p.start; i++)
                instance_create(c, sv, in.stable_version_id);
        for (unsigned i = 0; i < p.start_canary; i++)
                instance_create(c, sv, in.canary_version_id);
        for (unsigned i = 0; i < p.n_stop; i++) {
                InstanceRecord *r = instance_of(&l, p.stop[i]);
                if (r)
                        instance_stop(c, r, p.stop_reason[i]);
        }
        instance_list_done(&l);
        return 0;
}

/* The results of the libvirt worker handed back at once (several boots) commit together. */
static void results_begin(void *userdata) {
        Controller *c = userdata;

        c->results_tx = store_begin_relaxed(c->store) == 0;
}

static void results_end(void *userdata) {
        Controller *c = userdata;

        if (c->results_tx && store_commit(c->store) < 0)
                log_warning("Cannot record the guests libvirt just started or stopped (%s); the next pass looks again",
                            store_last_error());
        c->results_tx = false;
}

/* Boots the pending instances that are due, of SERVICE_ID's service (0: of every service), and
 * ends the drains that are done. WATCH: also judge and probe the booting guests (a full pass;
 * the tick does it between them, so a pass over a few services leaves the others alone). */
static int pass_boot(Controller *c, int64_t service_id, bool watch) {
        InstanceList l = {};
        usec_t now = now_realtime();
        int k = instances_load(c, service_id, &l);

        if (k < 0)
                return k;
        for (size_t i = 0; i < l.n; i++)
                if (streq(l.items[i].state, "pending") && l.items[i].next_start_at <= now)
                        instance_boot(c, &l.items[i], false, NULL);
        if (watch)
                probe_booting(c, &l);
        pass_drain(c, &l);
        instance_list_done(&l);
        return 0;
}

/* The pass over SQLite alone: each service's plan, boots, drains, the routing tables. What
 * libvirt runs is compared with the rows by pass_actual_apply(), when a listing comes back. */
static int controller_pass(Controller *c) {
        /* One transaction: the plans' new instances, drains, the boots' address leases and their
         * events (instance_write nests as savepoints), and the reads of the routing tables (one
         * lock for the pass, not one per statement). Relaxed, as instance_write says: what an
         * API request asked for was flushed when it was answered; this only derives from it. */
        int k = store_begin_relaxed(c->store);

        c->dirty_all = false; /* this pass covers every change so far */
        c->n_dirty = 0;
        for (unsigned i = 0; i < MAX_AWAKE; i++)
                c->awake[i].seen = false;
        c->pass_at = now_monotonic();
        if (k == 0) {
                k = store_service_list(c->store, NULL, 1000, pass_service, c);
                if (k == 0)
                        k = pass_boot(c, 0, true);
                if (k == 0) {
                        traffic_sync(c->traffic);
                        k = store_commit(c->store);
                } else
                        store_rollback(c->store);
        }
        /* What is known of deleted services goes with them. */
        for (unsigned i = 0; k == 0 && i < MAX_AWAKE; i++)
                if (c->awake[i].service_id && !c->awake[i].seen)
                        c->awake[i].service_id = 0;
        if (k < 0)
                traffic_sync(c->traffic);
        if (k < 0)
                log_warning_errno(k, "Reconcile pass failed (%s); retrying", store_last_error()[0] ? store_last_error() : strerror(-k));
        telemetry_controller_pass(true, now_monotonic() - c->pass_at);
        return k;
}

/* A pass over the services the API changed alone (controller_changed_service), when only those
 * changed since the last pass: their plans, their boots due and drains done, and their routing
 * tables (judging and probing the booting guests is the tick's). A pass per API change would
 * otherwise read every service, and a service created one after another would cost a pass over
 * all the ones before it. Anything else that happens (a guest's exit, a probe, a libvirt
 * listing, a rollout's step) asks for a full pass, and one runs every PASS_TICKS. */
static int controller_pass_some(Controller *c) {
        char names[DIRTY_MAX][64];
        unsigned n = c->n_dirty;
        int k;

        memcpy(names, c->dirty, sizeof names[0] * n);
        c->n_dirty = 0;
        c->pass_at = now_monotonic();
        k = store_begin_relaxed(c->store);
        for (unsigned i = 0; k == 0 && i < n; i++) {
                _cleanup_(service_record_done) ServiceRecord sv = {};
                int r = store_service_get(c->store, names[i], &sv);

                if (r == 0)
                        k = pass_service(&sv, c);
                if (r == 0 && k == 0)
                        k = pass_boot(c, sv.id, false);
                else if (r != 0 && r != AVIARY_E_SERVICE_NOT_FOUND) /* gone: its guests were the handler's to stop */
                        k = r < 0 ? r : -EIO;
        }
        if (k == 0) {
                traffic_sync_services(c->traffic, (const char (*)[64]) names, n);
                k = store_commit(c->store);
        } else
                store_rollback(c->store);
        if (k < 0) {
                log_warning_errno(k, "Reconcile pass failed (%s); retrying", store_last_error()[0] ? store_last_error() : strerror(-k));
                controller_kick(c); /* a full one */
        }
        telemetry_controller_pass(false, now_monotonic() - c->pass_at);
        return k;
}

/* The uuids of the domains of instances that hold a guest: a listing says for each whether
 * libvirt still runs it. */
static int guest_uuids(Controller *c, char ***ret, size_t *ret_n) {
        InstanceList all = {};
        char **uuids;
        size_t n = 0;
        int k = instances_load(c, 0, &all);

        if (k < 0)
                return k;
        uuids = calloc(all.n + 1, sizeof *uuids);
        for (size_t i = 0; uuids && i < all.n; i++)
                if (has_guest(&all.items[i]) && all.items[i].domain_uuid[0])
                        if (!(uuids[n++] = strdup(all.items[i].domain_uuid)))
                                n--;
        instance_list_done(&all);
        if (!uuids)
                return -ENOMEM;
        *ret = uuids;
        *ret_n = n;
        return 0;
}

static void strv_free_n(char **v, size_t n) {
        for (size_t i = 0; v && i < n; i++)
                free(v[i]);
        free(v);
}

static void on_first_listing(void *userdata, int k, const VirtDomainInfo *domains, size_t n_domains,
                             char *const *uuids, const int *running, size_t n_uuids) {
        Controller *c = userdata;

        if (k < 0)
                log_warning_errno(k, "Cannot list the running guests at start; the next pass tries again");
        else
                pass_actual_apply(c, domains, n_domains, uuids, running, n_uuids);
}

static void on_listed(void *userdata, int k, const VirtDomainInfo *domains, size_t n_domains, char *const *uuids,
                      const int *running, size_t n_uuids) {
        Controller *c = userdata;

        c->listing = false;
        if (k < 0)
                log_warning_errno(k, "Cannot list the running guests; retrying at the next pass");
        else
                pass_actual_apply(c, domains, n_domains, uuids, running, n_uuids);
        controller_pass(c);
}

/* The full pass: a listing of the domains on the libvirt worker, then (in on_listed) the
 * comparison with the rows and the pass over SQLite. One listing at a time. */
static void controller_full_pass(Controller *c) {
        char **uuids = NULL;
        size_t n = 0;

        if (c->listing)
                return;
        if (guest_uuids(c, &uuids, &n) < 0 || virt_queue_list(c->jobs, uuids, n, on_listed, c) < 0) {
                log_warning("Cannot ask libvirt for the running guests; retrying at the next pass");
                strv_free_n(uuids, n);
                controller_pass(c);
                return;
        }
        strv_free_n(uuids, n);
        c->listing = true;
}

static int on_kick(sd_event_source *s, void *userdata) {
        Controller *c = userdata;

        sd_event_source_set_enabled(s, SD_EVENT_OFF);
        /* This pass covers the changes the coalescing timer waits for, if it is armed: a kick
         * "at once" may come first when the loop was busy past its time. */
        (void) sd_event_source_set_enabled(c->changed, SD_EVENT_OFF);
        if (c->dirty_all)
                controller_pass(c);
        else if (c->n_dirty > 0)
                controller_pass_some(c);
        /* else: nothing changed since the last pass */
        return 0;
}

static int on_tick(sd_event_source *s, uint64_t usec, void *userdata) {
        Controller *c = userdata;
        InstanceList l = {};

        if (rollout_driver_pass(c->rollouts) > 0)
                controller_kick(c);
        traffic_health_tick(c->traffic);
        if (++c->ticks % PASS_TICKS == 0)
                controller_full_pass(c);
        else if (instances_load(c, 0, &l) == 0) {
                usec_t now = now_realtime();
                for (size_t i = 0; i < l.n; i++)
                        if (streq(l.items[i].state, "pending") && l.items[i].next_start_at <= now &&
                            !instance_starting(c, l.items[i].id)) {
                                controller_kick(c);
                                break;
                        }
                probe_booting(c, &l);
                pass_drain(c, &l);
                instance_list_done(&l);
        }
        sd_event_source_set_time_relative(s, TICK_USEC);
        return 0;
}

/* The next loop iteration runs a pass: over what is dirty (on_kick). */
static void kick_source(Controller *c) {
        if (c->kick)
                sd_event_source_set_enabled(c->kick, SD_EVENT_ONESHOT);
}

void controller_kick(Controller *c) {
        if (!c)
                return;
        c->dirty_all = true;
        kick_source(c);
}

static int on_changed(sd_event_source *s, uint64_t usec, void *userdata) {
        kick_source(userdata);
        return 0;
}

/* A pass for API changes: at once, or a few ms after the last one for all those made meanwhile. */
static void changed_schedule(Controller *c) {
        usec_t now = now_monotonic();
        int enabled = SD_EVENT_OFF;

        if (now >= c->pass_at + CHANGED_COALESCE_USEC) {
                kick_source(c); /* the first change after a quiet while: at once */
                return;
        }
        if (sd_event_source_get_enabled(c->changed, &enabled) >= 0 && enabled != SD_EVENT_OFF)
                return; /* a pass is coming for it already */
        if (sd_event_source_set_time(c->changed, c->pass_at + CHANGED_COALESCE_USEC) < 0 ||
            sd_event_source_set_enabled(c->changed, SD_EVENT_ONESHOT) < 0)
                controller_kick(c);
}

void controller_changed(Controller *c) {
        if (!c || !c->changed)
                return;
        c->dirty_all = true;
        changed_schedule(c);
}

void controller_changed_service(Controller *c, const char *service) {
        bool known = false;

        if (!c || !c->changed)
                return;
        if (!c->dirty_all) {
                for (unsigned i = 0; i < c->n_dirty && !known; i++)
                        known = streq(c->dirty[i], service);
                if (!known && (c->n_dirty == DIRTY_MAX || strlen(service) >= sizeof c->dirty[0]))
                        c->dirty_all = true; /* too many to take apart: a full pass */
                else if (!known)
                        snprintf(c->dirty[c->n_dirty++], sizeof c->dirty[0], "%s", service);
        }
        changed_schedule(c);
}

/* libvirt says a domain of ours stopped: an exit unless we stopped it. */
static void on_virt_event(Virt *v, const char *instance, const char *uuid, VirtEventKind kind, const char *reason,
                          void *userdata) {
        Controller *c = userdata;
        _cleanup_(instance_record_done) InstanceRecord r = {};
        char why[128];

        if (kind == VIRT_EVENT_STARTED || store_instance_get(c->store, instance, &r) != 0)
                return;
        /* Only the instance's current domain counts: the stop of a guest we replaced (restart)
         * may arrive after the new one booted. */
        if ((!streq(r.state, "booting") && !streq(r.state, "ready")) || !streq(r.domain_uuid, uuid))
                return;
        if (kind == VIRT_EVENT_PAUSED)
                instance_paused(c, &r, reason);
        else {
                snprintf(why, sizeof why, "guest %s", reason);
                instance_exited(c, &r, why, streq(reason, "shutdown"));
        }
        controller_kick(c);
}

json_t *controller_accel_json(Controller *c) {
        if (!c)
                return json_pack("{s:n, s:n, s:n}", "accel", "kvm", "kvm_unusable");
        return json_pack("{s:s, s:s, s:s, s:s?}", "accel", kvm_trial_use_kvm(&c->kvm) ? "kvm" : "tcg", "accel_setting",
                         c->settings->accel, "kvm",
                         c->kvm.setting == ACCEL_TCG ? "off" : !c->kvm.device ? "absent" : kvm_state_to_string(c->kvm.state),
                         "kvm_unusable", c->kvm.state == KVM_UNUSABLE ? c->kvm.reason : NULL);
}

void controller_accel_key(Controller *c, char out[static 64]) {
        uint32_t hash = 2166136261u; /* FNV-1a of the reason */

        if (!c) {
                snprintf(out, 64, "-");
                return;
        }
        for (const char *p = c->kvm.reason; *p; p++)
                hash = (hash ^ (uint8_t) *p) * 16777619u;
        snprintf(out, 64, "%d %d %d %d %08x %.32s", kvm_trial_use_kvm(&c->kvm), (int) c->kvm.setting, c->kvm.device,
                 (int) c->kvm.state, hash, c->settings->accel);
}

json_t *controller_traffic_json(Controller *c, const char *service) {
        return traffic_service_json(c ? c->traffic : NULL, service);
}

void controller_write_metrics(Controller *c, PromText *p) {
        traffic_write_metrics(c ? c->traffic : NULL, p);
}

int controller_instance_restart(Controller *c, const char *id, ApiError *e) {
        _cleanup_(instance_record_done) InstanceRecord r = {};
        _cleanup_(version_record_done) VersionRecord v = {};
        char kernel[4096], initrd[4096], why[600];
        int k = store_instance_get(c->store, id, &r);

        if (k > 0)
                return api_error_set(e, AVIARY_E_INSTANCE_NOT_FOUND, "instance '%s' not found", id);
        if (k < 0)
                return k;
        if (streq(r.state, "stopped") || streq(r.state, "draining"))
                return api_error_set(e, AVIARY_E_INSTANCE_STOPPED,
                                     "instance '%s' is %s; its service starts new instances as needed", id, r.state);
        /* A guest that could not boot again stays as it is: the caller learns why at once. */
        k = store_version_get_by_id(c->store, r.version_id, &v);
        if (k < 0)
                return k;
        if (k == 0 && boot_files_check(c, &v, kernel, initrd, why, sizeof why) < 0)
                return api_error_set(e, AVIARY_E_RUNTIME, "cannot restart %s: %s", id, why);
        /* Only the wish is written here; the next pass stops the old guest (its domain_uuid stays
         * in the row until then, also across a restart of aviaryd) and boots the instance. */
        r.restarts = 0;
        r.next_start_at = 0;
        r.stopped_at = now_realtime();
        snprintf(r.state, sizeof r.state, "pending");
        set_reason(&r, "restart requested");
        k = instance_commit(c, &r, NULL, NULL); /* the API writes this change's event */
        if (k < 0)
                return k;
        traffic_sync(c->traffic); /* a pending instance takes no new requests */
        controller_kick(c);
        return 0;
}

int controller_service_sleep(Controller *c, const char *name, ApiError *e) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        InstanceList l = {};
        int k = store_service_get(c->store, name, &sv);

        if (k != 0)
                return k > 0 ? api_error_set(e, k, "service '%s' not found", name) : k;
        if (sv.idle_ms == 0)
                return api_error_set(e, AVIARY_E_SCALE_TO_ZERO_OFF,
                                     "service '%s' does not scale to zero, so nothing would wake it: set scale_to_zero "
                                     "first", name);
        if (rollout_in_progress(c, sv.id))
                return api_error_set(e, AVIARY_E_ROLLOUT_IN_PROGRESS,
                                     "service '%s' has a rollout in progress and stays awake until it ends", name);
        k = instances_load(c, sv.id, &l);
        if (k < 0)
                return k;
        c->n_api_sleep = 0;
        (void) guests_sleep(c, &sv, &l, "asleep: put to sleep through the API", true);
        instance_list_done(&l);
        return 0;
}

void controller_service_sleep_committed(Controller *c, bool committed) {
        if (!c)
                return;
        for (size_t i = 0; committed && i < c->n_api_sleep; i++)
                if (c->api_sleep[i].uuid[0])
                        guest_sleep_domain(c, c->api_sleep[i].id, c->api_sleep[i].uuid, c->api_sleep[i].save);
        if (committed) {
                traffic_sync(c->traffic); /* no guest: requests are held from now on */
                for (size_t i = 0; i < c->n_api_sleep; i++)
                        if (c->api_sleep[i].ip[0])
                                traffic_backend_gone(c->traffic, c->api_sleep[i].ip);
        }
        c->n_api_sleep = 0;
}

int controller_service_wake(Controller *c, const char *name, ApiError *e) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        InstanceList l = {};
        int k = store_service_get(c->store, name, &sv);

        if (k != 0)
                return k > 0 ? api_error_set(e, k, "service '%s' not found", name) : k;
        k = instances_load(c, sv.id, &l);
        if (k < 0)
                return k;
        if (instances_count(&l, "asleep") > 0)
                (void) guests_wake(c, &sv, &l, "api");
        else if (sv.idle_ms > 0) {
                struct Awake *a = awake_of(c, sv.id, true);
                if (a)
                        a->since = now_realtime(); /* its idle time starts again */
        }
        instance_list_done(&l);
        return 0;
}

usec_t controller_last_request(Controller *c, const char *service) {
        return c ? traffic_last_request(c->traffic, service) : 0;
}

/* ---- setup ---- */

int controller_new(const ControllerContext *ctx, Controller **ret) {
        Controller *c = calloc(1, sizeof *c);

        if (!c)
                return -ENOMEM;
        c->event = ctx->event;
        c->store = ctx->store;
        c->blobs = ctx->blobs;
        c->settings = ctx->settings;
        if (ctx->fds)
                c->fds = *ctx->fds;
        *ret = c;
        return 0;
}

/* A step of the stop that took long is named: a stop that nears its deadline (systemd's
 * TimeoutStopSec) then says where it waited. */
static void stop_step_note(const char *what, uint64_t *since) {
        uint64_t now = now_monotonic();

        if (now - *since >= USEC_PER_SEC)
                log_info("Stopping: %s took %.1f s.", what, (double) (now - *since) / USEC_PER_SEC);
        *since = now;
}

Controller *controller_free(Controller *c) {
        if (!c)
                return NULL;
        sd_event_source_disable_unref(c->kick);
        sd_event_source_disable_unref(c->changed);
        sd_event_source_disable_unref(c->tick);
        sd_event_source_disable_unref(c->probe_timer);
        rollout_driver_free(c->rollouts);
        uint64_t t0 = now_monotonic();
        traffic_free(c->traffic); /* joins the proxy's threads */
        stop_step_note("the proxy's threads", &t0);
        virt_queue_free(c->jobs); /* waits for the libvirt call that runs, if any */
        virt_reaper_free(c->reaper);
        virt_close(c->virt);
        stop_step_note("closing libvirt", &t0);
        free(c);
        return NULL;
}

int controller_start(Controller *c) {
        const Settings *set = c->settings;
        int k;

        k = subnet_parse(set->subnet, &c->subnet);
        if (k < 0)
                return log_error_errno(k, "Bad guest subnet '%s'", set->subnet);
        snprintf(c->console_dir, sizeof c->console_dir, "%s/console", set->state_dir);
        if (mkdir(c->console_dir, 0750) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create %s", c->console_dir);
        snprintf(c->snapshot_dir, sizeof c->snapshot_dir, "%s/snapshots", set->state_dir);
        if (mkdir(c->snapshot_dir, 0700) < 0 && errno != EEXIST)
                return log_error_errno(errno, "Cannot create %s", c->snapshot_dir);
        snapshots_prune(c);
        k = net_bridge_ensure(set->bridge, &c->subnet, set->bridge_create);
        if (k < 0)
                return k;
        k = virt_event_loop_attach(c->event);
        if (k < 0)
                return log_error_errno(k, "Cannot attach libvirt to the event loop");
        k = virt_open(set->libvirt_uri, on_virt_event, c, &c->virt);
        if (k < 0)
                return log_error_errno(k, "Cannot connect to libvirt at %s: %s", set->libvirt_uri, virt_last_error());
        c->kvm = (KvmTrial) {
                .setting = streq(set->accel, "kvm") ? ACCEL_KVM : streq(set->accel, "tcg") ? ACCEL_TCG : ACCEL_AUTO,
                .device = virt_kvm_available(),
        };
        if (c->kvm.setting == ACCEL_AUTO && c->kvm.device && kvm_marker_read(c, c->kvm.reason, sizeof c->kvm.reason)) {
                c->kvm.state = KVM_UNUSABLE;
                log_notice("KVM was found unusable here before (%s): using QEMU TCG. Delete %s/kvm-unusable to try KVM "
                           "again, or set accel.",
                           c->kvm.reason, set->state_dir);
        }
        if (c->kvm.setting == ACCEL_AUTO && !c->kvm.device)
                log_info("No usable /dev/kvm: guests run under QEMU TCG (software emulation).");
        log_info("Guests: libvirt %s, %s, bridge %s, subnet %s, boot deadline %llus.", set->libvirt_uri,
                 c->kvm.setting == ACCEL_AUTO && kvm_trial_use_kvm(&c->kvm)
                         ? "KVM if a guest comes up under it, else QEMU TCG"
                         : kvm_trial_use_kvm(&c->kvm) ? "KVM" : "QEMU TCG (software emulation)",
                 set->bridge, set->subnet, (unsigned long long) (set->boot_timeout_ms / 1000));

        k = traffic_new(c->store, c->event, set->proxy_threads, &c->fds, &c->traffic);
        if (k < 0)
                return k;
        traffic_set_wake(c->traffic, set->wake_queue, set->wake_timeout_ms * USEC_PER_MSEC, on_wake_request, c);
        {
                _cleanup_free_ char *key = NULL;
                if (asprintf(&key, "%s/webhook.key", set->state_dir) < 0)
                        return -ENOMEM;
                k = rollout_driver_new(c->store, c->traffic, c->event, key, &c->rollouts);
        }
        if (k < 0)
                return k;
        k = sd_event_add_defer(c->event, &c->kick, on_kick, c);
        if (k >= 0)
                k = sd_event_source_set_enabled(c->kick, SD_EVENT_OFF);
        /* Accuracy 1 ms: sd-event's default (250 ms) would let a tick slip by a whole tick. */
        if (k >= 0)
                k = sd_event_add_time_relative(c->event, &c->tick, CLOCK_MONOTONIC, TICK_USEC, USEC_PER_MSEC, on_tick, c);
        if (k >= 0)
                k = sd_event_source_set_enabled(c->tick, SD_EVENT_ON);
        if (k >= 0)
                k = sd_event_add_time_relative(c->event, &c->probe_timer, CLOCK_MONOTONIC, PROBE_EVERY_USEC, USEC_PER_MSEC,
                                               on_probe_timer, c);
        if (k >= 0)
                k = sd_event_source_set_enabled(c->probe_timer, SD_EVENT_OFF);
        if (k >= 0)
                k = sd_event_add_time(c->event, &c->changed, CLOCK_MONOTONIC, 0, USEC_PER_MSEC, on_changed, c);
        if (k >= 0)
                k = sd_event_source_set_enabled(c->changed, SD_EVENT_OFF);
        if (k < 0)
                return k;
        /* The embedded driver's QEMUs run in this process's tree: reap them at once when they
         * exit, so a destroy does not wait for PID 1 to (virt-reaper.h). */
        if (strncmp(set->libvirt_uri, "qemu:///embed", 13) == 0) {
                k = virt_reaper_new(&c->reaper);
                if (k < 0)
                        log_warning_errno(k, "Cannot become the subreaper of the guests' QEMUs; destroys wait for PID 1");
        }
        k = virt_queue_new(c->virt, c->event, &c->jobs);
        if (k < 0)
                return log_error_errno(k, "Cannot start the libvirt worker thread");
        virt_queue_set_batch(c->jobs, results_begin, results_end, c);
        /* libvirt probes QEMU's capabilities at the first domain start (4 s on these hosts):
         * now, on the worker, while nothing waits for it. */
        (void) virt_queue_warm(c->jobs, kvm_trial_use_kvm(&c->kvm));
        /* The first pass adopts running guests and replaces lost ones before READY=1. The loop
         * does not run yet, so its listing runs here, on this thread. */
        {
                char **uuids = NULL;
                size_t n = 0;
                k = guest_uuids(c, &uuids, &n);
                if (k < 0)
                        return log_error_errno(k, "Cannot read the instances");
                c->virt_inline = true;
                virt_list_now(c->virt, uuids, n, on_first_listing, c);
                c->virt_inline = false;
                strv_free_n(uuids, n);
        }
        return controller_pass(c);
}
