/* The libvirt worker (virt-queue.h): a job list under a mutex, a condition variable to wake the
 * worker, and an eventfd to wake the control loop for finished jobs. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "log.h"
#include "telemetry.h"
#include "timeutil.h"
#include "macro.h"
#include "virt-queue.h"

typedef enum JobKind {
        JOB_START,
        JOB_DESTROY,
        JOB_LIST,
        JOB_WARM,
        JOB_SAVE,
        JOB_RESTORE, /* the last: JOB_KINDS */
} JobKind;
#define JOB_KINDS (JOB_RESTORE + 1)
/* At a stop, queued destroys still run for this long (each takes about 0.2 s: virt-reaper.h). */
#define STOP_DESTROY_USEC (5 * USEC_PER_SEC)

static const char *const job_kind_names[JOB_KINDS] = {
        [JOB_START] = "domain start",
        [JOB_DESTROY] = "domain destroy",
        [JOB_LIST] = "domain list",
        [JOB_WARM] = "capability warm-up",
        [JOB_SAVE] = "domain save",
        [JOB_RESTORE] = "domain restore",
};

typedef struct Job {
        JobKind kind;
        struct Job *next;
        char tag[96];
        void *userdata;
        union {
                VirtStartDone start;
                VirtDestroyDone destroy;
                VirtListDone list;
                VirtSaveDone save;
        } done;
        /* in */
        VirtDomainSpec spec; /* START: its strings point into STRINGS */
        char *strings[13];
        char uuid[37]; /* DESTROY, SAVE */
        char *path;    /* SAVE, RESTORE */
        char **uuids;  /* LIST */
        size_t n_uuids;
        bool kvm; /* WARM */
        /* out */
        int r;
        uint64_t run_usec; /* how long the libvirt call took on the worker */
        char error[512];
        VirtDomainInfo info;
        VirtDomainInfo *domains;
        size_t n_domains;
        int *running;
} Job;

struct VirtQueue {
        Virt *virt;
        pthread_t thread;
        bool started;
        pthread_mutex_t lock;
        pthread_cond_t wake;
        Job *todo, **todo_tail;
        Job *done_list, **done_tail;
        unsigned pending;
        bool stop;
        uint64_t stop_at;       /* when the stop was asked for (monotonic) */
        unsigned stop_destroys; /* destroys run since */
        const Job *running;     /* the job on the worker, under LOCK: named at a stop */
        uint64_t running_since;
        int done_fd;
        sd_event_source *done_source;
        void (*batch_begin)(void *userdata), (*batch_end)(void *userdata);
        void *batch_userdata;
};

static void job_free(Job *j) {
        if (!j)
                return;
        for (size_t i = 0; i < ELEMENTSOF(j->strings); i++)
                free(j->strings[i]);
        for (size_t i = 0; i < j->n_uuids; i++)
                free(j->uuids[i]);
        free(j->uuids);
        free(j->domains);
        free(j->running);
        free(j->path);
        free(j);
}

/* ---- the work (any thread) ---- */

typedef struct DomainList {
        VirtDomainInfo *items;
        size_t n, allocated;
} DomainList;

static int domain_list_add(const VirtDomainInfo *d, void *userdata) {
        DomainList *l = userdata;

        if (l->n == l->allocated) {
                size_t want = l->allocated ? l->allocated * 2 : 16;
                VirtDomainInfo *p = realloc(l->items, want * sizeof *p);
                if (!p)
                        return -ENOMEM;
                l->items = p;
                l->allocated = want;
        }
        l->items[l->n++] = *d;
        return 0;
}

static void run_list(Virt *v, Job *j) {
        DomainList l = {};

        j->r = virt_domain_list(v, domain_list_add, &l);
        if (j->r < 0)
                snprintf(j->error, sizeof j->error, "%s", virt_last_error());
        j->domains = l.items;
        j->n_domains = l.n;
        j->running = calloc(j->n_uuids ? j->n_uuids : 1, sizeof *j->running);
        for (size_t i = 0; j->running && i < j->n_uuids; i++) {
                bool listed = false;
                for (size_t k = 0; k < l.n && !listed; k++)
                        listed = streq(l.items[k].uuid, j->uuids[i]);
                /* Not listed: confirm by uuid (a domain whose metadata could not be read just now
                 * is left out of the listing, but it still runs). */
                j->running[i] = listed ? 1 : virt_domain_running(v, j->uuids[i]);
        }
        if (!j->running && j->r >= 0)
                j->r = -ENOMEM;
}

static void job_run(Virt *v, Job *j) {
        switch (j->kind) {
        case JOB_START:
                j->r = virt_domain_start(v, &j->spec, &j->info);
                break;
        case JOB_DESTROY:
                j->r = virt_domain_destroy(v, j->uuid);
                break;
        case JOB_LIST:
                run_list(v, j);
                return;
        case JOB_WARM:
                j->r = virt_warm_capabilities(v, j->kvm);
                break;
        case JOB_SAVE:
                j->r = virt_domain_save(v, j->uuid, j->path);
                break;
        case JOB_RESTORE:
                j->r = virt_domain_restore(v, j->path, &j->info);
                break;
        }
        if (j->r < 0)
                snprintf(j->error, sizeof j->error, "%s", virt_last_error());
}

static void job_report(Job *j) {
        static const TelemetryLibvirtCall calls[] = {
                [JOB_START] = TELEMETRY_LIBVIRT_START,
                [JOB_DESTROY] = TELEMETRY_LIBVIRT_DESTROY,
                [JOB_LIST] = TELEMETRY_LIBVIRT_LIST,
                [JOB_WARM] = TELEMETRY_LIBVIRT_WARM,
                [JOB_SAVE] = TELEMETRY_LIBVIRT_SAVE,
                [JOB_RESTORE] = TELEMETRY_LIBVIRT_RESTORE,
        };
        _Static_assert(ELEMENTSOF(calls) == JOB_KINDS, "every job kind has its telemetry call");

        telemetry_libvirt_call(calls[j->kind], j->run_usec, j->r < 0);
        switch (j->kind) {
        case JOB_START:
        case JOB_RESTORE:
                if (j->done.start)
                        j->done.start(j->userdata, j->tag, j->r, &j->info, j->error);
                break;
        case JOB_DESTROY:
                if (j->done.destroy)
                        j->done.destroy(j->userdata, j->tag, j->r, j->error);
                break;
        case JOB_LIST:
                if (j->done.list)
                        j->done.list(j->userdata, j->r, j->domains, j->n_domains, j->uuids, j->running, j->n_uuids);
                break;
        case JOB_WARM:
                if (j->r < 0)
                        log_debug("libvirt: warming the capability cache failed: %s", j->error);
                break;
        case JOB_SAVE:
                if (j->done.save)
                        j->done.save(j->userdata, j->tag, j->r, j->error);
                break;
        }
}

void virt_list_now(Virt *v, char *const *uuids, size_t n_uuids, VirtListDone done, void *userdata) {
        Job j = {.kind = JOB_LIST, .uuids = (char **) uuids, .n_uuids = n_uuids};

        run_list(v, &j);
        done(userdata, j.r, j.domains, j.n_domains, uuids, j.running, n_uuids);
        free(j.domains);
        free(j.running);
}

/* ---- the worker ---- */

/* At a stop, under LOCK: the next queued destroy, taken out of the queue, or NULL when none is
 * left or STOP_DESTROY_USEC passed. A destroy was queued for a guest whose row already says it
 * stopped: dropped, the guest would run on with nothing to stop it if aviaryd does not come back
 * (a restarted aviaryd removes it as an orphan). Other jobs are dropped: a start's instance stays
 * pending, a save's guest stays awake, a listing is not needed any more. */
static Job *stop_next(VirtQueue *q) {
        if (now_monotonic() > q->stop_at + STOP_DESTROY_USEC)
                return NULL;
        for (Job **p = &q->todo; *p; p = &(*p)->next)
                if ((*p)->kind == JOB_DESTROY) {
                        Job *j = *p;
                        *p = j->next;
                        if (!*p)
                                q->todo_tail = p;
                        q->stop_destroys++;
                        return j;
                }
        return NULL;
}

static void *worker_main(void *arg) {
        VirtQueue *q = arg;
        sigset_t all;

        /* Signals are the control loop's (SIGCHLD included: virt-reaper.h). */
        sigfillset(&all);
        pthread_sigmask(SIG_BLOCK, &all, NULL);
        pthread_mutex_lock(&q->lock);
        for (;;) {
                Job *j;
                bool was_empty;

                while (!q->todo && !q->stop)
                        pthread_cond_wait(&q->wake, &q->lock);
                if (q->stop) {
                        j = stop_next(q);
                        if (!j)
                                break;
                } else {
                        j = q->todo;
                        q->todo = j->next;
                        if (!q->todo)
                                q->todo_tail = &q->todo;
                }
                uint64_t t0 = now_monotonic();
                q->running = j;
                q->running_since = t0;
                pthread_mutex_unlock(&q->lock);

                job_run(q->virt, j);
                j->run_usec = now_monotonic() - t0;

                pthread_mutex_lock(&q->lock);
                q->running = NULL;
                j->next = NULL;
                was_empty = !q->done_list;
                *q->done_tail = j;
                q->done_tail = &j->next;
                if (was_empty) {
                        uint64_t one = 1;
                        (void) !write(q->done_fd, &one, sizeof one);
                }
        }
        pthread_mutex_unlock(&q->lock);
        return NULL;
}

static int on_done(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        VirtQueue *q = userdata;
        uint64_t n;
        Job *list;

        (void) !read(fd, &n, sizeof n);
        pthread_mutex_lock(&q->lock);
        list = q->done_list;
        q->done_list = NULL;
        q->done_tail = &q->done_list;
        pthread_mutex_unlock(&q->lock);
        if (list && q->batch_begin)
                q->batch_begin(q->batch_userdata);
        while (list) {
                Job *next = list->next;
                q->pending--;
                job_report(list);
                job_free(list);
                list = next;
        }
        if (q->batch_end)
                q->batch_end(q->batch_userdata);
        return 0;
}

void virt_queue_set_batch(VirtQueue *q, void (*begin)(void *userdata), void (*end)(void *userdata), void *userdata) {
        q->batch_begin = begin;
        q->batch_end = end;
        q->batch_userdata = userdata;
}

static int queue_push(VirtQueue *q, Job *j) {
        j->next = NULL;
        pthread_mutex_lock(&q->lock);
        *q->todo_tail = j;
        q->todo_tail = &j->next;
        pthread_cond_signal(&q->wake);
        pthread_mutex_unlock(&q->lock);
        q->pending++;
        return 0;
}

int virt_queue_new(Virt *v, sd_event *e, VirtQueue **ret) {
        VirtQueue *q = calloc(1, sizeof *q);
        int r;

        if (!q)
                return -ENOMEM;
        q->virt = v;
        pthread_mutex_init(&q->lock, NULL);
        pthread_cond_init(&q->wake, NULL);
        q->todo_tail = &q->todo;
        q->done_tail = &q->done_list;
        q->done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (q->done_fd < 0) {
                r = -errno;
                goto fail;
        }
        r = sd_event_add_io(e, &q->done_source, q->done_fd, EPOLLIN, on_done, q);
        if (r < 0)
                goto fail;
        r = -pthread_create(&q->thread, NULL, worker_main, q);
        if (r < 0)
                goto fail;
        (void) pthread_setname_np(q->thread, "aviary-libvirt");
        q->started = true;
        *ret = q;
        return 0;
fail:
        virt_queue_free(q);
        return r;
}

VirtQueue *virt_queue_free(VirtQueue *q) {
        if (!q)
                return NULL;
        if (q->started) {
                char what[sizeof q->running->tag + 64] = "";
                uint64_t t0 = now_monotonic();

                pthread_mutex_lock(&q->lock);
                q->stop = true;
                q->stop_at = t0;
                if (q->running)
                        snprintf(what, sizeof what, "%s %s, under way for %.1f s",
                                 job_kind_names[q->running->kind], q->running->tag,
                                 (double) (t0 - q->running_since) / USEC_PER_SEC);
                pthread_cond_signal(&q->wake);
                pthread_mutex_unlock(&q->lock);
                /* Named before the wait, so a stop that hangs in libvirt says where. */
                if (what[0])
                        log_info("Stopping: waiting for the libvirt call under way (%s).", what);
                pthread_join(q->thread, NULL);
                if (what[0])
                        log_info("Stopping: the libvirt call ended after %.1f s more.",
                                 (double) (now_monotonic() - t0) / USEC_PER_SEC);
                if (q->stop_destroys > 0)
                        log_info("Stopping: stopped %u guest(s) whose stop was still queued.", q->stop_destroys);
                for (Job *j = q->todo; j; j = j->next)
                        if (j->kind == JOB_DESTROY)
                                log_warning("Stopping: guest %s (domain %s) still runs: its stop was queued and the %u s "
                                            "for queued stops ran out; the next start of aviaryd removes it.",
                                            j->tag, j->uuid, (unsigned) (STOP_DESTROY_USEC / USEC_PER_SEC));
        }
        while (q->todo) {
                Job *j = q->todo;
                q->todo = j->next;
                job_free(j);
        }
        while (q->done_list) {
                Job *j = q->done_list;
                q->done_list = j->next;
                job_free(j);
        }
        sd_event_source_disable_unref(q->done_source);
        if (q->done_fd >= 0)
                close(q->done_fd);
        pthread_cond_destroy(&q->wake);
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
}

static Job *job_new(JobKind kind, const char *tag, void *userdata) {
        Job *j = calloc(1, sizeof *j);

        if (!j)
                return NULL;
        j->kind = kind;
        j->userdata = userdata;
        if (tag)
                snprintf(j->tag, sizeof j->tag, "%s", tag);
        return j;
}

/* A copy of S into J->strings[I], or NULL for NULL; false on ENOMEM. */
static bool keep_string(Job *j, size_t i, const char *s, const char **ret) {
        *ret = NULL;
        if (!s)
                return true;
        j->strings[i] = strdup(s);
        *ret = j->strings[i];
        return j->strings[i] != NULL;
}

int virt_queue_start(VirtQueue *q, const VirtDomainSpec *spec, const char *tag, VirtStartDone done, void *userdata) {
        Job *j = job_new(JOB_START, tag, userdata);
        VirtDomainSpec *c;
        bool ok;

        if (!j)
                return -ENOMEM;
        j->done.start = done;
        c = &j->spec;
        *c = *spec;
        ok = keep_string(j, 0, spec->name, &c->name) && keep_string(j, 1, spec->instance, &c->instance) &&
             keep_string(j, 2, spec->service, &c->service) && keep_string(j, 3, spec->version, &c->version) &&
             keep_string(j, 4, spec->kernel, &c->kernel) && keep_string(j, 5, spec->initrd, &c->initrd) &&
             keep_string(j, 6, spec->cmdline, &c->cmdline) && keep_string(j, 7, spec->bridge, &c->bridge) &&
             keep_string(j, 8, spec->mac, &c->mac) && keep_string(j, 9, spec->console_path, &c->console_path) &&
             keep_string(j, 10, spec->kvm_cpu, &c->kvm_cpu);
        if (!ok) {
                job_free(j);
                return -ENOMEM;
        }
        return queue_push(q, j);
}

int virt_queue_destroy(VirtQueue *q, const char *uuid, const char *tag, VirtDestroyDone done, void *userdata) {
        Job *j = job_new(JOB_DESTROY, tag, userdata);

        if (!j)
                return -ENOMEM;
        j->done.destroy = done;
        snprintf(j->uuid, sizeof j->uuid, "%s", uuid);
        return queue_push(q, j);
}

int virt_queue_list(VirtQueue *q, char *const *uuids, size_t n_uuids, VirtListDone done, void *userdata) {
        Job *j = job_new(JOB_LIST, NULL, userdata);

        if (!j)
                return -ENOMEM;
        j->done.list = done;
        j->uuids = calloc(n_uuids ? n_uuids : 1, sizeof *j->uuids);
        if (!j->uuids) {
                job_free(j);
                return -ENOMEM;
        }
        for (size_t i = 0; i < n_uuids; i++) {
                j->uuids[i] = strdup(uuids[i]);
                j->n_uuids++;
                if (!j->uuids[i]) {
                        job_free(j);
                        return -ENOMEM;
                }
        }
        return queue_push(q, j);
}

int virt_queue_save(VirtQueue *q, const char *uuid, const char *path, const char *tag, VirtSaveDone done,
                    void *userdata) {
        Job *j = job_new(JOB_SAVE, tag, userdata);

        if (!j || !(j->path = strdup(path))) {
                job_free(j);
                return -ENOMEM;
        }
        j->done.save = done;
        snprintf(j->uuid, sizeof j->uuid, "%s", uuid);
        return queue_push(q, j);
}

int virt_queue_restore(VirtQueue *q, const char *path, const char *tag, VirtStartDone done, void *userdata) {
        Job *j = job_new(JOB_RESTORE, tag, userdata);

        if (!j || !(j->path = strdup(path))) {
                job_free(j);
                return -ENOMEM;
        }
        j->done.start = done;
        return queue_push(q, j);
}

int virt_queue_warm(VirtQueue *q, bool kvm) {
        Job *j = job_new(JOB_WARM, NULL, NULL);

        if (!j)
                return -ENOMEM;
        j->kvm = kvm;
        return queue_push(q, j);
}

unsigned virt_queue_pending(VirtQueue *q) {
        return q ? q->pending : 0;
}
