/*
 * handles_test.c - handles of one type only: the first SmfCache, SmfJit and SmfModule of a
 * process have distinct values, and a handle given where another type is expected is an error
 * naming both types (the module, cache or instantiator it names is left untouched): a module
 * call on a cache, smf_cache_free on an instantiator, smf_jit_free on a cache, a release of a
 * cache, a cache's calls on a module.
 *
 * Usage: handles_test DIR   (DIR holds m0.smf, exporting f0 returning 0)
 */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define TEST_NAME "handles_test"
#include "check.h"

/* The compiler callback: never called here (nothing is instantiated). */
static int32_t no_compile(void *user, const char *name, const char *type_args, const uint8_t *template_bytes,
                          size_t template_len, const uint8_t **code, size_t *code_len) {
    (void)user, (void)name, (void)type_args, (void)template_bytes, (void)template_len, (void)code, (void)code_len;
    return 1;
}

/* The last error names `given` as the handle's type and `expected` as the one wanted. */
static void names_both(const char *given, const char *expected) {
    const char *e = smf_last_error();
    if (strstr(e, given) == NULL || strstr(e, expected) == NULL) {
        fprintf(stderr, "the error names %s and %s: %s\n", given, expected, e);
        CHECK(!"the error names both types");
    }
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: handles_test DIR\n");
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/m0.smf", argv[1]);

    /* The first of each type: distinct values. */
    SmfCache *c = smf_cache_new(0, 0);
    SmfJitConfig config = {0, true, true};
    SmfJit *j = smf_jit_new(c, config, no_compile, NULL);
    SmfModule *m = smf_module_load(path);
    CHECK(c != NULL && j != NULL && m != NULL);
    CHECK((void *)c != (void *)j && (void *)c != (void *)m && (void *)j != (void *)m);

    /* A module call on a cache, or on an instantiator: no code runs. */
    int64_t r = 77;
    CHECK_FAILS(smf_module_call((SmfModule *)c, "f0", NULL, 0, &r), -1);
    names_both("SmfCache", "SmfModule");
    CHECK(r == 77);
    CHECK_FAILS(smf_module_symbol((SmfModule *)j, "f0"), NULL);
    names_both("SmfJit", "SmfModule");
    CHECK_FAILS(smf_module_retain((SmfModule *)c), NULL);
    names_both("SmfCache", "SmfModule");

    /* Frees and releases of the wrong type free nothing. */
    smf_clear_error();
    smf_cache_free((SmfCache *)j);
    names_both("SmfJit", "SmfCache");
    smf_clear_error();
    smf_jit_free((SmfJit *)c);
    names_both("SmfCache", "SmfJit");
    smf_clear_error();
    smf_module_release((SmfModule *)c);
    names_both("SmfCache", "SmfModule");
    smf_clear_error();
    smf_cache_free((SmfCache *)m);
    names_both("SmfModule", "SmfCache");

    /* A cache's and an instantiator's calls on the other types. */
    CHECK_FAILS(smf_cache_get((SmfCache *)m, path), NULL);
    names_both("SmfModule", "SmfCache");
    CHECK_FAILS(smf_cache_get((SmfCache *)j, path), NULL);
    names_both("SmfJit", "SmfCache");
    CHECK_FAILS(smf_jit_new((SmfCache *)j, config, no_compile, NULL), NULL);
    names_both("SmfJit", "SmfCache");
    const void *address = NULL;
    CHECK_FAILS(smf_jit_resolve((SmfJit *)m, "f0", &address), SMF_JIT_INVALID_ARGUMENT);
    names_both("SmfModule", "SmfJit");

    /* Each still works as what it is. */
    CHECK(smf_module_call(m, "f0", NULL, 0, &r) == 0 && r == 0);
    SmfModule *cached = smf_cache_get(c, path);
    CHECK(cached != NULL);
    smf_module_release(cached);
    CHECK(smf_jit_resolve(j, "f0", &address) == SMF_JIT_OK && address != NULL);

    scan_maps("handles");

    /* A freed handle is no longer live, and says what it was. */
    smf_jit_free(j);
    CHECK_FAILS(smf_jit_resolve(j, "f0", &address), SMF_JIT_INVALID_ARGUMENT);
    CHECK(strstr(smf_last_error(), "SmfJit") != NULL);
    smf_module_release(m);
    smf_cache_free(c);
    printf("%s: %d passed, 0 failed\n", TEST_NAME, passed);
    return 0;
}
