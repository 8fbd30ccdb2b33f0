/* The QEMU reaper (virt-reaper.h). */
#include <errno.h>
#include <signal.h>
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
        sd_event_source *sigchld;
        unsigned long reaped;
};

/* Whether PID is a zombie QEMU: state Z, and a command name of QEMU's. */
static bool zombie_qemu(pid_t pid) {
        char path[64], stat[512], *comm_end;
        _cleanup_fclose_ FILE *f = NULL;

        snprintf(path, sizeof path, "/proc/%d/stat", (int) pid);
        f = fopen(path, "re");
        if (!f || !fgets(stat, sizeof stat, f))
                return false;
        /* "PID (COMM) STATE ...": COMM may hold spaces and parentheses; the last ')' ends it. */
        comm_end = strrchr(stat, ')');
        if (!comm_end || comm_end[1] != ' ' || comm_end[2] != 'Z')
                return false;
        *comm_end = 0;
        return strstr(stat, "(qemu") != NULL;
}

static int on_sigchld(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        VirtReaper *r = userdata;
        char path[64], list[4096];
        _cleanup_fclose_ FILE *f = NULL;

        /* Children of the main thread: the re-parented orphans (the main thread forks nothing
         * libvirt waits for). */
        snprintf(path, sizeof path, "/proc/self/task/%d/children", (int) getpid());
        f = fopen(path, "re");
        if (!f || !fgets(list, sizeof list, f))
                return 0;
        for (char *p = list, *end; *p; p = end) {
                long pid = strtol(p, &end, 10);
                if (end == p)
                        break;
                if (pid > 0 && zombie_qemu((pid_t) pid) && waitpid((pid_t) pid, NULL, WNOHANG) == (pid_t) pid) {
                        r->reaped++;
                        log_debug("Reaped QEMU process %ld.", pid);
                }
        }
        return 0;
}

int virt_reaper_new(sd_event *e, VirtReaper **ret) {
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
        k = sd_event_add_signal(e, &r->sigchld, SIGCHLD, on_sigchld, r);
        if (k < 0) {
                (void) prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0);
                free(r);
                return k;
        }
        *ret = r;
        return 0;
}

VirtReaper *virt_reaper_free(VirtReaper *r) {
        if (!r)
                return NULL;
        sd_event_source_disable_unref(r->sigchld);
        free(r);
        return NULL;
}

unsigned long virt_reaper_reaped(const VirtReaper *r) {
        return r ? r->reaped : 0;
}
