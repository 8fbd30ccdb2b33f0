/* Logging backend. Under systemd (JOURNAL_STREAM names our stderr) records go to the
 * journal with CODE_FILE/CODE_LINE fields; otherwise to stderr with a timestamp. */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <systemd/sd-journal.h>
#include <time.h>

#include "log.h"
#include "text.h"

static int max_level = LOG_INFO;
static int use_journal;
/* Any thread logs (the proxy workers, the libvirt worker, libvirt's own threads). */
static atomic_uint errors_logged;

unsigned log_errors_logged(void) {
        return atomic_load_explicit(&errors_logged, memory_order_relaxed);
}

void log_setup(void) {
        const char *e = getenv("JOURNAL_STREAM");
        struct stat st;
        unsigned long long dev, ino;

        if (e && sscanf(e, "%llu:%llu", &dev, &ino) == 2 && fstat(STDERR_FILENO, &st) == 0 &&
            (unsigned long long) st.st_dev == dev && (unsigned long long) st.st_ino == ino)
                use_journal = 1;
        e = getenv("AVIARY_LOG_LEVEL");
        if (e && streq(e, "debug"))
                max_level = LOG_DEBUG;
}

void log_set_max_level(int level) {
        max_level = level;
}

int log_get_max_level(void) {
        return max_level;
}

int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...) {
        static const char *const names[] = { "emerg", "alert", "crit", "error",
                                             "warning", "notice", "info", "debug" };
        char msg[2048], escaped[4096];
        va_list ap;
        int saved = errno;

        if (error < 0)
                error = -error;
        if (level <= LOG_ERR)
                atomic_fetch_add_explicit(&errors_logged, 1, memory_order_relaxed);
        if (level > max_level)
                return -error;

        errno = error;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
        if (error) {
                size_t n = strlen(msg);
                snprintf(msg + n, sizeof msg - n, ": %s", strerror(error));
        }
        text_escape(msg, strlen(msg), escaped, sizeof escaped);

        if (use_journal) {
                sd_journal_send("MESSAGE=%s", escaped, "PRIORITY=%d", level, "CODE_FILE=%s", file,
                                "CODE_LINE=%d", line, "CODE_FUNC=%s", func, "SYSLOG_IDENTIFIER=aviaryd",
                                error ? "ERRNO=%d" : NULL, error, NULL);
        } else {
                struct timespec ts;
                struct tm tm;
                char when[32];

                clock_gettime(CLOCK_REALTIME, &ts);
                gmtime_r(&ts.tv_sec, &tm);
                strftime(when, sizeof when, "%H:%M:%S", &tm);
                fprintf(stderr, "%s.%03ld aviaryd %s: %s\n", when, ts.tv_nsec / 1000000,
                        names[level & 7], escaped);
        }
        errno = saved;
        return -error;
}
