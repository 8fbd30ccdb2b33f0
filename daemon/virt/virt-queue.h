/* libvirt calls off the control loop: a worker thread takes jobs (start, destroy, list, warm the
 * capability cache, save and restore a domain's memory) from a queue, one at a time in the order given, and
 * hands each result back to the control loop through an eventfd, where its callback runs. A
 * domain start takes from a third of a second to two seconds (and the first one of a fresh
 * daemon four more for libvirt's QEMU capability probe); meanwhile the API answers and the
 * proxies forward.
 *
 * One worker, in order: a destroy queued before a start of the same name runs first (a
 * restarted instance reuses its domain name), and a listing taken after a start sees it. The
 * callbacks run on the control loop only, never on the worker. */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "virt.h"

typedef struct VirtQueue VirtQueue;

/* R is what virt_domain_start() returned; INFO its domain when R is 0; ERROR libvirt's words
 * for a failure ("" when none). TAG is the caller's, as given. */
typedef void (*VirtStartDone)(void *userdata, const char *tag, int r, const VirtDomainInfo *info, const char *error);
/* R is what virt_domain_save() returned: 0 when the domain's memory is in the file and the domain
 * is gone. */
typedef void (*VirtSaveDone)(void *userdata, const char *tag, int r, const char *error);
/* R is what virt_domain_destroy() returned (-ENOENT: it was gone already). */
typedef void (*VirtDestroyDone)(void *userdata, const char *tag, int r, const char *error);
/* The running domains that carry our metadata (R < 0: the listing failed), and for each uuid
 * asked about that the listing does not show, whether it runs: RUNNING[i] is
 * virt_domain_running() of UUIDS[i] (1, 0, or <0 unknown), or 1 when listed. */
typedef void (*VirtListDone)(void *userdata, int r, const VirtDomainInfo *domains, size_t n_domains,
                             char *const *uuids, const int *running, size_t n_uuids);

/* V stays the caller's and must outlive the queue; E is the control loop. */
int virt_queue_new(Virt *v, sd_event *e, VirtQueue **ret);
/* Waits for the job that runs, runs the destroys still queued (for up to 5 s: their guests'
 * rows already say stopped), drops the other jobs not started (no callback is called for them
 * or for those destroys) and stops the worker. Accepts NULL. */
VirtQueue *virt_queue_free(VirtQueue *q);

/* Each copies what it is given; DONE may be NULL for the destroy. 0 or -ENOMEM. */
int virt_queue_start(VirtQueue *q, const VirtDomainSpec *spec, const char *tag, VirtStartDone done, void *userdata);
int virt_queue_destroy(VirtQueue *q, const char *uuid, const char *tag, VirtDestroyDone done, void *userdata);
int virt_queue_list(VirtQueue *q, char *const *uuids, size_t n_uuids, VirtListDone done, void *userdata);
/* Saves domain UUID's memory into PATH (scale to zero: wake by snapshot); the domain is gone after. */
int virt_queue_save(VirtQueue *q, const char *uuid, const char *path, const char *tag, VirtSaveDone done,
                    void *userdata);
/* Starts the domain saved in PATH again; DONE gets what virt_domain_restore() returned (-ENOENT
 * when PATH is missing or unreadable). */
int virt_queue_restore(VirtQueue *q, const char *path, const char *tag, VirtStartDone done, void *userdata);
/* Makes libvirt probe QEMU's capabilities now (for KVM or TCG guests), so the first guest does
 * not wait for it. No callback: a failure only means the first start probes instead. */
int virt_queue_warm(VirtQueue *q, bool kvm);
/* BEGIN and END run around each batch of results handed back at once (the controller makes
 * the batch one database transaction: several boots, one fsync). Either may be NULL. */
void virt_queue_set_batch(VirtQueue *q, void (*begin)(void *userdata), void (*end)(void *userdata), void *userdata);
/* Jobs queued or running. */
unsigned virt_queue_pending(VirtQueue *q);

/* The same work as the queue's list job, run on the calling thread: for the first pass at
 * start, before the loop runs. Calls DONE before returning. */
void virt_list_now(Virt *v, char *const *uuids, size_t n_uuids, VirtListDone done, void *userdata);
