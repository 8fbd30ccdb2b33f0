/* The manager owns everything aviaryd runs: the event loop, the store, the blob files,
 * the API listeners. main() builds one, runs it, frees it. */
#pragma once

#include <systemd/sd-event.h>

#include "blobfiles.h"
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
        Controller *controller;  /* NULL with runtime = off */
        char *token;             /* bearer token for TCP, from settings.token_file */
        sd_event_source *housekeeping;
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
int manager_run(Manager *m);
