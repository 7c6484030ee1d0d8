/*
 * module_test.c - exercises every smf_module_* function of smf.h from C: the three reference
 * modules, a library and an application linked through the registry, calls with arguments,
 * symbol listing, note.sdn and templates, what an address is in (smf_addr_info), reference
 * counting, bad handles and arguments, and
 * 2,000 load/release cycles that must end at the starting mapping count. After every step it
 * checks /proc/self/maps for writable-and-executable mappings.
 *
 * Usage: module_test DIR   (DIR holds the fixture files written by tests/tests/c_abi.rs)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TEST_NAME "module_test"
#include "check.h"

static const char *dir;

static int mapping_count(void) { return scan_maps("module_test"); }

static const char *path(const char *name) {
    static char buf[4096];
    snprintf(buf, sizeof buf, "%s/%s", dir, name);
    return buf;
}

typedef int64_t (*fn0)(void);

static void reference_modules(void) {
    const char *names[3] = {"return42.s128.smf", "return42.r96.smf", "return42.r72.smf"};
    for (int d = 0; d < 3; d++) {
        SmfModule *m = smf_module_load(path(names[d]));
        CHECK(m != NULL);
        CHECK(smf_module_dialect(m) == d);
        const void *entry = smf_module_entry(m);
        CHECK(entry != NULL);
        CHECK(entry == smf_module_symbol(m, "main"));
        fn0 f;
        memcpy(&f, &entry, sizeof f);
        CHECK(f() == 42);
        /* The same as a function pointer, in ISO C (no memcpy through void *). */
        fn0 g = (fn0)smf_module_function(m, "main");
        CHECK(g != NULL && g() == 42);
        CHECK_FAILS(smf_module_function(m, "absent"), NULL);
        int64_t r = 0;
        CHECK(smf_module_call(m, "main", NULL, 0, &r) == 0 && r == 42);
        CHECK(smf_module_symbol_count(m) == 1);
        CHECK(strcmp(smf_module_symbol_name(m, 0), "main") == 0);
        CHECK(smf_module_symbol_name(m, 1) == NULL);
        const uint8_t *text;
        size_t len;
        CHECK(smf_module_note_sdn(m, &text, &len) == 0 && text == NULL && len == 0);
        smf_module_release(m);
        mapping_count();
    }
}

static void linking_and_lifetimes(void) {
    /* The application's imports resolve against the library loaded before it. */
    smf_clear_error();
    CHECK(smf_module_load(path("app.r96.smf")) == NULL);
    CHECK(strstr(smf_last_error(), "2 unresolved imports: `five`, `counter` (looked in: ") != NULL);
    /* Taken as dlerror is: the message once, then NULL, and forgotten by smf_last_error. */
    const char *taken = smf_take_error();
    CHECK(taken != NULL && strstr(taken, "2 unresolved imports") != NULL);
    CHECK(smf_take_error() == NULL);
    CHECK(strcmp(smf_last_error(), "") == 0);

    SmfModule *lib = smf_module_load(path("lib.s128.smf"));
    CHECK(lib != NULL);
    SmfModule *app = smf_module_load(path("app.r96.smf"));
    CHECK(app != NULL);
    int64_t r = 0;
    CHECK(smf_module_call(app, "call_five", NULL, 0, &r) == 0 && r == 5);
    CHECK(smf_module_call(app, "got_counter", NULL, 0, &r) == 0 && r == 7);
    CHECK(smf_module_call(app, "local_counter", NULL, 0, &r) == 0 && r == 11);
    int64_t args[3] = {40, 1, 1};
    CHECK(smf_module_call(app, "add3", args, 3, &r) == 0 && r == 42);
    int64_t six[6] = {1, 2, 3, 4, 5, 6};
    CHECK(smf_module_call(app, "add3", six, 6, &r) == 0 && r == 6);
    CHECK(smf_module_call(app, "addr_of_local", NULL, 0, &r) == 0);
    CHECK(r == (int64_t)(intptr_t)smf_module_symbol(app, "local_data"));

    /* Symbol listing with kinds, bindings, sizes, and where imports resolved. */
    int seen = 0;
    size_t count = smf_module_symbol_count(app);
    for (size_t i = 0; i < count; i++) {
        SmfSymbolInfo info;
        CHECK(smf_module_symbol_info(app, i, &info) == 0);
        CHECK(strcmp(info.name, smf_module_symbol_name(app, i)) == 0);
        if (strcmp(info.name, "five") == 0) {
            CHECK(!info.defined && info.kind == SMF_SYMBOL_NONE && info.binding == SMF_BIND_GLOBAL);
            CHECK(info.address == smf_module_symbol(lib, "five"));
            seen++;
        } else if (strcmp(info.name, "call_five") == 0) {
            CHECK(info.defined && info.kind == SMF_SYMBOL_FUNCTION && info.size == 14);
            CHECK(info.address == smf_module_symbol(app, "call_five"));
            seen++;
        } else if (strcmp(info.name, "local_data") == 0) {
            CHECK(info.defined && info.kind == SMF_SYMBOL_DATA && info.size == 8);
            CHECK(info.address == smf_module_symbol(app, "local_data"));
            seen++;
        }
    }
    CHECK(seen == 3);
    SmfSymbolInfo past;
    CHECK_FAILS(smf_module_symbol_info(app, count, &past), -1);
    CHECK_FAILS(smf_module_symbol_info(app, 0, NULL), -1);

    /* rt_* calls reach a module's code, never its data, and never write or seal it. */
    int64_t data = (int64_t)(intptr_t)smf_module_symbol(app, "local_data");
    int64_t code = (int64_t)(intptr_t)smf_module_symbol(app, "call_five");
    CHECK(data != 0 && code != 0);
    CHECK(!rt_is_executable(data));
    CHECK_FAILS(rt_call_function_0(data), 0); /* refused without jumping */
    CHECK(rt_is_executable(code));
    CHECK(rt_call_function_0(code) == 5);
    CHECK_FAILS(rt_get_function_pointer(code), 0); /* not an rt allocation: never sealed by it */
    const uint8_t ret = 0xC3;
    CHECK_FAILS(rt_write_exec_memory(code, &ret, 1, 0), -1);
    CHECK(smf_module_call(app, "call_five", NULL, 0, &r) == 0 && r == 5);

    /* Retain and release count; the library outlives its handle while the app links to it. */
    CHECK(smf_module_retain(lib) == lib);
    smf_module_release(lib);
    CHECK(smf_module_dialect(lib) == 0);
    smf_module_release(lib);
    CHECK_FAILS(smf_module_dialect(lib), -1); /* the handle is gone */
    CHECK(smf_module_call(app, "call_five", NULL, 0, &r) == 0 && r == 5);
    smf_module_release(app);
    mapping_count();
}

static void metadata(void) {
    SmfModule *m = smf_module_load(path("metadata.smf"));
    CHECK(m != NULL);
    const uint8_t *text;
    size_t len;
    CHECK(smf_module_note_sdn(m, &text, &len) == 1);
    CHECK(len > 100 && memcmp(text, "# comment", 9) == 0);
    CHECK(memmem(text, len, "List$Float", 10) != NULL);
    CHECK(memmem(text, len, "# END_NOTE", 10) == NULL);
    const uint8_t *bytes;
    CHECK(smf_module_template(m, "List", &bytes, &len) == 1);
    CHECK(bytes[0] == 1 && len > 10); /* kind 1 = struct */
    CHECK(smf_module_template(m, "Missing", &bytes, &len) == 0);
    CHECK_FAILS(smf_module_note_sdn(m, NULL, &len), -1);
    CHECK_FAILS(smf_module_template(m, NULL, &bytes, &len), -1);
    CHECK(smf_module_symbol(m, "List") == NULL); /* a template has no address */
    smf_module_release(m);
}

static void bad_arguments(void) {
    int stack_var = 0;
    SmfModule *bogus = (SmfModule *)&stack_var;
    CHECK_FAILS(smf_module_load(NULL), NULL);
    CHECK_FAILS(smf_module_load(path("missing.smf")), NULL);
    CHECK_FAILS(smf_module_load_bytes(NULL, 4), NULL);
    uint8_t garbage[300];
    memset(garbage, 0xFF, sizeof garbage); /* magic, then impossible counts and offsets */
    memcpy(garbage, "SMF", 4);
    CHECK_FAILS(smf_module_load_bytes(garbage, sizeof garbage), NULL);
    CHECK(strstr(smf_last_error(), "invalid module") != NULL);
    CHECK_FAILS(smf_module_dialect(bogus), -1);
    CHECK_FAILS(smf_module_dialect(NULL), -1);
    CHECK_FAILS(smf_module_symbol(bogus, "main"), NULL);
    CHECK_FAILS(smf_module_entry(bogus), NULL);
    CHECK_FAILS(smf_module_symbol_count(bogus), 0);
    CHECK_FAILS(smf_module_retain(bogus), NULL);
    smf_clear_error();
    smf_module_release(bogus); /* recorded, not dereferenced */
    CHECK(strcmp(smf_last_error(), "") != 0);
    smf_module_release(NULL); /* a no-op */

    SmfModule *m = smf_module_load(path("app.r72.smf"));
    CHECK(m == NULL); /* its imports are not loaded */
    SmfModule *lib = smf_module_load(path("lib.r96.smf"));
    m = smf_module_load(path("app.r72.smf"));
    CHECK(lib != NULL && m != NULL);
    int64_t r, args[7] = {0};
    CHECK_FAILS(smf_module_symbol(m, "nope"), NULL);
    CHECK_FAILS(smf_module_symbol(m, NULL), NULL);
    CHECK_FAILS(smf_module_call(m, "nope", NULL, 0, &r), -1);
    CHECK_FAILS(smf_module_call(m, "add3", args, 7, &r), -1);
    CHECK_FAILS(smf_module_call(m, "add3", NULL, 2, &r), -1);
    CHECK_FAILS(smf_module_call(m, "local_data", NULL, 0, &r), -1); /* not a function */
    CHECK_FAILS(smf_module_function(m, "local_data"), NULL);        /* nor here */
    CHECK_FAILS(smf_module_entry(lib), NULL);                       /* not executable */
    smf_module_release(m);
    smf_module_release(lib);
}

/* Calls fib(34) through the handle; returns 1 if the call ran (and gave the right result), 0 if
 * the handle was already released when it began (a clean refusal: the other outcome of the
 * race). Anything else fails the test. */
static void *slow_call(void *arg) {
    int64_t n = 34, r = 0;
    if (smf_module_call((SmfModule *)arg, "fib", &n, 1, &r) == 0) {
        CHECK(r == 5702887);
        return (void *)1;
    }
    CHECK(strstr(smf_last_error(), "(it was freed)") != NULL);
    return (void *)0;
}

static void release_during_a_call(void) {
    /* Another thread releases the last handle while fib(34) runs: the call keeps the module
     * loaded until it returns. On a busy machine the release may come before the call begins,
     * which must be refused cleanly; rounds go on until a call was overlapped three times. */
    int overlapped = 0;
    for (int round = 0; round < 50 && overlapped < 3; round++) {
        SmfModule *m = smf_module_load(path("recursion.smf"));
        CHECK(m != NULL);
        pthread_t t;
        CHECK(pthread_create(&t, NULL, slow_call, m) == 0);
        usleep(10000);
        smf_module_release(m);
        void *ran = NULL;
        CHECK(pthread_join(t, &ran) == 0);
        overlapped += ran != NULL;
        CHECK_FAILS(smf_module_dialect(m), -1); /* released */
    }
    CHECK(overlapped == 3);
}

static void stable_error_pointer(void) {
    /* The pointer stays valid across later failures (the printf("%d %s", f(), smf_last_error())
     * idiom, whichever argument C evaluates first). */
    CHECK_FAILS(smf_module_load(path("missing.smf")), NULL);
    const char *before = smf_last_error();
    CHECK(strstr(before, "missing.smf") != NULL);
    CHECK_FAILS(smf_module_load(NULL), NULL);
    CHECK(smf_last_error() == before);
    CHECK(strstr(before, "NULL") != NULL); /* the same buffer, the new text */
}

static void fifo_without_a_writer(void) {
    /* Opening a FIFO nobody writes used to block forever; now the wait is bounded
     * (SMF_STREAM_IDLE_MS, set to 200 ms in main). */
    char fifo[4096];
    snprintf(fifo, sizeof fifo, "%s/nobody.fifo", dir);
    unlink(fifo);
    CHECK(mkfifo(fifo, 0600) == 0);
    CHECK_FAILS(smf_module_load(fifo), NULL);
    CHECK(strstr(smf_last_error(), "sent nothing for 200 ms") != NULL);
    RtMapping m = rt_mmap_file(fifo, RT_PROT_READ, RT_MAP_PRIVATE, 0, 0);
    CHECK(m.address == 0 && strstr(smf_last_error(), "not a regular file") != NULL);
    unlink(fifo);
}

static void cycles(void) {
    /* Warm up (the first load reserves address space), then 2,000 load/release cycles. */
    SmfModule *lib = smf_module_load(path("lib.r96.smf"));
    SmfModule *m = smf_module_load(path("app.s128.smf"));
    CHECK(lib != NULL && m == NULL); /* app.s128 also imports small_constant: unresolved */
    m = smf_module_load(path("app.r96.smf"));
    smf_module_release(m);
    int before = mapping_count();
    for (int i = 0; i < 2000; i++) {
        m = smf_module_load(path("app.r96.smf"));
        CHECK(m != NULL);
        int64_t r = 0;
        CHECK(smf_module_call(m, "call_five", NULL, 0, &r) == 0 && r == 5);
        smf_module_release(m);
        if (i % 250 == 0) {
            mapping_count();
        }
    }
    CHECK(mapping_count() == before);
    smf_module_release(lib);
}

/* smf_addr_info names the module, the function and the offset of an address in a module's
 * code, as dladdr does for libraries; 0 for other addresses, -1 for a NULL info. */
static void address_info(void) {
    SmfModule *m = smf_module_load(path("return42.r96.smf"));
    CHECK(m != NULL);
    const uint8_t *main_at = smf_module_symbol(m, "main");
    CHECK(main_at != NULL);
    SmfAddrInfo info;
    memset(&info, 0xAB, sizeof info);
    CHECK(smf_addr_info(main_at + 2, &info) == 1);
    CHECK(info.symbol_name != NULL && strcmp(info.symbol_name, "main") == 0);
    CHECK(info.symbol_address == main_at && info.offset == 2);
    CHECK(info.module_path != NULL && strstr(info.module_path, "return42.r96.smf") != NULL);
    CHECK(info.module_code != NULL && (const uint8_t *)info.module_code <= main_at);
    int local = 0;
    CHECK(smf_addr_info(&local, &info) == 0); /* a stack address: in no module */
    CHECK_FAILS(smf_addr_info(main_at, NULL), -1);
    smf_module_release(m);
    CHECK(smf_addr_info(main_at, &info) == 0); /* released: in no module any more */
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    dir = argv[1];
    CHECK(setenv("SMF_STREAM_IDLE_MS", "200", 1) == 0); /* read at the first load */
    reference_modules();
    linking_and_lifetimes();
    metadata();
    address_info();
    bad_arguments();
    release_during_a_call();
    stable_error_pointer();
    fifo_without_a_writer();
    cycles();
    printf("module_test: %d passed, 0 failed\n", passed);
    return 0;
}
