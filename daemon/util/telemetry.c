/* The control plane's numbers (telemetry.h). */
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "macro.h"
#include "telemetry.h"

const double telemetry_latency_bounds[] = { 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 };
const size_t telemetry_latency_n = ELEMENTSOF(telemetry_latency_bounds);
const double telemetry_boot_bounds[] = { 0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 60, 120, 300 };
const size_t telemetry_boot_n = ELEMENTSOF(telemetry_boot_bounds);

/* The statuses the API answers with (api/errors.c); any other is counted as "other". */
static const unsigned api_statuses[] = { 200, 201, 204, 206, 304, 400, 401, 403, 404, 405, 406, 409, 410,
                                         412, 413, 415, 416, 422, 428, 429, 431, 500, 501, 503, 504, 507 };
#define N_STATUS (ELEMENTSOF(api_statuses) + 1)
#define MAX_ROUTES 96 /* routes[] has about 45; the last slot is "no route matched" */

static const char *const libvirt_call_names[_TELEMETRY_LIBVIRT_MAX] = {
        [TELEMETRY_LIBVIRT_START] = "start",
        [TELEMETRY_LIBVIRT_DESTROY] = "destroy",
        [TELEMETRY_LIBVIRT_LIST] = "list",
        [TELEMETRY_LIBVIRT_WARM] = "capabilities",
        [TELEMETRY_LIBVIRT_SAVE] = "save",
        [TELEMETRY_LIBVIRT_RESTORE] = "restore",
};

static struct {
        uint64_t api_requests[MAX_ROUTES][N_STATUS];
        Histogram api_latency[MAX_ROUTES];
        Histogram store_tx;
        uint64_t store_tx_total[2]; /* rolled back, committed */
        Histogram libvirt[_TELEMETRY_LIBVIRT_MAX];
        uint64_t libvirt_failed[_TELEMETRY_LIBVIRT_MAX];
        Histogram boot;
        uint64_t restarts, crash_loops;
        Histogram pass[2];     /* by scope: the changed services, all */
        int64_t api_connections, followers;
        uint64_t followers_total;
} T;

void telemetry_api_connection(int delta) {
        T.api_connections += delta;
}

void telemetry_event_follower(int delta) {
        T.followers += delta;
        if (delta > 0)
                T.followers_total += (uint64_t) delta;
}

void histogram_observe(Histogram *h, const double *bounds, size_t n, double seconds) {
        size_t i = 0;

        while (i < n && seconds > bounds[i])
                i++;
        h->counts[i]++;
        h->sum += seconds;
}

void histogram_write(PromText *p, const char *name, const char *const *labels, const Histogram *h,
                     const double *bounds, size_t n) {
        promtext_histogram(p, name, labels, bounds, h->counts, n, h->sum);
}

static uint64_t histogram_count(const Histogram *h) {
        uint64_t n = 0;

        for (size_t i = 0; i <= TELEMETRY_MAX_BOUNDS; i++)
                n += h->counts[i];
        return n;
}

void telemetry_api_request(int route, unsigned status, uint64_t usec) {
        size_t r = route < 0 || route >= MAX_ROUTES - 1 ? MAX_ROUTES - 1 : (size_t) route, s = N_STATUS - 1;

        for (size_t i = 0; i < ELEMENTSOF(api_statuses); i++)
                if (api_statuses[i] == status)
                        s = i;
        T.api_requests[r][s]++;
        histogram_observe(&T.api_latency[r], telemetry_latency_bounds, telemetry_latency_n, (double) usec / 1e6);
}

void telemetry_store_transaction(uint64_t usec, int committed) {
        histogram_observe(&T.store_tx, telemetry_latency_bounds, telemetry_latency_n, (double) usec / 1e6);
        T.store_tx_total[committed ? 1 : 0]++;
}

void telemetry_libvirt_call(TelemetryLibvirtCall call, uint64_t usec, int failed) {
        if ((unsigned) call >= _TELEMETRY_LIBVIRT_MAX)
                return;
        histogram_observe(&T.libvirt[call], telemetry_latency_bounds, telemetry_latency_n, (double) usec / 1e6);
        if (failed)
                T.libvirt_failed[call]++;
}

void telemetry_instance_change(const char *action, const char *state, uint64_t boot_usec) {
        if (!action || !state)
                return;
        if (boot_usec > 0 && strcmp(action, "instance.ready") == 0)
                histogram_observe(&T.boot, telemetry_boot_bounds, telemetry_boot_n, (double) boot_usec / 1e6);
        /* A guest gone (exit, boot timeout, a crash...) whose instance is pending again: a restart
         * after its backoff (the restart policy's). A KVM fallback boots again too, but that is
         * aviaryd's own retry, not the guest's failure. */
        if (strcmp(action, "instance.crash-loop") == 0)
                T.crash_loops++;
        else if (strcmp(state, "pending") == 0 && strcmp(action, "instance.create") != 0 &&
                 strcmp(action, "instance.kvm-fallback") != 0 && strcmp(action, "instance.boot") != 0)
                T.restarts++;
}

void telemetry_controller_pass(bool all, uint64_t usec) {
        histogram_observe(&T.pass[all], telemetry_latency_bounds, telemetry_latency_n, (double) usec / 1e6);
}

uint64_t telemetry_controller_passes(bool all) {
        return histogram_count(&T.pass[all]);
}

void telemetry_write(PromText *p, const char *(*route_name)(size_t i, const char **ret_method), size_t n_routes) {
        char code[16];

        promtext_family(p, "aviary_api_requests_total", "counter",
                        "API requests answered, by method, route template and HTTP status code (route \"unmatched\": no route).");
        for (size_t r = 0; r < MAX_ROUTES; r++) {
                const char *method = "", *name = r == MAX_ROUTES - 1 ? "unmatched" : r < n_routes ? route_name(r, &method) : NULL;
                if (!name)
                        continue;
                for (size_t s = 0; s < N_STATUS; s++) {
                        if (!T.api_requests[r][s])
                                continue;
                        if (s < ELEMENTSOF(api_statuses))
                                snprintf(code, sizeof code, "%u", api_statuses[s]);
                        else
                                snprintf(code, sizeof code, "other");
                        promtext_sample_u64(p, "aviary_api_requests_total",
                                            (const char *const[]) { "method", method, "route", name, "code", code, NULL },
                                            T.api_requests[r][s]);
                }
        }
        promtext_family(p, "aviary_api_request_duration_seconds", "histogram",
                        "API request latency, from its head in to its answer queued, by method and route template.");
        for (size_t r = 0; r < MAX_ROUTES; r++) {
                const char *method = "", *name = r == MAX_ROUTES - 1 ? "unmatched" : r < n_routes ? route_name(r, &method) : NULL;
                if (name && histogram_count(&T.api_latency[r]) > 0)
                        histogram_write(p, "aviary_api_request_duration_seconds",
                                        (const char *const[]) { "method", method, "route", name, NULL }, &T.api_latency[r],
                                        telemetry_latency_bounds, telemetry_latency_n);
        }

        promtext_family(p, "aviary_api_connections", "gauge", "API connections open now, every listener's.");
        promtext_sample(p, "aviary_api_connections", NULL, (double) T.api_connections);
        promtext_family(p, "aviary_event_stream_followers", "gauge",
                        "Clients following GET /v1/events as a Server-Sent Events stream now.");
        promtext_sample(p, "aviary_event_stream_followers", NULL, (double) T.followers);
        promtext_family(p, "aviary_event_stream_followers_total", "counter", "Event streams started.");
        promtext_sample_u64(p, "aviary_event_stream_followers_total", NULL, T.followers_total);

        promtext_family(p, "aviary_store_transaction_duration_seconds", "histogram",
                        "SQLite write transactions, BEGIN IMMEDIATE to COMMIT or ROLLBACK.");
        histogram_write(p, "aviary_store_transaction_duration_seconds", NULL, &T.store_tx, telemetry_latency_bounds,
                        telemetry_latency_n);
        promtext_family(p, "aviary_store_transactions_total", "counter",
                        "SQLite write transactions by outcome.");
        promtext_sample_u64(p, "aviary_store_transactions_total", (const char *const[]) { "outcome", "commit", NULL },
                            T.store_tx_total[1]);
        promtext_sample_u64(p, "aviary_store_transactions_total", (const char *const[]) { "outcome", "rollback", NULL },
                            T.store_tx_total[0]);

        promtext_family(p, "aviary_libvirt_call_duration_seconds", "histogram",
                        "libvirt calls on the libvirt worker thread, by call.");
        for (unsigned c = 0; c < _TELEMETRY_LIBVIRT_MAX; c++)
                histogram_write(p, "aviary_libvirt_call_duration_seconds",
                                (const char *const[]) { "call", libvirt_call_names[c], NULL }, &T.libvirt[c],
                                telemetry_latency_bounds, telemetry_latency_n);
        promtext_family(p, "aviary_libvirt_call_failures_total", "counter", "libvirt calls that failed, by call.");
        for (unsigned c = 0; c < _TELEMETRY_LIBVIRT_MAX; c++)
                promtext_sample_u64(p, "aviary_libvirt_call_failures_total",
                                    (const char *const[]) { "call", libvirt_call_names[c], NULL }, T.libvirt_failed[c]);

        promtext_family(p, "aviary_guest_boot_duration_seconds", "histogram",
                        "Guest boots, from the domain start to its first passing readiness probe.");
        histogram_write(p, "aviary_guest_boot_duration_seconds", NULL, &T.boot, telemetry_boot_bounds,
                        telemetry_boot_n);
        promtext_family(p, "aviary_guest_restarts_total", "counter",
                        "Guests booted again after they went away (restart policy) or on request.");
        promtext_sample_u64(p, "aviary_guest_restarts_total", NULL, T.restarts);
        promtext_family(p, "aviary_guest_crash_loops_total", "counter",
                        "Instances marked crash-loop (failed too often in a row; not restarted again).");
        promtext_sample_u64(p, "aviary_guest_crash_loops_total", NULL, T.crash_loops);

        promtext_family(p, "aviary_controller_pass_duration_seconds", "histogram",
                        "Controller passes, by scope: \"all\" services (the periodic pass, and any change "
                        "but an API change), or the services an API change named (\"changed\").");
        for (int all = 1; all >= 0; all--)
                histogram_write(p, "aviary_controller_pass_duration_seconds",
                                (const char *const[]) { "scope", all ? "all" : "changed", NULL }, &T.pass[all],
                                telemetry_latency_bounds, telemetry_latency_n);
}

/* ---- the process ---- */

static unsigned open_fds(void) {
        DIR *d = opendir("/proc/self/fd");
        struct dirent *e;
        unsigned n = 0;

        if (!d)
                return 0;
        while ((e = readdir(d)))
                n += e->d_name[0] != '.';
        closedir(d);
        return n > 0 ? n - 1 : 0; /* not the directory's own descriptor */
}

/* Boot time (seconds since the epoch) from /proc/stat's btime. */
static double boot_time(void) {
        FILE *f = fopen("/proc/stat", "re");
        char line[256];
        double t = 0;

        if (!f)
                return 0;
        while (fgets(line, sizeof line, f))
                if (sscanf(line, "btime %lf", &t) == 1)
                        break;
        fclose(f);
        return t;
}

void telemetry_write_process(PromText *p, const char *version) {
        long tick = sysconf(_SC_CLK_TCK), page = sysconf(_SC_PAGESIZE);
        unsigned long long utime = 0, stime = 0, start = 0, vsize = 0;
        long long rss = 0;
        struct rlimit rl = {};
        char buf[1024];
        FILE *f;

        f = fopen("/proc/self/stat", "re");
        if (f) {
                size_t n = fread(buf, 1, sizeof buf - 1, f);
                buf[n] = 0;
                fclose(f);
                /* Fields after the command name, which may hold spaces: from the last ')'. */
                char *s = strrchr(buf, ')');
                if (s)
                        (void) sscanf(s + 2,
                                      "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %*d %*d %*d %*d %*d %*d "
                                      "%llu %llu %lld",
                                      &utime, &stime, &start, &vsize, &rss);
        }
        (void) getrlimit(RLIMIT_NOFILE, &rl);
        if (tick <= 0)
                tick = 100;

        promtext_family(p, "process_open_fds", "gauge", "Number of open file descriptors.");
        promtext_sample_u64(p, "process_open_fds", NULL, open_fds());
        promtext_family(p, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
        promtext_sample_u64(p, "process_max_fds", NULL, (uint64_t) rl.rlim_cur);
        promtext_family(p, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
        promtext_sample_u64(p, "process_resident_memory_bytes", NULL, (uint64_t) rss * (uint64_t) page);
        promtext_family(p, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
        promtext_sample_u64(p, "process_virtual_memory_bytes", NULL, vsize);
        promtext_family(p, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
        promtext_sample(p, "process_cpu_seconds_total", NULL, (double) (utime + stime) / (double) tick);
        promtext_family(p, "process_start_time_seconds", "gauge",
                        "Start time of the process since unix epoch in seconds.");
        promtext_sample(p, "process_start_time_seconds", NULL, boot_time() + (double) start / (double) tick);
        promtext_family(p, "aviary_build_info", "gauge", "Always 1; the labels say which aviaryd this is.");
        promtext_sample(p, "aviary_build_info", (const char *const[]) { "version", version, NULL }, 1);
}

void telemetry_reset(void) {
        memset(&T, 0, sizeof T);
}
