/* The manager: opens state, listeners and the loop; sends READY=1 once the API can answer. */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-daemon.h>

#include "control/controller.h"
#include "http/server.h"
#include "log.h"
#include "manager.h"
#include "socket.h"

#define HOUSEKEEPING_USEC (3600ULL * USEC_PER_SEC)
#define INSTANCE_HISTORY_USEC (24ULL * 3600 * USEC_PER_SEC) /* stopped instances stay visible a day */
/* Audit events past event_retention(_count) go a batch per loop iteration, each batch its own
 * statement, at idle priority: a million due at once never hold the loop (nor a request) long. */
#define EVENT_PRUNE_BATCH 1000
#define EVENT_PRUNE_EVERY_USEC (10 * 60 * USEC_PER_SEC)

/* Anything committed to the store: event streams and long polls wake, and so do the
 * notifications of rollout events. */
static void manager_store_committed(void *userdata) {
        Manager *m = userdata;

        http_server_wake(m->http);
        notifier_wake(m->notifier);
}

/* A change committed through the API: the controller looks at desired state soon. */
static void manager_on_committed(void *userdata, const char *service) {
        Manager *m = userdata;

        if (service)
                controller_changed_service(m->controller, service);
        else
                controller_changed(m->controller);
}

int manager_new(Settings *settings, Manager **ret) {
        _cleanup_(manager_freep) Manager *m = NULL;
        int r;

        m = calloc(1, sizeof *m);
        if (!m)
                return -ENOMEM;
        m->settings = *settings;
        *settings = (Settings) {};
        r = sd_event_default(&m->event);
        if (r < 0)
                return r;
        m->api = (ApiContext) {
                .event = m->event,
                .settings = &m->settings,
                .on_committed = manager_on_committed,
                .userdata = m,
        };
        r = http_server_new(&m->api, &m->http);
        if (r < 0)
                return r;
        *ret = TAKE_PTR(m);
        return 0;
}

Manager *manager_free(Manager *m) {
        if (!m)
                return NULL;
        http_server_free(m->http);
        controller_free(m->controller);
        notifier_free(m->notifier);
        sd_event_source_disable_unref(m->housekeeping);
        sd_event_source_disable_unref(m->event_prune);
        sd_event_source_disable_unref(m->watchdog);
        store_close(m->store);
        blobfiles_free(m->blobs);
        sd_event_unref(m->event);
        if (m->token)
                explicit_bzero(m->token, strlen(m->token));
        free(m->token);
        if (m->metrics_token)
                explicit_bzero(m->metrics_token, strlen(m->metrics_token));
        free(m->metrics_token);
        if (m->notify_secret)
                explicit_bzero(m->notify_secret, strlen(m->notify_secret));
        free(m->notify_secret);
        free(m->tls_cert);
        if (m->tls_key)
                explicit_bzero(m->tls_key, strlen(m->tls_key));
        free(m->tls_key);
        settings_done(&m->settings);
        free(m);
        return NULL;
}

/* A blob file whose row never committed (crash mid-upload) is removed. */
static int sweep_one(const char *digest, void *userdata) {
        Manager *m = userdata;
        BlobRecord b;
        int r = store_blob_get(m->store, digest, &b);

        if (r == AVIARY_E_BLOB_NOT_FOUND) {
                log_notice("Removing blob file %s that was never recorded.", digest);
                return blobfiles_remove(m->blobs, digest);
        }
        return r < 0 ? r : 0;
}

/* Opens a file holding a secret (token_file, tls_key) for reading, refusing it unless only its
 * owner can read or write it and that owner is root or us: a secret anyone else can read is no
 * secret, and one they can write lets them choose it. Checked on the open file (fstat), so the
 * file checked is the file read. Returns a FILE, or NULL with the reason logged. */
static FILE *secret_open(const char *path, const char *setting) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        struct stat st;
        FILE *f;

        if (fd < 0 || fstat(fd, &st) < 0) {
                log_error_errno(errno, "Cannot read %s %s", setting, path);
                return NULL;
        }
        if (!S_ISREG(st.st_mode)) {
                log_error("%s %s is not a regular file.", setting, path);
                return NULL;
        }
        if (st.st_mode & 0077) {
                log_error("%s %s has mode %04o: a secret must be readable and writable by its owner only "
                          "(chmod 0600 %s).",
                          setting, path, (unsigned) (st.st_mode & 07777), path);
                return NULL;
        }
        if (st.st_uid != 0 && st.st_uid != geteuid()) {
                log_error("%s %s belongs to uid %u: a secret must belong to root or to aviaryd's user (uid %u).",
                          setting, path, (unsigned) st.st_uid, (unsigned) geteuid());
                return NULL;
        }
        f = fdopen(fd, "re");
        if (!f) {
                log_error_errno(errno, "Cannot read %s %s", setting, path);
                return NULL;
        }
        TAKE_FD(fd);
        return f;
}

/* A PEM file into *RET (at most 256 KiB); SETTING names a secret's setting, checked with
 * secret_open(), or is NULL for a public one (a certificate). */
static int pem_load(const char *path, const char *setting, char **ret) {
        _cleanup_free_ char *text = NULL;
        size_t n;
        FILE *f = setting ? secret_open(path, setting) : fopen(path, "re");

        if (!f)
                return setting ? -EPERM : log_error_errno(errno, "Cannot read %s", path);
        text = calloc(1, 256 * 1024 + 1);
        n = text ? fread(text, 1, 256 * 1024, f) : 0;
        fclose(f);
        if (!text)
                return -ENOMEM;
        if (n == 0 || n == 256 * 1024 || !strstr(text, "-----BEGIN "))
                return log_error_errno(EINVAL, "%s is not a PEM file (or is over 256 KiB)", path);
        *ret = TAKE_PTR(text);
        return 0;
}

static int tls_load(Manager *m) {
        int r;

        if (!m->settings.tls_cert != !m->settings.tls_key)
                return log_error_errno(EINVAL, "tls_cert and tls_key go together: set both, or neither");
        if (!m->settings.tls_cert)
                return 0;
        r = pem_load(m->settings.tls_cert, NULL, &m->tls_cert);
        if (r == 0)
                r = pem_load(m->settings.tls_key, "tls_key", &m->tls_key);
        return r;
}

/* A bearer token from the first line of PATH (SETTING names it in messages) into *RET. */
static int token_read(const char *path, const char *setting, char **ret) {
        char buf[512];
        size_t n;
        FILE *f;

        if (!path)
                return 0;
        f = secret_open(path, setting);
        if (!f)
                return -EPERM;
        n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = 0;
        buf[strcspn(buf, "\r\n")] = 0;
        if (strlen(buf) < 16) {
                explicit_bzero(buf, sizeof buf);
                return log_error_errno(EINVAL, "Token in %s (%s) is shorter than 16 characters", path, setting);
        }
        *ret = strdup(buf);
        explicit_bzero(buf, sizeof buf);
        return *ret ? 0 : -ENOMEM;
}

static int token_load(Manager *m) {
        int r = token_read(m->settings.token_file, "token_file", &m->token);

        if (r == 0)
                r = token_read(m->settings.metrics_token_file, "metrics_token", &m->metrics_token);
        if (r == 0)
                r = token_read(m->settings.notify_secret_file, "notify_secret", &m->notify_secret);
        return r;
}

/* The same rule for our own TCP listener and one systemd hands us: off loopback, only
 * with a bearer token. */
static int tcp_listener_allowed(Manager *m, bool loopback, const char *what) {
        if (loopback || m->token)
                return 0;
        log_error("Refusing to serve the API on non-loopback %s without a bearer token: set token_file, or listen on "
                  "127.0.0.1 or [::1]. aviaryd exits; nothing was served.",
                  what);
        return -EPERM;
}

/* The fd store's name for a proxy listener: "proxy_127.0.0.1_8080" (names may not hold ':'). */
static void proxy_fd_name(const char *address, char out[static 96]) {
        snprintf(out, 96, "proxy_%.80s", address);
        for (char *p = out; *p; p++)
                if (*p == ':')
                        *p = '_';
}

int manager_take_proxy_fd(Manager *m, const char *address) {
        char name[96];

        proxy_fd_name(address, name);
        for (size_t i = 0; i < m->n_kept_proxy; i++)
                if (m->kept_proxy[i].fd >= 0 && streq(m->kept_proxy[i].name, name)) {
                        int fd = m->kept_proxy[i].fd;
                        m->kept_proxy[i].fd = -1;
                        return fd;
                }
        return -1;
}

void manager_keep_proxy_fd(Manager *m, const char *address, int fd) {
        char state[160], name[96];

        /* Only under systemd (NOTIFY_SOCKET), and only with FileDescriptorStoreMax= in the unit;
         * otherwise this is a no-op and restarts close the service listeners. */
        proxy_fd_name(address, name);
        if (fd >= 0) {
                snprintf(state, sizeof state, "FDSTORE=1\nFDNAME=%s", name);
                (void) sd_pid_notify_with_fds(0, 0, state, &fd, 1);
        } else {
                snprintf(state, sizeof state, "FDSTOREREMOVE=1\nFDNAME=%s", name);
                (void) sd_notify(0, state);
        }
}

static int manager_take_proxy_fd_cb(void *userdata, const char *address) {
        return manager_take_proxy_fd(userdata, address);
}

static void manager_keep_proxy_fd_cb(void *userdata, const char *address, int fd) {
        manager_keep_proxy_fd(userdata, address, fd);
}

/* Kept service listeners no service claimed in the first pass (the service is gone, or moved). */
static void kept_proxy_drop_unclaimed(Manager *m) {
        for (size_t i = 0; i < m->n_kept_proxy; i++)
                if (m->kept_proxy[i].fd >= 0) {
                        log_info("Closing the kept listener %s: no service listens there now.", m->kept_proxy[i].name);
                        (void) sd_notifyf(0, "FDSTOREREMOVE=1\nFDNAME=%s", m->kept_proxy[i].name);
                        close(m->kept_proxy[i].fd);
                        m->kept_proxy[i].fd = -1;
                }
}

static void strv_freep(char ***p) {
        for (char **s = *p; s && *s; s++)
                free(*s);
        free(*p);
}

static int listeners_open(Manager *m) {
        _cleanup_(strv_freep) char **names = NULL;
        int n = sd_listen_fds_with_names(1, &names), fd, r, api = 0;
        bool loopback = false;

        if (n > 0) {
                for (int i = 0; i < n; i++) {
                        bool unix_socket;

                        fd = SD_LISTEN_FDS_START + i;
                        /* A service proxy's listener kept in systemd's fd store across a restart. */
                        if (names && names[i] && strncmp(names[i], "proxy_", 6) == 0) {
                                if (m->n_kept_proxy < ELEMENTSOF(m->kept_proxy)) {
                                        m->kept_proxy[m->n_kept_proxy].fd = fd;
                                        snprintf(m->kept_proxy[m->n_kept_proxy].name, sizeof m->kept_proxy[0].name,
                                                 "%s", names[i]);
                                        m->n_kept_proxy++;
                                } else
                                        close(fd);
                                continue;
                        }
                        api++;
                        unix_socket = sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0) > 0;
                        if (!unix_socket) {
                                r = socket_is_loopback(fd, &loopback);
                                if (r >= 0)
                                        r = tcp_listener_allowed(m, loopback, "socket from systemd");
                                if (r < 0)
                                        return r;
                        }
                        r = http_server_add_listener(m->http, fd, unix_socket);
                        if (r < 0)
                                return r;
                }
                if (m->n_kept_proxy)
                        log_info("Kept %zu service listener(s) across the restart.", m->n_kept_proxy);
                if (api > 0) {
                        log_info("Serving the API on %d socket(s) from systemd.", api);
                        return 0;
                }
        }
        /* The TCP listener first: a refused one stops aviaryd before anything was served. */
        _cleanup_close_ int tcp_fd = -1;
        if (m->settings.listen) {
                r = socket_listen_tcp(m->settings.listen, m->token != NULL, &tcp_fd);
                if (r < 0)
                        return r;
        }
        /* The metrics listener too: GET /metrics alone; off loopback only with metrics_token. */
        _cleanup_close_ int metrics_fd = -1;
        if (m->settings.metrics_listen) {
                r = socket_listen_tcp(m->settings.metrics_listen, m->metrics_token != NULL, &metrics_fd);
                if (r == -EPERM)
                        log_error("Refusing to serve metrics on non-loopback %s without a bearer token: set "
                                  "metrics_token (a file holding it), or listen on 127.0.0.1 or [::1].",
                                  m->settings.metrics_listen);
                if (r < 0)
                        return r;
        }
        r = socket_listen_unix(m->settings.socket_path, m->settings.socket_mode, m->settings.socket_group, &fd);
        if (r < 0)
                return r;
        r = http_server_add_listener(m->http, fd, true);
        if (r < 0)
                return r;
        log_info("Serving the API on %s.", m->settings.socket_path);
        if (tcp_fd >= 0) {
                r = http_server_add_listener(m->http, TAKE_FD(tcp_fd), false);
                if (r < 0)
                        return r;
                log_info("Serving the API on %s %s (bearer tokens required).", m->tls_cert ? "https" : "tcp",
                         m->settings.listen);
        }
        if (metrics_fd >= 0) {
                r = http_server_add_metrics_listener(m->http, TAKE_FD(metrics_fd), m->metrics_token);
                if (r < 0)
                        return r;
                log_info("Serving GET /metrics alone on %s%s.", m->settings.metrics_listen,
                         m->metrics_token ? " (bearer metrics_token required)" : "");
        }
        return 0;
}

static int on_housekeeping(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        int r = store_idempotency_expire(m->store, now_realtime() - IDEMPOTENCY_KEEP_USEC);

        if (r > 0)
                log_debug("Forgot %d idempotency keys.", r);
        r = store_instance_prune(m->store, now_realtime() - INSTANCE_HISTORY_USEC);
        if (r > 0)
                log_info("Pruned %d stopped instances older than a day.", r);
        sd_event_source_set_time_relative(s, HOUSEKEEPING_USEC);
        return 0;
}

static int on_event_prune(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;
        const Settings *cfg = &m->settings;
        usec_t now = now_realtime();
        usec_t before = cfg->event_retention_usec && now > cfg->event_retention_usec ? now - cfg->event_retention_usec : 0;
        int r = store_event_prune(m->store, before, cfg->event_retention_count, EVENT_PRUNE_BATCH);

        if (r < 0)
                log_warning_errno(r, "Cannot prune audit events; trying again later");
        else
                m->events_pruned += (uint64_t) r;
        if (r == EVENT_PRUNE_BATCH) {
                sd_event_source_set_time_relative(s, 0); /* more are due: the next loop iteration */
                return 0;
        }
        if (m->events_pruned > 0)
                log_info("Pruned %" PRIu64 " audit events (event_retention, event_retention_count).", m->events_pruned);
        m->events_pruned = 0;
        sd_event_source_set_time_relative(s, EVENT_PRUNE_EVERY_USEC);
        return 0;
}

int manager_start(Manager *m) {
        char path[4096];
        int r;

        m->started_at = now_realtime();
        r = mkdir_parents(m->settings.state_dir, 0750);
        if (r < 0)
                return log_error_errno(r, "Cannot create state directory %s", m->settings.state_dir);
        snprintf(path, sizeof path, "%s/aviary.db", m->settings.state_dir);
        r = store_open(path, &m->store);
        if (r < 0)
                return log_error_errno(r, "Cannot open the database %s: %s", path, store_last_error());
        log_info("Database %s at schema version %d.", path, store_schema_version(m->store));
        r = blobfiles_open(m->settings.state_dir, &m->blobs);
        if (r < 0)
                return log_error_errno(r, "Cannot open the blob store under %s", m->settings.state_dir);
        r = blobfiles_foreach(m->blobs, sweep_one, m);
        if (r < 0)
                return log_error_errno(r, "Cannot sweep the blob directory");
        r = token_load(m);
        if (r == 0)
                r = tls_load(m);
        if (r < 0)
                return r;
        m->api.store = m->store;
        r = notifier_new(m->event, m->store, m->settings.notify, m->notify_secret, &m->notifier);
        if (r < 0)
                return log_error_errno(r, "Cannot set up rollout notifications");
        store_on_commit(m->store, manager_store_committed, m);
        m->api.blobs = m->blobs;
        m->api.token = m->token;
        m->api.tls_cert = m->tls_cert;
        m->api.tls_key = m->tls_key;
        /* Listeners first: a bad listen setting fails before any bridge or guest is touched.
         * No request is served before manager_run() starts the loop. */
        r = listeners_open(m);
        if (r < 0)
                return r;
        if (m->settings.runtime) {
                /* The controller gets what it works with, not the manager: the fd store as two
                 * callbacks (routing.h). */
                static const RoutingFdStore fds = {
                        .take = manager_take_proxy_fd_cb,
                        .keep = manager_keep_proxy_fd_cb,
                };
                RoutingFdStore mine = fds;
                mine.userdata = m;
                ControllerContext ctx = {
                        .event = m->event,
                        .store = m->store,
                        .blobs = m->blobs,
                        .settings = &m->settings,
                        .fds = &mine,
                };
                r = controller_new(&ctx, &m->controller);
                if (r == 0)
                        r = controller_start(m->controller);
                if (r < 0)
                        return r;
                m->api.controller = m->controller;
        } else
                log_notice("runtime = off: serving the registry and API only; no guests are started.");
        kept_proxy_drop_unclaimed(m);
        r = sd_event_add_time_relative(m->event, &m->housekeeping, CLOCK_MONOTONIC, 60 * USEC_PER_SEC, 0,
                                       on_housekeeping, m);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(m->housekeeping, SD_EVENT_ON);
        if (r < 0)
                return r;
        /* The first pass right after start, then every EVENT_PRUNE_EVERY_USEC. */
        r = sd_event_add_time_relative(m->event, &m->event_prune, CLOCK_MONOTONIC, 0, 0, on_event_prune, m);
        if (r >= 0)
                r = sd_event_source_set_priority(m->event_prune, SD_EVENT_PRIORITY_IDLE);
        if (r >= 0)
                r = sd_event_source_set_enabled(m->event_prune, SD_EVENT_ON);
        return r;
}

static int on_hangup(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        log_notice("SIGHUP: nothing to reload; settings are read at start (restart aviaryd: guests keep running).");
        return 0;
}

static int on_exit_signal(sd_event_source *s, const struct signalfd_siginfo *si, void *userdata) {
        Manager *m = userdata;

        log_info("Received %s; stopping (guests keep running).", strsignal((int) si->ssi_signo));
        (void) sd_notify(0, "STOPPING=1");
        return sd_event_exit(m->event, 0);
}

/* Pinged from a timer of the loop, so a loop stuck in a handler misses its pings. Exactly at
 * half the interval (sd_event_set_watchdog() waits up to three quarters, which leaves little
 * room for one slow libvirt call on the loop). */
static int on_watchdog(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        (void) sd_notify(0, "WATCHDOG=1");
        return sd_event_source_set_time(s, usec + m->watchdog_usec / 2);
}

static int watchdog_setup(Manager *m) {
        int r = sd_watchdog_enabled(0, &m->watchdog_usec);

        if (r <= 0)
                return r; /* not asked for (or WATCHDOG_PID names another process) */
        r = sd_event_add_time_relative(m->event, &m->watchdog, CLOCK_MONOTONIC, m->watchdog_usec / 2, 1,
                                       on_watchdog, m);
        if (r < 0)
                return r;
        r = sd_event_source_set_enabled(m->watchdog, SD_EVENT_ON);
        if (r >= 0)
                log_info("Watchdog: pinging systemd every %.1f s.",
                         (double) m->watchdog_usec / 2 / USEC_PER_SEC);
        return r;
}

void manager_block_signals(void) {
        sigset_t mask;

        sigemptyset(&mask);
        sigaddset(&mask, SIGTERM);
        sigaddset(&mask, SIGINT);
        sigaddset(&mask, SIGHUP);
        sigaddset(&mask, SIGCHLD);
        sigprocmask(SIG_BLOCK, &mask, NULL);
        signal(SIGPIPE, SIG_IGN);
}

int manager_run(Manager *m) {
        int r;

        r = sd_event_add_signal(m->event, NULL, SIGTERM, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGINT, on_exit_signal, m);
        if (r >= 0)
                r = sd_event_add_signal(m->event, NULL, SIGHUP, on_hangup, m);
        if (r >= 0)
                r = watchdog_setup(m);
        if (r < 0)
                return log_error_errno(r, "Cannot set up the event loop");

        (void) sd_notifyf(0, "READY=1\nSTATUS=Serving the API (schema %d)", store_schema_version(m->store));
        log_info("aviaryd ready: state %s.", m->settings.state_dir);
        return sd_event_loop(m->event);
}
