/* aviaryd's settings: built-in defaults, then the config file, then the command line. */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* TLS 1.2 and 1.3 only, AEAD ciphers (AES-GCM, ChaCha20-Poly1305), forward-secret key exchange
 * (ECDHE) for TLS 1.2: what current clients (curl, Python, Go, browsers) all speak. */
#define SETTINGS_TLS_PRIORITIES                                                                           \
        "SECURE128:-VERS-ALL:+VERS-TLS1.3:+VERS-TLS1.2:-CIPHER-ALL:+AES-256-GCM:+CHACHA20-POLY1305:"     \
        "+AES-128-GCM:-MAC-ALL:+AEAD:-KX-ALL:+ECDHE-ECDSA:+ECDHE-RSA"

typedef struct Settings {
        char *config_file;
        char *state_dir;
        char *socket_path;
        char *listen;            /* "ADDR:PORT" for the optional TCP listener, or NULL */
        char *libvirt_uri;
        bool runtime;            /* manage guests; off: registry and API only */
        char accel[8];           /* "auto" (KVM if it works, else TCG), "kvm" or "tcg" */
        char *kvm_cpu;           /* libvirt CPU for KVM guests: host-passthrough, host-model, or a model name */
        uint64_t boot_timeout_ms; /* a guest not healthy this long after its start is stopped (per service too) */
        char *bridge;            /* guest bridge, default aviary0 */
        bool bridge_create;      /* create the bridge when missing */
        char *subnet;            /* guest IPv4 subnet, default 10.88.0.0/24 */
        char *token_file;        /* a bootstrap admin token for TCP (API tokens: POST /v1/tokens) */
        char *tls_cert, *tls_key;/* PEM files: the TCP listener speaks HTTPS */
        char *tls_priorities;    /* GnuTLS priority string for it (SETTINGS_TLS_PRIORITIES) */
        unsigned allow_uids[32]; /* unix-socket peers allowed besides root; none listed: anyone */
        size_t n_allow_uids;
        unsigned allow_gids[32]; /* ... or by their primary group */
        size_t n_allow_gids;
        char *socket_group;      /* group owning the unix socket */
        mode_t socket_mode;
        uint64_t max_blob_size;
        uint64_t max_json_body;
        unsigned connection_limit;
        unsigned connection_timeout_sec;
        uint64_t max_header_size;        /* request line and header fields; 431 above */
        unsigned request_timeout_sec;    /* to receive a whole request (headers and body) */
        uint64_t upload_min_rate;        /* bytes/s of body that each earn a second more; 0: none */
        unsigned connection_limit_per_peer; /* per TCP client address; 0: no limit */
        bool require_if_match;           /* PATCH/DELETE without If-Match: 428 */
        uint64_t event_retention_usec;   /* audit events older than this are pruned; 0: none */
        uint64_t event_retention_count;  /* at most this many audit events are kept; 0: no limit */
        unsigned proxy_threads;          /* service proxy worker threads; 0: one per CPU */
        unsigned wake_queue;             /* requests a sleeping service holds while it wakes */
        uint64_t wake_timeout_ms;        /* how long a held request waits for the wake */
        unsigned event_heartbeat_sec;    /* an idle event stream sends a comment this often */
        char *metrics_listen;            /* "ADDR:PORT" serving GET /metrics alone, or NULL */
        char *metrics_token_file;        /* metrics_token: a file holding its bearer token */
        char *notify;                    /* every service's rollout events are POSTed here too, or NULL */
        char *notify_secret_file;        /* notify_secret: a file whose first line signs them */
} Settings;

void settings_init_defaults(Settings *c);
void settings_done(Settings *c);
/* Reads KEY = VALUE lines ('#' comments). Unknown keys and bad values are errors that name
 * the file and line. */
int settings_load_file(Settings *c, const char *path);
/* Parses argv. Returns 0 to run, 1 when it printed --help/--version (exit 0), or a negative
 * errno after printing the problem (exit 2). */
int settings_parse_argv(Settings *c, int argc, char **argv);
/* Fills state_dir / socket_path / libvirt_uri that are still unset, from uid and env. */
int settings_finish(Settings *c);
