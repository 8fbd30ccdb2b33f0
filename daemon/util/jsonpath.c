/* A JSONPath subset (jsonpath.h). */
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "jsonpath.h"

json_t *jsonpath_get(json_t *root, const char *path, int *ret_error) {
        const char *p = path;
        json_t *node = root;
        int dummy;

        if (!ret_error)
                ret_error = &dummy;
        *ret_error = -EINVAL;
        if (!p || *p != '$')
                return NULL;
        p++;
        while (*p) {
                char key[256];
                size_t n;

                if (*p == '.') {
                        p++;
                        n = strcspn(p, ".[");
                        if (n == 0 || n >= sizeof key)
                                return NULL;
                        memcpy(key, p, n);
                        key[n] = 0;
                        p += n;
                        node = json_is_object(node) ? json_object_get(node, key) : NULL;
                } else if (p[0] == '[' && (p[1] == '\'' || p[1] == '"')) {
                        char quote = p[1];
                        const char *end = strchr(p + 2, quote);
                        if (!end || end[1] != ']' || (size_t) (end - p - 2) >= sizeof key)
                                return NULL;
                        n = (size_t) (end - p - 2);
                        memcpy(key, p + 2, n);
                        key[n] = 0;
                        p = end + 2;
                        node = json_is_object(node) ? json_object_get(node, key) : NULL;
                } else if (*p == '[') {
                        char *end;
                        unsigned long i;
                        if (p[1] < '0' || p[1] > '9')
                                return NULL;
                        errno = 0;
                        i = strtoul(p + 1, &end, 10);
                        if (errno || *end != ']')
                                return NULL;
                        p = end + 1;
                        node = json_is_array(node) ? json_array_get(node, i) : NULL;
                } else
                        return NULL;
                if (!node) {
                        *ret_error = -ENOENT;
                        return NULL;
                }
        }
        *ret_error = 0;
        return node;
}

int jsonpath_number(json_t *root, const char *path, double *ret) {
        int e;
        json_t *node = jsonpath_get(root, path, &e);
        char *end;
        double v;

        if (!node)
                return e;
        if (json_is_number(node))
                v = json_number_value(node);
        else if (json_is_string(node)) {
                const char *s = json_string_value(node);
                errno = 0;
                v = strtod(s, &end);
                if (end == s || *end || errno)
                        return -EDOM;
        } else
                return -EDOM;
        if (isnan(v))
                return -EDOM;
        *ret = v;
        return 0;
}
