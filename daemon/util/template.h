/* The kernel command-line template of a version: "{ip}" and friends filled per instance.
 * Validated when a version is created, so a bad template never reaches boot. */
#pragma once

#include <stddef.h>

typedef struct TemplateVars {
        const char *ip, *prefix, *netmask, *gateway, *instance, *service, *version;
} TemplateVars;

/* Checks the template; on error returns -EINVAL and points *ret_bad at the offending
 * placeholder text (or the stray brace) within tmpl. */
int template_validate(const char *tmpl, const char **ret_bad, size_t *ret_bad_len);
/* Expands tmpl; *ret is a new string the caller frees. -EINVAL on an invalid template. */
int template_expand(const char *tmpl, const TemplateVars *vars, char **ret);
