/* A JSONPath subset for reading one number out of a metrics provider's answer, the way Argo
 * Rollouts' web and Prometheus providers are used: "$", then ".name", "['name']" and "[N]"
 * steps, e.g. "$.data.result[0].value[1]". No wildcards, filters or slices. */
#pragma once

#include <jansson.h>

/* The node PATH names in ROOT (borrowed), or NULL when the path is malformed (-EINVAL in
 * *ret_error) or names nothing (-ENOENT). */
json_t *jsonpath_get(json_t *root, const char *path, int *ret_error);
/* The number at PATH: a JSON number, or a string holding one (Prometheus writes values as
 * strings, "0.0123"). 0, -EINVAL (bad path), -ENOENT (nothing there), -EDOM (not a number). */
int jsonpath_number(json_t *root, const char *path, double *ret);
