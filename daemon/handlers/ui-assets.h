/* The web view's files, embedded at build time (daemon/ui/embed-ui.py). */
#pragma once

#include <stddef.h>

typedef struct UiAsset {
        const char *name;              /* "index.html" */
        const char *content_type;
        const unsigned char *data;     /* NUL-terminated after SIZE bytes */
        size_t size;
} UiAsset;

extern const UiAsset ui_assets[];
extern const size_t ui_assets_count;
