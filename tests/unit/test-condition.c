/* Analysis conditions (util/condition.c) and the JSONPath subset that reads a provider's
 * number (util/jsonpath.c), on a Prometheus instant-query answer. */
#include <errno.h>
#include <math.h>

#include "condition.h"
#include "jsonpath.h"
#include "tap.h"

static int holds(const char *text, double v) {
        Condition c;
        if (condition_parse(text, &c) < 0)
                return -1;
        return condition_holds(&c, v);
}

int main(void) {
        Condition c;
        char out[64];
        double v = 0;

        is_int(holds("> 0.01", 0.02), 1, "> 0.01 holds for 0.02");
        is_int(holds("> 0.01", 0.01), 0, "but not for 0.01");
        is_int(holds(">=0.01", 0.01), 1, ">= holds at the bound");
        is_int(holds("< 250", 249.9), 1, "<");
        is_int(holds("<= 250", 250.1), 0, "<=");
        is_int(holds("== 0", 0), 1, "==");
        is_int(holds("0.5..0.9", 0.5), 1, "a range holds at its low bound");
        is_int(holds("0.5..0.9", 0.9), 1, "and its high bound");
        is_int(holds("0.5..0.9", 0.91), 0, "not above");
        is_int(holds("1..2", 1.5), 1, "integer bounds");
        is_int(holds(" -1 .. 1 ", 0), 1, "blanks and signs");
        is_int(holds("> 0.01", NAN), 0, "NaN never holds");
        is_int(holds("0.9..0.5", 0.7), -1, "a reversed range is refused");
        is_int(holds(">", 1), -1, "an operator without a number is refused");
        is_int(holds("> abc", 1), -1, "a word is refused");
        is_int(holds("> 1 2", 1), -1, "trailing junk is refused");
        is_int(holds("> inf", 1), -1, "infinity is refused");
        is_int(holds("=> 1", 1), -1, "an unknown operator is refused");
        is_int(holds("", 1), -1, "empty is refused");
        condition_parse(">= 0.99", &c);
        condition_format(&c, out);
        is_str(out, ">= 0.99", "formatted back");
        condition_parse("0.5..0.9", &c);
        condition_format(&c, out);
        is_str(out, "0.5..0.9", "a range formatted back");

        json_t *answer = json_loads("{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":"
                                    "[{\"metric\":{},\"value\":[1733212345.123,\"0.0125\"]}]},\"n\":3,"
                                    "\"odd key\":{\"x\":true}}",
                                    0, NULL);
        is_int(jsonpath_number(answer, "$.data.result[0].value[1]", &v), 0, "a Prometheus instant query's value");
        ok(v == 0.0125, "is 0.0125 (a string in the answer)");
        is_int(jsonpath_number(answer, "$.n", &v), 0, "a plain number");
        ok(v == 3, "is 3");
        is_int(jsonpath_number(answer, "$['data']['result'][0]['value'][0]", &v), 0, "bracket notation");
        ok(fabs(v - 1733212345.123) < 1e-3, "the timestamp");
        is_int(jsonpath_number(answer, "$.data.result[1].value[1]", &v), -ENOENT, "an empty result: nothing there");
        is_int(jsonpath_number(answer, "$.status", &v), -EDOM, "a string that is no number");
        is_int(jsonpath_number(answer, "$['odd key'].x", &v), -EDOM, "a boolean is no number");
        is_int(jsonpath_number(answer, "data.result", &v), -EINVAL, "a path must start with $");
        is_int(jsonpath_number(answer, "$.data[x]", &v), -EINVAL, "an index must be a number");
        is_int(jsonpath_number(answer, "$.", &v), -EINVAL, "an empty key is malformed");
        json_decref(answer);
        return tap_done();
}
