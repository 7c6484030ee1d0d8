/*
 * jit_test.c - load-time instantiation from C: a compiler callback that emits real machine code
 * (x86-64, or aarch64), every check in the documented order (disabled, depth with the limit in
 * the message, already instantiated without a second compile, circular with the cycle in the
 * message, not offered), dependencies asked for re-entrantly, the updated note.sdn read back,
 * resolve and resolve_generic, two threads racing for one name (one compile), a failing
 * compiler's message, missing and malformed modules, the instantiation limit, statistics, bad
 * arguments, and no writable-and-executable mapping at any point.
 *
 * Usage: jit_test DIR   (DIR holds generics.smf: tests/src/lib.rs `generics::module()`)
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_NAME "jit_test"
#include "check.h"

static char module_path[4096];
static char missing_path[4096];
static char garbage_path[4096];
static char importer_path[4096];

/* ---- the test compiler -------------------------------------------------------------------- */

typedef struct {
    SmfJit *jit;              /* set after smf_jit_new, for re-entrant requests */
    atomic_int compiles;
    int delay_ms;             /* sleep in each compile (the race) */
    bool free_self;           /* call smf_jit_free on its own instantiator in each compile */
    int32_t inner_code;       /* the last dependency request's code, and its message */
    char inner_message[1024];
    uint8_t code[64];         /* the last code emitted (valid until the callback returns) */
} Compiler;

static size_t emit_return(uint8_t *out, uint16_t value) {
#if defined(__aarch64__)
    uint32_t words[2] = {0xD2800000u | ((uint32_t)value << 5), 0xD65F03C0u}; /* movz x0; ret */
    memcpy(out, words, 8);
    return 8;
#else
    uint8_t code[6] = {0xB8, (uint8_t)value, (uint8_t)(value >> 8), 0, 0, 0xC3}; /* mov eax; ret */
    memcpy(out, code, 6);
    return 6;
#endif
}

static size_t emit_identity(uint8_t *out) {
#if defined(__aarch64__)
    uint32_t ret = 0xD65F03C0u; /* x0 is already the argument */
    memcpy(out, &ret, 4);
    return 4;
#else
    uint8_t code[4] = {0x48, 0x89, 0xF8, 0xC3}; /* mov rax, rdi; ret */
    memcpy(out, code, 4);
    return 4;
#endif
}

static size_t emit_tail_call(uint8_t *out, const void *target) {
    uint64_t address = (uint64_t)(uintptr_t)target;
#if defined(__aarch64__)
    uint32_t words[2] = {0x58000050u, 0xD61F0200u}; /* ldr x16, 8; br x16 */
    memcpy(out, words, 8);
    memcpy(out + 8, &address, 8);
    return 16;
#else
    out[0] = 0x48, out[1] = 0xB8; /* movabs rax, target */
    memcpy(out + 2, &address, 8);
    out[10] = 0xFF, out[11] = 0xE0; /* jmp rax */
    return 12;
#endif
}

/* Asks for a dependency from inside a compile; remembers the first (innermost) failure. */
static const void *dependency(Compiler *c, const char *name) {
    const void *address = NULL;
    int32_t code = smf_jit_instantiate(c->jit, module_path, name, &address);
    if (code != SMF_JIT_OK && c->inner_code == SMF_JIT_OK) {
        c->inner_code = code;
        snprintf(c->inner_message, sizeof c->inner_message, "%s", smf_last_error());
    }
    return address;
}

static int32_t compile(void *user, const char *name, const char *type_args, const uint8_t *template_bytes,
                       size_t template_len, const uint8_t **code, size_t *code_len) {
    Compiler *c = user;
    atomic_fetch_add(&c->compiles, 1);
    if (c->delay_ms) usleep((useconds_t)c->delay_ms * 1000);
    if (c->free_self) {
        /* Refused: the request running now would hand out code the free just unmapped. */
        smf_jit_free(c->jit);
        CHECK(strstr(smf_last_error(), "own compile") != NULL);
    }
    size_t n = 0;
    if (strcmp(name, "identity$i64") == 0) {
        /* The template-code entry: kind 0 (function), u32 name length, "identity". */
        if (template_len < 13 || template_bytes[0] != 0 || memcmp(template_bytes + 5, "identity", 8) != 0) {
            smf_jit_fail(c->jit, "identity: unexpected template bytes");
            return 1;
        }
        n = emit_identity(c->code);
    } else if (strcmp(name, "List$Float") == 0) {
        const void *identity = dependency(c, "identity$i64");
        if (!identity) {
            smf_jit_fail(c->jit, "List$Float: identity$i64 failed");
            return 1;
        }
        n = emit_tail_call(c->code, identity);
    } else if (strcmp(name, "extra$x") == 0) {
        n = emit_return(c->code, 77);
    } else if (strcmp(name, "Pair$Int_text") == 0) {
        if (strcmp(type_args, "Int, text") != 0) return 2;
        n = emit_return(c->code, 2);
    } else if (strncmp(name, "chain$", 6) == 0) {
        const char *next = type_args[0] == 'a' ? "chain$b" : type_args[0] == 'b' ? "chain$c" : "chain$a";
        if (!dependency(c, next)) {
            smf_jit_fail(c->jit, "chain: a dependency failed");
            return 1;
        }
        n = emit_return(c->code, 1);
    } else if (strncmp(name, "deep$", 5) == 0) {
        char next[32];
        snprintf(next, sizeof next, "deep$%d", atoi(type_args) + 1);
        if (!dependency(c, next)) {
            smf_jit_fail(c->jit, "deep: a dependency failed");
            return 1;
        }
        n = emit_return(c->code, (uint16_t)atoi(type_args));
    } else {
        smf_jit_fail(c->jit, "no code generator for this template");
        return 1;
    }
    *code = c->code;
    *code_len = n;
    return 0;
}

static SmfJit *new_jit(SmfCache *cache, Compiler *c, uint32_t max_depth, bool enabled, bool update) {
    memset(c, 0, sizeof *c);
    SmfJitConfig config = {max_depth, enabled, update};
    c->jit = smf_jit_new(cache, config, compile, c);
    CHECK(c->jit != NULL);
    return c->jit;
}

static int64_t call1(const void *address, int64_t x) {
    int64_t (*f)(int64_t);
    memcpy(&f, &address, sizeof f); /* ISO C: no cast from void * to a function pointer */
    return f(x);
}

/* ---- the tests ---------------------------------------------------------------------------- */

static void checks_in_order(SmfCache *cache) {
    Compiler c;
    const void *a = NULL, *b = NULL;

    /* Disabled: not found, for what is offered too. */
    SmfJit *off = new_jit(cache, &c, 0, false, true);
    CHECK(smf_jit_instantiate(off, module_path, "identity$i64", &a) == SMF_JIT_NOT_FOUND && a == NULL);
    CHECK(atomic_load(&c.compiles) == 0);
    smf_jit_free(off);

    SmfJit *j = new_jit(cache, &c, 0, true, true);
    /* Compiled once, then the same address without compiling. */
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", &a) == SMF_JIT_OK && a != NULL);
    CHECK(call1(a, 1234) == 1234);
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", &b) == SMF_JIT_OK && b == a);
    CHECK(atomic_load(&c.compiles) == 1);
    scan_maps("an instantiation");
#ifndef SMF_NO_RT
    /* The runtime's own call path takes instantiated code (and only while its SmfJit lives),
     * and rt_get_protection agrees: read-execute. */
    CHECK(rt_is_executable((int64_t)(uintptr_t)a));
    CHECK(rt_call_function_1((int64_t)(uintptr_t)a, 321) == 321);
    CHECK(rt_get_protection((int64_t)(uintptr_t)a) == (RT_PROT_READ | RT_PROT_EXEC));
#endif

    /* Dependencies re-entrantly: List$Float jumps to identity$i64 (already there: no compile). */
    CHECK(smf_jit_instantiate(j, module_path, "List$Float", &b) == SMF_JIT_OK);
    CHECK(call1(b, 77) == 77 && c.inner_code == SMF_JIT_OK);
    CHECK(atomic_load(&c.compiles) == 2);

    /* In progress on this thread: circular, the cycle in the message. */
    CHECK(smf_jit_instantiate(j, module_path, "chain$a", &b) == SMF_JIT_COMPILE_ERROR && b == NULL);
    CHECK(c.inner_code == SMF_JIT_CIRCULAR);
    CHECK(strstr(c.inner_message, "chain$a -> chain$b -> chain$c -> chain$a") != NULL);
    CHECK(strstr(smf_last_error(), "chain: a dependency failed") != NULL);

    /* Not offered: not found. A failing compiler: its message. */
    CHECK_FAILS(smf_jit_instantiate(j, module_path, "List$Bool", &b), SMF_JIT_NOT_FOUND);
    CHECK_FAILS(smf_jit_instantiate(j, module_path, "fails$x", &b), SMF_JIT_COMPILE_ERROR);
    CHECK(strstr(smf_last_error(), "no code generator for this template") != NULL);

    /* Missing and malformed modules: module errors, not "not found". */
    CHECK_FAILS(smf_jit_instantiate(j, missing_path, "other$x", &b), SMF_JIT_MODULE_ERROR);
    CHECK(strstr(smf_last_error(), "missing.smf") != NULL);
    CHECK_FAILS(smf_jit_instantiate(j, garbage_path, "other$x", &b), SMF_JIT_MODULE_ERROR);

    SmfJitStats s;
    smf_jit_stats(j, &s);
    CHECK(s.instantiations == 2 && s.cache_hits == 2 && s.compile_failures == 4);
    CHECK(s.code_bytes > 0);
    smf_jit_free(j);
#ifndef SMF_NO_RT
    CHECK(!rt_is_executable((int64_t)(uintptr_t)a));
    CHECK_FAILS(rt_call_function_1((int64_t)(uintptr_t)a, 1), 0);
    CHECK_FAILS(rt_get_protection((int64_t)(uintptr_t)a), -1);
#endif

    /* Depth: the limit in the message. */
    j = new_jit(cache, &c, 3, true, true);
    CHECK(smf_jit_instantiate(j, module_path, "deep$1", &b) == SMF_JIT_COMPILE_ERROR);
    CHECK(c.inner_code == SMF_JIT_DEPTH_EXCEEDED);
    CHECK(strstr(c.inner_message, "maximum instantiation depth 3 exceeded") != NULL);
    smf_jit_free(j);
}

static void note_sdn_is_updated(SmfCache *cache) {
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    const void *a = NULL;
    const uint8_t *text = NULL;
    size_t len = 0;
    CHECK(smf_jit_note_sdn(j, module_path, &text, &len) == 1 && text != NULL && len > 0);
    CHECK(strstr((const char *)text, "\"identity$i64\", \"main\", true") != NULL); /* still possible */
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", &a) == SMF_JIT_OK);
    CHECK(smf_jit_note_sdn(j, module_path, &text, &len) == 1);
    char *note = strndup((const char *)text, len);
    CHECK(strstr(note, "\"identity$i64\", \"main\", true") == NULL); /* left "possible" */
    const char *row = strstr(note, "1, \"identity\", \"i64\", \"identity$i64\"");
    CHECK(row != NULL && strstr(row, "\"jit_compiled\"") != NULL);
    CHECK(row > strstr(note, "instantiations |") && row < strstr(note, "possible |"));
    CHECK(len > 11 && memcmp(note + len - 11, "# END_NOTE\n", 11) == 0);
    CHECK(text[len] == 0); /* a C string as well */
    free(note);
    CHECK(smf_jit_note_sdn(j, missing_path, &text, &len) == 0 && text == NULL);
    CHECK(smf_jit_note_sdn(j, garbage_path, &text, &len) == -1);
    smf_jit_free(j);

    /* Without updates the note stays as the module has it. */
    j = new_jit(cache, &c, 0, true, false);
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", &a) == SMF_JIT_OK);
    CHECK(smf_jit_note_sdn(j, module_path, &text, &len) == 1);
    CHECK(strstr((const char *)text, "jit_compiled") == NULL);
    smf_jit_free(j);
}

static void resolve_and_resolve_generic(SmfCache *cache) {
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    SmfModule *m = smf_cache_get(cache, module_path);
    CHECK(m != NULL);
    const void *a = NULL;
    CHECK(smf_jit_resolve(j, "answer", &a) == SMF_JIT_OK && a == smf_module_symbol(m, "answer"));
    smf_module_release(m);
    const char *args[2] = {"Int", "text"};
    CHECK(smf_jit_resolve_generic(j, "Pair", args, 2, &a) == SMF_JIT_OK && call1(a, 0) == 2);
    const void *again = NULL;
    CHECK(smf_jit_resolve(j, "Pair$Int_text", &again) == SMF_JIT_OK && again == a);
    CHECK(atomic_load(&c.compiles) == 1);
    CHECK_FAILS(smf_jit_resolve(j, "nothing$here", &a), SMF_JIT_NOT_FOUND);
    CHECK(a == NULL);
    CHECK_FAILS(smf_jit_resolve_generic(j, "Pair", NULL, 2, &a), SMF_JIT_INVALID_ARGUMENT);
    smf_jit_free(j);
}

typedef struct {
    SmfJit *jit;
    pthread_barrier_t *start;
    const void *address;
    int32_t code;
} Racer;

static void *race(void *arg) {
    Racer *r = arg;
    pthread_barrier_wait(r->start);
    r->code = smf_jit_instantiate(r->jit, module_path, "identity$i64", &r->address);
    return NULL;
}

static void two_threads_one_compile(SmfCache *cache) {
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    c.delay_ms = 50;
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, 2);
    Racer racers[2] = {{j, &start, NULL, -9}, {j, &start, NULL, -9}};
    pthread_t threads[2];
    for (int i = 0; i < 2; i++) CHECK(pthread_create(&threads[i], NULL, race, &racers[i]) == 0);
    for (int i = 0; i < 2; i++) pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    CHECK(racers[0].code == SMF_JIT_OK && racers[1].code == SMF_JIT_OK);
    CHECK(racers[0].address != NULL && racers[0].address == racers[1].address);
    CHECK(atomic_load(&c.compiles) == 1);
    SmfJitStats s;
    smf_jit_stats(j, &s);
    CHECK(s.instantiations == 1 && s.waits == 1);
    smf_jit_free(j);
}

static void limits_and_bad_arguments(SmfCache *cache) {
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    const void *a = NULL;
    smf_jit_set_max_instantiations(j, 1);
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", &a) == SMF_JIT_OK);
    CHECK_FAILS(smf_jit_instantiate(j, module_path, "Pair$Int_text", &a), SMF_JIT_LIMIT_REACHED);
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", &a) == SMF_JIT_OK); /* kept */

    CHECK_FAILS(smf_jit_instantiate(NULL, module_path, "identity$i64", &a), SMF_JIT_INVALID_ARGUMENT);
    CHECK_FAILS(smf_jit_instantiate((SmfJit *)(uintptr_t)0x1230, module_path, "x", &a), SMF_JIT_INVALID_ARGUMENT);
    CHECK_FAILS(smf_jit_instantiate(j, NULL, "identity$i64", &a), SMF_JIT_INVALID_ARGUMENT);
    CHECK_FAILS(smf_jit_instantiate(j, module_path, NULL, &a), SMF_JIT_INVALID_ARGUMENT);
    CHECK_FAILS(smf_jit_instantiate(j, module_path, "\xff\xfe", &a), SMF_JIT_INVALID_ARGUMENT);
    CHECK(smf_jit_instantiate(j, module_path, "identity$i64", NULL) == SMF_JIT_OK);
    SmfJitConfig config = {0, true, true};
    CHECK_FAILS(smf_jit_new(cache, config, NULL, NULL), NULL);
    CHECK_FAILS(smf_jit_new(NULL, config, compile, NULL), NULL);
    smf_jit_free(j);
    smf_jit_free(NULL);
    CHECK_FAILS(smf_jit_instantiate(j, module_path, "identity$i64", &a), SMF_JIT_INVALID_ARGUMENT);
}

static void batches(SmfCache *cache) {
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    /* List$Float's compile asks for identity$i64, staged by the batch before it. */
    const char *names[4] = {"identity$i64", "Pair$Int_text", "List$Bool", "List$Float"};
    const void *addresses[4];
    int32_t statuses[4];
    CHECK(smf_jit_instantiate_batch(j, module_path, names, 4, addresses, statuses) == SMF_JIT_NOT_FOUND);
    CHECK(strstr(smf_last_error(), "1 of 4 names failed; the first, 2: List$Bool") != NULL);
    CHECK(statuses[0] == SMF_JIT_OK && statuses[1] == SMF_JIT_OK && statuses[2] == SMF_JIT_NOT_FOUND &&
          statuses[3] == SMF_JIT_OK);
    CHECK(addresses[2] == NULL);
    CHECK(call1(addresses[0], 41) == 41 && call1(addresses[1], 0) == 2 && call1(addresses[3], 7) == 7);
    CHECK(atomic_load(&c.compiles) == 3);
    const void *again = NULL;
    CHECK(smf_jit_instantiate(j, module_path, "List$Float", &again) == SMF_JIT_OK && again == addresses[3]);
    SmfJitStats s;
    smf_jit_stats(j, &s);
    CHECK(s.instantiations == 3);
    scan_maps("a batch");
    /* Names already there are answered without compiling; NULL outputs are fine. */
    CHECK(smf_jit_instantiate_batch(j, module_path, names, 2, NULL, NULL) == SMF_JIT_OK);
    CHECK(atomic_load(&c.compiles) == 3);
    /* Bad arguments fail the call as a whole, every status with the code. */
    const char *with_null[2] = {"identity$i64", NULL};
    CHECK_FAILS(smf_jit_instantiate_batch(j, module_path, with_null, 2, addresses, statuses),
                SMF_JIT_INVALID_ARGUMENT);
    CHECK(statuses[0] == SMF_JIT_INVALID_ARGUMENT && statuses[1] == SMF_JIT_INVALID_ARGUMENT && addresses[0] == NULL);
    CHECK_FAILS(smf_jit_instantiate_batch(j, module_path, NULL, 2, addresses, statuses), SMF_JIT_INVALID_ARGUMENT);
    CHECK_FAILS(smf_jit_instantiate_batch(NULL, module_path, names, 1, addresses, statuses), SMF_JIT_INVALID_ARGUMENT);
    CHECK(smf_jit_instantiate_batch(j, module_path, NULL, 0, NULL, NULL) == SMF_JIT_OK);
    smf_jit_free(j);
}

/* A load option's resolver that falls back to the instantiator, as a runtime's does. */
typedef struct {
    SmfJit *jit;
    int asked;
} JitResolver;

static const void *resolve_through_jit(void *user, const char *name) {
    JitResolver *r = user;
    r->asked++;
    const void *address = NULL;
    return smf_jit_resolve(r->jit, name, &address) == SMF_JIT_OK ? address : NULL;
}

static void a_resolver_may_call_the_instantiator_from_a_load_inside_a_request(void) {
    /* importer.smf imports identity$i64, which only generics.smf's "possible" table offers:
     * loading it (a cache miss inside smf_jit_instantiate) asks the resolver, which asks the
     * instantiator, on the same thread, mid-request. */
    SmfCache *cache = smf_cache_new(0, 0);
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    JitResolver r = {j, 0};
    SmfLoadOptions options = {resolve_through_jit, &r, 0};
    smf_cache_set_load_options(cache, &options);
    SmfModule *generics = smf_cache_get(cache, module_path);
    CHECK(generics != NULL);
    const void *extra = NULL;
    CHECK(smf_jit_instantiate(j, importer_path, "extra$x", &extra) == SMF_JIT_OK);
    CHECK(call1(extra, 0) == 77 && r.asked >= 1);
    const void *identity = NULL;
    CHECK(smf_jit_resolve(j, "identity$i64", &identity) == SMF_JIT_OK && call1(identity, 5) == 5);
    SmfModule *importer = smf_cache_get(cache, importer_path);
    CHECK(importer != NULL);
    const void *slot = smf_module_symbol(importer, "slot");
    CHECK(slot != NULL && *(const void *const *)slot == identity);
    CHECK(atomic_load(&c.compiles) == 2);
    smf_module_release(importer);
    smf_module_release(generics);
    smf_jit_free(j);
    smf_cache_free(cache);
}

static void freeing_from_inside_its_own_compile_is_refused(SmfCache *cache) {
    Compiler c;
    SmfJit *j = new_jit(cache, &c, 0, true, true);
    c.free_self = true;
    const void *a = NULL;
    CHECK(smf_jit_instantiate(j, module_path, "Pair$Int_text", &a) == SMF_JIT_OK);
    CHECK(call1(a, 0) == 2); /* still mapped: the free was refused */
    c.free_self = false;
    smf_jit_free(j);
    CHECK_FAILS(smf_jit_instantiate(j, module_path, "Pair$Int_text", &a), SMF_JIT_INVALID_ARGUMENT);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: jit_test DIR\n");
        return 2;
    }
    snprintf(module_path, sizeof module_path, "%s/generics.smf", argv[1]);
    snprintf(missing_path, sizeof missing_path, "%s/missing.smf", argv[1]);
    snprintf(garbage_path, sizeof garbage_path, "%s/garbage.smf", argv[1]);
    snprintf(importer_path, sizeof importer_path, "%s/importer.smf", argv[1]);
    FILE *garbage = fopen(garbage_path, "wb");
    CHECK(garbage != NULL && fputs("not a module", garbage) >= 0);
    fclose(garbage);

    SmfCache *cache = smf_cache_new(0, 0);
    CHECK(cache != NULL);
    checks_in_order(cache);
    note_sdn_is_updated(cache);
    resolve_and_resolve_generic(cache);
    two_threads_one_compile(cache);
    limits_and_bad_arguments(cache);
    batches(cache);
    freeing_from_inside_its_own_compile_is_refused(cache);
    a_resolver_may_call_the_instantiator_from_a_load_inside_a_request();
    /* The instantiators kept the cache alive; freeing it now is fine. */
    smf_cache_free(cache);
    scan_maps("the end");
    printf("%s: %d passed, 0 failed\n", TEST_NAME, passed);
    return 0;
}
