/* version.c -- sk_version(): the version of the library actually loaded,
 * built from the SK_VERSION_* numbers of the header it was compiled with. */
#include "internal.h"

#define STRINGIFY(x) #x
/* Two levels, so that the numbers are expanded before they are quoted. */
#define VERSION_STRING(major, minor, patch)                                    \
    STRINGIFY(major) "." STRINGIFY(minor) "." STRINGIFY(patch)

const char *sk_version(void)
{
    return VERSION_STRING(SK_VERSION_MAJOR, SK_VERSION_MINOR, SK_VERSION_PATCH);
}
