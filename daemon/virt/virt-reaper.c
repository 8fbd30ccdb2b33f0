/* The QEMU reaper (virt-reaper.h). */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "virt-reaper.h"

struct VirtReaper {
        pthread_t thread;
        atomic_bool stop;
        atomic_ulong reaped;
};

char virt_process_state(pid_t pid, char comm[static 64]) {
        char path[64], stat[512], *comm_start, *comm_end;
        _cleanup_fclose_ FILE *f = NULL;

        comm[0] = 0;
        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f || !fgets(stat, sizeof stat, f))
                return 0;
        /* "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the last ')' ends it. */
        comm_start = strchr(stat, '(');
        comm_end = strrchr(stat, ')');
        if (!comm_start || !comm_end || comm_end < comm_start || comm_end[1] != ' ' || !comm_end[2])
                return 0;
        snprintf(comm, 64, "%.*s", (int) (comm_end - comm_start - 1), comm_start + 1);
        return comm_end[2];
}

/* Whether PID is a zombie QEMU: state Z, and a command name of QEMU's. */
static bool zombie_qemu(pid_t pid) {
        char comm[64];

        return virt_process_state(pid, comm) == 'Z' && strncmp(comm, "qemu", 4) == 0;
}

static void reap(VirtReaper *r) {
        char path[64], list[4096];
        _cleanup_fclose_ FILE *f = NULL;

        /* Children of the main thread: the re-parented orphans (the main thread forks nothing
         * libvirt waits for). */
        snprintf(path, sizeof path, "/proc/self/task/%d/children", (int) getpid());
        f = fopen(path, "re");
        if (!f || !fgets(list, sizeof list, f))
                return;
        for (char *p = list, *end; *p; p = end) {
                long pid = strtol(p, &end, 10);
                if (end == p)
                        break;
                if (pid > 0 && zombie_qemu((pid_t) pid) && waitpid((pid_t) pid, NULL, WNOHANG) == (pid_t) pid) {
                        atomic_fetch_add(&r->reaped, 1);
                        log_debug("Reaped QEMU process %ld.", pid);
                }
        }
}

/* A thread of its own, not the control loop: libvirt's destroy, on the libvirt worker, waits
 * for the QEMU to be gone while it holds the domain's lock, and the control loop may be waiting
 * for that lock (a lifecycle event asks libvirt about the domain). Reaping from the loop would
 * be a deadlock. SIGCHLD is blocked everywhere; this thread alone takes it. */
static void *reaper_main(void *arg) {
        VirtReaper *r = arg;
        struct timespec tick = {.tv_nsec = 200 * 1000 * 1000};
        sigset_t chld;

        sigemptyset(&chld);
        sigaddset(&chld, SIGCHLD);
        while (!atomic_load(&r->stop)) {
                if (sigtimedwait(&chld, NULL, &tick) == SIGCHLD)
                        reap(r);
        }
        return NULL;
}

int virt_reaper_new(VirtReaper **ret) {
        VirtReaper *r;
        int k;

        r = calloc(1, sizeof *r);
        if (!r)
                return -ENOMEM;
        if (prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) < 0) {
                k = -errno;
                free(r);
                return k;
        }
        k = -pthread_create(&r->thread, NULL, reaper_main, r);
        if (k < 0) {
                (void) prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
                free(r);
                return k;
        }
        (void) pthread_setname_np(r->thread, "aviary-reaper");
        *ret = r;
        return 0;
}

VirtReaper *virt_reaper_free(VirtReaper *r) {
        if (!r)
                return NULL;
        atomic_store(&r->stop, true);
        pthread_join(r->thread, NULL);
        free(r);
        return NULL;
}

unsigned long virt_reaper_reaped(VirtReaper *r) {
        return r ? atomic_load(&r->reaped) : 0;
}
