/* Allow-lists: what each grammar accepts and refuses, and the UTF-8 checker. */
#include "names.h"
#include "tap.h"

int main(void) {
        ok(name_is_valid("web"), "plain name");
        ok(name_is_valid("a"), "one letter");
        ok(name_is_valid("web-2"), "dash inside");
        ok(!name_is_valid(""), "empty");
        ok(!name_is_valid("-web"), "leading dash");
        ok(!name_is_valid("web-"), "trailing dash");
        ok(!name_is_valid("Web"), "upper case");
        ok(!name_is_valid("web/../x"), "slash");
        ok(!name_is_valid("a23456789012345678901234567890123456789012345678901234567890123x"), "64 characters");
        ok(name_is_valid("a2345678901234567890123456789012345678901234567890123456789012x"), "63 characters");

        ok(tag_is_valid("1.0.0"), "semver tag");
        ok(tag_is_valid("_build-7"), "underscore start");
        ok(!tag_is_valid(".hidden"), "dot start");
        ok(!tag_is_valid("1.0 beta"), "space");
        ok(!tag_is_valid(""), "empty tag");

        ok(label_key_is_valid("team"), "label key");
        ok(label_key_is_valid("app.kubernetes.io/name"), "dotted label key");
        ok(!label_key_is_valid("/x"), "label key leading slash");
        ok(label_value_is_valid(""), "empty label value");
        ok(label_value_is_valid("héllo"), "utf-8 label value");
        ok(!label_value_is_valid("a\nb"), "newline in label value");

        ok(digest_is_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "digest");
        ok(!digest_is_valid("sha256:E3B0C44298FC1C149AFBF4C8996FB92427AE41E4649B934CA495991B7852B855"), "upper hex");
        ok(!digest_is_valid("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b85"), "63 hex");
        ok(!digest_is_valid("sha512:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"), "algorithm");

        ok(idempotency_key_is_valid("deploy-42"), "idempotency key");
        ok(!idempotency_key_is_valid("a b"), "space in key");

        ok(utf8_is_valid("plain", 5), "ascii");
        ok(utf8_is_valid("\xc3\xa9", 2), "two-byte");
        ok(utf8_is_valid("\xf0\x9f\x90\xa6", 4), "four-byte (bird)");
        ok(!utf8_is_valid("\xc3", 1), "truncated");
        ok(!utf8_is_valid("\xc0\xaf", 2), "overlong");
        ok(!utf8_is_valid("\xed\xa0\x80", 3), "surrogate");
        ok(!utf8_is_valid("\xff", 1), "0xff");
        return tap_done();
}
