/* Subnet notation: strict parsing (no host bits, prefix 8..30, exact dotted quads) and
 * printing of addresses and netmasks. */
#include <errno.h>
#include <stdio.h>

#include "net/net.h"
#include "tap.h"

static void test_valid(void) {
        Subnet s = {};
        char out[16];

        is_int(subnet_parse("10.88.0.0/24", &s), 0, "10.88.0.0/24 parses");
        is_int(s.network, 0x0a580000, "network address");
        is_int(s.prefix, 24, "prefix");
        is_int(s.gateway, 0x0a580001, "gateway is network + 1");
        ip_format(s.gateway, out);
        is_str(out, "10.88.0.1", "gateway formats");
        subnet_netmask(&s, out);
        is_str(out, "255.255.255.0", "netmask of a /24");

        is_int(subnet_parse("10.0.0.0/8", &s), 0, "a /8 is the largest accepted");
        subnet_netmask(&s, out);
        is_str(out, "255.0.0.0", "netmask of a /8");

        is_int(subnet_parse("192.168.7.4/30", &s), 0, "a /30 is the smallest accepted");
        subnet_netmask(&s, out);
        is_str(out, "255.255.255.252", "netmask of a /30");
        ip_format(s.gateway, out);
        is_str(out, "192.168.7.5", "gateway of a /30");

        is_int(subnet_parse("172.16.0.0/12", &s), 0, "a /12 parses");
        subnet_netmask(&s, out);
        is_str(out, "255.240.0.0", "netmask of a /12");

        ip_format(0xffffffff, out);
        is_str(out, "255.255.255.255", "the longest address fits");
        ip_format(0, out);
        is_str(out, "0.0.0.0", "zero formats");
}

static void test_invalid(void) {
        static const char *const bad[] = {
                "",
                "10.88.0.0",          /* no prefix */
                "10.88.0.0/",
                "/24",
                "10.88.0.1/24",       /* host bits set */
                "10.88.0.128/24",
                "10.88.0.0/7",        /* too large */
                "10.0.0.0/0",
                "10.88.0.0/31",       /* too small for gateway + guest */
                "10.88.0.0/32",
                "10.88.0.0/33",
                "10.88.0.0/024",      /* leading zero */
                "10.88.0.0/+24",
                "10.88.0.0/-24",
                "10.88.0.0/ 24",
                "10.88.0.0 /24",
                "10.88.0.0/24 ",
                "10.88.0.0/24x",
                "10.88.0.0/2a",
                "10.88.0.0/100",
                "10.88.0/24",         /* three octets */
                "10.88.0.0.0/24",
                "010.88.0.0/24",      /* octal-looking octet */
                "0x0a.88.0.0/24",
                "256.0.0.0/8",
                "10.88.0.0/24/24",
                "fd00::/64",          /* IPv6 is not ours */
                "a very long string that is not an address/24",
        };
        Subnet s = { .network = 42 };

        for (size_t i = 0; i < ELEMENTSOF(bad); i++)
                is_int(subnet_parse(bad[i], &s), -EINVAL, "'%s' is refused", bad[i]);
        is_int(subnet_parse(NULL, &s), -EINVAL, "NULL is refused");
        is_int(s.network, 42, "a refused subnet leaves the output alone");
}

static void test_ip_parse(void) {
        uint32_t ip = 0;

        is_int(ip_parse("10.88.0.17", &ip), 0, "an address parses");
        is_int(ip, 0x0a580011, "to host byte order");
        is_int(ip_parse("10.88.0", &ip), -EINVAL, "a short address is refused");
        is_int(ip_parse("10.88.0.17 ", &ip), -EINVAL, "trailing space is refused");
        is_int(ip_parse("10.88.0.017", &ip), -EINVAL, "a leading zero is refused");
}

int main(void) {
        test_valid();
        test_invalid();
        test_ip_parse();
        return tap_done();
}
