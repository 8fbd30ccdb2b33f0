/* Routing on a shared listener (util/match.c): scores by host, then path prefix; conflicts. */
#include "match.h"
#include "tap.h"

int main(void) {
        Match exact = { .hosts = { "api.example.com" }, .n_hosts = 1 };
        Match wild = { .hosts = { "*.example.com" }, .n_hosts = 1 };
        Match deeper = { .hosts = { "*.a.example.com" }, .n_hosts = 1 };
        Match any = { .n_hosts = 0 };
        Match v2 = { .n_hosts = 0, .path_prefix = "/v2/" };
        Match exact_v2 = { .hosts = { "api.example.com" }, .n_hosts = 1, .path_prefix = "/v2/" };
        char what[128];

        ok(match_score(&exact, "api.example.com", "/x") > match_score(&wild, "api.example.com", "/x"),
           "an exact host beats a wildcard");
        ok(match_score(&wild, "api.example.com", "/") > match_score(&any, "api.example.com", "/"),
           "a wildcard beats any host");
        ok(match_score(&deeper, "x.a.example.com", "/") > match_score(&wild, "x.a.example.com", "/"),
           "a longer wildcard beats a shorter one");
        is_int(match_score(&wild, "example.com", "/"), -1, "*.example.com does not match example.com itself");
        is_int(match_score(&exact, "API.Example.COM:8080", "/"), match_score(&exact, "api.example.com", "/"),
               "case and port do not matter");
        is_int(match_score(&exact, "api.example.com.", "/"), match_score(&exact, "api.example.com", "/"),
               "nor a trailing dot");
        is_int(match_score(&exact, "other.example.com", "/"), -1, "another host: no match");
        is_int(match_score(&exact, NULL, "/"), -1, "no Host: a host rule does not match");
        ok(match_score(&any, NULL, "/") >= 0, "no Host: \"any host\" matches");
        ok(match_score(&v2, "h", "/v2/items") > match_score(&any, "h", "/v2/items"), "a longer prefix wins");
        is_int(match_score(&v2, "h", "/v1/items"), -1, "a prefix that does not match");
        is_int(match_score(&v2, "h", "/v2"), -1, "\"/v2\" is not under \"/v2/\"");
        ok(match_score(&exact, "api.example.com", "/") > match_score(&v2, "api.example.com", "/v2/x") ||
                   match_score(&v2, "api.example.com", "/") < 0,
           "the host is judged before the prefix");
        ok(match_score(&exact_v2, "api.example.com", "/v2/x") > match_score(&exact, "api.example.com", "/v2/x"),
           "same host: the longer prefix wins");

        ok(match_conflict(&any, &any, what, sizeof what), "two catch-alls conflict: %s", what);
        ok(!match_conflict(&any, &v2, what, sizeof what), "a catch-all and /v2/ do not");
        ok(!match_conflict(&exact, &any, what, sizeof what), "a host rule and any host do not");
        ok(!match_conflict(&exact, &wild, what, sizeof what), "an exact host and its wildcard do not");
        Match exact2 = { .hosts = { "www.example.com", "api.example.com" }, .n_hosts = 2 };
        ok(match_conflict(&exact, &exact2, what, sizeof what), "the same host on both conflicts: %s", what);
        is_str(what, "host api.example.com, path prefix /", "and says which");
        ok(!match_conflict(&exact, &exact_v2, what, sizeof what), "same host, other prefixes: no conflict");

        ok(match_host_pattern_valid("api.example.com"), "a name");
        ok(match_host_pattern_valid("*.example.com"), "a wildcard");
        ok(!match_host_pattern_valid("API.example.com"), "not uppercase (written lowercase)");
        ok(!match_host_pattern_valid("a*.example.com"), "no wildcard inside a label");
        ok(!match_host_pattern_valid("*"), "no bare star");
        ok(!match_host_pattern_valid("a..b"), "no empty label");
        ok(!match_host_pattern_valid("a b"), "no blank");
        ok(match_path_prefix_valid("/v2/"), "a prefix");
        ok(!match_path_prefix_valid("v2/"), "a prefix starts with /");
        ok(!match_path_prefix_valid("/a b"), "without blanks");
        return tap_done();
}
