/* Domain starts a stopped aviaryd left unfinished in its embedded driver's root
 * (virt-internal.h: virt_embed_clear_cut_starts). */
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

/* Whether PID is the QEMU of domain NAME: its command line names it ("guest=NAME,"). */
static bool is_qemu_of(pid_t pid, const char *name) {
        char path[64], cmd[8192], needle[300];
        _cleanup_fclose_ FILE *f = NULL;
        size_t n;

        snprintf(path, sizeof path, "/proc/%d/cmdline", (int) pid);
        snprintf(needle, sizeof needle, "guest=%s,", name);
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

/* Gone or a zombie (whose reaping is up to its new parent, PID 1 or a subreaper). */
static bool process_ended(pid_t pid) {
        char comm[64], state = virt_process_state(pid, comm);

        return state == 0 || state == 'Z' || state == 'X';
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
                if (pid > 0 && is_qemu_of(pid, name)) {
                        (void) kill(pid, SIGKILL);
                        /* Bounded: its tap device and memory go when it ends, not when reaped. */
                        for (int i = 0; i < 500 && !process_ended(pid); i++)
                                nanosleep(&(struct timespec) {.tv_nsec = 10 * 1000 * 1000}, NULL);
                }
                if (unlink(path) < 0 && errno != ENOENT)
                        return log_error_errno(errno, "Cannot remove %s", path);
                log_notice("Domain %s: its start was cut short when aviaryd last stopped; %s, so its instance "
                           "boots again.", name, pid > 0 ? "its QEMU was killed and libvirt's record removed"
                                                         : "libvirt's record of it was removed");
                cleared++;
        }
        return cleared;
}
