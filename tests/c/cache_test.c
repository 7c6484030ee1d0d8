/*
 * cache_test.c - the module cache from C: hits and misses, LRU order, the module and byte
 * budgets, evicting a module the test still holds (it keeps running), prefetch on two threads
 * then all hits, prefetch reporting each path's outcome (bad paths fail alone), an export
 * resolved across cached modules, a cached file truncated (no crash; the get fails) and one
 * replaced by rename (the old handle still runs, the new version loads), load options (a
 * resolver callback for the misses), statistics, bad handles.
 *
 * Usage: cache_test DIR   (DIR holds m0.smf .. m7.smf, each exporting f<i> returning i,
 *                          big0.smf .. big2.smf with 64 KiB of data, importer.smf importing ext_a,
 *                          v1.smf and v2.smf exporting `version` returning 1 and 2)
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEST_NAME "cache_test"
#include "check.h"

static const char *dir;

static const char *path_n(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "%s/%s", dir, name);
    return buf;
}

static char paths[8][4096];

static int64_t call0(SmfModule *m, const char *name) {
    int64_t r = -1;
    CHECK(smf_module_call(m, name, NULL, 0, &r) == 0);
    return r;
}

static void copy_file(const char *from, const char *to) {
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    CHECK(in != NULL && out != NULL);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0) CHECK(fwrite(buf, 1, n, out) == n);
    fclose(in);
    fclose(out);
}

static void hits_misses_and_lru(void) {
    SmfCache *c = smf_cache_new(0, 3);
    CHECK(c != NULL);
    SmfModule *m0 = smf_cache_get(c, paths[0]);
    CHECK(m0 != NULL && call0(m0, "f0") == 0);
    SmfModule *again = smf_cache_get(c, paths[0]);
    CHECK(again != NULL && smf_module_symbol(again, "f0") == smf_module_symbol(m0, "f0"));
    smf_module_release(again);
    for (int i = 1; i <= 2; i++) smf_module_release(smf_cache_get(c, paths[i]));
    smf_module_release(smf_cache_get(c, paths[0])); /* 0 most recent, 1 least */
    smf_module_release(smf_cache_get(c, paths[3]));
    CHECK(!smf_cache_contains(c, paths[1]));
    CHECK(smf_cache_contains(c, paths[0]) && smf_cache_contains(c, paths[2]) && smf_cache_contains(c, paths[3]));
    SmfCacheStats s;
    smf_cache_stats(c, &s);
    CHECK(s.hits == 2 && s.misses == 4 && s.evictions == 1 && s.modules == 3 && s.max_modules == 3);
    CHECK(s.load_ns_p50 > 0 && s.load_ns_p50 <= s.load_ns_max && s.load_ns_p99 <= s.load_ns_max);

    /* Evicting a module we hold: it keeps running until released. */
    CHECK(smf_cache_evict(c, paths[0]));
    CHECK(!smf_cache_evict(c, paths[0]));
    CHECK(call0(m0, "f0") == 0);
    smf_module_release(m0);

    /* An export across the cached modules. */
    const void *f3 = smf_cache_resolve(c, "f3");
    SmfModule *m3 = smf_cache_get(c, paths[3]);
    CHECK(f3 != NULL && f3 == smf_module_symbol(m3, "f3"));
    smf_module_release(m3);
    CHECK_FAILS(smf_cache_resolve(c, "nowhere"), NULL);
    smf_cache_clear(c);
    smf_cache_stats(c, &s);
    CHECK(s.modules == 0 && s.bytes == 0);
    smf_cache_free(c);
}

static void byte_budget(void) {
    char p[3][4096];
    const char *names[3] = {"big0.smf", "big1.smf", "big2.smf"};
    SmfCache *probe = smf_cache_new(0, 0);
    SmfModule *m = smf_cache_get(probe, path_n(p[0], sizeof p[0], names[0]));
    CHECK(m != NULL);
    SmfCacheStats s;
    smf_cache_stats(probe, &s);
    uint64_t one = s.bytes;
    CHECK(one >= 65536);
    smf_module_release(m);
    smf_cache_free(probe);

    SmfCache *c = smf_cache_new(2 * one + one / 2, 0);
    for (int i = 0; i < 3; i++) smf_module_release(smf_cache_get(c, path_n(p[i], sizeof p[i], names[i])));
    smf_cache_stats(c, &s);
    CHECK(s.modules == 2 && s.bytes == 2 * one && s.evictions == 1 && s.max_bytes == 2 * one + one / 2);
    CHECK(!smf_cache_contains(c, p[0]));
    smf_cache_free(c);
}

static void prefetch_then_hits(void) {
    SmfCache *c = smf_cache_new(0, 0);
    const char *list[9];
    for (int i = 0; i < 8; i++) list[i] = paths[i];
    char missing[4096];
    list[8] = path_n(missing, sizeof missing, "missing.smf");
    CHECK(smf_cache_prefetch(c, list, 9, 2) == 8);
    SmfCacheStats s;
    smf_cache_stats(c, &s);
    CHECK(s.misses == 9 && s.load_failures == 1 && s.modules == 8);
    for (int i = 0; i < 8; i++) {
        SmfModule *m = smf_cache_get(c, paths[i]);
        char name[8];
        snprintf(name, sizeof name, "f%d", i);
        CHECK(m != NULL && call0(m, name) == i);
        smf_module_release(m);
    }
    smf_cache_stats(c, &s);
    CHECK(s.hits == 8 && s.misses == 9);
    smf_cache_free(c);
}

/* Each path on its own: NULL and empty paths, a missing file and an unresolved import fail
 * alone, the statuses say which and how, smf_last_error lists them (the first first), and
 * load_failures counts each failed file once (the unresolved one is retried). */
static void prefetch_reports_each_path(void) {
    char missing[4096], importer[4096];
    path_n(missing, sizeof missing, "missing.smf");
    path_n(importer, sizeof importer, "importer.smf");
    const char *list[6] = {paths[0], NULL, missing, "", paths[1], importer};
    int32_t statuses[6];
    SmfCache *c = smf_cache_new(0, 0);
    smf_clear_error();
    CHECK(smf_cache_prefetch_report(c, list, 6, 2, statuses) == 2);
    CHECK(statuses[0] == SMF_PREFETCH_OK && statuses[4] == SMF_PREFETCH_OK);
    CHECK(statuses[1] == SMF_PREFETCH_BAD_PATH && statuses[3] == SMF_PREFETCH_BAD_PATH);
    CHECK(statuses[2] == SMF_PREFETCH_FILE_ERROR && statuses[5] == SMF_PREFETCH_LINK_ERROR);
    const char *e = smf_last_error();
    CHECK(strstr(e, "4 of 6 paths failed") != NULL);
    CHECK(strstr(e, "path 1 is NULL") != NULL && strstr(e, "path 3 is empty") != NULL);
    CHECK(strstr(e, "missing.smf") != NULL && strstr(e, "ext_a") != NULL);
    CHECK(strstr(e, "path 1") < strstr(e, "path 2") && strstr(e, "path 2") < strstr(e, "path 5"));
    CHECK(smf_cache_contains(c, paths[0]) && smf_cache_contains(c, paths[1]));
    SmfCacheStats s;
    smf_cache_stats(c, &s);
    CHECK(s.misses == 4 && s.load_failures == 2 && s.modules == 2);

    /* The spec's form: the same loads and message, no statuses. */
    SmfCache *d = smf_cache_new(0, 0);
    smf_clear_error();
    CHECK(smf_cache_prefetch(d, list, 6, 1) == 2);
    CHECK(strstr(smf_last_error(), "4 of 6 paths failed") != NULL);
    /* All well: no message. */
    smf_clear_error();
    CHECK(smf_cache_prefetch_report(d, list, 1, 1, statuses) == 1 && statuses[0] == SMF_PREFETCH_OK);
    CHECK(strcmp(smf_last_error(), "") == 0);
    /* The call as a whole fails: every status says it was not tried. */
    CHECK_FAILS(smf_cache_prefetch_report(NULL, list, 2, 1, statuses), 0);
    CHECK(statuses[0] == SMF_PREFETCH_NOT_TRIED && statuses[1] == SMF_PREFETCH_NOT_TRIED);
    CHECK_FAILS(smf_cache_prefetch_report(d, NULL, 2, 1, statuses), 0);
    CHECK(smf_cache_prefetch_report(d, NULL, 0, 1, NULL) == 0);
    smf_cache_free(d);
    smf_cache_free(c);
}

/* Gets `path` until its `version` is `want` (change notices are asynchronous); 5 s at most. */
static SmfModule *get_until(SmfCache *c, const char *path, int64_t want) {
    for (int i = 0; i < 5000; i++) {
        SmfModule *m = smf_cache_get(c, path);
        if (m != NULL) {
            int64_t v = -1;
            if (smf_module_call(m, "version", NULL, 0, &v) == 0 && v == want) return m;
            smf_module_release(m);
        }
        usleep(1000);
    }
    return NULL;
}

static void changed_files(void) {
    char hot[4096], v1[4096], v2[4096], tmp[4096];
    path_n(hot, sizeof hot, "hot.smf");
    path_n(v1, sizeof v1, "v1.smf");
    path_n(v2, sizeof v2, "v2.smf");
    path_n(tmp, sizeof tmp, "hot.tmp");
    copy_file(v1, hot);
    SmfCache *c = smf_cache_new(0, 0);
    SmfModule *old = smf_cache_get(c, hot);
    CHECK(old != NULL && call0(old, "version") == 1);

    /* Replaced by rename: noticed, a later get loads the new version; the old handle runs v1. */
    copy_file(v2, tmp);
    CHECK(rename(tmp, hot) == 0);
    SmfModule *new = get_until(c, hot, 2);
    CHECK(new != NULL);
    CHECK(call0(old, "version") == 1);
    smf_module_release(new);

    /* Checking every get: the very next get sees a change. */
    smf_cache_check_every_get(c, true);
    copy_file(v1, tmp);
    CHECK(rename(tmp, hot) == 0);
    new = smf_cache_get(c, hot);
    CHECK(new != NULL && call0(new, "version") == 1);

    /* Truncated while cached: no crash, the get fails, the stale entry leaves. */
    CHECK(truncate(hot, 10) == 0);
    CHECK_FAILS(smf_cache_get(c, hot), NULL);
    CHECK(!smf_cache_contains(c, hot));
    CHECK(call0(new, "version") == 1);
    smf_module_release(new);
    smf_module_release(old);
    smf_cache_free(c);
}

static int asked;
static int64_t ext_a_value = 99;
static const void *resolve(void *user, const char *name) {
    (void)user;
    asked++;
    return strcmp(name, "ext_a") == 0 ? (const void *)&ext_a_value : NULL;
}

static void load_options(void) {
    char importer[4096];
    path_n(importer, sizeof importer, "importer.smf");
    SmfCache *c = smf_cache_new(0, 0);
    CHECK_FAILS(smf_cache_get(c, importer), NULL);
    SmfLoadOptions options = {resolve, NULL, SMF_LOAD_LOCAL};
    smf_cache_set_load_options(c, &options);
    SmfModule *m = smf_cache_get(c, importer);
    CHECK(m != NULL && asked == 1);
    CHECK(call0(m, "addr_ext_a") == (int64_t)(intptr_t)&ext_a_value);
    smf_module_release(m);
    smf_cache_set_load_options(c, NULL);
    smf_cache_free(c);
}

static void bad_handles(void) {
    SmfCache *c = smf_cache_new(0, 0);
    smf_cache_free(c);
    CHECK_FAILS(smf_cache_get(c, paths[0]), NULL); /* freed: a stale handle, not a crash */
    CHECK_FAILS(smf_cache_get(NULL, paths[0]), NULL);
    CHECK_FAILS(smf_cache_resolve((SmfCache *)(uintptr_t)0x1230, "f0"), NULL);
    smf_cache_free(NULL);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: cache_test DIR\n");
        return 2;
    }
    dir = argv[1];
    for (int i = 0; i < 8; i++) {
        char name[16];
        snprintf(name, sizeof name, "m%d.smf", i);
        path_n(paths[i], sizeof paths[i], name);
    }
    hits_misses_and_lru();
    scan_maps("lru");
    byte_budget();
    prefetch_then_hits();
    prefetch_reports_each_path();
    scan_maps("prefetch");
    changed_files();
    load_options();
    bad_handles();
    scan_maps("end");
    printf("%s: %d passed, 0 failed\n", TEST_NAME, passed);
    return 0;
}
