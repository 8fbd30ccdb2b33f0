/* Allow-lists for everything a user names: images, services, version tags, labels,
 * digests, idempotency keys. Anything that reaches a path, SQL or XML passes here first.
 * Shared: aviaryd enforces them, and the CLI checks names with the same code before it
 * sends anything (so `image push` refuses a bad name before it uploads a byte). */
#pragma once

#include <stdbool.h>
#include <stddef.h>

#define DIGEST_HEX_LEN 64
#define DIGEST_STR_LEN (7 + DIGEST_HEX_LEN) /* "sha256:" + hex */

bool name_is_valid(const char *s);          /* images, services: a DNS label */
bool tag_is_valid(const char *s);           /* version tags */
bool label_key_is_valid(const char *s);
bool label_value_is_valid(const char *s);
bool digest_is_valid(const char *s);        /* "sha256:" + 64 lowercase hex */
bool idempotency_key_is_valid(const char *s);
bool request_id_is_valid(const char *s);
bool utf8_is_valid(const char *s, size_t n);
