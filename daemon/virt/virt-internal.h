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
