/*
 * rt_test.c - exercises every rt_* function of smf.h from C: both call sequences, patching,
 * frees, bad arguments of every kind, file mappings, the executable-memory budget, and 4
 * threads at once. After every step it reads /proc/self/maps and fails on any
 * writable-and-executable mapping.
 *
 * Built and run by tests/tests/c_abi.rs, linked once against libsmf.a and once against
 * libsmf.so. Usage: rt_test SCRATCH_DIR
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_NAME "rt_test"
#include "check.h"

static void check_no_rwx(const char *step) { (void)scan_maps(step); }

#if defined(__x86_64__)
/* mov eax, imm32; ret */
static void ret_const(uint8_t out[8], uint32_t v) {
    uint8_t code[8] = {0xB8, (uint8_t)v, (uint8_t)(v >> 8), (uint8_t)(v >> 16), (uint8_t)(v >> 24), 0xC3, 0xCC, 0xCC};
    memcpy(out, code, 8);
}
static const int64_t IMM_OFFSET = 1; /* patch the imm32 */
static void imm_bytes(uint8_t out[4], uint32_t v) { memcpy(out, &v, 4); }
static const uint8_t ADD2[] = {0x48, 0x8D, 0x04, 0x37, 0xC3};  /* lea rax, [rdi+rsi]; ret */
static const uint8_t IDENT[] = {0x48, 0x89, 0xF8, 0xC3};       /* mov rax, rdi; ret */
#elif defined(__aarch64__)
static void put32(uint8_t *p, uint32_t v) { memcpy(p, &v, 4); }
static void ret_const(uint8_t out[8], uint32_t v) { put32(out, 0xD2800000u | ((v & 0xFFFF) << 5)); put32(out + 4, 0xD65F03C0u); }
static const int64_t IMM_OFFSET = 0; /* patch the whole movz */
static void imm_bytes(uint8_t out[4], uint32_t v) { put32(out, 0xD2800000u | ((v & 0xFFFF) << 5)); }
static const uint8_t ADD2[] = {0x00, 0x00, 0x01, 0x8B, 0xC0, 0x03, 0x5F, 0xD6}; /* add x0, x0, x1; ret */
static const uint8_t IDENT[] = {0xC0, 0x03, 0x5F, 0xD6};                         /* ret */
#else
#error "rt_test.c knows x86-64 and aarch64 machine code only"
#endif

static int64_t page;

static void explicit_sequence(void) {
    uint8_t code[8];
    int64_t a = rt_alloc_rw_memory(6);
    CHECK(a != 0 && a % page == 0);
    CHECK(rt_get_protection(a) == (RT_PROT_READ | RT_PROT_WRITE));
    ret_const(code, 42);
    CHECK(rt_write_exec_memory(a, code, 8, 0) == 8);
    CHECK(!rt_is_executable(a));
    CHECK_FAILS(rt_call_function_0(a), 0); /* not sealed: refused without jumping */
    check_no_rwx("explicit: written");
    CHECK(rt_make_executable(a, 6));
    CHECK(rt_get_protection(a) == (RT_PROT_READ | RT_PROT_EXEC));
    CHECK(rt_is_executable(a));
    CHECK(rt_call_function_0(a) == 42);
    check_no_rwx("explicit: sealed");
    CHECK(rt_free_exec_memory(a, 6));
    CHECK(!rt_is_executable(a));
    CHECK_FAILS(rt_call_function_0(a), 0); /* freed: refused without jumping */
}

static int64_t implicit_sequence(uint32_t value) {
    uint8_t code[8];
    int64_t b = rt_alloc_exec_memory(64);
    CHECK(b != 0);
    CHECK(rt_get_protection(b) == (RT_PROT_READ | RT_PROT_WRITE));
    ret_const(code, value);
    CHECK(rt_write_exec_memory(b, code, 8, 0) == 8);
    rt_flush_icache(b, 8);
    int64_t fp = rt_get_function_pointer(b);
    CHECK(fp == b);
    CHECK(rt_get_protection(b) == (RT_PROT_READ | RT_PROT_EXEC));
    CHECK(rt_call_function_0(fp) == (int64_t)value);
    return b;
}

static void arguments_and_patching(void) {
    int64_t f = rt_alloc_exec_memory((int64_t)sizeof ADD2);
    CHECK(rt_write_exec_memory(f, ADD2, (int64_t)sizeof ADD2, 0) == (int64_t)sizeof ADD2);
    CHECK(rt_call_function_2(rt_get_function_pointer(f), 40, 2) == 42);
    int64_t g = rt_alloc_exec_memory((int64_t)sizeof IDENT);
    CHECK(rt_write_exec_memory(g, IDENT, (int64_t)sizeof IDENT, 0) == (int64_t)sizeof IDENT);
    CHECK(rt_call_function_1(rt_get_function_pointer(g), -7) == -7);

    int64_t b = implicit_sequence(42);
    uint8_t imm[4];
    imm_bytes(imm, 7);
    CHECK(rt_write_exec_memory(b, imm, 4, IMM_OFFSET) == 4); /* patch a sealed allocation */
    CHECK(rt_get_protection(b) == (RT_PROT_READ | RT_PROT_EXEC));
    CHECK(rt_call_function_0(b) == 7);
    check_no_rwx("patched");
    CHECK(rt_exec_memory_count() == 3);
    CHECK(rt_exec_memory_total() == 3 * page);
    rt_exec_memory_dump_stats();
    CHECK(rt_free_exec_memory(f, 0));
    CHECK(rt_free_exec_memory(g, page));
    CHECK(rt_free_exec_memory(b, 64));
    CHECK(rt_exec_memory_count() == 0);
    CHECK(rt_exec_memory_total() == 0);
}

static int64_t helper_function(void) { return 1; }

static void bad_arguments(void) {
    int64_t stack_var = 0;
    int64_t stack = (int64_t)(intptr_t)&stack_var;
    int64_t foreign_code = (int64_t)(intptr_t)&helper_function;
    uint8_t code[8];
    ret_const(code, 1);

    CHECK_FAILS(rt_alloc_exec_memory(0), 0);
    CHECK_FAILS(rt_alloc_exec_memory(-1), 0);
    CHECK_FAILS(rt_alloc_exec_memory(INT64_MAX), 0);
    CHECK_FAILS(rt_alloc_rw_memory(-4096), 0);

    int64_t b = implicit_sequence(5);
    CHECK_FAILS(rt_write_exec_memory(0, code, 8, 0), -1);
    CHECK_FAILS(rt_write_exec_memory(-page, code, 8, 0), -1);
    CHECK_FAILS(rt_write_exec_memory(b, NULL, 8, 0), -1);
    CHECK_FAILS(rt_write_exec_memory(b, code, -1, 0), -1);
    CHECK_FAILS(rt_write_exec_memory(b, code, 8, -8), -1);
    CHECK_FAILS(rt_write_exec_memory(b, code, 8, page - 4), -1);  /* leaves the allocation */
    CHECK_FAILS(rt_write_exec_memory(b, code, 8, INT64_MAX), -1); /* overflows */
    CHECK_FAILS(rt_write_exec_memory(stack, code, 8, 0), -1);     /* foreign */
    CHECK_FAILS(rt_make_executable(stack, 8), false);
    CHECK_FAILS(rt_make_executable(b, INT64_MAX), false);
    CHECK_FAILS(rt_get_function_pointer(stack), 0);
    CHECK_FAILS(rt_get_function_pointer(0), 0);
    CHECK_FAILS(rt_call_function_0(stack), 0);        /* never jumps to foreign memory */
    CHECK_FAILS(rt_call_function_0(foreign_code), 0); /* not even to real code */
    CHECK_FAILS(rt_call_function_2(0, 1, 2), 0);
    CHECK(!rt_is_executable(foreign_code));
    CHECK_FAILS(rt_get_protection(stack), -1);
    CHECK_FAILS(rt_set_protection(b, page, RT_PROT_READ | RT_PROT_WRITE | RT_PROT_EXEC), false);
    CHECK_FAILS(rt_set_protection(b, page, RT_PROT_READ | RT_PROT_WRITE), false); /* sealed stays sealed */
    CHECK_FAILS(rt_set_protection(stack, 8, RT_PROT_READ), false);
    CHECK_FAILS(rt_free_exec_memory(b + 16, 0), false);
    CHECK_FAILS(rt_free_exec_memory(b, 123), false);
    CHECK_FAILS(rt_free_exec_memory(stack, 0), false);
    CHECK_FAILS(rt_munmap(b, page), false); /* not a file mapping */
    CHECK_FAILS(rt_mmap_read_bytes(stack, 0, 8, code), -1);
    CHECK_FAILS(rt_mmap_read_bytes(b, page - 4, 8, code), -1);
    CHECK_FAILS(rt_mmap_read_bytes(b, 0, 8, NULL), -1);
    CHECK_FAILS(rt_madvise(b, page, RT_ADVICE_DONTNEED), false); /* would erase sealed code */
    CHECK_FAILS(rt_madvise(b, page, 99), false);
    CHECK_FAILS(rt_msync(b, page, false), false);
    CHECK_FAILS(rt_mlock(stack, 8), false);
    smf_clear_error();
    rt_flush_icache(stack, 8); /* void: records an error, touches nothing */
    CHECK(strcmp(smf_last_error(), "") != 0);
    CHECK(rt_call_function_0(b) == 5); /* still intact */
    CHECK(rt_free_exec_memory(b, 0));
    CHECK_FAILS(rt_free_exec_memory(b, 0), false); /* double free */
    check_no_rwx("bad arguments");
}

static void file_mappings(const char *dir) {
    char path[4096], missing[4096];
    snprintf(path, sizeof path, "%s/mapped.bin", dir);
    snprintf(missing, sizeof missing, "%s/missing.bin", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    const char content[] = "hello\0world, mapped";
    CHECK(fwrite(content, 1, sizeof content, f) == sizeof content);
    fclose(f);
    const int64_t n = (int64_t)sizeof content;

    CHECK(rt_file_size_for_mmap(path) == n);
    CHECK_FAILS(rt_file_size_for_mmap(missing), -1);
    CHECK_FAILS(rt_file_size_for_mmap(NULL), -1);

    RtMapping m = rt_mmap_file(path, RT_PROT_READ, RT_MAP_PRIVATE, 0, 0);
    CHECK(m.address != 0 && m.size == n);
    CHECK(rt_get_protection(m.address) == RT_PROT_READ);
    uint8_t buf[64] = {0};
    CHECK(rt_mmap_read_bytes(m.address, 6, 5, buf) == 5);
    CHECK(memcmp(buf, "world", 5) == 0);
    CHECK(rt_mmap_read_string(m.address, 0, 0, buf, 64) == 5);
    CHECK(memcmp(buf, "hello", 5) == 0);
    CHECK(rt_mmap_read_string(m.address, 6, 3, buf, 64) == 3);
    memset(buf, 0, sizeof buf);
    CHECK(rt_mmap_read_string(m.address, 6, 0, buf, 2) == 13); /* "world, mapped" */
    CHECK(buf[0] == 'w' && buf[1] == 'o' && buf[2] == 0);
    CHECK(rt_mmap_read_string(m.address, n - 1, 0, buf, 64) == 0);
    CHECK_FAILS(rt_mmap_read_bytes(m.address, n - 2, 5, buf), -1); /* past the mapping */
    CHECK_FAILS(rt_mmap_read_string(m.address, n + 1, 0, buf, 64), -1);
    CHECK_FAILS(rt_mmap_read_string(m.address, 0, -1, buf, 64), -1);
    CHECK(rt_madvise(m.address, m.size, RT_ADVICE_SEQUENTIAL));
    CHECK(rt_madvise(m.address, m.size, RT_ADVICE_WILLNEED));
    smf_clear_error();
    if (!rt_mlock(m.address, m.size)) { /* RLIMIT_MEMLOCK may refuse: then a message says why */
        CHECK(strcmp(smf_last_error(), "") != 0);
    } else {
        CHECK(rt_munlock(m.address, m.size));
    }
    CHECK(rt_set_protection(m.address, m.size, RT_PROT_NONE));
    CHECK(rt_get_protection(m.address) == RT_PROT_NONE);
    CHECK_FAILS(rt_mmap_read_bytes(m.address, 0, 4, buf), -1); /* PROT_NONE is not read */
    CHECK(rt_set_protection(m.address, m.size, RT_PROT_READ));
    CHECK_FAILS(rt_set_protection(m.address, m.size, RT_PROT_WRITE | RT_PROT_EXEC), false);
    CHECK_FAILS(rt_set_protection(m.address, 4, RT_PROT_NONE), false); /* whole mapping only */
    CHECK_FAILS(rt_call_function_0(m.address), 0); /* a file mapping is not code */
    CHECK_FAILS(rt_munmap(m.address, 3), false);
    CHECK(rt_munmap(m.address, m.size));
    CHECK_FAILS(rt_munmap(m.address, m.size), false);
    CHECK_FAILS(rt_mmap_read_bytes(m.address, 0, 4, buf), -1); /* unmapped */

    /* Shared writable mapping: changes reach the file through msync. */
    RtMapping w = rt_mmap_file(path, RT_PROT_READ | RT_PROT_WRITE, RT_MAP_SHARED, 0, 5);
    CHECK(w.address != 0 && w.size == 5);
    memcpy((void *)(intptr_t)w.address, "HELLO", 5);
    CHECK(rt_msync(w.address, w.size, false));
    CHECK(rt_munmap(w.address, w.size));
    f = fopen(path, "rb");
    char back[5];
    CHECK(f && fread(back, 1, 5, f) == 5);
    fclose(f);
    CHECK(memcmp(back, "HELLO", 5) == 0);

    RtMapping bad;
    smf_clear_error();
    bad = rt_mmap_file(path, RT_PROT_WRITE | RT_PROT_EXEC, RT_MAP_PRIVATE, 0, 0);
    CHECK(bad.address == 0 && bad.size == 0 && strcmp(smf_last_error(), "") != 0);

    /* No executable view of a file: with a writable shared view of the same file, code written
     * through one would run through the other. */
    RtMapping writable = rt_mmap_file(path, RT_PROT_READ | RT_PROT_WRITE, RT_MAP_SHARED, 0, 0);
    CHECK(writable.address != 0);
    smf_clear_error();
    bad = rt_mmap_file(path, RT_PROT_READ | RT_PROT_EXEC, RT_MAP_SHARED, 0, 0);
    CHECK(bad.address == 0 && strstr(smf_last_error(), "never executable") != NULL);
    bad = rt_mmap_file(path, RT_PROT_READ | RT_PROT_EXEC, RT_MAP_PRIVATE, 0, 0);
    CHECK(bad.address == 0);
    RtMapping readable = rt_mmap_file(path, RT_PROT_READ, RT_MAP_SHARED, 0, 0);
    CHECK(readable.address != 0);
    CHECK_FAILS(rt_set_protection(readable.address, readable.size, RT_PROT_READ | RT_PROT_EXEC), false);
    CHECK(rt_get_protection(readable.address) == RT_PROT_READ);
    CHECK(!rt_is_executable(readable.address));
    CHECK(rt_munmap(readable.address, readable.size));
    CHECK(rt_munmap(writable.address, writable.size));
    bad = rt_mmap_file(path, RT_PROT_READ, RT_MAP_PRIVATE, 1, 0); /* unaligned offset */
    CHECK(bad.address == 0);
    bad = rt_mmap_file(path, RT_PROT_READ, RT_MAP_PRIVATE, 0, n + 1); /* past EOF */
    CHECK(bad.address == 0);
    bad = rt_mmap_file(path, RT_PROT_READ, RT_MAP_PRIVATE, page, 0); /* nothing there */
    CHECK(bad.address == 0);
    bad = rt_mmap_file(path, RT_PROT_READ, 3, 0, 0); /* bad flags */
    CHECK(bad.address == 0);
    bad = rt_mmap_file(missing, RT_PROT_READ, RT_MAP_PRIVATE, 0, 0);
    CHECK(bad.address == 0);
    bad = rt_mmap_file(NULL, RT_PROT_READ, RT_MAP_PRIVATE, 0, 0);
    CHECK(bad.address == 0);
    bad = rt_mmap_file(path, RT_PROT_READ, RT_MAP_PRIVATE, -page, 0);
    CHECK(bad.address == 0);
    check_no_rwx("file mappings");
}

static void truncated_file(const char *dir) {
    /* A 16 KiB file, mapped, then cut to 4 KiB on disk: reading the pages it lost is an error,
     * not SIGBUS. */
    char path[4096];
    snprintf(path, sizeof path, "%s/shrinks.bin", dir);
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    static uint8_t content[16384];
    memset(content, 'x', sizeof content);
    CHECK(fwrite(content, 1, sizeof content, f) == sizeof content);
    fclose(f);
    RtMapping m = rt_mmap_file(path, RT_PROT_READ, RT_MAP_SHARED, 0, 0);
    CHECK(m.address != 0 && m.size == 16384);
    CHECK(truncate(path, 4096) == 0);
    uint8_t buf[64];
    CHECK(rt_mmap_read_bytes(m.address, 0, 16, buf) == 16 && buf[0] == 'x');
    CHECK_FAILS(rt_mmap_read_bytes(m.address, 8192, 16, buf), -1);
    CHECK(strstr(smf_last_error(), "no longer") != NULL);
    CHECK_FAILS(rt_mmap_read_bytes(m.address, 4000, 200, buf), -1); /* straddles the new end */
    CHECK_FAILS(rt_mmap_read_string(m.address, 8192, 0, buf, 64), -1);
    CHECK(rt_mmap_read_string(m.address, 4000, 50, buf, 64) == 50);
    CHECK(rt_munmap(m.address, m.size));
}

static long resident_kib(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long size = 0, resident = 0;
    CHECK(f != NULL && fscanf(f, "%ld %ld", &size, &resident) == 2);
    fclose(f);
    return resident * (page / 1024);
}

static void large_allocations_commit_what_is_written(void) {
    /* A 1 GiB allocation reserves address space; only the pages written are committed. */
    long before = resident_kib();
    int64_t big = rt_alloc_exec_memory(1LL << 30);
    CHECK(big != 0);
    uint8_t code[8];
    ret_const(code, 77);
    CHECK(rt_write_exec_memory(big, code, 8, (1LL << 30) - 4096) == 8);
    CHECK(rt_call_function_0(rt_get_function_pointer(big + (1LL << 30) - 4096)) == 77);
    if (!RUNNING_ON_VALGRIND) {
        CHECK(resident_kib() - before < 64 * 1024);
    }
    CHECK(rt_free_exec_memory(big, 0));
}

/* The process-wide budget of rt executable memory: 4 GiB by default (SMF_EXEC_BUDGET is not
 * set here), so of twenty 1 GiB allocations four succeed and the fifth fails naming the budget;
 * smf_set_exec_budget moves it (returning the old one), 0 lifts it, and freed memory is
 * available again. */
static void exec_budget(void) {
    const int64_t gib = 1LL << 30;
    CHECK(smf_exec_budget() == (uint64_t)4 << 30);
    int64_t a[20];
    int n = 0;
    for (int i = 0; i < 20; i++) {
        smf_clear_error();
        a[n] = rt_alloc_exec_memory(gib);
        if (a[n] == 0) {
            CHECK(strstr(smf_last_error(), "budget") != NULL);
            CHECK(strstr(smf_last_error(), "SMF_EXEC_BUDGET") != NULL);
            continue;
        }
        n++;
    }
    CHECK(n == 4);
    CHECK_FAILS(rt_alloc_rw_memory(page), 0); /* the same budget for both kinds */
    CHECK(rt_exec_memory_total() == 4 * gib);
    CHECK(rt_free_exec_memory(a[--n], 0));
    a[n] = rt_alloc_rw_memory(gib); /* freed memory is available again */
    CHECK(a[n++] != 0);
    for (int i = 0; i < n; i++) CHECK(rt_free_exec_memory(a[i], 0));

    /* Set, lowered below what is live (nothing is freed; later allocations fail), lifted. */
    CHECK(smf_set_exec_budget(3 * (uint64_t)page) == (uint64_t)4 << 30);
    CHECK(smf_exec_budget() == 3 * (uint64_t)page);
    int64_t two = rt_alloc_exec_memory(2 * page);
    CHECK(two != 0);
    CHECK_FAILS(rt_alloc_exec_memory(2 * page), 0);
    int64_t one = rt_alloc_exec_memory(page);
    CHECK(one != 0);
    CHECK(smf_set_exec_budget(page) == 3 * (uint64_t)page);
    CHECK(rt_exec_memory_count() == 2);
    CHECK_FAILS(rt_alloc_exec_memory(1), 0);
    CHECK(smf_set_exec_budget(0) == (uint64_t)page);
    int64_t free_for_all = rt_alloc_exec_memory(page);
    CHECK(free_for_all != 0);
    CHECK(rt_free_exec_memory(free_for_all, 0) && rt_free_exec_memory(one, 0) && rt_free_exec_memory(two, 0));
    CHECK(smf_set_exec_budget((uint64_t)4 << 30) == 0);
}

static void stable_error_pointer(void) {
    CHECK_FAILS(rt_alloc_exec_memory(-1), 0);
    const char *first = smf_last_error();
    CHECK(strstr(first, "negative") != NULL);
    CHECK_FAILS(rt_alloc_exec_memory(0), 0);
    CHECK(smf_last_error() == first); /* the same buffer for the thread's life */
    CHECK(strstr(first, "size is 0") != NULL);
}

static void *worker(void *arg) {
    uint32_t base = (uint32_t)(uintptr_t)arg * 1000;
    for (uint32_t i = 0; i < 200; i++) {
        int64_t b = implicit_sequence(base + i);
        uint8_t imm[4];
        imm_bytes(imm, base + i + 1);
        CHECK(rt_write_exec_memory(b, imm, 4, IMM_OFFSET) == 4);
        CHECK(rt_call_function_0(b) == (int64_t)(base + i + 1));
        CHECK(rt_free_exec_memory(b, 0));
        if (i % 50 == 0) {
            check_no_rwx("threads");
        }
    }
    return NULL;
}

static void threads(void) {
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) {
        CHECK(pthread_create(&t[i], NULL, worker, (void *)i) == 0);
    }
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(t[i], NULL) == 0);
    }
    CHECK(rt_exec_memory_count() == 0);
}

int main(int argc, char **argv) {
    CHECK(argc == 2);
    CHECK(strcmp(smf_last_error(), "") == 0);
    page = rt_get_page_size();
    CHECK(page >= 4096 && (page & (page - 1)) == 0);
    explicit_sequence();
    arguments_and_patching();
    bad_arguments();
    file_mappings(argv[1]);
    truncated_file(argv[1]);
    large_allocations_commit_what_is_written();
    exec_budget();
    stable_error_pointer();
    threads();
    check_no_rwx("end");
    printf("rt_test: %d passed, 0 failed\n", passed);
    return 0;
}
