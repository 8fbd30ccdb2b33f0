/* What a stopped aviaryd left unfinished in its embedded driver's root: domain starts and
 * capability probes (virt-internal.h: virt_embed_clear_cut_starts, virt_embed_clear_probes). */
#include <dirent.h>
#include <errno.h>
#include <libxml/parser.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "macro.h"
#include "virt-internal.h"
#include "virt-reaper.h"

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDocPtr, xmlFreeDoc)
DEFINE_TRIVIAL_CLEANUP_FUNC(DIR *, closedir)

static xmlNodePtr child_element(xmlNodePtr parent, const char *name) {
        for (xmlNodePtr n = parent ? parent->children : NULL; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && streq((const char *) n->name, name))
                        return n;
        return NULL;
}

static bool attr_is(xmlNodePtr n, const char *name, const char *value) {
        xmlChar *v = n ? xmlGetProp(n, (const xmlChar *) name) : NULL;
        bool is = v && streq((const char *) v, value);

        xmlFree(v);
        return is;
}

/* Whether STATUS (libvirt's <domstatus>) is a start that never finished: libvirt's "start"
 * job still held, or the guest still paused "starting up" (aviaryd never starts one paused).
 * *PID is QEMU's, 0 when none was spawned yet. */
static bool start_unfinished(const char *path, pid_t *pid) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = xmlReadFile(path, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR |
                                                                         XML_PARSE_NOWARNING | XML_PARSE_HUGE);
        xmlNodePtr root = doc ? xmlDocGetRootElement(doc) : NULL;
        xmlChar *p;

        *pid = 0;
        if (!root || !streq((const char *) root->name, "domstatus"))
                return false;
        p = xmlGetProp(root, (const xmlChar *) "pid");
        if (p) {
                long v = strtol((const char *) p, NULL, 10);
                *pid = v > 0 && v < INT32_MAX ? (pid_t) v : 0;
                xmlFree(p);
        }
        return attr_is(child_element(root, "job"), "async", "start") ||
               (attr_is(root, "state", "paused") && attr_is(root, "reason", "starting up"));
}

/* Gone or a zombie (whose reaping is up to its new parent, PID 1 or a subreaper). */
static bool process_ended(pid_t pid) {
        char comm[64], state = virt_process_state(pid, comm);

        return state == 0 || state == 'Z' || state == 'X';
}

/* Whether PID is a QEMU whose command line contains NEEDLE. */
static bool is_qemu_with(pid_t pid, const char *needle) {
        char path[64], cmd[8192];
        _cleanup_fclose_ FILE *f = NULL;
        size_t n;

        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return false;
        n = fread(cmd, 1, sizeof cmd - 1, f);
        for (size_t i = 0; i < n; i++)
                if (cmd[i] == 0)
                        cmd[i] = ' ';
        cmd[n] = 0;
        return strstr(cmd, "qemu") && strstr(cmd, needle);
}

/* Whether PID is the QEMU of domain NAME: its command line names it ("guest=NAME,"). */
static bool is_qemu_of(pid_t pid, const char *name) {
        char needle[300];

        snprintf(needle, sizeof needle, "guest=%s,", name);
        return is_qemu_with(pid, needle);
}

/* Kills PID and waits, bounded, until it ended: its tap device and memory go when it ends,
 * not when reaped. */
static void kill_and_wait(pid_t pid) {
        (void) kill(pid, SIGKILL);
        for (int i = 0; i < 500 && !process_ended(pid); i++)
                nanosleep(&(struct timespec) {.tv_nsec = 10 * 1000 * 1000}, NULL);
}

int virt_embed_clear_cut_starts(const char *root) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *e;
        int cleared = 0;

        if (asprintf(&dir, "%s/run/qemu", root) < 0)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : log_error_errno(errno, "Cannot read %s", dir);
        while ((e = readdir(d))) {
                char path[4096], name[256];
                size_t len = strlen(e->d_name);
                pid_t pid;

                if (len <= 4 || len - 4 >= sizeof name || !streq(e->d_name + len - 4, ".xml"))
                        continue;
                memcpy(name, e->d_name, len - 4);
                name[len - 4] = 0;
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                if (!start_unfinished(path, &pid))
                        continue;
                if (pid > 0 && is_qemu_of(pid, name))
                        kill_and_wait(pid);
                if (unlink(path) < 0 && errno != ENOENT)
                        return log_error_errno(errno, "Cannot remove %s", path);
                log_notice("Domain %s: its start was cut short when aviaryd last stopped; %s, so its instance "
                           "boots again.", name, pid > 0 ? "its QEMU was killed and libvirt's record removed"
                                                         : "libvirt's record of it was removed");
                cleared++;
        }
        return cleared;
}

int virt_embed_clear_probes(const char *root) {
        _cleanup_free_ char *dir = NULL;
        _cleanup_(closedirp) DIR *d = NULL;
        struct dirent *e;
        int cleared = 0;

        if (asprintf(&dir, "%s/lib/qemu", root) < 0)
                return -ENOMEM;
        d = opendir(dir);
        if (!d)
                return errno == ENOENT ? 0 : log_error_errno(errno, "Cannot read %s", dir);
        while ((e = readdir(d))) {
                char probe[4096], path[4200], text[32] = "";
                _cleanup_fclose_ FILE *f = NULL;
                long pid = 0;

                if (strncmp(e->d_name, "qmp-", 4) != 0)
                        continue;
                snprintf(probe, sizeof probe, "%s/%s", dir, e->d_name);
                snprintf(path, sizeof path, "%s/qmp.pid", probe);
                f = fopen(path, "re");
                if (f && fgets(text, sizeof text, f))
                        pid = strtol(text, NULL, 10);
                /* Its -pidfile names the probe's directory: never another process. */
                if (pid > 0 && pid < INT32_MAX && is_qemu_with((pid_t) pid, probe))
                        kill_and_wait((pid_t) pid);
                else
                        pid = 0;
                snprintf(path, sizeof path, "%s/qmp.pid", probe);
                (void) unlink(path);
                snprintf(path, sizeof path, "%s/qmp.monitor", probe);
                (void) unlink(path);
                if (rmdir(probe) < 0 && errno != ENOENT)
                        log_warning_errno(errno, "Cannot remove %s", probe);
                log_notice("libvirt's QEMU capability probe %s was cut short when aviaryd last stopped; %s.",
                           e->d_name, pid > 0 ? "its QEMU was killed" : "its directory was removed");
                cleared++;
        }
        return cleared;
}
