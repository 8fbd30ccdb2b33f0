/* Shared inside virt/ only: our metadata namespace and its parser. */
#pragma once

#include "virt.h"

/* Our <metadata> child: <aviary:instance id=".." service=".." version=".."/>. The URI is
 * what libvirt keys the element by; changing it orphans every running guest. */
#define VIRT_XMLNS_URI "https://aviary.dev/xmlns/domain/1"
#define VIRT_XMLNS_PREFIX "aviary"
#define VIRT_XMLNS_ELEMENT "instance"

/* Fills instance, service and version of *d from the element virDomainGetMetadata()
 * returns. -EINVAL when it is not ours or is malformed, -ENAMETOOLONG when a value does
 * not fit. */
int virt_metadata_parse(const char *xml, VirtDomainInfo *d);

/* The <name> of a domain's XML (as virDomainSaveImageGetXMLDesc() gives it) into OUT. */
int virt_domain_name_parse(const char *xml, char *out, size_t size);

/* Before an embedded driver opens ROOT: a domain whose start a stopped aviaryd never saw end
 * (killed inside virDomainCreateXML) is left in ROOT/run/qemu with libvirt's "start" job
 * recorded. libvirt 9.0 loads it with that job held by no thread: the domain can then be
 * neither started again ("already exists") nor destroyed ("cannot acquire state change lock"),
 * for ever. Its QEMU, if one was spawned, is killed and the record removed, so the instance
 * boots again. Returns how many were cleared, or a negative errno. */
int virt_embed_clear_cut_starts(const char *root);
/* Before the embedded driver at ROOT opens: a QEMU capability probe libvirt left running when
 * aviaryd was killed (ROOT/lib/qemu/qmp-XXXXXX/qmp.pid: a QEMU started with -S -daemonize,
 * waiting for a QMP client that is gone) is killed and its directory removed. Returns how many. */
int virt_embed_clear_probes(const char *root);
