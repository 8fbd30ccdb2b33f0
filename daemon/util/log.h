/* Logging: structured journald records under systemd, plain lines on stderr otherwise.
 * A failure is logged once, where it surfaces. */
#pragma once

#include <syslog.h>

#include "macro.h"

void log_setup(void);
void log_set_max_level(int level);
int log_get_max_level(void);
/* How many error-level lines were logged so far: main() says "aviaryd failed" only when
 * nothing said why already. */
unsigned log_errors_logged(void);
/* Logs and returns -abs(error) when error != 0, so "return log_error_errno(r, ...)" works. */
int log_internal(int level, int error, const char *file, int line, const char *func, const char *fmt, ...)
        _printf_(6, 7);

#define log_full_errno(level, error, ...) log_internal(level, error, __FILE__, __LINE__, __func__, __VA_ARGS__)
#define log_debug(...) log_full_errno(LOG_DEBUG, 0, __VA_ARGS__)
#define log_info(...) log_full_errno(LOG_INFO, 0, __VA_ARGS__)
#define log_notice(...) log_full_errno(LOG_NOTICE, 0, __VA_ARGS__)
#define log_warning(...) log_full_errno(LOG_WARNING, 0, __VA_ARGS__)
#define log_error(...) log_full_errno(LOG_ERR, 0, __VA_ARGS__)
#define log_warning_errno(e, ...) log_full_errno(LOG_WARNING, e, __VA_ARGS__)
#define log_error_errno(e, ...) log_full_errno(LOG_ERR, e, __VA_ARGS__)
#define log_oom() log_full_errno(LOG_ERR, -ENOMEM, "Out of memory.")
