/* The guest runtime: the only interface to libvirt (only virt/ includes libvirt headers).
 * Guests are transient domains carrying our <metadata>, so a restarted aviaryd can find
 * and adopt them. virt_open(), virt_close() and the event handler belong to the control loop's
 * thread; the domain calls may run on any one thread at a time besides it (the libvirt worker,
 * virt-queue.h), and the daemon makes them only there once its loop runs. */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <systemd/sd-event.h>

typedef struct Virt Virt;

typedef struct VirtDomainSpec {
        const char *name;     /* libvirt domain name: "aviary-<instance>" */
        const char *instance; /* our metadata */
        const char *service;
        const char *version; /* "image:tag" */
        const char *kernel;  /* path of the kernel blob */
        const char *initrd;  /* path of the initrd blob, or NULL */
        const char *cmdline; /* expanded */
        unsigned memory_mib;
        unsigned vcpus;
        const char *bridge;       /* bridge for the virtio-net NIC, or NULL for no NIC */
        const char *mac;          /* "52:54:00:xx:xx:xx", or NULL: libvirt picks one */
        const char *console_path; /* serial console log file */
        bool kvm;                 /* type='kvm', else type='qemu' (TCG) */
        const char *kvm_cpu;      /* with kvm: "host-passthrough" (NULL), "host-model" or a QEMU model name */
} VirtDomainSpec;
/* Every string must be UTF-8 without control characters (XML 1.0 cannot carry them). */

typedef struct VirtDomainInfo {
        char uuid[37];
        char name[128];
        char instance[64]; /* from our metadata */
        char service[64];
        char version[256];
        pid_t qemu_pid; /* 0 when unknown */
        bool running;
        bool paused;          /* its vCPUs are stopped: libvirt's state is paused (or crashed) */
        char pause_reason[48]; /* why, in libvirt's words ("I/O error", "crashed"...), when paused */
} VirtDomainInfo;

typedef enum VirtEventKind {
        VIRT_EVENT_STARTED,
        VIRT_EVENT_STOPPED, /* shut down, destroyed or crashed: the domain is gone */
        VIRT_EVENT_PAUSED,  /* its vCPUs stopped (an internal error of KVM, an I/O error...): it still exists */
} VirtEventKind;

/* Called on the loop for each lifecycle event of one of our domains. REASON is a short
 * text: STARTED "booted"; STOPPED "destroyed" (virt_domain_destroy or another client),
 * "crashed" (guest panic reported through pvpanic), "shutdown" (the guest powered off or
 * rebooted: on_reboot is destroy, and a panic=-1 guest without a pvpanic driver reboots),
 * "failed" (QEMU or libvirt failed), or "saved", "migrated", "from-snapshot", "stopped";
 * PAUSED libvirt's reason for the pause ("paused: unknown reason", "I/O error", "crashed"...). */
typedef void (*VirtEventHandler)(Virt *v, const char *instance, const char *uuid, VirtEventKind kind,
                                 const char *reason, void *userdata);

/* Routes libvirt's event loop through E. Call once, before virt_open(); -EBUSY after.
 * libvirt may call the hooks from its own threads: they wake E through an eventfd, and
 * every libvirt callback (so every VirtEventHandler call) runs on E's thread. */
int virt_event_loop_attach(sd_event *e);

/* Connects to URI and subscribes to lifecycle events. For qemu:///embed?root=DIR it first
 * writes DIR/etc/qemu.conf (QEMU as root, console files without virtlogd). Blocks until
 * the driver has re-attached to running guests (at most 10 s), so virt_domain_list()
 * sees all of them and acting on one at once is safe. */
int virt_open(const char *uri, VirtEventHandler handler, void *userdata, Virt **ret);
Virt *virt_close(Virt *v);

/* Whether /dev/kvm is a character device this process can open. That says nothing about
 * whether QEMU can run a guest on it (nested virtualisation may lack what a kernel needs):
 * only a guest that comes up under KVM proves that (control/bootwatch.h). */
bool virt_kvm_available(void);

/* Renders the domain XML with an escaping XML writer; *ret is malloc'd. -EINVAL on a
 * missing field, zero memory/vcpus, or a string XML cannot carry. */
int virt_domain_xml(const VirtDomainSpec *spec, char **ret);

/* Creates and starts a transient domain; fills *ret (uuid, qemu pid: 0 when the URI has
 * no pid file we know). -EINVAL/-ENAMETOOLONG for a bad spec; -EIO when libvirt refuses
 * (see virt_last_error()). Never falls back to another accelerator: the caller decides. */
int virt_domain_start(Virt *v, const VirtDomainSpec *spec, VirtDomainInfo *ret);
/* Saves the memory of running domain UUID to PATH (virDomainSaveFlags) and ends the domain:
 * it is gone, and virt_domain_restore() of PATH brings it back as it was. -ENOENT when there
 * is no such domain, -EIO when libvirt refuses (virt_last_error()). */
int virt_domain_save(Virt *v, const char *uuid, const char *path);
/* Starts the domain saved in PATH again (virDomainRestoreFlags), running; fills *RET like
 * virt_domain_start(). -ENOENT when PATH is missing, -EIO when libvirt refuses (a damaged or
 * foreign file among them). */
int virt_domain_restore(Virt *v, const char *path, VirtDomainInfo *ret);

/* Forcibly stops a domain by uuid. -ENOENT when it is already gone, -EIO otherwise. */
int virt_domain_destroy(Virt *v, const char *uuid);
/* 1 when domain UUID exists and runs, 0 when it does not, negative errno when unknown. */
int virt_domain_running(Virt *v, const char *uuid);
/* Calls fn for every running domain that carries our metadata; others are skipped. A
 * non-zero return from fn ends the walk and is returned. */
int virt_domain_list(Virt *v, int (*fn)(const VirtDomainInfo *d, void *userdata), void *userdata);
/* Makes libvirt probe QEMU's capabilities for KVM (or TCG) guests now, which it otherwise does at
 * the first domain start (seconds on a loaded host). */
int virt_warm_capabilities(Virt *v, bool kvm);
/* libvirt's message for the last failure a virt_* call returned on this thread (kept
 * apart from libvirt's own last error, which later calls reset). */
const char *virt_last_error(void);
/* The last line of QEMU's own log for domain NAME that reports an error ("KVM internal
 * error. Suberror: 1", "error: failed to set MSR ..."), into OUT; 0 when found, -ENOENT when
 * the log has none or is unknown for this URI. Reads at most the log's last 16 KiB. */
int virt_domain_log_error(Virt *v, const char *name, char *out, size_t size);
/* Why domain NAME's last start ended, in libvirt's words ("shutdown", "crashed", "destroyed",
 * "failed"...: the reasons of its STOPPED events), read from the log libvirt writes before the
 * domain leaves its list, into OUT; -ENOENT when that start has not ended or the log is
 * unknown. For an exit seen by a listing before its event arrived. */
int virt_domain_stop_reason(Virt *v, const char *name, char *out, size_t size);
/* The same from the text of a domain's log (its last start's lines count). */
int virt_log_stop_reason(const char *log, char *out, size_t size);
