/*
 * check.h - the assertions shared by the C tests: CHECK counts passes and stops at the first
 * failure with the library's last error; CHECK_FAILS asserts a sentinel and that the very call
 * recorded an error; scan_maps fails on any writable-and-executable mapping and counts them all
 * (except under valgrind, see below).
 * Each test defines TEST_NAME before including it.
 */
#ifndef SMF_TEST_CHECK_H
#define SMF_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smf.h"

/* Under valgrind, /proc/self/maps describes valgrind's own process (the code it translates runs
 * from rwx pages of its own), so the map checks are left to the native runs. */
#if defined(__has_include)
#if __has_include(<valgrind/valgrind.h>)
#include <valgrind/valgrind.h>
#endif
#endif
#ifndef RUNNING_ON_VALGRIND
#define RUNNING_ON_VALGRIND 0
#endif

static int passed;

#define CHECK(cond)                                                                          \
    do {                                                                                     \
        if (!(cond)) {                                                                       \
            fprintf(stderr, "FAILED %s:%d: %s (last error: %s)\n", __FILE__, __LINE__, #cond, \
                    smf_last_error());                                                       \
            printf("%s: %d passed, 1 failed\n", TEST_NAME, passed);                          \
            exit(1);                                                                         \
        }                                                                                    \
        passed++;                                                                            \
    } while (0)

#define CHECK_FAILS(expr, sentinel)               \
    do {                                          \
        smf_clear_error();                        \
        CHECK((expr) == (sentinel));              \
        CHECK(strcmp(smf_last_error(), "") != 0); \
    } while (0)

/* Reads /proc/self/maps: fails on any rwx mapping (naming `step`), returns the mapping count. */
static int scan_maps(const char *step) {
    if (RUNNING_ON_VALGRIND) return 0;
    FILE *maps = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    CHECK(maps != NULL);
    while (fgets(line, sizeof line, maps)) {
        char perms[8] = {0};
        if (sscanf(line, "%*s %7s", perms) == 1 && strchr(perms, 'w') && strchr(perms, 'x')) {
            fprintf(stderr, "rwx mapping after %s: %s", step, line);
            CHECK(!"no rwx mapping");
        }
        n++;
    }
    fclose(maps);
    return n;
}

#endif
