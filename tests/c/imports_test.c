/*
 * imports_test.c - what modules link against, from C: host symbols (define, redefine, undefine,
 * and that they come first), a resolver callback (asked once per distinct name per load, even
 * when the load fails and reruns; its answers used; one that loads the dependency itself from
 * inside the load), the C library by default and the process's symbols only when asked for
 * (a module calling strlen), local loads (not offered to later loads), unknown flags, and the
 * message of an unresolved import naming every place looked.
 *
 * Usage: imports_test DIR   (DIR holds the fixture files written by tests/tests/c_abi.rs)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TEST_NAME "imports_test"
#include "check.h"

static const char *dir;

static const char *path(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

static int64_t host_five(void) { return 55; }
static int64_t host_counter = 7;
static int64_t ext_a_data, ext_b_data;

/* The resolver callback: counts the questions per name; answers ext_a and ext_b, and ext_c
 * only when `user` says so. */
struct asked { int a, b, c, other; int answer_c; };

static const void *resolve(void *user, const char *name) {
    struct asked *asked = user;
    if (strcmp(name, "ext_a") == 0) { asked->a++; return &ext_a_data; }
    if (strcmp(name, "ext_b") == 0) { asked->b++; return &ext_b_data; }
    if (strcmp(name, "ext_c") == 0) { asked->c++; return asked->answer_c ? (const void *)&ext_a_data : NULL; }
    asked->other++;
    return NULL;
}

static int64_t call(SmfModule *m, const char *name, int64_t arg) {
    int64_t result = 0;
    CHECK(smf_module_call(m, name, &arg, 1, &result) == 0);
    return result;
}

static void host_symbols(void) {
    CHECK_FAILS(smf_host_define(NULL, SMF_FUNCTION_ADDRESS(host_five)), -1);
    CHECK_FAILS(smf_host_define("", SMF_FUNCTION_ADDRESS(host_five)), -1);
    CHECK_FAILS(smf_host_define("five", NULL), -1);
    const void *five_addr = SMF_FUNCTION_ADDRESS(host_five);
    CHECK(smf_host_define("five", five_addr) == 0);
    CHECK(smf_host_define("five", five_addr) == 0); /* the same again: fine */
    CHECK_FAILS(smf_host_define("five", &host_counter), -1);
    CHECK(strstr(smf_last_error(), "already defined") != NULL);
    CHECK(smf_host_define("counter", &host_counter) == 0);
    CHECK(smf_host_define("small_constant", (const void *)(uintptr_t)0x1234) == 0);

    /* The library exports five (returning 5) too: host symbols come first. */
    SmfModule *lib = smf_module_load(path("lib.r96.smf"));
    CHECK(lib != NULL);
    SmfModule *app = smf_module_load(path("app.r96.smf"));
    CHECK(app != NULL);
    CHECK(call(app, "call_five", 0) == 55);
    CHECK(call(app, "got_counter", 0) == 7);

    /* Undefined: later loads get the library's; the loaded app keeps the address it got. */
    CHECK(smf_host_undefine("five") == 0);
    CHECK_FAILS(smf_host_undefine("five"), -1);
    SmfModule *app2 = smf_module_load(path("app.r96.smf"));
    CHECK(app2 != NULL);
    CHECK(call(app2, "call_five", 0) == 5);
    CHECK(call(app, "call_five", 0) == 55);
    smf_module_release(app2);
    smf_module_release(app);
    smf_module_release(lib);
    CHECK(smf_host_undefine("counter") == 0);
    CHECK(smf_host_undefine("small_constant") == 0);
}

static void resolver_callback(void) {
    struct asked asked = {0};
    SmfLoadOptions options = {resolve, &asked, 0};
    /* ext_c resolves nowhere: the load fails (quietly, then with details), asking each name once. */
    smf_clear_error();
    CHECK(smf_module_load_ex(path("importer.smf"), &options) == NULL);
    CHECK(asked.a == 1 && asked.b == 1 && asked.c == 1 && asked.other == 0);
    const char *error = smf_last_error();
    CHECK(strstr(error, "unresolved import `ext_c`") != NULL);
    CHECK(strstr(error, "host symbols") != NULL);
    CHECK(strstr(error, "loaded module") != NULL);
    CHECK(strstr(error, "resolver callback") != NULL);
    CHECK(strstr(error, "dlsym") == NULL); /* not asked for */

    struct asked again = {0};
    again.answer_c = 1;
    options.user = &again;
    SmfModule *m = smf_module_load_ex(path("importer.smf"), &options);
    CHECK(m != NULL);
    CHECK(again.a == 1 && again.b == 1 && again.c == 1);
    CHECK(call(m, "addr_ext_a", 0) == (int64_t)(intptr_t)&ext_a_data);
    CHECK(call(m, "addr_ext_b", 0) == (int64_t)(intptr_t)&ext_b_data);
    smf_module_release(m);

    /* The same from memory, and NULL options are the plain load. */
    FILE *f = fopen(path("importer.smf"), "rb");
    CHECK(f != NULL);
    static uint8_t bytes[1 << 16];
    size_t len = fread(bytes, 1, sizeof bytes, f);
    fclose(f);
    struct asked from_memory = {0};
    from_memory.answer_c = 1;
    options.user = &from_memory;
    m = smf_module_load_bytes_ex(bytes, len, &options);
    CHECK(m != NULL && from_memory.a == 1);
    smf_module_release(m);
    CHECK_FAILS(smf_module_load_bytes_ex(bytes, len, NULL), NULL);

    SmfLoadOptions bad = {NULL, NULL, 0x80};
    CHECK_FAILS(smf_module_load_ex(path("importer.smf"), &bad), NULL);
    CHECK(strstr(smf_last_error(), "unknown load flags") != NULL);
}

/* A callback that loads the dependency itself (re-entrantly, from inside the load). */
static SmfModule *loaded_by_callback;
static const void *load_dependency(void *user, const char *name) {
    (void)user;
    if (strcmp(name, "five") != 0 && strcmp(name, "counter") != 0) return NULL;
    if (loaded_by_callback == NULL) {
        SmfLoadOptions local = {NULL, NULL, SMF_LOAD_LOCAL};
        loaded_by_callback = smf_module_load_ex(path("lib.r96.smf"), &local);
    }
    return loaded_by_callback == NULL ? NULL : smf_module_symbol(loaded_by_callback, name);
}

static void reentrant_callback(void) {
    SmfLoadOptions options = {load_dependency, NULL, 0};
    SmfModule *app = smf_module_load_ex(path("app.r96.smf"), &options);
    CHECK(app != NULL && loaded_by_callback != NULL);
    CHECK(call(app, "call_five", 0) == 5);
    CHECK(call(app, "got_counter", 0) == 7);
    smf_module_release(app);
    smf_module_release(loaded_by_callback);
}

static void c_library_and_process_symbols(void) {
    /* strlen is the C library's: found by default, as dlopen finds it, and not when the load
     * turns the C library off (unless it asks for the process's symbols, which hold it). */
    SmfModule *m = smf_module_load(path("strlen.smf"));
    CHECK(m != NULL);
    CHECK(call(m, "call_strlen", (int64_t)(intptr_t)"hello, world") == 12);
    smf_module_release(m);
    SmfLoadOptions no_c = {NULL, NULL, SMF_LOAD_NO_C_LIBRARY};
    CHECK_FAILS(smf_module_load_ex(path("strlen.smf"), &no_c), NULL);
    CHECK(strstr(smf_last_error(), "unresolved import `strlen`") != NULL);
    SmfLoadOptions process = {NULL, NULL, SMF_LOAD_PROCESS_SYMBOLS | SMF_LOAD_NO_C_LIBRARY};
    m = smf_module_load_ex(path("strlen.smf"), &process);
    CHECK(m != NULL);
    CHECK(call(m, "call_strlen", (int64_t)(intptr_t)"hello, world") == 12);
    smf_module_release(m);
}

static void local_loads(void) {
    /* A local library's exports are not offered to later loads. */
    SmfLoadOptions local = {NULL, NULL, SMF_LOAD_LOCAL};
    SmfModule *lib = smf_module_load_ex(path("lib.s128.smf"), &local);
    CHECK(lib != NULL);
    CHECK(smf_module_symbol(lib, "five") != NULL);
    CHECK_FAILS(smf_module_load(path("app.r96.smf")), NULL);
    CHECK(strstr(smf_last_error(), "2 unresolved imports: `five`, `counter` (looked in: ") != NULL);
    SmfModule *shared = smf_module_load(path("lib.s128.smf"));
    CHECK(shared != NULL);
    SmfModule *app = smf_module_load(path("app.r96.smf"));
    CHECK(app != NULL);
    CHECK(call(app, "call_five", 0) == 5);
    smf_module_release(app);
    smf_module_release(shared);
    smf_module_release(lib);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: imports_test DIR\n");
        return 2;
    }
    dir = argv[1];
    host_symbols();
    scan_maps("host symbols");
    resolver_callback();
    scan_maps("resolver callback");
    reentrant_callback();
    scan_maps("re-entrant callback");
    c_library_and_process_symbols();
    scan_maps("process symbols");
    local_loads();
    scan_maps("local loads");
    printf("%s: %d passed, 0 failed\n", TEST_NAME, passed);
    return 0;
}
