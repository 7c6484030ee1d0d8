/*
 * smf.h - C interface of smf-loader, the SMF module loader of the Simple runtime.
 *
 * Link with libsmf.so (pkg-config --libs smf), or statically with libsmf.a and the system
 * libraries it needs, -lutil -lrt -lpthread -lm -ldl (pkg-config --libs smf-static; also for
 * fully static programs, cc -static).
 *
 * Conventions (every function):
 *  - Addresses and sizes are int64_t as in the Simple SFFI specs; strings are NUL-terminated.
 *  - Every address argument is checked against the library's own live mappings and
 *    allocations before any memory is touched. Zero, negative, overflowing and foreign ranges
 *    fail with the documented sentinel.
 *  - Every failure records a message readable with smf_last_error() on the same thread;
 *    success does not clear it.
 *  - Nothing panics across the boundary or aborts the process on bad input.
 *  - All functions are thread-safe.
 *  - Handles (SmfModule *, SmfCache *, SmfJit *) are opaque values, never dereferenced, each of
 *    one type: values never repeat and never collide across types, and a handle given where
 *    another type is expected fails with an error naming both ("0x120 is an SmfCache handle,
 *    not an SmfModule handle"), touching nothing.
 *  - W^X: no page this library maps is ever writable and executable at the same moment,
 *    unless the process sets SMF_ALLOW_RWX=1 before the first call (debugging only).
 *  - A loaded module's read-only data is sealed read-execute with its code (one protection
 *    change per load); SMF_RODATA_NOEXEC=1, set before the first call, keeps it read-only and
 *    not executable in pages of its own instead, except in a module linked with its
 *    read-only data (smf pack without -z separate-code), which keeps it after its code.
 *  - fork(): the child keeps every module, cache and instantiator its parent had. It never
 *    writes into code its parent runs (instantiated code goes to memory of its own), its caches
 *    compare a file's identity again until its own change watcher runs (the parent's thread
 *    stayed in the parent), and its perf map is its own (/tmp/perf-CHILDPID.map). A fork
 *    waits for the library's locks (the registry, the handle tables, the index of code, the
 *    debugger's list, the executable memory allocator, the host and C library names, the
 *    library's calls into libgcc's unwind table registry, and the locks of every live cache,
 *    instantiator and execution manager; each held briefly, never across a call out) and the
 *    child finds them free, as glibc's dlopen lock: a child may load, call and release modules,
 *    get modules from a cache and instantiate through an instantiator, whatever other threads
 *    were doing; a name another thread was compiling at the fork is compiled again by the
 *    child that asks for it; the rt_* allocations and file mappings are held too, each with
 *    its own lock. Not covered: a thread throwing a C++ exception at
 *    the fork while libgcc takes its own lock to find a frame (libgcc does not release it in
 *    the child; GCC 13's libgcc finds frames without it).
 *
 * Example (examples/host/hello_smf.c is a complete program along these lines, built and run
 * in CI; build yours with cc prog.c $(pkg-config --cflags --libs smf)):
 *
 *     SmfModule *m = smf_module_load("examples/recursion.smf");
 *     if (m == NULL) { fprintf(stderr, "%s\n", smf_last_error()); return 1; }
 *     int64_t (*fib)(int64_t) = (int64_t (*)(int64_t))smf_module_function(m, "fib");
 *     if (fib != NULL) printf("%lld\n", (long long)fib(30));          prints 832040
 *     smf_module_release(m);                          fib must not be called after this
 *
 * (smf_module_call(m, "fib", args, 1, &result) calls by name, checking the symbol is code.)
 *
 * The rt_* functions are built when the library's default cargo feature "rt" is on. A Simple
 * runtime build that defines rt_munmap, rt_madvise and rt_msync itself links a library built
 * without it (and defines SMF_NO_RT before including this header).
 */
#ifndef SMF_H
#define SMF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The last error recorded on the calling thread, or "" if none. The pointer stays valid for
 * the thread's life (like dlerror's): the next failure on the thread replaces the text it
 * points to. Messages are at most 1023 bytes (longer ones are cut and end with "..."). C++
 * names a message quotes are demangled (`foo::bar()`, not `_ZN3foo3barEv`) where the process
 * has a C++ runtime loaded (a C++ host, or libstdc++ opened for a module that needs it). */
const char *smf_last_error(void);
/* Extension: forgets the calling thread's last error (smf_last_error() returns "" again). */
void smf_clear_error(void);
/* Extension, as dlerror: the calling thread's last error, which is then forgotten; NULL if no
 * failure was recorded since the last call (or smf_clear_error). The text stays valid until the
 * thread's next smf_take_error() call; later failures do not change it. */
const char *smf_take_error(void);

/* ---- smf_module_*: the loader ---------------------------------------------------------------- */

/* A loaded module: opaque, reference-counted, immutable once loaded. Modules loaded through this
 * API join a process-wide registry (unless loaded with SMF_LOAD_LOCAL): their exported symbols
 * resolve the imports of modules loaded later (the first module loaded wins a name), and an
 * importer keeps its providers alive. Every call checks its SmfModule* against the live
 * handles first. */
typedef struct SmfModule SmfModule;

/* Parses, validates, installs code W^X, relocates, then runs the module's constructors (C's
 * __attribute__((constructor)), C++ static objects); NULL on error (see smf_last_error),
 * including an exception escaping a constructor (caught; the module is released, its
 * destructors run). Its destructors run when its last handle is released; one an exception
 * escapes is dropped there. Each call loads a copy of its own (its own code and globals, its
 * constructors run again), unlike dlopen, which hands out the loaded library again: share
 * handles, or use an SmfCache, to load a path once. smf_module_load_ex(path, NULL). */
SmfModule  *smf_module_load(const char *path);
/* The same from memory (the bytes are not kept). */
SmfModule  *smf_module_load_bytes(const uint8_t *bytes, size_t len);

/* ---- Imports: what a module links against ------------------------------------------------
 * An import is looked up, in this order: host symbols (smf_host_define); exports of modules
 * loaded earlier (first loaded wins; SMF_LOAD_LOCAL modules excluded); options->resolve; the
 * shared libraries the module names as needed (smf pack records those its link line named:
 * libstdc++.so.6 for -lstdc++), opened with dlopen by file name as ld.so opens DT_NEEDED
 * once the module is validated and an import first gets this far (so their constructors run
 * only then), unless SMF_LOAD_NO_NEEDED is set (one that cannot be opened is named if an
 * import stays unresolved; with SMF_LOAD_NO_C_LIBRARY each gives only its own symbols, never
 * the C library's it links); the process's global symbols (dlsym(RTLD_DEFAULT): what the program linked) when
 * SMF_LOAD_PROCESS_SYMBOLS is set; last, the C library and libm (memcpy, strlen, sqrt: what
 * gcc's code calls, as dlopen resolves them) unless SMF_LOAD_NO_C_LIBRARY is set. The same
 * holds for loads without options and for the cache. The callback is called at most once per
 * distinct name per load, with no lock of this library held (it may load a dependency).
 * Unresolved imports fail the load with one line naming them (every import is looked up
 * first; the first 16 are named, the rest counted) and every place looked. */

/* Process-wide: 0 ok (also when the same name is defined again with the same address); -1 on a
 * NULL or empty name, a NULL address, or a name already defined with another address. A
 * function is given as SMF_FUNCTION_ADDRESS(f): ISO C has no conversion from a function
 * pointer to void *, and -pedantic warns at a plain cast; through uintptr_t it is defined. */
int32_t     smf_host_define(const char *name, const void *address);
#define SMF_FUNCTION_ADDRESS(f) ((const void *)(uintptr_t)(f))
/* 0 removed, -1 not defined; modules already linked keep the address they got. */
int32_t     smf_host_undefine(const char *name);

typedef const void *(*SmfResolveFn)(void *user, const char *name);   /* NULL = not mine */
enum { SMF_LOAD_PROCESS_SYMBOLS = 1,   /* the process's global symbols, after the resolver */
       SMF_LOAD_LOCAL = 2,             /* the module's exports are not offered to later loads */
       SMF_LOAD_NO_C_LIBRARY = 4,      /* extension: not the C library and libm either */
       SMF_LOAD_NO_DEBUG_INFO = 8,     /* extension: not described to debuggers (below) */
       SMF_LOAD_NO_NEEDED = 16 };      /* extension: not the libraries the module needs */
typedef struct {
    SmfResolveFn resolve;   /* may be NULL */
    void        *user;      /* passed to resolve */
    uint32_t     flags;     /* SMF_LOAD_* (other bits: an error) */
} SmfLoadOptions;

/* options may be NULL (then as smf_module_load / smf_module_load_bytes). */
SmfModule  *smf_module_load_ex(const char *path, const SmfLoadOptions *options);
SmfModule  *smf_module_load_bytes_ex(const uint8_t *bytes, size_t len, const SmfLoadOptions *options);
/* Drops one reference; the last one frees the module once no other module links to it.
 * NULL is a no-op. */
void        smf_module_release(SmfModule *m);
/* Adds a reference; returns m. */
SmfModule  *smf_module_retain(SmfModule *m);
/* 0 S128, 1 R96, 2 R72 (-1 for a bad handle). */
int32_t     smf_module_dialect(const SmfModule *m);
/* The address of a defined, exported (non-local) symbol, or NULL. */
const void *smf_module_symbol(const SmfModule *m, const char *name);
/* A defined, exported function's address as a function pointer, or NULL (unknown, or not a
 * function): cast it to the function's real type before calling, without leaving ISO C. */
typedef void (*SmfFunction)(void);
SmfFunction smf_module_function(const SmfModule *m, const char *name);
/* The entry point; NULL unless the module is executable. */
const void *smf_module_entry(const SmfModule *m);
/* All symbols, in table order: their number, and each name (NULL past the end; valid while the
 * module lives). The static functions a module names apart from its symbols (note.names, which
 * `smf pack` writes: no load links them) are not among them; smf_addr_info names them. */
size_t      smf_module_symbol_count(const SmfModule *m);
const char *smf_module_symbol_name(const SmfModule *m, size_t index);
/* One symbol, by index in table order: 0 ok, -1 past the end or error. `address` is where a
 * defined symbol lives, or what an import resolved to (NULL for types, templates, unresolved
 * weak imports); `name` is valid while the module is held. */
enum { SMF_SYMBOL_NONE = 0, SMF_SYMBOL_FUNCTION = 1, SMF_SYMBOL_DATA = 2, SMF_SYMBOL_TYPE = 3,
       SMF_SYMBOL_TEMPLATE = 4, SMF_SYMBOL_OTHER = 5 };
enum { SMF_BIND_LOCAL = 0, SMF_BIND_GLOBAL = 1, SMF_BIND_WEAK = 2 };
typedef struct {
    const char *name;
    int32_t     kind;       /* SMF_SYMBOL_*; an import is SMF_SYMBOL_NONE */
    int32_t     binding;    /* SMF_BIND_* */
    bool        defined;    /* false for an import */
    const void *address;
    uint64_t    size;
} SmfSymbolInfo;
int32_t     smf_module_symbol_info(const SmfModule *m, size_t index, SmfSymbolInfo *out);
/* Calls the exported function `name` with up to 6 integer arguments, storing its 64-bit result
 * (all 64 bits of the return register: a function returning a narrower C type leaves its high
 * bits unspecified, so cast the result to that type); 0 ok, -1 error (unknown, not a function,
 * nargs > 6, or an exception escaped the function: caught at the call and discarded, as
 * catch (...) {} would, never unwound into the library). The module stays loaded until the call
 * returns, even if another thread releases the last handle meanwhile. A function called through
 * smf_module_function's pointer is the caller's own call: its exceptions reach the caller. */
int32_t     smf_module_call(const SmfModule *m, const char *name, const int64_t *args, size_t nargs, int64_t *result);
/* The note.sdn text (without its terminator line): 1 found, 0 absent, -1 error. */
int32_t     smf_module_note_sdn(const SmfModule *m, const uint8_t **text, size_t *len);
/* The template-code entry of the template symbol `name`: 1 found, 0 absent, -1 error. */
int32_t     smf_module_template(const SmfModule *m, const char *name, const uint8_t **bytes, size_t *len);

/* ---- Seeing into loaded code ----------------------------------------------------------------
 * Every module loaded through this library is described to GDB through its JIT interface
 * (__jit_debug_descriptor, __jit_debug_register_code, defined by this library): backtraces and
 * `info symbol` name module functions. A module is described at its load when a debugger
 * listens (its breakpoint is on __jit_debug_register_code, or the process was traced at its
 * first load: gdb, rr); otherwise it waits, and every waiting module is described at the first
 * load that finds a debugger listening (a debugger attached later sees the earlier modules once
 * the next one loads); SMF_GDB_JIT=1 describes every module at its load. A module's unwind tables (what `smf pack` keeps of
 * .eh_frame) are registered with the process's unwinder (libgcc's __register_frame: hence
 * -lgcc_s) while it is loaded, so C++ exceptions and backtraces pass through module frames. SMF_GDB_JIT=0 (read at the first load) turns it off for
 * the process, SMF_LOAD_NO_DEBUG_INFO for one load. SMF_PERF_MAP=1 appends each module's
 * functions to /tmp/perf-PID.map for `perf report`. */

/* Extension, as dladdr: what `addr` is in. Fills `info` and returns 1 when addr lies in the
 * code of a loaded module, 0 when it does not (not an error), -1 on a NULL info. The strings
 * stay valid while the module stays loaded. */
typedef struct {
    const char *module_path;     /* the module's file; NULL if loaded from bytes */
    const void *module_code;     /* where its code starts */
    const char *symbol_name;     /* the function addr is in (exported or not); NULL if none */
    const void *symbol_address;  /* where that function starts; NULL if none */
    size_t      offset;          /* addr - symbol_address (addr - module_code without one) */
} SmfAddrInfo;
int32_t     smf_addr_info(const void *addr, SmfAddrInfo *info);

/* ---- The module cache ----------------------------------------------------------------------
 * Modules by path (as given, not canonicalized), bounded by resident image bytes and by module
 * count: past either budget the least recently used module leaves the cache. A module someone
 * holds is never freed under them: it lives until its last reference is released.
 *
 * Hot reload: a file replaced on disk (a new file renamed over the path, as compilers and build
 * tools write) or rewritten in place is loaded anew by a later get; handles to the old version
 * stay valid until released. Replace module files by rename: code loaded from a file may be
 * mapped from it (docs/format.md, "Code from the file"), so a file rewritten in place changes
 * the code of the versions still held, as rewriting a shared library in place does. A path's first three hits after a load stat the file (device,
 * inode, size, modification and status-change times) and compare it with the version cached:
 * the next get sees a change. From its 4th hit (which may take milliseconds: it starts
 * watching), or from its load once the process watches any path, changes are noticed through
 * inotify watches on the cached files' directories: a thread marks the cached version stale
 * within microseconds of the change, and a hit costs no syscall (a hash lookup, a flag and a
 * list move under the cache's lock), but a get racing the rename may still return the old
 * version once. A file changed less than 2 s before it was read (its times may tie with a
 * change made right after) is watched from its load and read again under the watch. A
 * process that loads its modules and gets each a few times never starts the watcher, whose
 * inotify instance costs milliseconds to set up and, at exit, to tear down. With
 * smf_cache_check_every_get(c, true), and for paths that are symbolic links or when inotify is
 * unavailable, every get stats the file: the next get sees a change, at the price of that
 * stat. smf_cache_evict followed by smf_cache_get is the forced form. A file
 * that vanished or no longer loads makes get fail and leaves the cache. Loaded modules never
 * read their file again, so a file truncated while cached cannot crash the process. A file
 * changed less than SMF_SETTLE_MS ago (default 50) that a process still has open for writing
 * is loaded once it has settled; one written and closed is loaded at once. */
typedef struct SmfCache SmfCache;
typedef struct {
    uint64_t hits, misses, evictions, load_failures;
    uint64_t modules, bytes;                 /* resident now */
    uint64_t max_modules, max_bytes;         /* budgets, 0 = unlimited */
    uint64_t load_ns_p50, load_ns_p99, load_ns_max;   /* load times of misses (within 12%; max exact) */
} SmfCacheStats;

/* 0 = unlimited. */
SmfCache   *smf_cache_new(uint64_t max_bytes, uint64_t max_modules);
/* Modules still held by callers stay valid until released. NULL is a no-op. */
void        smf_cache_free(SmfCache *c);
/* A new reference (release it); loads on a miss or when the file changed; NULL on error. */
SmfModule  *smf_cache_get(SmfCache *c, const char *path);
/* Whether path is cached (the file is not checked). */
bool        smf_cache_contains(const SmfCache *c, const char *path);
/* Forgets path's module (handles stay valid); false if it was not cached. */
bool        smf_cache_evict(SmfCache *c, const char *path);
void        smf_cache_clear(SmfCache *c);
/* Loads the n paths on up to `threads` threads, the calling one included (0 counts as 1; the
 * others start only once the calling thread has loaded alone for 100 us, for the paths left;
 * where a thread cannot be started, fewer do the work, down to the calling thread alone). Each path
 * loads or fails on its own: a NULL or empty path, a missing file, a malformed module fails
 * alone. A file whose load failed on an unresolved import is tried again while another round
 * loads one of them (a module importing from another file of the set loads whatever the
 * order). Returns how many of the paths are cached afterwards. When any path failed,
 * smf_last_error() says "prefetch: K of N paths failed: " and each failure in path order
 * ("path 2: /m/x.smf: ...", "path 3 is NULL"; cut at its 1023 bytes): the first is always
 * there. The statistics count each file once: one miss, and one load failure if it never
 * loaded, however often it was tried (NULL and empty paths are not loads: not counted). */
size_t      smf_cache_prefetch(SmfCache *c, const char *const *paths, size_t n, uint32_t threads);
/* Extension: a path's outcome in smf_cache_prefetch_report. */
enum {
    SMF_PREFETCH_OK = 0,             /* loaded (or already cached) */
    SMF_PREFETCH_BAD_PATH = 1,       /* NULL or empty */
    SMF_PREFETCH_FILE_ERROR = 2,     /* the file could not be read (missing, unreadable, not a
                                        regular file, too large) */
    SMF_PREFETCH_INVALID_MODULE = 3, /* not a module this library loads on this machine */
    SMF_PREFETCH_LINK_ERROR = 4,     /* an import did not resolve, a relocation did not fit */
    SMF_PREFETCH_NO_MEMORY = 5,      /* memory could not be had (the process's limit, the
                                        kernel's) */
    SMF_PREFETCH_NOT_TRIED = -1      /* the call failed as a whole (a bad cache handle, paths
                                        NULL with n > 0) */
};
/* Extension: smf_cache_prefetch, writing each path's SMF_PREFETCH_* outcome to statuses[i]
 * (statuses may be NULL; else it holds n int32_t). The message for each failure is in
 * smf_last_error() as smf_cache_prefetch puts it; smf_cache_get of a failed path gives its own
 * message again. */
size_t      smf_cache_prefetch_report(SmfCache *c, const char *const *paths, size_t n, uint32_t threads,
                                      int32_t *statuses);
void        smf_cache_stats(const SmfCache *c, SmfCacheStats *out);
/* An exported symbol of the most recently used cached module exporting it, by the cache's
 * recency list (a thread's repeated gets of one module, hits through its memo, do not move it
 * there), or NULL; valid while that module stays cached or held. */
const void *smf_cache_resolve(SmfCache *c, const char *symbol);
/* How misses and prefetches link (copied; NULL = defaults; host symbols apply always). The
 * callback may be called from prefetch threads. */
void        smf_cache_set_load_options(SmfCache *c, const SmfLoadOptions *options);
/* Extension: every get compares the file's identity (a stat) instead of trusting notices. */
void        smf_cache_check_every_get(SmfCache *c, bool on);

/* ---- Load-time instantiation of generic templates ------------------------------------------
 * A module's note.sdn "possible" table lists the instantiations it may need (List$Float) and
 * its template-code section the templates. smf_jit_instantiate asks the runtime's compiler (the
 * callback) for the machine code of one, installs it in sealed executable memory and keeps it
 * by name. Checks, in order: disabled -> SMF_JIT_NOT_FOUND; max_depth instantiations already in
 * progress on this thread -> SMF_JIT_DEPTH_EXCEEDED (the message names the limit); already
 * instantiated -> SMF_JIT_OK with the same address, no second compile (whatever module_path
 * says: names are global, like the runtime's symbol table); in progress on this thread (the
 * callback asking for a name that is being compiled below it) -> SMF_JIT_CIRCULAR (the message
 * lists the cycle: "a -> b -> a"); not in the module's "possible" table -> SMF_JIT_NOT_FOUND;
 * otherwise compile, install, keep, and (update_metadata) move the entry to "instantiations"
 * with status jit_compiled. A module file that is missing, unreadable or malformed is
 * SMF_JIT_MODULE_ERROR (not "not found"). Modules are read through the cache.
 *
 * The callback may call smf_jit_instantiate / smf_jit_resolve again (dependencies), on the
 * same thread. Threads instantiate side by side; two asking for the same name get one compile
 * and the same address (the second waits for the first's outcome); a wait that would close a
 * cycle across threads is SMF_JIT_CIRCULAR instead of a deadlock. The callback runs with no
 * lock of the library held. Every code but SMF_JIT_OK records a message for smf_last_error().
 *
 * Memory: instantiated code lives until smf_jit_free; the instantiator keeps every module it
 * instantiated from (and the cache it was given) alive until then, so evicting a module or
 * reloading its file never pulls code from under instantiated functions. Code goes to shared
 * memory (memfd) mapped once, read-execute, at the addresses handed out; it is written with
 * pwrite into the file, never through a mapping, so no page is ever writable and executable
 * and no writable mapping aliases code at any time (one syscall per install, or per batch with
 * smf_jit_instantiate_batch). Where the kernel refuses memfd, each install gets sealed pages of
 * its own (one mprotect). */
typedef struct SmfJit SmfJit;
/* max_depth 0 means the default; defaults: 50, true, true. */
typedef struct { uint32_t max_depth; bool enabled; bool update_metadata; } SmfJitConfig;
/* The runtime's compiler: 0 = success with machine code in *code (*code_len bytes, valid until
 * it returns to the library, which copies them); nonzero = failure, message via smf_jit_fail()
 * (before returning). type_args is the "possible" row's text (e.g. "Float"); template_bytes is
 * the template-code entry of the module's template symbol of that name, else the template-code
 * record carrying that name where records can be told apart without symbols (a section of
 * short-form entries, or a single entry); NULL, 0 if none. */
typedef int32_t (*SmfCompileFn)(void *user, const char *mangled_name, const char *type_args,
                                const uint8_t *template_bytes, size_t template_len,
                                const uint8_t **code, size_t *code_len);

enum { SMF_JIT_OK = 0, SMF_JIT_NOT_FOUND = 1, SMF_JIT_CIRCULAR = 2, SMF_JIT_COMPILE_ERROR = 3,
       SMF_JIT_UPDATE_FAILED = 4, SMF_JIT_DEPTH_EXCEEDED = 5,
       /* extensions */
       SMF_JIT_MODULE_ERROR = 6, SMF_JIT_LIMIT_REACHED = 7, SMF_JIT_OUT_OF_MEMORY = 8,
       SMF_JIT_INVALID_ARGUMENT = -1 };

/* A new instantiator over the cache (kept alive until smf_jit_free); NULL on error. compile and
 * user may be called from any thread that asks for an instantiation. */
SmfJit     *smf_jit_new(SmfCache *cache, SmfJitConfig config, SmfCompileFn compile, void *user);
/* Frees the instantiator and every function it installed. NULL is a no-op. Called from inside
 * j's own compile callback it is refused (an error for smf_last_error, nothing freed): the
 * request running would hand out code already unmapped. */
void        smf_jit_free(SmfJit *j);
/* SMF_JIT_*; *address is the code on SMF_JIT_OK, NULL otherwise. */
int32_t     smf_jit_instantiate(SmfJit *j, const char *module_path, const char *mangled_name, const void **address);
/* Extension: smf_jit_instantiate of each of the n names from module_path, the code of all those
 * compiled by this call installed together (one write into executable memory instead of one
 * per name: for a module's start-up set of instantiations). addresses[i] gets each name's code
 * (NULL on failure) and statuses[i] its SMF_JIT_* code; either may be NULL. Returns SMF_JIT_OK
 * if every name is instantiated, else the first failure's code, with a message naming it and
 * counting the failures. A name being compiled by another thread is waited for (the batch's own
 * code is installed before, so no thread waits on it forever); a compile asking for a name the
 * batch compiled gets it at once. A failure of the call as a whole (bad handle, names NULL with
 * n > 0, a name that is NULL or not UTF-8) writes its code to every status. */
int32_t     smf_jit_instantiate_batch(SmfJit *j, const char *module_path, const char *const *names,
                                      size_t n, const void **addresses, int32_t *statuses);
/* From inside the callback, before returning nonzero: the failure's message (copied). */
void        smf_jit_fail(SmfJit *j, const char *message);
/* The module's note.sdn as it stands, with instantiated entries moved from "possible" to
 * "instantiations" (status jit_compiled) and its "# END_NOTE" line, NUL-terminated (the NUL not
 * counted in *len); *text is valid until this thread's next smf_jit_note_sdn. 1 found, 0 no file at module_path, -1 error (the module
 * does not load). A module without a note.sdn gives just the end line. */
int32_t     smf_jit_note_sdn(SmfJit *j, const char *module_path, const uint8_t **text, size_t *len);
/* The runtime's symbol lookup with JIT fallback: an export of a cached module (most recently
 * used first), else a name already instantiated, else an instantiation of name from the first
 * cached module whose "possible" table lists it; SMF_JIT_* codes. */
int32_t     smf_jit_resolve(SmfJit *j, const char *name, const void **address);
/* Mangles base and its n type arguments as Simple does (base$T1_T2, e.g. List$Float; base
 * alone when n is 0), then as smf_jit_resolve. */
int32_t     smf_jit_resolve_generic(SmfJit *j, const char *base, const char *const *type_args,
                                    size_t n, const void **address);
/* Extension: counters. */
typedef struct {
    uint64_t instantiations;    /* compiled and installed */
    uint64_t cache_hits;        /* answered with code already there */
    uint64_t compile_failures;  /* callback (or install) failures */
    uint64_t code_bytes;        /* bytes of code installed */
    uint64_t waits;             /* requests that waited for another thread's compile */
} SmfJitStats;
void        smf_jit_stats(const SmfJit *j, SmfJitStats *out);
/* Extension: at most limit instantiations from now on (more: SMF_JIT_LIMIT_REACHED). */
void        smf_jit_set_max_instantiations(SmfJit *j, uint64_t limit);

#ifndef SMF_NO_RT

/* ---- rt_*: file mappings (mmap.spl) -------------------------------------------------------- */

#define RT_PROT_NONE 0
#define RT_PROT_READ 1
#define RT_PROT_WRITE 2
#define RT_PROT_EXEC 4
#define RT_MAP_SHARED 1
#define RT_MAP_PRIVATE 2
#define RT_ADVICE_NORMAL 0
#define RT_ADVICE_RANDOM 1
#define RT_ADVICE_SEQUENTIAL 2
#define RT_ADVICE_WILLNEED 3
#define RT_ADVICE_DONTNEED 4

/* The spec's (i64, i64) pair: a mapping's address and size, {0, 0} on error. */
typedef struct { int64_t address; int64_t size; } RtMapping;

/* Maps length bytes of the file from offset (page-aligned); length 0 maps to the end of the
 * file. A range past the end of the file is refused, and so is PROT_EXEC: a file mapping is
 * never executable, since another (writable, shared) mapping of the same file could change the
 * code while it runs; code goes through smf_module_load or rt_alloc_exec_memory. {0,0} on
 * error. */
RtMapping rt_mmap_file(const char *path, int32_t prot, int32_t flags, int64_t offset, int64_t length);
/* Unmaps a whole mapping made by rt_mmap_file (size as returned). Calls reading it on other
 * threads finish first. */
bool    rt_munmap(int64_t address, int64_t size);
/* Copies length bytes from address+offset into dst; returns length, or -1. Bytes that a mapped
 * file no longer has (it was truncated after mapping) are an error, never SIGBUS. */
int64_t rt_mmap_read_bytes(int64_t address, int64_t offset, int64_t length, uint8_t *dst);
/* The string at address+offset: up to the first NUL (max_length 0) or max_length bytes, never
 * past the mapping. Copies min(len, dst_cap) bytes (no NUL added); returns len, or -1. */
int64_t rt_mmap_read_string(int64_t address, int64_t offset, int64_t max_length, uint8_t *dst, int64_t dst_cap);
/* The file's size in bytes, or -1. */
int64_t rt_file_size_for_mmap(const char *path);
/* The page size in bytes. */
int64_t rt_get_page_size(void);
/* Flushes a shared file mapping to its file (is_async: MS_ASYNC rather than MS_SYNC). */
bool    rt_msync(int64_t address, int64_t size, bool is_async);
/* Locks / unlocks the pages of a mapping or allocation in memory. */
bool    rt_mlock(int64_t address, int64_t size);
bool    rt_munlock(int64_t address, int64_t size);
/* Usage advice (RT_ADVICE_*) for a mapping or allocation; DONTNEED on sealed code is refused. */
bool    rt_madvise(int64_t address, int64_t size, int32_t advice);

/* ---- rt_*: executable memory (exec_memory.spl) --------------------------------------------- */

/* Both of the spec's call sequences work under W^X:
 *   explicit: rt_alloc_rw_memory -> rt_write_exec_memory -> rt_make_executable -> call
 *   implicit: rt_alloc_exec_memory -> rt_write_exec_memory -> rt_flush_icache
 *             -> rt_get_function_pointer (seals) -> call
 * Writing into a sealed allocation patches it: a copy of the touched pages is written, sealed
 * and moved over the originals; no page is ever writable and executable. */

/* Zeroed, page-rounded memory, writable until sealed; 0 on error. */
int64_t rt_alloc_exec_memory(int64_t size);
/* Zeroed, page-rounded, read-write memory; 0 on error. */
int64_t rt_alloc_rw_memory(int64_t size);
/* Frees an allocation; size as allocated (or 0 for the whole allocation). A call still running
 * code in it on another thread keeps the memory until it returns. */
bool    rt_free_exec_memory(int64_t address, int64_t size);
/* Copies len bytes of code to address+offset (inside the allocation); bytes written, or -1. */
int64_t rt_write_exec_memory(int64_t address, const uint8_t *code, int64_t len, int64_t offset);
/* Seals the allocation holding the range: read+execute, instruction cache synchronized. */
bool    rt_make_executable(int64_t address, int64_t size);
/* Synchronizes the instruction cache (no-op on x86-64; real on aarch64). */
void    rt_flush_icache(int64_t address, int64_t size);
/* Returns address as callable code, sealing its allocation if still writable; 0 if the address
 * is not inside a live allocation. */
int64_t rt_get_function_pointer(int64_t address);
/* Calls fn with 0, 1 or 2 integer arguments. Only addresses inside code this library owns are
 * called (a sealed allocation, the code of a live module, never its data, or a function a live
 * SmfJit installed); anything else returns 0 and records an error without jumping. The
 * allocation, module or instantiator stays alive until the call returns, even if another
 * thread frees or releases it meanwhile. */
int64_t rt_call_function_0(int64_t fn);
int64_t rt_call_function_1(int64_t fn, int64_t a1);
int64_t rt_call_function_2(int64_t fn, int64_t a1, int64_t a2);
/* Whether address is inside code rt_call_function_* would call (see above). */
bool    rt_is_executable(int64_t address);
/* RT_PROT_* bits of the page holding address (a file mapping, an allocation, a module's image,
 * or code a live SmfJit installed: READ|EXEC, as rt_is_executable says), -1 if it is not this
 * library's. */
int32_t rt_get_protection(int64_t address);
/* Allocations: READ|EXEC seals, READ|WRITE is accepted before sealing. File mappings (whole):
 * NONE, READ or READ|WRITE (never PROT_EXEC, see rt_mmap_file). */
bool    rt_set_protection(int64_t address, int64_t size, int32_t prot);
/* Bytes in live allocations (page-rounded), and their number. */
int64_t rt_exec_memory_total(void);
int64_t rt_exec_memory_count(void);
/* Extension: the process-wide budget of executable memory. rt_alloc_exec_memory and
 * rt_alloc_rw_memory fail (0, "the executable-memory budget is spent: ...") when the
 * allocations held, page-rounded, would pass it; a freed allocation counts until a call still
 * running in it returns. Default 4 GiB, or SMF_EXEC_BUDGET (bytes) set before the first call;
 * 0 means no budget. (Module images and instantiated code are bounded otherwise: by the module
 * file size limit, the caches' budgets and smf_jit_set_max_instantiations.) */
uint64_t smf_exec_budget(void);
/* Sets the budget (0: none) and returns the one it replaces. Allocations held stay: past a
 * lowered budget, later ones fail until enough is freed. */
uint64_t smf_set_exec_budget(uint64_t bytes);
/* One readable block of statistics on stderr. */
void    rt_exec_memory_dump_stats(void);

#endif /* SMF_NO_RT */

#ifdef SMF_EXEC_MANAGER
/* ---- The execution manager (a library built with the cargo feature "cranelift") ------------- *
 * Cranelift IR (CLIF text) compiled for the host into W^X memory, linked by name with other
 * compiled functions, loaded modules, host symbols and the C library (and found by modules
 * loaded afterwards), executed by name. `function %add(i64, i64) -> i64` defines `add`; `fn0 =
 * %factorial sig0` calls whatever `factorial` resolves to. Compiled names are process-wide:
 * found by every manager's later compiles and every later load, after the host symbols and
 * before the C library (a compiled `labs` is the `labs` they link to), until their manager's
 * cleanup; code compiled before a name is compiled again keeps calling the old definition.
 * Strings returned are freed by the library and belong to the calling thread, as dlerror's:
 * each stays valid until the same thread's next call of the same kind on the same manager, or,
 * once the manager is cleaned up (by any thread), the thread's next call on any manager, or the
 * thread's end (threads sharing a manager never free each other's strings or see each other's
 * failures). Every failure is also this thread's smf_last_error. */

/* "cranelift" or "auto" (the same: the one backend built in), optionally with an opt level
 * ("cranelift:speed", "cranelift:speed_and_size"), for managers created with NULL or ""; false
 * for any other name, "llvm" included, with the reason in smf_last_error. */
bool        rt_set_jit_backend(const char *name);
/* "cranelift" (a static string). */
const char *rt_get_jit_backend(void);
/* A new manager (NULL or "" for the chosen backend; "cranelift:speed" or
 * "cranelift:speed_and_size" for an opt level, "none" by default); 0 on failure. */
int64_t     rt_exec_manager_create(const char *backend);
/* Ends the manager: later loads no longer find its functions; code a module linked to stays
 * until that module is released. */
void        rt_exec_manager_cleanup(int64_t manager);
/* Each returns "" on success, else the error. compile_source and compile_file go through the
 * front end the runtime registered (smf::exec_manager::set_default_front_end); compile_mir
 * takes CLIF text, its functions compiled together (one protection change); compile_file reads
 * a regular file (not a FIFO or a device) of at most SMF_MAX_MODULE_BYTES. Where the process
 * has not the address space compiling the input takes (about 8 MiB and 16 bytes a byte of CLIF,
 * checked before the compiler runs), the error says "out of memory" and nothing is compiled. */
const char *rt_exec_manager_compile_source(int64_t manager, const char *source);
const char *rt_exec_manager_compile_mir(int64_t manager, const char *clif);
const char *rt_exec_manager_compile_file(int64_t manager, const char *path);
/* Calls `name` with n (at most 6) integer arguments, as its signature takes; its result, or 0
 * with the error in rt_exec_manager_last_error (never a call on a wrong name, arity or a
 * signature that is not integers in and at most one integer out). A result narrower than 64
 * bits comes back sign-extended, arguments are truncated to the parameters' widths. A 0 result
 * is told from a failure by smf_take_error(): called once before (to forget older failures),
 * it returns NULL after a call that did not fail. The function runs as native code: a trap it
 * executes (`trap`) is the host's signal, as in any library. */
int64_t     rt_exec_manager_execute(int64_t manager, const char *name, const int64_t *args, size_t n);
bool        rt_exec_manager_has_function(int64_t manager, const char *name);
/* The function names, sorted, one per line, no newline after the last ("" for none); NULL for
 * a manager that is not one. */
const char *rt_exec_manager_list_functions(int64_t manager);
/* What the last failed call on the manager from this thread said ("" if none); the same text
 * until a later call finds a newer failure. */
const char *rt_exec_manager_last_error(int64_t manager);
#endif /* SMF_EXEC_MANAGER */

#ifdef __cplusplus
}
#endif

#endif /* SMF_H */
