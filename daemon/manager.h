/* The manager owns everything aviaryd runs: the event loop, the store, the blob files,
 * the API listeners. main() builds one, runs it, frees it. */
#pragma once

#include <systemd/sd-event.h>

#include "blobfiles.h"
#include "control/notify.h"
#include "http/request.h"
#include "settings.h"
#include "store.h"

typedef struct HttpServer HttpServer;
typedef struct Controller Controller;

typedef struct Manager {
        sd_event *event;
        Settings settings;
        Store *store;
        BlobFiles *blobs;
        HttpServer *http;
        ApiContext api;          /* what the API server and handlers are lent (filled at start) */
        Controller *controller;  /* NULL with runtime = off */
        Notifier *notifier;      /* rollout notifications (control/notify.c) */
        char *notify_secret;     /* from settings.notify_secret_file */
        char *metrics_token;     /* bearer token of metrics_listen, from settings.metrics_token_file */
        char *token;             /* bearer token for TCP, from settings.token_file */
        char *tls_cert, *tls_key;/* PEM text of settings.tls_cert/tls_key, or NULL: plain HTTP */
        /* Service proxy listeners kept across a restart in systemd's fd store
         * ("proxy_127.0.0.1_8080"). */
        struct {
                int fd;          /* -1 once taken */
                char name[96];
        } kept_proxy[64];
        size_t n_kept_proxy;
        sd_event_source *housekeeping;
        sd_event_source *event_prune; /* event_retention: a batch per run (manager.c) */
        uint64_t events_pruned;       /* by the current pass, for its one log line */
        sd_event_source *watchdog; /* WATCHDOG=1 every half WATCHDOG_USEC; NULL without one */
        uint64_t watchdog_usec;
        usec_t started_at;
} Manager;

/* Takes ownership of SETTINGS' contents. */
int manager_new(Settings *settings, Manager **ret);
Manager *manager_free(Manager *m);
DEFINE_TRIVIAL_CLEANUP_FUNC(Manager *, manager_free);

/* Opens the store, the blob files and the listeners (socket activation or our own). */
int manager_start(Manager *m);
/* Runs the event loop until SIGTERM/SIGINT; READY=1 is sent once started, and WATCHDOG=1
 * every half WATCHDOG_USEC from the loop when systemd asks for it. */
/* The listening socket systemd kept for a service proxy on ADDRESS (normalised "IP:PORT"), or
 * -1; the caller owns it from then on. */
int manager_take_proxy_fd(Manager *m, const char *address);
/* Hands a service proxy's listening socket to systemd's fd store (no-op without systemd), or
 * (FD -1) removes the one for ADDRESS. */
void manager_keep_proxy_fd(Manager *m, const char *address, int fd);

int manager_run(Manager *m);
/* Blocks SIGTERM, SIGINT and SIGHUP (the loop takes them through signalfd) and SIGCHLD (the
 * reaper thread alone takes it: virt-reaper.h), and ignores SIGPIPE. main() calls it before any
 * thread exists, so every thread (libvirt's, made while the controller starts and per guest it
 * re-attaches to; the proxy workers; the libvirt worker) inherits the mask: a signal sent to the
 * process goes to any thread that does not block it, where its default action would end aviaryd
 * without a word. */
void manager_block_signals(void);
