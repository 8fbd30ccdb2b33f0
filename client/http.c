/* The CLI's HTTP client: one libcurl handle (kept alive between requests) aimed at the
 * daemon's unix socket or a TCP URL; JSON in and out, streamed uploads with progress,
 * and every transport or API failure reported once, here. */
#include <ctype.h>
#include <curl/curl.h>
#include <grp.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <unistd.h>

#include "random.h"
#include "config.h"
#include "errors.h"
#include "http.h"
#include "output.h"

#define HTTP_ATTEMPTS 3
#define HTTP_MAX_REPLY (64u << 20)

struct HttpClient {
        CURL *curl;
        char *socket_path; /* NULL for TCP */
        char *base_url;    /* "http://localhost" over the socket, else the URL without a trailing '/' */
        char *auth_header; /* "Authorization: Bearer ...", or NULL */
        long timeout_ms;   /* per attempt; 0: none */
};

typedef struct Buffer {
        char *data;
        size_t size;
} Buffer;

typedef struct Progress {
        const char *label;
        int percent; /* last shown, -1 before the first */
} Progress;

DEFINE_TRIVIAL_CLEANUP_FUNC(struct curl_slist *, curl_slist_free_all);
DEFINE_TRIVIAL_CLEANUP_FUNC(char *, curl_free);

static void buffer_done(Buffer *b) {
        free(b->data);
        *b = (Buffer){};
}

int http_client_new(const char *socket_path, const char *url, const char *token, HttpClient **ret) {
        HttpClient *c = calloc(1, sizeof(*c));
        if (!c)
                return -ENOMEM;
        c->curl = curl_easy_init();
        if (socket_path) {
                c->socket_path = strdup(socket_path);
                c->base_url = strdup("http://localhost");
        } else {
                c->base_url = strndup(url, strlen(url) - (url[0] && url[strlen(url) - 1] == '/'));
        }
        if (token && asprintf(&c->auth_header, "Authorization: Bearer %s", token) < 0)
                c->auth_header = NULL;
        if (!c->curl || !c->base_url || (socket_path && !c->socket_path) || (token && !c->auth_header)) {
                http_client_free(c);
                return -ENOMEM;
        }
        *ret = c;
        return 0;
}

void http_client_set_timeout(HttpClient *c, long timeout_ms) {
        c->timeout_ms = timeout_ms;
}

HttpClient *http_client_free(HttpClient *c) {
        if (!c)
                return NULL;
        if (c->curl)
                curl_easy_cleanup(c->curl);
        free(c->socket_path);
        free(c->base_url);
        free(c->auth_header);
        free(c);
        return NULL;
}

void http_reply_done(HttpReply *r) {
        json_decref(r->body);
        free(r->etag);
        free(r->text);
        *r = (HttpReply){};
}

/* A user's or group's name for messages, else its number (in a static buffer each). */
static const char *user_name(uid_t uid) {
        static char number[16];
        struct passwd *pw = getpwuid(uid);
        if (pw)
                return pw->pw_name;
        snprintf(number, sizeof(number), "%u", (unsigned) uid);
        return number;
}

static const char *group_name(gid_t gid) {
        static char number[16];
        struct group *gr = getgrgid(gid);
        if (gr)
                return gr->gr_name;
        snprintf(number, sizeof(number), "%u", (unsigned) gid);
        return number;
}

/* Where requests go, for messages: the socket path or the URL. */
static const char *http_where(const HttpClient *c) {
        return c->socket_path ?: c->base_url;
}

static size_t collect_body(char *data, size_t size, size_t count, void *userdata) {
        Buffer *b = userdata;
        size_t n = size * count;
        if (b->size + n > HTTP_MAX_REPLY)
                return 0; /* aborts the transfer */
        char *p = realloc(b->data, b->size + n + 1);
        if (!p)
                return 0;
        memcpy(p + b->size, data, n);
        b->data = p;
        b->size += n;
        b->data[b->size] = '\0';
        return n;
}

/* Keeps the ETag of the final response (a "100 Continue" comes first on uploads). */
static size_t collect_header(char *data, size_t size, size_t count, void *userdata) {
        char **etag = userdata;
        size_t n = size * count;
        static const char name[] = "etag:";

        if (n >= 5 && strncmp(data, "HTTP/", 5) == 0) {
                free(*etag);
                *etag = NULL;
        } else if (n > strlen(name) && strncasecmp(data, name, strlen(name)) == 0) {
                const char *v = data + strlen(name);
                size_t len = n - strlen(name);
                while (len > 0 && isspace((unsigned char) *v))
                        v++, len--;
                while (len > 0 && isspace((unsigned char) v[len - 1]))
                        len--;
                free(*etag);
                *etag = strndup(v, len);
        }
        return n;
}

static void format_size(uint64_t bytes, char out[static 32]) {
        static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
        double value = (double) bytes;
        size_t unit = 0;
        while (value >= 1024 && unit + 1 < ELEMENTSOF(units))
                value /= 1024, unit++;
        snprintf(out, 32, unit == 0 ? "%.0f %s" : "%.1f %s", value, units[unit]);
}

static void progress_show(Progress *p, uint64_t now, uint64_t total) {
        int percent = total > 0 ? (int) (now * 100 / total) : 100;
        if (percent == p->percent)
                return;
        char done[32], all[32];
        format_size(now, done);
        format_size(total, all);
        fprintf(stderr, "\r%s: %3d%%  %s / %s   ", p->label, percent, done, all);
        p->percent = percent;
}

static int on_progress(void *userdata, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal,
                       curl_off_t ulnow) {
        if (ultotal > 0)
                progress_show(userdata, (uint64_t) ulnow, (uint64_t) ultotal);
        return 0;
}

static int seek_upload(void *userdata, curl_off_t offset, int origin) {
        return fseeko(userdata, offset, origin) == 0 ? CURL_SEEKFUNC_OK : CURL_SEEKFUNC_FAIL;
}

/* 128 random bits as hex: a new key per logical POST, reused by its retries. */
static int idempotency_header(char out[static 64]) {
        int n = snprintf(out, 64, "Idempotency-Key: ");
        return random_hex(out + n, 16);
}

static int build_headers(const HttpClient *c, const HttpRequest *req, bool json_body,
                         struct curl_slist **ret) {
        _cleanup_(curl_slist_free_allp) struct curl_slist *list = NULL;
        _cleanup_free_ char *if_match = NULL;
        char key[64];
        /* Errors are JSON even where success is text. */
        const char *lines[6] = {req->text ? "Accept: text/plain, application/json"
                                          : "Accept: application/json"};
        size_t n = 1;

        if (c->auth_header)
                lines[n++] = c->auth_header;
        if (json_body)
                lines[n++] = "Content-Type: application/json";
        if (req->upload)
                lines[n++] = "Content-Type: application/octet-stream";
        if (streq(req->method, "POST")) {
                int r = idempotency_header(key);
                if (r < 0)
                        return r;
                lines[n++] = key;
        }
        if (req->if_match) {
                if (asprintf(&if_match, "If-Match: %s", req->if_match) < 0)
                        return -ENOMEM;
                lines[n++] = if_match;
        }
        for (size_t i = 0; i < n; i++) {
                struct curl_slist *l = curl_slist_append(list, lines[i]);
                if (!l)
                        return -ENOMEM;
                list = l;
        }
        *ret = TAKE_PTR(list);
        return 0;
}

/* Sets the method and body options for one attempt; json_text may be NULL. */
static void set_method(CURL *curl, const HttpRequest *req, const char *json_text) {
        if (streq(req->method, "HEAD")) {
                curl_easy_setopt(curl, CURLOPT_NOBODY, 1L);
        } else if (req->upload) {
                curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
                curl_easy_setopt(curl, CURLOPT_READDATA, req->upload);
                curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, seek_upload);
                curl_easy_setopt(curl, CURLOPT_SEEKDATA, req->upload);
                curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, (curl_off_t) req->upload_size);
        } else if (json_text || streq(req->method, "POST")) {
                curl_easy_setopt(curl, CURLOPT_POSTFIELDS, json_text ?: "");
                curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE,
                                 (curl_off_t) (json_text ? strlen(json_text) : 0));
        }
        if (!streq(req->method, "HEAD") && !streq(req->method, "GET"))
                curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, req->method);
}

/* Why the unix socket at PATH refused us (EACCES, EPERM), and what to do about it: who owns it,
 * its group and mode, or the directory on the way that we may not enter. */
static void report_socket_denied(const char *path, int error) {
        _cleanup_free_ char *dir = strdup(path);
        struct stat st;

        if (stat(path, &st) < 0) {
                /* A directory on the way is closed to us: find the first one. */
                for (char *slash = dir ? strchr(dir + 1, '/') : NULL; slash; slash = strchr(slash + 1, '/')) {
                        *slash = '\0';
                        if (access(dir, X_OK) < 0 && stat(dir, &st) == 0) {
                                output_error("cannot connect to %s: %s — directory %s (%s:%s, mode %04o) does not "
                                             "let you (uid %u) in: ask its owner for access, or use sudo",
                                             path, strerror(error), dir, user_name(st.st_uid), group_name(st.st_gid),
                                             (unsigned) (st.st_mode & 07777), (unsigned) getuid());
                                return;
                        }
                        *slash = '/';
                }
                output_error("cannot connect to %s: %s — use sudo, or ask the administrator for access", path,
                             strerror(error));
                return;
        }
        const char *owner = user_name(st.st_uid), *group = group_name(st.st_gid);
        unsigned mode = (unsigned) (st.st_mode & 07777);
        if (st.st_gid != 0 && (mode & 0020))
                output_error("cannot connect to %s: %s — the socket is %s:%s, mode %04o, so only %s and the group "
                             "%s may use it: add yourself to group %s (sudo usermod -aG %s \"$USER\", then log in "
                             "again), or use sudo",
                             path, strerror(error), owner, group, mode, owner, group, group, group);
        else
                output_error("cannot connect to %s: %s — the socket is %s:%s, mode %04o, so only %s may use it: use "
                             "sudo, or have aviaryd give it a group of yours (socket_group in aviaryd.conf)",
                             path, strerror(error), owner, group, mode, owner);
}

static int report_transport_error(const HttpClient *c, CURLcode code, const char *detail) {
        long os_errno = 0;
        curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);

        switch (code) {
        case CURLE_COULDNT_CONNECT:
                if (os_errno == 0)
                        os_errno = ECONNREFUSED;
                if (c->socket_path && (os_errno == EACCES || os_errno == EPERM)) {
                        report_socket_denied(c->socket_path, (int) os_errno);
                        return (int) -os_errno;
                }
                output_error("cannot connect to %s: %s%s", http_where(c), strerror((int) os_errno),
                             os_errno == ENOENT || os_errno == ECONNREFUSED ? " — is aviaryd running?" : "");
                return (int) -os_errno;
        case CURLE_COULDNT_RESOLVE_HOST:
                output_error("cannot resolve the host of %s: %s", http_where(c), detail);
                return -EHOSTUNREACH;
        case CURLE_OPERATION_TIMEDOUT:
                output_error("timed out talking to %s: %s", http_where(c), detail);
                return -ETIMEDOUT;
        case CURLE_READ_ERROR:
                output_error("cannot read the file being uploaded: %s", detail);
                return -EIO;
        default:
                output_error("request to %s failed: %s", http_where(c), detail);
                return -EPROTO;
        }
}

/* Failures after the request may have left but before an answer came: worth another try,
 * because POSTs carry an Idempotency-Key and the other methods are idempotent. */
static bool is_transient(CURLcode code) {
        return code == CURLE_SEND_ERROR || code == CURLE_RECV_ERROR || code == CURLE_GOT_NOTHING;
}

/* One attempt. On success fills status, raw body and ETag. */
static CURLcode perform(HttpClient *c, const HttpRequest *req, const char *url, const char *json_text,
                        struct curl_slist *headers, Buffer *body, HttpReply *reply, char *errbuf) {
        Progress progress = {.label = req->progress, .percent = -1};
        CURL *curl = c->curl;

        curl_easy_reset(curl);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        if (c->socket_path) {
                curl_easy_setopt(curl, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
                curl_easy_setopt(curl, CURLOPT_NOPROXY, "*"); /* an http_proxy must not catch local calls */
        }
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(curl, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, 10L);
        if (c->timeout_ms > 0)
                curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, c->timeout_ms);
        curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(curl, CURLOPT_USERAGENT, "aviary/" AVIARY_VERSION);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, collect_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, body);
        curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, collect_header);
        curl_easy_setopt(curl, CURLOPT_HEADERDATA, &reply->etag);
        if (req->progress && isatty(STDERR_FILENO)) {
                curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
                curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
                curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &progress);
        }
        set_method(curl, req, json_text);

        errbuf[0] = '\0';
        CURLcode code = curl_easy_perform(curl);
        if (progress.percent >= 0) {
                if (code == CURLE_OK)
                        progress_show(&progress, req->upload_size, req->upload_size);
                fputc('\n', stderr);
        }
        if (code == CURLE_OK)
                curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &reply->status);
        return code;
}

typedef struct StreamSink {
        CURL *curl;
        int (*on_data)(const char *data, size_t size, void *userdata);
        void *userdata;
        int checked; /* 0 not yet, 1 a 200 event stream, -1 not one (the body is dropped) */
} StreamSink;

static size_t stream_body(char *data, size_t size, size_t n, void *userdata) {
        StreamSink *s = userdata;

        if (s->checked == 0) {
                long status = 0;
                const char *type = NULL;
                curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
                curl_easy_getinfo(s->curl, CURLINFO_CONTENT_TYPE, &type);
                s->checked = status == 200 && type && strncmp(type, "text/event-stream", 17) == 0 ? 1 : -1;
        }
        if (s->checked < 0)
                return size * n;
        return s->on_data(data, size * n, s->userdata) == 0 ? size * n : 0;
}

int http_stream(HttpClient *c, const char *path, const char *last_event_id,
                int (*on_data)(const char *data, size_t size, void *userdata), void *userdata) {
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_free_ char *url = NULL, *last = NULL;
        StreamSink sink = { .curl = c->curl, .on_data = on_data, .userdata = userdata };
        char errbuf[CURL_ERROR_SIZE] = "";
        CURLcode code;

        if (asprintf(&url, "%s%s", c->base_url, path) < 0)
                return -ENOMEM;
        headers = curl_slist_append(NULL, "Accept: text/event-stream");
        if (headers && c->auth_header)
                headers = curl_slist_append(headers, c->auth_header) ? headers : NULL;
        if (headers && last_event_id) {
                if (asprintf(&last, "Last-Event-ID: %s", last_event_id) < 0)
                        return -ENOMEM;
                if (!curl_slist_append(headers, last))
                        return -ENOMEM;
        }
        if (!headers)
                return -ENOMEM;
        curl_easy_reset(c->curl);
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        if (c->socket_path) {
                curl_easy_setopt(c->curl, CURLOPT_UNIX_SOCKET_PATH, c->socket_path);
                curl_easy_setopt(c->curl, CURLOPT_NOPROXY, "*");
        }
        curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(c->curl, CURLOPT_PATH_AS_IS, 1L);
        curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, 10L);
        curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "aviary/" AVIARY_VERSION);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, stream_body);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &sink);
        code = curl_easy_perform(c->curl);
        if (sink.checked < 0)
                return 1;
        if (code == CURLE_WRITE_ERROR && sink.checked > 0)
                return -ECANCELED; /* ON_DATA stopped it */
        if (code != CURLE_OK)
                return report_transport_error(c, code, errbuf[0] ? errbuf : curl_easy_strerror(code));
        return sink.checked > 0 ? 0 : 1;
}

int http_request(HttpClient *c, const HttpRequest *req, HttpReply *ret) {
        _cleanup_(curl_slist_free_allp) struct curl_slist *headers = NULL;
        _cleanup_free_ char *json_text = NULL, *url = NULL;
        _cleanup_(http_reply_done) HttpReply reply = {};
        _cleanup_(buffer_done) Buffer body = {};
        char errbuf[CURL_ERROR_SIZE];
        CURLcode code;
        int r;

        if (req->body && !(json_text = json_dumps(req->body, JSON_COMPACT | HTTP_JSON_REAL_PRECISION)))
                return -ENOMEM;
        if (asprintf(&url, "%s%s", c->base_url, req->path) < 0)
                return -ENOMEM;
        r = build_headers(c, req, json_text != NULL, &headers);
        if (r < 0)
                return r;

        for (unsigned attempt = 1;; attempt++) {
                buffer_done(&body);
                http_reply_done(&reply);
                if (req->upload && fseeko(req->upload, 0, SEEK_SET) < 0)
                        return negative_errno();
                code = perform(c, req, url, json_text, headers, &body, &reply, errbuf);
                if (code == CURLE_OK || !is_transient(code) || attempt == HTTP_ATTEMPTS)
                        break;
                usleep(200000 * attempt);
        }
        if (code != CURLE_OK)
                return report_transport_error(c, code, errbuf[0] ? errbuf : curl_easy_strerror(code));

        if (req->text && reply.status >= 200 && reply.status < 300) {
                reply.text = body.data ? TAKE_PTR(body.data) : strdup("");
                reply.text_size = body.size;
                if (!reply.text)
                        return -ENOMEM;
        } else if (body.size > 0) {
                json_error_t error;
                reply.body = json_loadb(body.data, body.size, 0, &error);
                /* An error page that is not JSON is still an answer; a 2xx must be JSON. */
                if (!reply.body && reply.status >= 200 && reply.status < 300) {
                        output_error("the reply from %s is not JSON: %s", http_where(c), error.text);
                        return -EBADMSG;
                }
        }
        *ret = reply;
        reply = (HttpReply){};
        return 0;
}

/* The generic error of a status, for replies that carry no error body. */
static AviaryError error_from_status(long status) {
        for (unsigned e = 1; e < _AVIARY_E_MAX; e++)
                if (aviary_error_status(e) == status)
                        return e;
        return AVIARY_E_INTERNAL;
}

int http_reply_check(const HttpReply *r) {
        if (r->status >= 200 && r->status < 300)
                return AVIARY_E_OK;

        json_t *error = json_object_get(r->body, "error");
        const char *code = json_string_value(json_object_get(error, "code"));
        const char *message = json_string_value(json_object_get(error, "message"));
        if (!code) {
                AviaryError e = error_from_status(r->status);
                output_error("the server answered HTTP %ld (%s)", r->status, aviary_error_code(e));
                return e;
        }
        output_error("%s (%s)", message ?: code, code);
        AviaryError e = aviary_error_from_code(code);
        return e == AVIARY_E_OK ? AVIARY_E_INTERNAL : e;
}

int http_exchange(HttpClient *c, const HttpRequest *req, HttpReply *ret) {
        _cleanup_(http_reply_done) HttpReply reply = {};

        int r = http_request(c, req, &reply);
        if (r < 0)
                return r;
        r = http_reply_check(&reply);
        if (r != 0)
                return r;
        *ret = reply;
        reply = (HttpReply){};
        return 0;
}

int http_call(HttpClient *c, const char *method, const char *path, json_t *body, json_t **ret_body) {
        _cleanup_(http_reply_done) HttpReply reply = {};
        HttpRequest req = {.method = method, .path = path, .body = body};

        int r = http_exchange(c, &req, &reply);
        if (r != 0)
                return r;
        if (ret_body)
                *ret_body = TAKE_PTR(reply.body);
        return 0;
}

int http_page_next(json_t *page, char **ret) {
        json_t *next = json_object_get(page, "next");
        char *text = NULL;

        if (json_is_string(next)) {
                text = strdup(json_string_value(next));
        } else if (json_is_integer(next)) {
                if (asprintf(&text, "%" JSON_INTEGER_FORMAT, json_integer_value(next)) < 0)
                        text = NULL;
        } else {
                *ret = NULL;
                return 0;
        }
        if (!text)
                return -ENOMEM;
        *ret = text;
        return 0;
}

int http_get_page(HttpClient *c, const char *path, const char *after, unsigned limit, json_t **ret) {
        _cleanup_free_ char *query = strdup(path);
        json_auto_t *page = NULL;
        char number[16];
        int r;

        if (!query)
                return -ENOMEM;
        if (after && (r = http_path_query(&query, "after", after)) < 0)
                return r;
        snprintf(number, sizeof(number), "%u", limit);
        if (limit > 0 && (r = http_path_query(&query, "limit", number)) < 0)
                return r;
        r = http_call(c, "GET", query, NULL, &page);
        if (r != 0)
                return r;
        if (!json_is_array(json_object_get(page, "items"))) {
                output_error("the reply to GET %s has no \"items\" list", query);
                return -EBADMSG;
        }
        *ret = TAKE_PTR(page);
        return 0;
}

int http_get_all(HttpClient *c, const char *path, const char *after, unsigned max_items, json_t **ret) {
        json_auto_t *all = json_pack("{s:[],s:n}", "items", "next");
        _cleanup_free_ char *cursor = after ? strdup(after) : NULL;
        json_t *items = json_object_get(all, "items");

        if (!all || (after && !cursor))
                return -ENOMEM;
        do {
                json_auto_t *page = NULL;
                _cleanup_free_ char *next = NULL;
                size_t left = max_items - json_array_size(items);
                unsigned page_limit = max_items == 0 ? 0 : (unsigned) (left < 1000 ? left : 1000);
                int r = http_get_page(c, path, cursor, page_limit, &page);
                if (r != 0)
                        return r;
                if (json_array_extend(items, json_object_get(page, "items")) < 0)
                        return -ENOMEM;
                r = http_page_next(page, &next);
                if (r < 0)
                        return r;
                if (next && cursor && streq(next, cursor)) {
                        output_error("the server repeated the cursor %s of GET %s", next, path);
                        return -EBADMSG;
                }
                free(cursor);
                cursor = TAKE_PTR(next);
        } while (cursor && (max_items == 0 || json_array_size(items) < max_items));

        while (max_items > 0 && json_array_size(items) > max_items)
                json_array_remove(items, json_array_size(items) - 1);
        /* Where a capped listing stopped, so a script can go on from there. */
        if (cursor && json_object_set_new(all, "next", json_string(cursor)) < 0)
                return -ENOMEM;
        *ret = TAKE_PTR(all);
        return 0;
}

/* Keeps RFC 3986 unreserved characters and ':' '@' (legal in a segment, and common in
 * "sha256:..." references); escapes the rest, and the dots of "." and "..". */
static int escape_segment(const char *s, FILE *out) {
        bool dots = streq(s, ".") || streq(s, "..");
        if (!*s)
                return -EINVAL;
        for (const unsigned char *p = (const unsigned char *) s; *p; p++) {
                if ((isalnum(*p) || strchr("-_~:@", *p) || (*p == '.' && !dots)) && *p < 0x80)
                        fputc(*p, out);
                else
                        fprintf(out, "%%%02X", *p);
        }
        return 0;
}

int http_path(char **ret, const char *segment, ...) {
        _cleanup_free_ char *text = NULL;
        size_t size = 0;
        int r = 0;
        va_list ap;

        FILE *out = open_memstream(&text, &size);
        if (!out)
                return -ENOMEM;
        va_start(ap, segment);
        for (const char *s = segment; s && r == 0; s = va_arg(ap, const char *)) {
                fputc('/', out);
                r = escape_segment(s, out);
        }
        va_end(ap);
        if (fclose(out) != 0)
                return -ENOMEM;
        if (r < 0) {
                output_error("a name in a request path cannot be empty");
                return r;
        }
        *ret = TAKE_PTR(text);
        return 0;
}

int http_path_query(char **path, const char *key, const char *value) {
        _cleanup_(curl_freep) char *escaped = curl_easy_escape(NULL, value, 0);
        char *joined;

        if (!escaped ||
            asprintf(&joined, "%s%c%s=%s", *path, strchr(*path, '?') ? '&' : '?', key, escaped) < 0)
                return -ENOMEM;
        free(*path);
        *path = joined;
        return 0;
}
