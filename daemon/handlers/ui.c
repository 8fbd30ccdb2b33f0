/* GET /ui/ and its files: the read-only web view (daemon/ui/), from memory. The page and its
 * files hold no data, so they need no token; everything it shows comes from the JSON API,
 * which does (the page asks for a token on a TCP listener that wants one). */
#include <string.h>

#include "handlers.h"
#include "ui-assets.h"

static int ui_send(Request *r, const char *name) {
        for (size_t i = 0; i < ui_assets_count; i++)
                if (streq(ui_assets[i].name, name)) {
                        char *copy = strndup((const char *) ui_assets[i].data, ui_assets[i].size);
                        if (!copy)
                                return -ENOMEM;
                        r->reply_content_type = ui_assets[i].content_type;
                        return reply_text(r, 200, copy);
                }
        return reply_error(r, AVIARY_E_NOT_FOUND, "no such file in the web view: %.64s", name);
}

int ui_index(Request *r) {
        return ui_send(r, "index.html");
}

int ui_file(Request *r) {
        return ui_send(r, request_param(r, 0));
}
