/* Domain XML for a guest, written with libxml2's escaping writer (never pasted strings),
 * and the parser for our <metadata> element. What each choice is for is said beside it. */
#include <libxml/parser.h>
#include <libxml/xmlwriter.h>
#include <string.h>

#include "macro.h"
#include "names.h"
#include "virt-internal.h"

#define VIRT_EMULATOR "/usr/bin/qemu-system-x86_64"
/* QEMU 7.2 gives each TCG guest a 1 GiB translation cache by default (filled lazily, but a
 * busy guest keeps what it filled); 64 MiB keeps many small guests affordable, and a
 * unikernel's code is small. */
#define VIRT_TCG_TB_CACHE_MIB 64

DEFINE_TRIVIAL_CLEANUP_FUNC(xmlTextWriterPtr, xmlFreeTextWriter)
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlBufferPtr, xmlBufferFree)
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlDocPtr, xmlFreeDoc)
DEFINE_TRIVIAL_CLEANUP_FUNC(xmlChar *, xmlFree)

/* Any xmlTextWriter failure is an allocation failure: the writer writes to memory. */
#define TRY(call)                                                                                           \
        do {                                                                                                \
                if ((call) < 0)                                                                             \
                        return -ENOMEM;                                                                     \
        } while (0)

/* XML 1.0 cannot carry control characters at all, nor U+FFFE and U+FFFF (valid UTF-8 but no
 * XML Char), and libvirt refuses invalid UTF-8: refuse them here rather than hand libvirt a
 * document it rejects obscurely. */
static bool text_is_valid(const char *s) {
        if (!s)
                return false;
        for (const char *p = s; *p; p++)
                if ((unsigned char) *p < 0x20)
                        return false;
        return utf8_is_valid(s, strlen(s)) && !strstr(s, "\xef\xbf\xbe") && !strstr(s, "\xef\xbf\xbf");
}

static int spec_check(const VirtDomainSpec *s) {
        const char *required[] = {s->name,   s->instance, s->service,     s->version,
                                  s->kernel, s->cmdline,  s->console_path};

        for (size_t i = 0; i < ELEMENTSOF(required); i++)
                if (!text_is_valid(required[i]))
                        return -EINVAL;
        if ((s->initrd && !text_is_valid(s->initrd)) || (s->bridge && !text_is_valid(s->bridge)) ||
            (s->mac && !text_is_valid(s->mac)))
                return -EINVAL;
        if (s->memory_mib == 0 || s->vcpus == 0)
                return -EINVAL;
        if (s->kvm_cpu && !text_is_valid(s->kvm_cpu))
                return -EINVAL;
        return 0;
}

static int write_text_element(xmlTextWriterPtr w, const char *name, const char *text) {
        return xmlTextWriterWriteElement(w, BAD_CAST name, BAD_CAST text);
}

/* <NAME ATTR='VALUE'/> */
static int write_empty_element(xmlTextWriterPtr w, const char *name, const char *attr, const char *value) {
        if (xmlTextWriterStartElement(w, BAD_CAST name) < 0 ||
            xmlTextWriterWriteAttribute(w, BAD_CAST attr, BAD_CAST value) < 0)
                return -1;
        return xmlTextWriterEndElement(w);
}

static int write_os(xmlTextWriterPtr w, const VirtDomainSpec *s) {
        TRY(xmlTextWriterStartElement(w, BAD_CAST "os"));
        TRY(xmlTextWriterStartElement(w, BAD_CAST "type"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "arch", BAD_CAST "x86_64"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "machine", BAD_CAST "pc"));
        TRY(xmlTextWriterWriteString(w, BAD_CAST "hvm"));
        TRY(xmlTextWriterEndElement(w));
        /* Direct kernel boot: no firmware boot menu, no disk. */
        TRY(write_text_element(w, "kernel", s->kernel));
        if (s->initrd)
                TRY(write_text_element(w, "initrd", s->initrd));
        TRY(write_text_element(w, "cmdline", s->cmdline));
        return xmlTextWriterEndElement(w) < 0 ? -ENOMEM : 0;
}

static int write_features(xmlTextWriterPtr w, const VirtDomainSpec *s) {
        TRY(xmlTextWriterStartElement(w, BAD_CAST "features"));
        /* ACPI lets a guest power itself off cleanly. */
        TRY(xmlTextWriterWriteElement(w, BAD_CAST "acpi", NULL));
        if (!s->kvm) {
                TRY(xmlTextWriterStartElement(w, BAD_CAST "tcg"));
                TRY(xmlTextWriterStartElement(w, BAD_CAST "tb-cache"));
                TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "unit", BAD_CAST "MiB"));
                TRY(xmlTextWriterWriteFormatString(w, "%d", VIRT_TCG_TB_CACHE_MIB));
                TRY(xmlTextWriterEndElement(w));
                TRY(xmlTextWriterEndElement(w));
        }
        return xmlTextWriterEndElement(w) < 0 ? -ENOMEM : 0;
}

static int write_devices(xmlTextWriterPtr w, const VirtDomainSpec *s) {
        TRY(xmlTextWriterStartElement(w, BAD_CAST "devices"));
        TRY(write_text_element(w, "emulator", VIRT_EMULATOR));

        /* The console goes to a file; libvirt derives the <console> from this first serial.
         * Without <target port='0'/> QEMU 7.2 fails with "unknown type presented to host".
         * append: libvirt truncates the file otherwise, and a restarted guest would wipe
         * the very output that explains why it crashed. */
        TRY(xmlTextWriterStartElement(w, BAD_CAST "serial"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "type", BAD_CAST "file"));
        TRY(xmlTextWriterStartElement(w, BAD_CAST "source"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "path", BAD_CAST s->console_path));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "append", BAD_CAST "on"));
        TRY(xmlTextWriterEndElement(w));
        TRY(write_empty_element(w, "target", "port", "0"));
        TRY(xmlTextWriterEndElement(w));

        if (s->bridge) {
                TRY(xmlTextWriterStartElement(w, BAD_CAST "interface"));
                TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "type", BAD_CAST "bridge"));
                TRY(write_empty_element(w, "source", "bridge", s->bridge));
                if (s->mac)
                        TRY(write_empty_element(w, "mac", "address", s->mac));
                TRY(write_empty_element(w, "model", "type", "virtio"));
                TRY(xmlTextWriterEndElement(w));
        }

        /* No balloon: guest memory is fixed and small. No USB: libvirt adds a USB controller
         * to every 'pc' machine unless told "none". No graphics: none is written. */
        TRY(write_empty_element(w, "memballoon", "model", "none"));
        TRY(xmlTextWriterStartElement(w, BAD_CAST "controller"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "type", BAD_CAST "usb"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "model", BAD_CAST "none"));
        TRY(xmlTextWriterEndElement(w));
        /* pvpanic tells QEMU (and so libvirt) that the guest panicked: with on_crash
         * destroy we then see STOPPED/crashed instead of an unexplained exit. */
        TRY(write_empty_element(w, "panic", "model", "isa"));
        return xmlTextWriterEndElement(w) < 0 ? -ENOMEM : 0;
}

/* KVM guests see the host's CPU by default (host-passthrough): the fastest, and a unikernel
 * never migrates. host-model, or a named QEMU model, is an operator's choice for hosts
 * whose CPU KVM cannot pass through whole (docs/configuration.md, kvm_cpu). */
static int write_cpu(xmlTextWriterPtr w, const char *cpu) {
        if (!cpu || streq(cpu, "host-passthrough") || streq(cpu, "host-model") || streq(cpu, "maximum"))
                return write_empty_element(w, "cpu", "mode", cpu ? cpu : "host-passthrough") < 0 ? -ENOMEM : 0;
        TRY(xmlTextWriterStartElement(w, BAD_CAST "cpu"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "mode", BAD_CAST "custom"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "match", BAD_CAST "exact"));
        /* A feature of the model the host lacks is dropped, as plain QEMU does, not an error. */
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "check", BAD_CAST "none"));
        TRY(write_text_element(w, "model", cpu));
        return xmlTextWriterEndElement(w) < 0 ? -ENOMEM : 0;
}

static int write_domain(xmlTextWriterPtr w, const VirtDomainSpec *s) {
        int r;

        TRY(xmlTextWriterStartElement(w, BAD_CAST "domain"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "type", BAD_CAST(s->kvm ? "kvm" : "qemu")));
        TRY(write_text_element(w, "name", s->name));
        TRY(xmlTextWriterStartElement(w, BAD_CAST "memory"));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "unit", BAD_CAST "MiB"));
        TRY(xmlTextWriterWriteFormatString(w, "%u", s->memory_mib));
        TRY(xmlTextWriterEndElement(w));
        TRY(xmlTextWriterWriteFormatElement(w, BAD_CAST "vcpu", "%u", s->vcpus));

        /* How a restarted aviaryd recognises its guests. */
        TRY(xmlTextWriterStartElement(w, BAD_CAST "metadata"));
        TRY(xmlTextWriterStartElementNS(w, BAD_CAST VIRT_XMLNS_PREFIX, BAD_CAST VIRT_XMLNS_ELEMENT,
                                        BAD_CAST VIRT_XMLNS_URI));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "id", BAD_CAST s->instance));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "service", BAD_CAST s->service));
        TRY(xmlTextWriterWriteAttribute(w, BAD_CAST "version", BAD_CAST s->version));
        TRY(xmlTextWriterEndElement(w));
        TRY(xmlTextWriterEndElement(w));

        r = write_os(w, s);
        if (r < 0)
                return r;
        r = write_features(w, s);
        if (r < 0)
                return r;
        if (s->kvm) {
                r = write_cpu(w, s->kvm_cpu);
                if (r < 0)
                        return r;
        }

        /* Every way out ends the domain: a rebooting or panicking guest (the test image boots
         * with panic=-1) must disappear, so the lifecycle event reaches the reconciler. */
        TRY(write_text_element(w, "on_poweroff", "destroy"));
        TRY(write_text_element(w, "on_reboot", "destroy"));
        TRY(write_text_element(w, "on_crash", "destroy"));

        r = write_devices(w, s);
        if (r < 0)
                return r;
        return xmlTextWriterEndElement(w) < 0 ? -ENOMEM : 0;
}

int virt_domain_xml(const VirtDomainSpec *spec, char **ret) {
        _cleanup_(xmlBufferFreep) xmlBufferPtr buf = NULL;
        _cleanup_(xmlFreeTextWriterp) xmlTextWriterPtr w = NULL;
        char *xml;
        int r;

        r = spec_check(spec);
        if (r < 0)
                return r;
        buf = xmlBufferCreate();
        if (!buf)
                return -ENOMEM;
        w = xmlNewTextWriterMemory(buf, 0);
        if (!w)
                return -ENOMEM;
        /* Indented, so the XML in logs and `virsh dumpxml` diffs is readable. */
        TRY(xmlTextWriterSetIndent(w, 1));
        TRY(xmlTextWriterSetIndentString(w, BAD_CAST "  "));
        r = write_domain(w, spec);
        if (r < 0)
                return r;
        TRY(xmlTextWriterFlush(w));

        xml = strdup((const char *) xmlBufferContent(buf));
        if (!xml)
                return -ENOMEM;
        *ret = xml;
        return 0;
}

static int copy_attribute(xmlNodePtr node, const char *name, char *out, size_t size) {
        _cleanup_(xmlFreep) xmlChar *value = xmlGetNoNsProp(node, BAD_CAST name);
        size_t n;

        if (!value)
                return -EINVAL;
        n = strlen((const char *) value);
        if (n >= size)
                return -ENAMETOOLONG;
        memcpy(out, value, n + 1);
        return 0;
}

int virt_metadata_parse(const char *xml, VirtDomainInfo *d) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        xmlNodePtr root;
        int r;

        /* NONET: the document comes from libvirt, but never let a parser fetch anything. */
        doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL,
                            XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        if (!doc)
                return -EINVAL;
        root = xmlDocGetRootElement(doc);
        if (!root || !xmlStrEqual(root->name, BAD_CAST VIRT_XMLNS_ELEMENT))
                return -EINVAL;
        r = copy_attribute(root, "id", d->instance, sizeof d->instance);
        if (r >= 0)
                r = copy_attribute(root, "service", d->service, sizeof d->service);
        if (r >= 0)
                r = copy_attribute(root, "version", d->version, sizeof d->version);
        return r;
}

int virt_domain_name_parse(const char *xml, char *out, size_t size) {
        _cleanup_(xmlFreeDocp) xmlDocPtr doc = NULL;
        xmlNodePtr root;

        doc = xmlReadMemory(xml, (int) strlen(xml), NULL, NULL, XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
        root = doc ? xmlDocGetRootElement(doc) : NULL;
        if (!root || !xmlStrEqual(root->name, BAD_CAST "domain"))
                return -EINVAL;
        for (xmlNodePtr n = root->children; n; n = n->next)
                if (n->type == XML_ELEMENT_NODE && xmlStrEqual(n->name, BAD_CAST "name")) {
                        _cleanup_(xmlFreep) xmlChar *text = xmlNodeGetContent(n);
                        if (!text || strlen((const char *) text) >= size)
                                return -ENAMETOOLONG;
                        strcpy(out, (const char *) text);
                        return 0;
                }
        return -EINVAL;
}
