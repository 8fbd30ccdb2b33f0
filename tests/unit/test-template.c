/* The command-line template: every placeholder, literal braces, and every kind of error. */
#include <stdlib.h>

#include "tap.h"
#include "template.h"

static void expands(const char *tmpl, const char *want) {
        TemplateVars v = { .ip = "10.0.0.5", .prefix = "24", .netmask = "255.255.255.0", .gateway = "10.0.0.1",
                           .instance = "web-1", .service = "web", .version = "1.0" };
        char *out = NULL;
        int r = template_expand(tmpl, &v, &out);

        is_int(r, 0, "expand '%s' succeeds", tmpl);
        is_str(out, want, "expand '%s'", tmpl);
        free(out);
}

static void refuses(const char *tmpl, const char *want_bad) {
        const char *bad = NULL;
        size_t len = 0;
        char *out = NULL;
        int r = template_validate(tmpl, &bad, &len);

        ok(r < 0, "'%s' is refused", tmpl);
        ok(bad && strlen(want_bad) == len && strncmp(bad, want_bad, len) == 0, "'%s' points at '%s'", tmpl, want_bad);
        ok(template_expand(tmpl, &(TemplateVars) {}, &out) < 0 && !out, "'%s' does not expand", tmpl);
}

int main(void) {
        expands("", "");
        expands("console=ttyS0", "console=ttyS0");
        expands("ip={ip}::{gateway}:{netmask}::eth0:off", "ip=10.0.0.5::10.0.0.1:255.255.255.0::eth0:off");
        expands("netdev.ip={ip}/{prefix}:{gateway}", "netdev.ip=10.0.0.5/24:10.0.0.1");
        expands("--ipv4={ip}/{prefix} name={instance} svc={service} v={version}",
                "--ipv4=10.0.0.5/24 name=web-1 svc=web v=1.0");
        expands("json={{\"a\":1}}", "json={\"a\":1}");
        expands("{ip}{ip}", "10.0.0.5" "10.0.0.5");

        refuses("ip={address}", "{address}");
        refuses("ip={IP}", "{IP}");
        refuses("x={ip", "{ip");
        refuses("x=}", "}");
        refuses("x={}", "{}");
        refuses("a={ip} b={nope} c={ip}", "{nope}");
        return tap_done();
}
