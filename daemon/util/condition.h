/* Conditions on a measured number, as analysis metrics write them: "> 0.01", "<= 250",
 * ">=0.99", "== 0", or a range "0.5..0.9" (inclusive). Parsed once; evaluated per window. */
#pragma once

#include <stdbool.h>

typedef enum ConditionOp {
        COND_LT,
        COND_LE,
        COND_GT,
        COND_GE,
        COND_EQ,
        COND_RANGE,
} ConditionOp;

typedef struct Condition {
        ConditionOp op;
        double a, b; /* the operand; a range's bounds (a <= b) */
} Condition;

/* 0, or -EINVAL for text that is no condition (NaN and infinities included). */
int condition_parse(const char *text, Condition *ret);
/* Whether VALUE meets C; a NaN never does. */
bool condition_holds(const Condition *c, double value);
/* Back to text, for messages and JSON: "> 0.01", "0.5..0.9". OUT needs 64 bytes. */
void condition_format(const Condition *c, char out[static 64]);
