/* The libvirt connection: open (preparing an embedded driver's root and waiting until it
 * has re-attached to running guests), start/destroy/list our transient domains, and turn
 * libvirt lifecycle events into VirtEvents for domains that carry our metadata. */
#include <fcntl.h>
#include <pthread.h>
#include <sys/stat.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <libxml/uri.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "socket.h"
#include "virt-internal.h"

/* How long virt_open() waits for an embedded driver to re-attach to running guests. */
#define VIRT_RECONNECT_POLLS 100
#define VIRT_RECONNECT_POLL_MS 100
#define LOG_TAIL 16384 /* how much of a domain's log is read, from its end */

/* Our domains seen alive, so a STOPPED event can name its instance: by then a transient
 * domain is gone and its metadata can no longer be asked for. */
typedef struct Known {
        char uuid[VIR_UUID_STRING_BUFLEN];
        char instance[sizeof(((VirtDomainInfo *) 0)->instance)];
        struct Known *next;
} Known;

struct Virt {
        virConnectPtr conn;
        int callback_id;
        VirtEventHandler handler;
        void *userdata;
        char *run_dir; /* where the driver keeps <name>.pid, NULL when unknown */
        char *log_dir; /* where it keeps QEMU's own <name>.log, NULL when unknown */
        /* The loop thread (lifecycle events) and the libvirt worker (starts, listings) both
         * note domains here. */
        pthread_mutex_t known_lock;
        Known *known;
};

DEFINE_TRIVIAL_CLEANUP_FUNC(virDomainPtr, virDomainFree)
DEFINE_TRIVIAL_CLEANUP_FUNC(Virt *, virt_close)
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlURIPtr, xmlFreeURI)

/* Copied at the failure: libvirt resets its own last error in every later call, even in
 * virDomainFree() during cleanup. */
static _Thread_local char last_error[512];

static int virt_error(void) {
        const char *msg = virGetLastErrorMessage();

        snprintf(last_error, sizeof last_error, "%s", msg);
        switch (virGetLastErrorCode()) {
        case VIR_ERR_NO_DOMAIN:
                return -ENOENT;
        case VIR_ERR_NO_DOMAIN_METADATA:
                return -ENODATA;
        default:
                return -EIO;
        }
}

const char *virt_last_error(void) {
        return last_error[0] ? last_error : "no libvirt error";
}

/* libvirt prints every error to stderr by default; we report them where they surface. */
static void on_libvirt_error(void *userdata, virErrorPtr e) {
        log_debug("libvirt: %s", e->message);
}

bool virt_kvm_available(void) {
        _cleanup_close_ int fd = -1;
        struct stat st;

        fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
        /* A character device, not a stray regular file someone created by mistake. */
        return fd >= 0 && fstat(fd, &st) == 0 && S_ISCHR(st.st_mode);
}

/* Callers hold known_lock. */
static Known *known_find(Virt *v, const char *uuid) {
        for (Known *k = v->known; k; k = k->next)
                if (streq(k->uuid, uuid))
                        return k;
        return NULL;
}

static void known_add(Virt *v, const char *uuid, const char *instance) {
        Known *k;

        pthread_mutex_lock(&v->known_lock);
        k = known_find(v, uuid);
        if (!k) {
                k = calloc(1, sizeof *k);
                if (!k) {
                        pthread_mutex_unlock(&v->known_lock);
                        return (void) log_oom();
                }
                snprintf(k->uuid, sizeof k->uuid, "%s", uuid);
                k->next = v->known;
                v->known = k;
        }
        snprintf(k->instance, sizeof k->instance, "%s", instance);
        pthread_mutex_unlock(&v->known_lock);
}

static void known_remove(Virt *v, Known *gone) {
        for (Known **p = &v->known; *p; p = &(*p)->next)
                if (*p == gone) {
                        *p = gone->next;
                        free(gone);
                        return;
                }
}

/* Our metadata of DOM into *d. -ENODATA when the domain is not ours. */
static int domain_metadata(virDomainPtr dom, VirtDomainInfo *d) {
        _cleanup_free_ char *xml = virDomainGetMetadata(dom, VIR_DOMAIN_METADATA_ELEMENT, VIRT_XMLNS_URI, 0);

        if (!xml)
                return virt_error();
        return virt_metadata_parse(xml, d);
}

static pid_t domain_qemu_pid(Virt *v, const char *name) {
        _cleanup_free_ char *path = NULL;
        _cleanup_(fclosep) FILE *f = NULL;
        long pid;

        /* libvirt refuses '/' in names; the check keeps the path inside run_dir regardless. */
        if (!v->run_dir || strchr(name, '/') || name[0] == '.')
                return 0;
        if (asprintf(&path, "%s/%s.pid", v->run_dir, name) < 0)
                return 0;
        f = fopen(path, "re");
        if (!f || fscanf(f, "%ld", &pid) != 1 || pid <= 0)
                return 0;
        return (pid_t) pid;
}

static const char *const started_reasons[] = {
        [VIR_DOMAIN_EVENT_STARTED_BOOTED] = "booted",
        [VIR_DOMAIN_EVENT_STARTED_MIGRATED] = "migrated",
        [VIR_DOMAIN_EVENT_STARTED_RESTORED] = "restored",
        [VIR_DOMAIN_EVENT_STARTED_FROM_SNAPSHOT] = "from-snapshot",
        [VIR_DOMAIN_EVENT_STARTED_WAKEUP] = "wakeup",
};

static const char *const stopped_reasons[] = {
        [VIR_DOMAIN_EVENT_STOPPED_SHUTDOWN] = "shutdown",
        [VIR_DOMAIN_EVENT_STOPPED_DESTROYED] = "destroyed",
        [VIR_DOMAIN_EVENT_STOPPED_CRASHED] = "crashed",
        [VIR_DOMAIN_EVENT_STOPPED_MIGRATED] = "migrated",
        [VIR_DOMAIN_EVENT_STOPPED_SAVED] = "saved",
        [VIR_DOMAIN_EVENT_STOPPED_FAILED] = "failed",
        [VIR_DOMAIN_EVENT_STOPPED_FROM_SNAPSHOT] = "from-snapshot",
};

/* virDomainGetState's reasons for VIR_DOMAIN_PAUSED. */
static const char *const paused_reasons[] = {
        [VIR_DOMAIN_PAUSED_UNKNOWN] = "paused: unknown reason",
        [VIR_DOMAIN_PAUSED_USER] = "paused by a libvirt client",
        [VIR_DOMAIN_PAUSED_MIGRATION] = "paused for migration",
        [VIR_DOMAIN_PAUSED_SAVE] = "paused to be saved",
        [VIR_DOMAIN_PAUSED_DUMP] = "paused for a core dump",
        [VIR_DOMAIN_PAUSED_IOERROR] = "I/O error",
        [VIR_DOMAIN_PAUSED_WATCHDOG] = "watchdog",
        [VIR_DOMAIN_PAUSED_FROM_SNAPSHOT] = "paused from a snapshot",
        [VIR_DOMAIN_PAUSED_SHUTTING_DOWN] = "shutting down",
        [VIR_DOMAIN_PAUSED_SNAPSHOT] = "paused for a snapshot",
        [VIR_DOMAIN_PAUSED_STARTING_UP] = "starting up",
        [VIR_DOMAIN_PAUSED_POSTCOPY] = "post-copy migration",
        [VIR_DOMAIN_PAUSED_POSTCOPY_FAILED] = "post-copy migration failed",
        [VIR_DOMAIN_PAUSED_CRASHED] = "crashed",
};

/* A newer libvirt may add details: those get the generic FALLBACK. */
static const char *reason_name(const char *const *names, size_t n, int detail, const char *fallback) {
        return detail >= 0 && (size_t) detail < n && names[detail] ? names[detail] : fallback;
}

/* Whether DOM's vCPUs are stopped, and libvirt's reason, into D. Paused for starting up
 * (virDomainCreateXML resumes it before it returns) does not count. */
static void domain_pause_state(virDomainPtr dom, VirtDomainInfo *d) {
        int state, reason;

        d->paused = false;
        d->pause_reason[0] = 0;
        if (virDomainGetState(dom, &state, &reason, 0) < 0)
                return;
        if (state == VIR_DOMAIN_PAUSED && reason != VIR_DOMAIN_PAUSED_STARTING_UP) {
                d->paused = true;
                snprintf(d->pause_reason, sizeof d->pause_reason, "%s",
                         reason_name(paused_reasons, ELEMENTSOF(paused_reasons), reason, "paused"));
        } else if (state == VIR_DOMAIN_CRASHED || state == VIR_DOMAIN_PMSUSPENDED) {
                d->paused = true;
                snprintf(d->pause_reason, sizeof d->pause_reason, "%s",
                         state == VIR_DOMAIN_CRASHED ? "crashed" : "suspended by the guest");
        }
}

/* Runs on the sd-event loop: libvirt flushes its event queue from a timer of ours. */
static int on_lifecycle(virConnectPtr conn, virDomainPtr dom, int event, int detail, void *opaque) {
        Virt *v = opaque;
        char uuid[VIR_UUID_STRING_BUFLEN], instance[sizeof(((Known *) 0)->instance)];
        VirtEventKind kind;
        const char *reason;
        VirtDomainInfo state = {};
        Known *k;

        switch (event) {
        case VIR_DOMAIN_EVENT_STARTED:
                kind = VIRT_EVENT_STARTED;
                reason = reason_name(started_reasons, ELEMENTSOF(started_reasons), detail, "started");
                break;
        case VIR_DOMAIN_EVENT_STOPPED:
                /* A pvpanic panic with on_crash=destroy arrives as STOPPED/CRASHED. */
                kind = VIRT_EVENT_STOPPED;
                reason = reason_name(stopped_reasons, ELEMENTSOF(stopped_reasons), detail, "stopped");
                break;
        case VIR_DOMAIN_EVENT_SUSPENDED:
        case VIR_DOMAIN_EVENT_CRASHED:
        case VIR_DOMAIN_EVENT_PMSUSPENDED:
                /* The event's detail is coarser than the state's reason: ask for that. A pause
                 * already over (a save's, a snapshot's) is no pause. */
                domain_pause_state(dom, &state);
                if (!state.paused)
                        return 0;
                kind = VIRT_EVENT_PAUSED;
                reason = state.pause_reason;
                break;
        default:
                return 0;
        }

        if (virDomainGetUUIDString(dom, uuid) < 0)
                return 0;
        pthread_mutex_lock(&v->known_lock);
        k = known_find(v, uuid);
        if (k)
                snprintf(instance, sizeof instance, "%s", k->instance);
        pthread_mutex_unlock(&v->known_lock);
        if (!k) {
                VirtDomainInfo d = {};

                /* Started by someone else, or stopped before we ever listed it. */
                if (domain_metadata(dom, &d) < 0)
                        return 0; /* not ours, or gone and unknowable */
                known_add(v, uuid, d.instance);
                snprintf(instance, sizeof instance, "%s", d.instance);
        }
        if (kind == VIRT_EVENT_STOPPED) {
                pthread_mutex_lock(&v->known_lock);
                k = known_find(v, uuid);
                if (k)
                        known_remove(v, k);
                pthread_mutex_unlock(&v->known_lock);
        }
        log_debug("Domain %s (instance %s): %s, %s", uuid, instance,
                  kind == VIRT_EVENT_STARTED ? "started" : kind == VIRT_EVENT_STOPPED ? "stopped" : "paused", reason);
        if (v->handler)
                v->handler(v, instance, uuid, kind, reason, v->userdata);
        return 0;
}

/* "qemu:///embed?root=DIR" → DIR (malloc'd, unescaped as libvirt does), or NULL for any
 * other URI. */
static int embed_root(const char *uri, char **ret) {
        _cleanup_(xmlFreeURIp) xmlURIPtr u = xmlParseURI(uri);
        _cleanup_free_ char *query = NULL;
        char *state = NULL;

        *ret = NULL;
        if (!u)
                return -EINVAL;
        if (!u->scheme || !streq(u->scheme, "qemu") || !u->path || !streq(u->path, "/embed"))
                return 0;
        if (!u->query_raw)
                return -EINVAL;
        query = strdup(u->query_raw);
        if (!query)
                return -ENOMEM;
        for (char *p = strtok_r(query, "&", &state); p; p = strtok_r(NULL, "&", &state))
                if (strncmp(p, "root=", 5) == 0) {
                        *ret = xmlURIUnescapeString(p + 5, 0, NULL);
                        return *ret ? 0 : -ENOMEM;
                }
        return -EINVAL;
}

/* The embedded driver reads ROOT/etc/qemu.conf (not etc/qemu/qemu.conf). */
static int embed_root_prepare(const char *root) {
        /* stdio_handler: without it QEMU's output goes to virtlogd, which is not running.
         * user/group root: the default libvirt-qemu user cannot traverse our 0750 state dir
         * (QEMU fails on "master-key.aes: Permission denied"); libvirt still clears QEMU's
         * capabilities (clear_emulator_capabilities defaults to 1).
         * dynamic_ownership 0: nothing to chown for root, and libvirt must not chown or
         * tag (xattrs) the shared, immutable kernel blobs per guest.
         * capability_filters: with QEMU's cpu-unavailable-features, libvirt 9.0 reads the new
         * guest's CPU back with one QMP qom-get per CPU property (about 400 round trips, 300 to
         * 500 ms here) before its vCPUs may run; without it, with two (feature-words and
         * filtered-features), as it always did on x86 (docs/design/guests.md, "Start time"). */
        static const char conf[] = "# Written by aviaryd at every start; edits are lost.\n"
                                   "stdio_handler = \"file\"\n"
                                   "user = \"root\"\n"
                                   "group = \"root\"\n"
                                   "dynamic_ownership = 0\n"
                                   "capability_filters = [ \"cpu-unavailable-features\" ]\n";
        _cleanup_free_ char *dir = NULL, *path = NULL, *tmp = NULL;
        _cleanup_close_ int fd = -1;
        int r;

        if (asprintf(&dir, "%s/etc", root) < 0 || asprintf(&path, "%s/qemu.conf", dir) < 0 ||
            asprintf(&tmp, "%s/.qemu.conf.tmp", dir) < 0)
                return -ENOMEM;
        r = mkdir_parents(dir, 0755);
        if (r < 0)
                return log_error_errno(r, "Cannot create %s", dir);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd < 0 || write(fd, conf, sizeof conf - 1) != (ssize_t) (sizeof conf - 1) || fsync(fd) < 0 ||
            rename(tmp, path) < 0)
                return log_error_errno(negative_errno(), "Cannot write %s", path);
        return 0;
}

static void sleep_ms(long ms) {
        struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = ms % 1000 * 1000000L};

        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

/* Whether every running domain is listed and idle: the same count as the previous poll,
 * and each domain's monitor free (reconnecting holds it busy). */
static bool domains_settled(virConnectPtr conn, int *count) {
        virDomainPtr *doms = NULL;
        int n = virConnectListAllDomains(conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        bool settled = n >= 0 && n == *count;

        for (int i = 0; i < n; i++) {
                virDomainControlInfo info;

                if (virDomainGetControlInfo(doms[i], &info, 0) < 0) {
                        /* A driver without control info (test://) has nothing to reconnect. */
                        if (virGetLastErrorCode() != VIR_ERR_NO_SUPPORT)
                                settled = false;
                } else if (info.state != VIR_DOMAIN_CONTROL_OK)
                        settled = false;
                virDomainFree(doms[i]);
        }
        free(doms);
        *count = n;
        return settled;
}

/* A process opening an embedded root re-attaches to running QEMUs in background threads.
 * Until they finish, lookups may fail with "domain not found", and exiting meanwhile can
 * kill the guest. So adoption waits, bounded, until that work is done. */
static void wait_for_reconnect(virConnectPtr conn) {
        int count = -1;

        for (int i = 0; i < VIRT_RECONNECT_POLLS; i++) {
                if (domains_settled(conn, &count))
                        return;
                sleep_ms(VIRT_RECONNECT_POLL_MS);
        }
        log_warning("libvirt still re-attaching to running guests after %d ms; going on",
                    VIRT_RECONNECT_POLLS * VIRT_RECONNECT_POLL_MS);
}

int virt_open(const char *uri, VirtEventHandler handler, void *userdata, Virt **ret) {
        _cleanup_(virt_closep) Virt *v = NULL;
        _cleanup_free_ char *root = NULL;
        int r;

        virSetErrorFunc(NULL, on_libvirt_error);
        r = embed_root(uri, &root);
        if (r < 0)
                return log_error_errno(r, "Bad libvirt URI %s", uri);
        if (root) {
                r = embed_root_prepare(root);
                if (r < 0)
                        return r;
                r = virt_embed_clear_cut_starts(root);
                if (r < 0)
                        return r;
                r = virt_embed_clear_probes(root);
                if (r < 0)
                        return r;
        }

        v = calloc(1, sizeof *v);
        if (!v)
                return -ENOMEM;
        *v = (Virt){.callback_id = -1, .handler = handler, .userdata = userdata};
        pthread_mutex_init(&v->known_lock, NULL);
        /* Where the QEMU driver writes <name>.pid and QEMU's stderr; for other URIs the pid
         * and the log stay unknown. */
        if (root)
                r = asprintf(&v->run_dir, "%s/run/qemu", root) < 0 || asprintf(&v->log_dir, "%s/log/qemu", root) < 0 ? -1 : 0;
        else if (streq(uri, "qemu:///system"))
                r = asprintf(&v->run_dir, "/run/libvirt/qemu") < 0 || asprintf(&v->log_dir, "/var/log/libvirt/qemu") < 0 ? -1 : 0;
        if (r < 0)
                return -ENOMEM;

        v->conn = virConnectOpen(uri);
        if (!v->conn) {
                r = virt_error();
                return log_error_errno(r, "Cannot connect to %s: %s", uri, virt_last_error());
        }
        v->callback_id = virConnectDomainEventRegisterAny(v->conn, NULL, VIR_DOMAIN_EVENT_ID_LIFECYCLE,
                                                          VIR_DOMAIN_EVENT_CALLBACK(on_lifecycle), v, NULL);
        if (v->callback_id < 0) {
                r = virt_error();
                return log_error_errno(r, "Cannot subscribe to lifecycle events: %s", virt_last_error());
        }
        wait_for_reconnect(v->conn);
        *ret = TAKE_PTR(v);
        return 0;
}

Virt *virt_close(Virt *v) {
        if (!v)
                return NULL;
        if (v->callback_id >= 0)
                virConnectDomainEventDeregisterAny(v->conn, v->callback_id);
        if (v->conn)
                virConnectClose(v->conn);
        while (v->known)
                known_remove(v, v->known);
        pthread_mutex_destroy(&v->known_lock);
        free(v->run_dir);
        free(v->log_dir);
        free(v);
        return NULL;
}

static int info_set(char *out, size_t size, const char *value) {
        if (strlen(value) >= size)
                return -ENAMETOOLONG;
        strcpy(out, value);
        return 0;
}

int virt_domain_start(Virt *v, const VirtDomainSpec *spec, VirtDomainInfo *ret) {
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        _cleanup_free_ char *xml = NULL;
        VirtDomainInfo d = {.running = true};
        int r;

        r = virt_domain_xml(spec, &xml);
        if (r < 0)
                return r;
        /* Refuse what would not fit the info before a guest exists that we could not name. */
        if (info_set(d.name, sizeof d.name, spec->name) < 0 ||
            info_set(d.instance, sizeof d.instance, spec->instance) < 0 ||
            info_set(d.service, sizeof d.service, spec->service) < 0 ||
            info_set(d.version, sizeof d.version, spec->version) < 0)
                return -ENAMETOOLONG;

        /* Transient: the domain exists only while it runs, so nothing is left to clean up. */
        dom = virDomainCreateXML(v->conn, xml, 0);
        if (!dom)
                return virt_error();
        if (virDomainGetUUIDString(dom, d.uuid) < 0) {
                /* A guest we cannot name would run unmanaged. */
                r = virt_error();
                (void) virDomainDestroy(dom);
                return r;
        }
        d.qemu_pid = domain_qemu_pid(v, spec->name);
        known_add(v, d.uuid, d.instance);
        *ret = d;
        return 0;
}

int virt_domain_save(Virt *v, const char *uuid, const char *path) {
        _cleanup_(virDomainFreep) virDomainPtr dom = virDomainLookupByUUIDString(v->conn, uuid);

        if (!dom)
                return virt_error();
        /* No flags: a running domain is restored running, and every driver takes 0. */
        if (virDomainSaveFlags(dom, path, NULL, 0) < 0)
                return virt_error();
        return 0;
}

int virt_domain_restore(Virt *v, const char *path, VirtDomainInfo *ret) {
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        VirtDomainInfo d = {.running = true};
        const char *name;
        int r;

        if (access(path, R_OK) < 0) {
                snprintf(last_error, sizeof last_error, "%s: %s", path, strerror(errno));
                return -ENOENT;
        }
        if (virDomainRestoreFlags(v->conn, path, NULL, 0) < 0)
                return virt_error();
        /* virDomainRestoreFlags() gives no handle: find the domain by the name in the file. */
        _cleanup_free_ char *xml = virDomainSaveImageGetXMLDesc(v->conn, path, 0);
        char dname[128];
        if (!xml)
                return virt_error();
        r = virt_domain_name_parse(xml, dname, sizeof dname);
        if (r < 0)
                return r;
        dom = virDomainLookupByName(v->conn, dname);
        if (!dom)
                return virt_error();
        name = virDomainGetName(dom);
        r = domain_metadata(dom, &d);
        if (r < 0 || virDomainGetUUIDString(dom, d.uuid) < 0 || !name || info_set(d.name, sizeof d.name, name) < 0)
                return r < 0 ? r : -EIO;
        d.qemu_pid = domain_qemu_pid(v, name);
        known_add(v, d.uuid, d.instance);
        *ret = d;
        return 0;
}

int virt_domain_destroy(Virt *v, const char *uuid) {
        _cleanup_(virDomainFreep) virDomainPtr dom = virDomainLookupByUUIDString(v->conn, uuid);
        int r;

        if (!dom)
                return virt_error();
        if (virDomainDestroy(dom) < 0) {
                /* "domain is not running": it stopped between lookup and destroy. */
                bool gone = virGetLastErrorCode() == VIR_ERR_OPERATION_INVALID;

                r = virt_error();
                return gone ? -ENOENT : r;
        }
        return 0;
}

int virt_domain_running(Virt *v, const char *uuid) {
        _cleanup_(virDomainFreep) virDomainPtr dom = NULL;
        int active;

        dom = virDomainLookupByUUIDString(v->conn, uuid);
        if (!dom)
                return virGetLastErrorCode() == VIR_ERR_NO_DOMAIN ? 0 : virt_error();
        active = virDomainIsActive(dom);
        return active < 0 ? virt_error() : active;
}

int virt_domain_list(Virt *v, int (*fn)(const VirtDomainInfo *d, void *userdata), void *userdata) {
        virDomainPtr *doms = NULL;
        int n, r = 0;

        n = virConnectListAllDomains(v->conn, &doms, VIR_CONNECT_LIST_DOMAINS_ACTIVE);
        if (n < 0)
                return virt_error();
        for (int i = 0; i < n; i++) {
                VirtDomainInfo d = {.running = true};
                const char *name = virDomainGetName(doms[i]);

                /* Not ours (-ENODATA), or gone since the listing: skip. */
                if (!name || domain_metadata(doms[i], &d) < 0 ||
                    virDomainGetUUIDString(doms[i], d.uuid) < 0 || info_set(d.name, sizeof d.name, name) < 0)
                        continue;
                d.qemu_pid = domain_qemu_pid(v, name);
                domain_pause_state(doms[i], &d);
                known_add(v, d.uuid, d.instance);
                r = fn(&d, userdata);
                if (r != 0)
                        break;
        }
        for (int i = 0; i < n; i++)
                virDomainFree(doms[i]);
        free(doms);
        return r;
}

int virt_warm_capabilities(Virt *v, bool kvm) {
        _cleanup_free_ char *caps = virConnectGetDomainCapabilities(v->conn, NULL, NULL, NULL, kvm ? "kvm" : "qemu", 0);

        return caps ? 0 : virt_error();
}

/* Where the last start's lines begin in a domain's LOG: libvirt begins each start with
 * "starting up libvirt version: ...". LOG itself when it has no such line. */
static const char *log_last_start(const char *log) {
        const char *start = log;

        for (const char *p = strstr(log, "starting up"); p; p = strstr(p + 1, "starting up"))
                start = p;
        return start;
}

/* The lines libvirt and QEMU wrote to domain NAME's log since its last start, from the log's
 * last 16 KiB, into BUF. */
static int log_this_start(Virt *v, const char *name, char buf[static LOG_TAIL + 1]) {
        _cleanup_free_ char *path = NULL;
        _cleanup_close_ int fd = -1;
        const char *start;
        struct stat st;
        ssize_t n;

        if (!v->log_dir || strchr(name, '/') || name[0] == '.')
                return -ENOENT;
        if (asprintf(&path, "%s/%s.log", v->log_dir, name) < 0)
                return -ENOMEM;
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0 || fstat(fd, &st) < 0)
                return -ENOENT;
        n = pread(fd, buf, LOG_TAIL, st.st_size > LOG_TAIL ? st.st_size - LOG_TAIL : 0);
        if (n <= 0)
                return -ENOENT;
        buf[n] = 0;
        start = log_last_start(buf);
        memmove(buf, start, strlen(start) + 1);
        return 0;
}

int virt_domain_log_error(Virt *v, const char *name, char *out, size_t size) {
        char buf[LOG_TAIL + 1], *line, *found = NULL, *save = NULL;

        if (size == 0 || log_this_start(v, name, buf) < 0)
                return -ENOENT;
        /* QEMU's own lines: "...qemu-system-x86_64: error: ...", "KVM internal error. ...";
         * libvirt's start and stop lines around them carry no "error". */
        for (line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save))
                if (strcasestr(line, "error") && !strstr(line, "shutting down"))
                        found = line;
        if (!found)
                return -ENOENT;
        snprintf(out, size, "%s", found);
        /* Nothing but printable ASCII reaches a stop reason or a log line. */
        for (char *c = out; *c; c++)
                if ((unsigned char) *c < 0x20 || (unsigned char) *c >= 0x7f)
                        *c = '?';
        return 0;
}

int virt_log_stop_reason(const char *log, char *out, size_t size) {
        const char *p, *found = NULL;
        size_t n;

        if (size == 0)
                return -ENOENT;
        /* libvirt's "<time>: shutting down, reason=crashed", written before the domain leaves
         * its list. */
        for (p = strstr(log_last_start(log), "shutting down, reason="); p; p = strstr(p + 1, "shutting down, reason="))
                found = p + strlen("shutting down, reason=");
        if (!found)
                return -ENOENT;
        n = strspn(found, "abcdefghijklmnopqrstuvwxyz-");
        if (n == 0 || n >= size)
                return -ENOENT;
        memcpy(out, found, n);
        out[n] = 0;
        return 0;
}

int virt_domain_stop_reason(Virt *v, const char *name, char *out, size_t size) {
        char buf[LOG_TAIL + 1];

        if (log_this_start(v, name, buf) < 0)
                return -ENOENT;
        return virt_log_stop_reason(buf, out, size);
}
