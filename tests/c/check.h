/*
 * check.h - the assertions shared by the C tests: CHECK counts passes and stops at the first
 * failure with the library's last error; CHECK_FAILS asserts a sentinel and that the very call
 * recorded an error; scan_maps fails on any writable-and-executable mapping and counts them all.
 * Each test defines TEST_NAME before including it.
 */
#ifndef SMF_TEST_CHECK_H
#define SMF_TEST_CHECK_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "smf.h"

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
