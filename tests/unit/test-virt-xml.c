/* Domain XML: every value we put in comes back out unchanged when the document is parsed
 * (hostile strings included), one NIC exactly when a bridge is given, kvm vs TCG choices,
 * refused input, and the metadata parser. */
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <stdlib.h>

#include "macro.h"
#include "tap.h"
#include "virt/virt-internal.h"

static xmlDocPtr doc;
static xmlXPathContextPtr ctx;

static void load(const char *xml) {
        xmlXPathFreeContext(ctx);
        xmlFreeDoc(doc);
        doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL, XML_PARSE_NONET);
        ctx = doc ? xmlXPathNewContext(doc) : NULL;
        if (ctx)
                xmlXPathRegisterNs(ctx, BAD_CAST "a", BAD_CAST VIRT_XMLNS_URI);
}

/* The string value of EXPR (static buffer, "" when absent). */
static const char *xs(const char *expr) {
        static char out[4096];
        _cleanup_free_ char *wrapped = NULL;
        xmlXPathObjectPtr o;

        out[0] = 0;
        if (!ctx || asprintf(&wrapped, "string(%s)", expr) < 0)
                return out;
        o = xmlXPathEvalExpression(BAD_CAST wrapped, ctx);
        if (o && o->stringval)
                snprintf(out, sizeof out, "%s", (const char *) o->stringval);
        xmlXPathFreeObject(o);
        return out;
}

static int xcount(const char *expr) {
        _cleanup_free_ char *wrapped = NULL;
        xmlXPathObjectPtr o;
        int n = -1;

        if (!ctx || asprintf(&wrapped, "count(%s)", expr) < 0)
                return -1;
        o = xmlXPathEvalExpression(BAD_CAST wrapped, ctx);
        if (o)
                n = (int) o->floatval;
        xmlXPathFreeObject(o);
        return n;
}

static const VirtDomainSpec hostile = {
        .name = "aviary-<&>'\"x",
        .instance = "i-<1>&'\"",
        .service = "web&<svc>",
        .version = "web:1.0'\"<>&",
        .kernel = "/blobs/k&<'\">",
        .initrd = "/blobs/i]]>&",
        .cmdline = "console=ttyS0 a=<b> c=&amp; d='e' f=\"g\" ]]> \xc3\xa9",
        .memory_mib = 96,
        .vcpus = 2,
        .bridge = "br<&>",
        .mac = "52:54:00:12:34:56",
        .console_path = "/var/log/c'&\"<>.log",
        .kvm = false,
};

static void test_hostile_tcg(void) {
        _cleanup_free_ char *xml = NULL;

        is_int(virt_domain_xml(&hostile, &xml), 0, "hostile spec renders");
        load(xml ? xml : "");
        ok(doc != NULL, "output is well-formed XML");
        is_str(xs("/domain/@type"), "qemu", "type qemu without kvm");
        is_str(xs("/domain/name"), hostile.name, "name round-trips");
        is_str(xs("/domain/memory"), "96", "memory");
        is_str(xs("/domain/memory/@unit"), "MiB", "memory unit");
        is_str(xs("/domain/vcpu"), "2", "vcpus");
        is_int(xcount("/domain/metadata/a:instance"), 1, "one metadata element in our namespace");
        is_str(xs("/domain/metadata/a:instance/@id"), hostile.instance, "metadata id round-trips");
        is_str(xs("/domain/metadata/a:instance/@service"), hostile.service, "metadata service round-trips");
        is_str(xs("/domain/metadata/a:instance/@version"), hostile.version, "metadata version round-trips");
        is_str(xs("/domain/os/type"), "hvm", "os type");
        is_str(xs("/domain/os/type/@arch"), "x86_64", "arch");
        is_str(xs("/domain/os/type/@machine"), "pc", "machine");
        is_str(xs("/domain/os/kernel"), hostile.kernel, "kernel round-trips");
        is_str(xs("/domain/os/initrd"), hostile.initrd, "initrd round-trips");
        is_str(xs("/domain/os/cmdline"), hostile.cmdline, "cmdline round-trips");
        is_int(xcount("/domain/features/acpi"), 1, "acpi");
        is_str(xs("/domain/features/tcg/tb-cache"), "64", "TCG translation cache bounded");
        is_str(xs("/domain/features/tcg/tb-cache/@unit"), "MiB", "tb-cache unit");
        is_int(xcount("/domain/cpu"), 0, "no host-passthrough under TCG");
        is_str(xs("/domain/on_poweroff"), "destroy", "on_poweroff");
        is_str(xs("/domain/on_reboot"), "destroy", "on_reboot");
        is_str(xs("/domain/on_crash"), "destroy", "on_crash");
        is_str(xs("/domain/devices/emulator"), "/usr/bin/qemu-system-x86_64", "emulator");
        is_int(xcount("/domain/devices/serial"), 1, "one serial");
        is_str(xs("/domain/devices/serial/@type"), "file", "serial to a file");
        is_str(xs("/domain/devices/serial/source/@path"), hostile.console_path, "console path round-trips");
        is_str(xs("/domain/devices/serial/source/@append"), "on", "console appends across restarts");
        is_str(xs("/domain/devices/serial/target/@port"), "0", "serial target port 0");
        is_int(xcount("/domain/devices/interface"), 1, "exactly one NIC with a bridge");
        is_str(xs("/domain/devices/interface/@type"), "bridge", "NIC on a bridge");
        is_str(xs("/domain/devices/interface/source/@bridge"), hostile.bridge, "bridge round-trips");
        is_str(xs("/domain/devices/interface/mac/@address"), hostile.mac, "mac");
        is_str(xs("/domain/devices/interface/model/@type"), "virtio", "virtio-net");
        is_str(xs("/domain/devices/memballoon/@model"), "none", "no balloon");
        is_str(xs("/domain/devices/panic/@model"), "isa", "pvpanic");
        is_int(xcount("/domain/devices/controller"), 1, "exactly one controller");
        is_int(xcount("/domain/devices/controller[@type='usb' and @model='none']"), 1, "USB disabled");
        is_int(xcount("/domain/devices/graphics | /domain/devices/input | /domain/devices/video"), 0,
               "no graphics, input or video devices");
}

static void test_kvm_no_nic(void) {
        VirtDomainSpec s = hostile;
        _cleanup_free_ char *xml = NULL;

        s.kvm = true;
        s.bridge = NULL;
        s.initrd = NULL;
        is_int(virt_domain_xml(&s, &xml), 0, "kvm spec renders");
        load(xml ? xml : "");
        is_str(xs("/domain/@type"), "kvm", "type kvm");
        is_str(xs("/domain/cpu/@mode"), "host-passthrough", "host cpu under kvm");
        is_int(xcount("/domain/features/tcg"), 0, "no TCG settings under kvm");
        is_int(xcount("/domain/devices/interface"), 0, "no NIC without a bridge");
        is_int(xcount("/domain/os/initrd"), 0, "no initrd element without an initrd");
}

static void test_refused(void) {
        VirtDomainSpec s;
        char *xml = NULL;

        s = hostile, s.name = NULL;
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "missing name refused");
        s = hostile, s.cmdline = "a\001b";
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "control character refused (XML 1.0 cannot carry it)");
        s = hostile, s.cmdline = "a\nb";
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "newline in cmdline refused");
        s = hostile, s.service = "\xff\xfe";
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "invalid UTF-8 refused");
        /* Found by tests/fuzz (fuzz-domain-xml): valid UTF-8, but no XML 1.0 character, so the
         * document did not parse (libxml2: "Char 0xFFFF out of allowed range"). */
        s = hostile, s.cmdline = "a \xef\xbf\xbf b";
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "U+FFFF in cmdline refused");
        s = hostile, s.bridge = "br\xef\xbf\xbe";
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "U+FFFE in an attribute refused");
        s = hostile, s.cmdline = "a \xef\xbf\xbd \xee\x80\x80 \xf4\x8f\xbf\xbf";
        ok(virt_domain_xml(&s, &xml) == 0 && xml, "U+FFFD, U+E000 and U+10FFFF still taken");
        free(xml);
        xml = NULL;
        s = hostile, s.memory_mib = 0;
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "zero memory refused");
        s = hostile, s.vcpus = 0;
        is_int(virt_domain_xml(&s, &xml), -EINVAL, "zero vcpus refused");
        ok(xml == NULL, "nothing returned on refusal");
}

static void test_metadata_parse(void) {
        VirtDomainInfo d = {};
        char big[200];

        /* libvirt hands the element back without its prefix; with one must work too. */
        is_int(virt_metadata_parse("<instance id=\"i1\" service=\"web\" version=\"web:1\"/>", &d), 0,
               "metadata as libvirt returns it");
        is_str(d.instance, "i1", "instance");
        is_str(d.service, "web", "service");
        is_str(d.version, "web:1", "version");
        is_int(virt_metadata_parse("<aviary:instance xmlns:aviary=\"" VIRT_XMLNS_URI
                                   "\" id=\"a&amp;b\" service=\"s\" version=\"v\"/>",
                                   &d),
               0, "prefixed metadata");
        is_str(d.instance, "a&b", "entity decoded");
        is_int(virt_metadata_parse("<other id=\"i\" service=\"s\" version=\"v\"/>", &d), -EINVAL,
               "other element");
        is_int(virt_metadata_parse("<instance id=\"i\" service=\"s\"/>", &d), -EINVAL, "missing version");
        is_int(virt_metadata_parse("not xml <", &d), -EINVAL, "garbage");
        memset(big, 'x', sizeof big - 1);
        big[sizeof big - 1] = 0;
        {
                _cleanup_free_ char *xml = NULL;

                if (asprintf(&xml, "<instance id=\"%s\" service=\"s\" version=\"v\"/>", big) > 0)
                        is_int(virt_metadata_parse(xml, &d), -ENAMETOOLONG, "too long id");
        }
}

int main(void) {
        test_hostile_tcg();
        test_kvm_no_nic();
        test_refused();
        test_metadata_parse();
        xmlXPathFreeContext(ctx);
        xmlFreeDoc(doc);
        return tap_done();
}
