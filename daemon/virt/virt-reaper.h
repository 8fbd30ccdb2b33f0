/* aviaryd as the child subreaper of its embedded QEMUs. libvirt's embedded driver starts each
 * QEMU daemonized, so when its intermediate process exits the QEMU is re-parented; without a
 * subreaper that is PID 1, which on some hosts reaps orphans a second or two late. libvirt's
 * destroy (and its handling of a crash) waits until the QEMU process is gone, and a zombie is
 * not gone: every destroy then took about 2 s. As the subreaper aviaryd gets the orphaned QEMU
 * and reaps it the moment it exits.
 *
 * Only what libvirt does not wait for itself is reaped: zombies of QEMU binaries that became
 * children of aviaryd's main thread by re-parenting. libvirt's own children (forked by the
 * libvirt worker and libvirt's threads, and waited for by them) are listed under those threads
 * and are never touched. SIGCHLD must be blocked in every thread (main() does it first); a
 * thread of the reaper's own takes it (not the control loop: see reaper_main()). */
#pragma once

#include <sys/types.h>

typedef struct VirtReaper VirtReaper;

/* PID's state letter from /proc/PID/stat ('R', 'S', 'Z'...), with its command name into COMM;
 * 0 when it is gone (or unreadable). */
char virt_process_state(pid_t pid, char comm[static 64]);

/* Becomes the subreaper and starts the reaping thread. */
int virt_reaper_new(VirtReaper **ret);
/* Stops the thread (within 200 ms). Accepts NULL. */
VirtReaper *virt_reaper_free(VirtReaper *r);
/* Zombies reaped so far. */
unsigned long virt_reaper_reaped(VirtReaper *r);
