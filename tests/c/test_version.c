/* The version macros agree with each other and with the library: ALOOP_VERSION_HEX packs
 * MAJOR.MINOR.PATCH as 0xMMmmpp, ALOOP_VERSION_AT_LEAST compares against it (also in #if), and
 * aloop_version() returns the same three numbers at run time. */
#include <asyncloop.h>

#include <string.h>

#include "check.h"

#if !ALOOP_VERSION_AT_LEAST(ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR, ALOOP_VERSION_PATCH)
#error "ALOOP_VERSION_AT_LEAST must hold for the header's own version"
#endif
#if ALOOP_VERSION_AT_LEAST(ALOOP_VERSION_MAJOR + 1, 0, 0)
#error "ALOOP_VERSION_AT_LEAST must not hold for the next major version"
#endif

int main(void) {
    CHECK(ALOOP_VERSION_HEX == ((ALOOP_VERSION_MAJOR << 16) | (ALOOP_VERSION_MINOR << 8) | ALOOP_VERSION_PATCH));
    CHECK(ALOOP_VERSION_MINOR < 256 && ALOOP_VERSION_PATCH < 256);
    CHECK(ALOOP_VERSION_AT_LEAST(0, 0, 0));
    CHECK(ALOOP_VERSION_AT_LEAST(ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR, ALOOP_VERSION_PATCH));
    CHECK(!ALOOP_VERSION_AT_LEAST(ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR, ALOOP_VERSION_PATCH + 1));
    CHECK(!ALOOP_VERSION_AT_LEAST(ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR + 1, 0));
    CHECK(!ALOOP_VERSION_AT_LEAST(ALOOP_VERSION_MAJOR + 1, 0, 0));

    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", ALOOP_VERSION_MAJOR, ALOOP_VERSION_MINOR, ALOOP_VERSION_PATCH);
    CHECK(strcmp(aloop_version(), want) == 0);
    return check_summary("test_version");
}
