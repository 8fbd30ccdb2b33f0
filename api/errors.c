/* The error table's accessors, compiled into both the daemon and the CLI. */
#include <string.h>

#include "errors.h"

static const struct {
        const char *code;
        unsigned status;
} table[] = {
#define AVIARY_ERROR_ROW(name, code, status) [AVIARY_E_##name] = { code, status },
        AVIARY_ERRORS(AVIARY_ERROR_ROW)
#undef AVIARY_ERROR_ROW
};

const char *aviary_error_code(AviaryError e) {
        if ((unsigned) e >= _AVIARY_E_MAX)
                return "internal";
        return table[e].code;
}

unsigned aviary_error_status(AviaryError e) {
        if ((unsigned) e >= _AVIARY_E_MAX)
                return 500;
        return table[e].status;
}

AviaryError aviary_error_from_code(const char *code) {
        for (unsigned i = 0; code && i < _AVIARY_E_MAX; i++)
                if (strcmp(table[i].code, code) == 0)
                        return (AviaryError) i;
        return AVIARY_E_INTERNAL;
}
