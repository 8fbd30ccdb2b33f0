/* The Prometheus text format writer (util/promtext.c): the exact text for a counter, a gauge
 * with escaped label values and a histogram, and `promtool check metrics` (Debian's prometheus
 * package, a tool we did not write) accepting it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "promtext.h"
#include "tap.h"

int main(void) {
        PromText p = {};
        const char *labels[] = { "service", "web", "code", "2xx", NULL };
        const char *odd[] = { "service", "we\"b\\x\ny", NULL };
        const double bounds[] = { 0.001, 0.01, 0.1 };
        const uint64_t counts[] = { 5, 3, 0, 2 };
        size_t len = 0;
        char *text;

        promtext_family(&p, "aviary_proxy_requests_total", "counter", "Requests the proxy answered.");
        promtext_sample_u64(&p, "aviary_proxy_requests_total", labels, 42);
        promtext_family(&p, "aviary_odd", "gauge", "A label with \\ and\na newline.");
        promtext_sample(&p, "aviary_odd", odd, 1.5);
        promtext_family(&p, "aviary_request_duration_seconds", "histogram", "How long requests took.");
        promtext_histogram(&p, "aviary_request_duration_seconds", labels, bounds, counts, 3, 0.25);
        text = promtext_take(&p, &len);

        const char *want =
                "# HELP aviary_proxy_requests_total Requests the proxy answered.\n"
                "# TYPE aviary_proxy_requests_total counter\n"
                "aviary_proxy_requests_total{service=\"web\",code=\"2xx\"} 42\n"
                "# HELP aviary_odd A label with \\\\ and\\na newline.\n"
                "# TYPE aviary_odd gauge\n"
                "aviary_odd{service=\"we\\\"b\\\\x\\ny\"} 1.5\n"
                "# HELP aviary_request_duration_seconds How long requests took.\n"
                "# TYPE aviary_request_duration_seconds histogram\n"
                "aviary_request_duration_seconds_bucket{service=\"web\",code=\"2xx\",le=\"0.001\"} 5\n"
                "aviary_request_duration_seconds_bucket{service=\"web\",code=\"2xx\",le=\"0.01\"} 8\n"
                "aviary_request_duration_seconds_bucket{service=\"web\",code=\"2xx\",le=\"0.1\"} 8\n"
                "aviary_request_duration_seconds_bucket{service=\"web\",code=\"2xx\",le=\"+Inf\"} 10\n"
                "aviary_request_duration_seconds_sum{service=\"web\",code=\"2xx\"} 0.25\n"
                "aviary_request_duration_seconds_count{service=\"web\",code=\"2xx\"} 10\n";
        is_str(text, want, "the exposition, byte for byte");
        is_int(len, strlen(want), "and its length");

        /* promtool reads it from stdin and says nothing but problems. */
        char path[] = "/tmp/aviary-promtext.XXXXXX";
        int fd = mkstemp(path);
        ok(fd >= 0 && write(fd, text, len) == (ssize_t) len, "written to a file");
        close(fd);
        char cmd[256];
        snprintf(cmd, sizeof cmd, "promtool check metrics < %s 2>&1", path);
        FILE *out = popen(cmd, "r");
        char got[2048] = "";
        size_t n = out ? fread(got, 1, sizeof got - 1, out) : 0;
        got[n] = 0;
        int status = out ? pclose(out) : -1;
        ok(out && WIFEXITED(status) && WEXITSTATUS(status) == 0 && n == 0,
           "promtool check metrics accepts it (exit %d): %s", status, got);
        unlink(path);
        free(text);

        /* A broken exposition is refused by the same check: the check can fail. */
        snprintf(cmd, sizeof cmd, "printf 'no_type_line{a=\"1\"} 1\\nno_type_line 2\\n' | promtool check metrics >/dev/null 2>&1");
        ok(system(cmd) != 0, "promtool refuses an exposition without HELP/TYPE and with a duplicate series");
        return tap_done();
}
