/* Fuzzes the domain XML writer (virt_domain_xml) and, on what it writes, the metadata parser.
 * Input: a 7-byte header (flags; memory MiB, 32-bit little-endian; vcpus, 16-bit LE), then
 * NUL-separated strings: name, instance, service, version, kernel, initrd, cmdline, bridge,
 * mac, console path (a missing one is NULL). Flags: 1 kvm, 2 a named CPU model (kvm_cpu qemu64), 4 no initrd,
 * 8 no bridge, 16 no mac. Invariants: it refuses exactly the specs XML 1.0 cannot carry (or
 * that lack a field, memory or vcpus); what it accepts parses with libxml2, holds exactly the
 * intended elements (one kernel, at most one initrd, one NIC on the bridge with the MAC only
 * when a bridge is given, one serial console, pvpanic), every string comes back unchanged
 * (the cmdline included), and our metadata element parses back. */
#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>
#include <string.h>

#include "fuzz.h"
#include "macro.h"
#include "virt/virt-internal.h"

enum {
        FLAG_KVM = 1 << 0,
        FLAG_KVM_CPU_MODEL = 1 << 1,
        FLAG_NO_INITRD = 1 << 2,
        FLAG_NO_BRIDGE = 1 << 3,
        FLAG_NO_MAC = 1 << 4,
};
#define HEADER_SIZE 7

/* Whether XML 1.0 can carry S as we use it: UTF-8 whose every character is a Char
 * (#x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF; tab and line ends are refused too, as
 * attribute values would not keep them). Decoded here independently of names.c. */
static bool xml_text_ok(const char *s) {
        const unsigned char *p = (const unsigned char *) s;

        if (!s)
                return false;
        while (*p) {
                unsigned cp, len;
                if (*p < 0x80)
                        cp = *p, len = 1;
                else if ((*p & 0xe0) == 0xc0)
                        cp = *p & 0x1f, len = 2;
                else if ((*p & 0xf0) == 0xe0)
                        cp = *p & 0x0f, len = 3;
                else if ((*p & 0xf8) == 0xf0)
                        cp = *p & 0x07, len = 4;
                else
                        return false;
                for (unsigned i = 1; i < len; i++) {
                        if ((p[i] & 0xc0) != 0x80)
                                return false;
                        cp = cp << 6 | (p[i] & 0x3f);
                }
                if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
                        return false; /* overlong */
                if (cp < 0x20 || (cp >= 0xd800 && cp <= 0xdfff) || cp == 0xfffe || cp == 0xffff ||
                    cp > 0x10ffff)
                        return false;
                p += len;
        }
        return true;
}

static bool spec_ok(const VirtDomainSpec *s) {
        return xml_text_ok(s->name) && xml_text_ok(s->instance) && xml_text_ok(s->service) &&
               xml_text_ok(s->version) && xml_text_ok(s->kernel) && xml_text_ok(s->cmdline) &&
               xml_text_ok(s->console_path) && (!s->initrd || xml_text_ok(s->initrd)) &&
               (!s->bridge || xml_text_ok(s->bridge)) && (!s->mac || xml_text_ok(s->mac)) &&
               s->memory_mib > 0 && s->vcpus > 0;
}

static xmlXPathContextPtr ctx;

static int xcount(const char *expr) {
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
        int n = o && o->type == XPATH_NODESET ? (o->nodesetval ? o->nodesetval->nodeNr : 0) : -1;

        xmlXPathFreeObject(o);
        return n;
}

/* The string value of the single node EXPR selects. */
static void check_value(const char *expr, const char *want) {
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
        xmlChar *got = NULL;

        FUZZ_CHECK(o && o->type == XPATH_NODESET && o->nodesetval && o->nodesetval->nodeNr == 1,
                   "%s: not exactly one node", expr);
        got = xmlXPathCastNodeSetToString(o->nodesetval);
        FUZZ_CHECK(got && streq((const char *) got, want), "%s is '%s', not '%s'", expr,
                   got ? (char *) got : "", want);
        xmlFree(got);
        xmlXPathFreeObject(o);
}

static void check_metadata(xmlDocPtr doc, const VirtDomainSpec *s) {
        xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST "/domain/metadata/a:instance", ctx);
        xmlBufferPtr buf = xmlBufferCreate();
        VirtDomainInfo info = {};
        int r, want;

        FUZZ_CHECK(o && o->nodesetval && o->nodesetval->nodeNr == 1 && buf, "metadata element");
        FUZZ_CHECK(xmlNodeDump(buf, doc, o->nodesetval->nodeTab[0], 0, 0) > 0, "xmlNodeDump");
        r = virt_metadata_parse((const char *) xmlBufferContent(buf), &info);
        want = strlen(s->instance) < sizeof info.instance && strlen(s->service) < sizeof info.service &&
                               strlen(s->version) < sizeof info.version
                       ? 0
                       : -ENAMETOOLONG;
        FUZZ_CHECK(r == want, "virt_metadata_parse returned %d, expected %d on %s", r, want,
                   (const char *) xmlBufferContent(buf));
        if (r == 0)
                FUZZ_CHECK(streq(info.instance, s->instance) && streq(info.service, s->service) &&
                                   streq(info.version, s->version),
                           "metadata does not round-trip");
        xmlBufferFree(buf);
        xmlXPathFreeObject(o);
}

static void check_xml(const char *xml, const VirtDomainSpec *s) {
        xmlDocPtr doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL,
                                      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        char number[16];
        int elements;

        FUZZ_CHECK(doc, "the domain XML does not parse:\n%s", xml);
        ctx = xmlXPathNewContext(doc);
        FUZZ_CHECK(ctx && xmlXPathRegisterNs(ctx, BAD_CAST "a", BAD_CAST VIRT_XMLNS_URI) == 0,
                   "XPath context");

        check_value("/domain/@type", s->kvm ? "kvm" : "qemu");
        if (s->kvm && s->kvm_cpu)
                check_value("/domain/cpu/model", s->kvm_cpu);
        else if (s->kvm)
                check_value("/domain/cpu/@mode", "host-passthrough");
        check_value("/domain/name", s->name);
        snprintf(number, sizeof number, "%u", s->memory_mib);
        check_value("/domain/memory", number);
        snprintf(number, sizeof number, "%u", s->vcpus);
        check_value("/domain/vcpu", number);
        check_value("/domain/metadata/a:instance/@id", s->instance);
        check_value("/domain/metadata/a:instance/@service", s->service);
        check_value("/domain/metadata/a:instance/@version", s->version);
        check_value("/domain/os/kernel", s->kernel);
        check_value("/domain/os/cmdline", s->cmdline);
        FUZZ_CHECK(xcount("/domain/os/initrd") == (s->initrd ? 1 : 0), "initrd elements");
        if (s->initrd)
                check_value("/domain/os/initrd", s->initrd);
        check_value("/domain/devices/serial/source/@path", s->console_path);
        check_value("/domain/devices/panic/@model", "isa");
        FUZZ_CHECK(xcount("/domain/devices/interface") == (s->bridge ? 1 : 0), "interfaces");
        if (s->bridge) {
                check_value("/domain/devices/interface/@type", "bridge");
                check_value("/domain/devices/interface/source/@bridge", s->bridge);
                FUZZ_CHECK(xcount("/domain/devices/interface/mac") == (s->mac ? 1 : 0), "mac elements");
                if (s->mac)
                        check_value("/domain/devices/interface/mac/@address", s->mac);
        }
        FUZZ_CHECK(xcount("/domain/devices/*") == 5 + (s->bridge ? 1 : 0), "devices: %d",
                   xcount("/domain/devices/*"));
        FUZZ_CHECK(xcount("//kernel") == 1 && xcount("//cmdline") == 1 && xcount("//serial") == 1 &&
                           xcount("//panic") == 1 && xcount("//console") == 0,
                   "a device appears twice, or elsewhere");
        /* Nothing else anywhere: 23 fixed elements, plus the optional ones. */
        elements = 23 + (s->initrd ? 1 : 0) + (s->kvm ? (s->kvm_cpu ? 2 : 1) : 2) + (s->bridge ? 3 + (s->mac ? 1 : 0) : 0);
        FUZZ_CHECK(xcount("//*") == elements, "%d elements, expected %d", xcount("//*"), elements);
        check_metadata(doc, s);

        xmlXPathFreeContext(ctx);
        ctx = NULL;
        xmlFreeDoc(doc);
}

static uint32_t le(const uint8_t *p, size_t n) {
        uint32_t v = 0;

        for (size_t i = n; i > 0; i--)
                v = v << 8 | p[i - 1];
        return v;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        char sentinel[1], *xml = sentinel;
        FuzzFields f;
        uint8_t flags;
        int r;

        if (size < HEADER_SIZE)
                return 0;
        flags = data[0];
        FUZZ_CHECK(fuzz_fields_split(data + HEADER_SIZE, size - HEADER_SIZE, &f) == 0, "out of memory");
        VirtDomainSpec s = {
                .name = fuzz_field(&f, 0),
                .instance = fuzz_field(&f, 1),
                .service = fuzz_field(&f, 2),
                .version = fuzz_field(&f, 3),
                .kernel = fuzz_field(&f, 4),
                .initrd = flags & FLAG_NO_INITRD ? NULL : fuzz_field(&f, 5),
                .cmdline = fuzz_field(&f, 6),
                .bridge = flags & FLAG_NO_BRIDGE ? NULL : fuzz_field(&f, 7),
                .mac = flags & FLAG_NO_MAC ? NULL : fuzz_field(&f, 8),
                .console_path = fuzz_field(&f, 9),
                .memory_mib = le(data + 1, 4),
                .vcpus = le(data + 5, 2),
                .kvm = flags & FLAG_KVM,
                .kvm_cpu = flags & FLAG_KVM_CPU_MODEL ? "qemu64" : NULL,
        };

        r = virt_domain_xml(&s, &xml);
        FUZZ_CHECK(r == 0 || r == -EINVAL, "virt_domain_xml returned %d", r);
        FUZZ_CHECK((r == 0) == spec_ok(&s), "virt_domain_xml %s a spec XML %s carry",
                   r == 0 ? "took" : "refused", spec_ok(&s) ? "can" : "cannot");
        if (r == 0) {
                FUZZ_CHECK(xml && xml != sentinel, "no output on success");
                check_xml(xml, &s);
                free(xml);
        } else
                FUZZ_CHECK(xml == sentinel, "output written on failure");
        fuzz_fields_free(&f);
        return 0;
}
