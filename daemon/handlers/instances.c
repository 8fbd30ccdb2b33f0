/* /v1/instances: the guests of services, their state and boot timings; restart and the
 * serial console. Handlers read SQLite and ask the controller to act; they never touch
 * libvirt. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "controller.h"
#include "handlers.h"
#include "settings.h"
#include "blobfiles.h"

#define CONSOLE_TAIL_MAX 10000
#define CONSOLE_READ_MAX (1024 * 1024)

static json_t *instance_to_json(Request *r, const InstanceRecord *in) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        _cleanup_(version_record_done) VersionRecord v = {};
        char version[320] = "";
        json_t *boot_ms = json_null(), *deadline = json_null(), *j;

        store_service_get_by_id(r->ctx->store, in->service_id, &sv);
        if (streq(in->state, "booting") && in->running_at) {
                uint64_t ms = sv.boot_timeout_ms > 0 ? (uint64_t) sv.boot_timeout_ms : r->ctx->settings->boot_timeout_ms;
                deadline = json_time(in->running_at + ms * USEC_PER_MSEC);
        }
        if (store_version_get_by_id(r->ctx->store, in->version_id, &v) == 0)
                snprintf(version, sizeof version, "%s:%s", v.image, v.tag);
        if (in->ready_at && in->running_at && in->ready_at >= in->running_at)
                boot_ms = json_integer((json_int_t) ((in->ready_at - in->running_at) / USEC_PER_MSEC));
        j = json_pack("{s:s, s:s?, s:s, s:s, s:s?, s:s, s:s?, s:o, s:I, s:s?, s:{s:o, s:o, s:o, s:o, s:o, s:o}}",
                         "id", in->id, "service", sv.name, "version", version, "state", in->state, "ip",
                         in->ip[0] ? in->ip : NULL, "mac", in->mac, "domain_uuid",
                         in->domain_uuid[0] ? in->domain_uuid : NULL, "qemu_pid",
                         in->qemu_pid ? json_integer(in->qemu_pid) : json_null(), "restarts",
                         (json_int_t) in->restarts, "stop_reason", in->stop_reason, "timings", "created_at",
                         json_time(in->created_at), "running_at", json_time(in->running_at), "ready_at",
                         json_time(in->ready_at), "stopped_at", json_time(in->stopped_at), "next_start_at",
                         json_time(in->next_start_at), "boot_ms", boot_ms);
        if (j) {
                /* How QEMU runs it (null before its first boot), and when a booting guest must be healthy. */
                json_object_set_new(j, "accel", in->accel[0] ? json_string(in->accel) : json_null());
                json_object_set_new(json_object_get(j, "timings"), "boot_deadline", deadline);
        } else
                json_decref(deadline);
        return j;
}

static int instance_list_one(const InstanceRecord *in, void *userdata) {
        Request *r = ((void **) userdata)[0];
        return json_array_append_new(((void **) userdata)[1], instance_to_json(r, in)) < 0 ? -ENOMEM : 0;
}

int instance_list(Request *r) {
        _cleanup_(service_record_done) ServiceRecord sv = {};
        const char *after, *service = request_query(r, "service");
        json_t *items = json_array();
        void *ctx[2] = { r, items };
        unsigned limit;
        int k;

        k = request_page(r, &limit, &after);
        if (k == 0 && service) {
                if (!name_is_valid(service))
                        k = reply_error(r, AVIARY_E_INVALID_QUERY, "service must be a service name");
                else if ((k = store_service_get(r->ctx->store, service, &sv)) == AVIARY_E_SERVICE_NOT_FOUND)
                        k = reply_error(r, k, "service '%s' not found", service);
        }
        if (k == 0)
                k = store_instance_list(r->ctx->store, service ? sv.id : 0, after, limit, instance_list_one, ctx);
        return reply_page(r, k, items, limit, "id");
}

/* Instance ids are "<service>-<hex>": a name with one more dash-separated part. */
static int instance_from_path(Request *r, InstanceRecord *ret) {
        const char *id = request_param(r, 0);
        int k;

        if (!name_is_valid(id))
                return reply_error(r, AVIARY_E_INVALID_NAME, "invalid instance id '%.64s'", id);
        k = store_instance_get(r->ctx->store, id, ret);
        if (k == AVIARY_E_INSTANCE_NOT_FOUND)
                return reply_error(r, k, "instance '%s' not found", id);
        return k;
}

int instance_get(Request *r) {
        _cleanup_(instance_record_done) InstanceRecord in = {};
        int k = instance_from_path(r, &in);

        return k != 0 ? k : reply_json(r, 200, instance_to_json(r, &in));
}

int instance_restart(Request *r) {
        _cleanup_(instance_record_done) InstanceRecord in = {};
        _cleanup_(instance_record_done) InstanceRecord after = {};
        int k = instance_from_path(r, &in);

        if (k != 0)
                return k;
        if (!r->ctx->controller)
                return reply_error(r, AVIARY_E_UNAVAILABLE, "this aviaryd runs without guests (runtime = off)");
        request_set_resource(r, "instance/%s", in.id);
        k = controller_instance_restart(r->ctx->controller, in.id, &r->error);
        if (k != 0)
                return k;
        k = store_instance_get(r->ctx->store, in.id, &after);
        return k != 0 ? (k < 0 ? k : -EIO) : reply_json(r, 202, instance_to_json(r, &after));
}

/* The last N lines of the instance's serial console, as text. */
int instance_console(Request *r) {
        _cleanup_(instance_record_done) InstanceRecord in = {};
        _cleanup_close_ int fd = -1;
        const char *tail = request_query(r, "tail");
        char path[4200], *buf, *end;
        unsigned long lines = 100;
        struct stat st;
        off_t from;
        ssize_t n;
        int k = instance_from_path(r, &in);

        if (k != 0)
                return k;
        if (tail) {
                errno = 0;
                lines = strtoul(tail, &end, 10);
                if (errno || end == tail || *end || lines < 1 || lines > CONSOLE_TAIL_MAX)
                        return reply_error(r, AVIARY_E_INVALID_QUERY, "tail must be a number of lines from 1 to %d",
                                           CONSOLE_TAIL_MAX);
        }
        snprintf(path, sizeof path, "%s/console/%s.log", r->ctx->settings->state_dir, in.id);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || fstat(fd, &st) < 0)
                return reply_text(r, 200, strdup(""));
        from = st.st_size > CONSOLE_READ_MAX ? st.st_size - CONSOLE_READ_MAX : 0;
        buf = malloc(CONSOLE_READ_MAX + 1);
        if (!buf)
                return -ENOMEM;
        n = pread(fd, buf, CONSOLE_READ_MAX, from);
        if (n < 0) {
                free(buf);
                return -errno;
        }
        buf[n] = 0;
        /* Walk back LINES newlines from the end (a final newline ends the last line). */
        end = buf + n;
        if (end > buf && end[-1] == '\n')
                end--;
        while (end > buf && lines > 0) {
                end--;
                if (*end == '\n')
                        lines--;
        }
        if (end < buf + n && *end == '\n')
                end++;
        /* Byte counts, not strings: the guest's output may hold NULs. */
        n = buf + n - end;
        memmove(buf, end, (size_t) n);
        return reply_bytes(r, 200, buf, (size_t) n);
}
