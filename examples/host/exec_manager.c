/* exec_manager.c - the execution manager from C: Cranelift IR compiled into W^X memory, then
 * called by name. Build it against a library installed with the execution manager
 * (`cargo xtask install --prefix P --features cranelift`) with
 *     cc exec_manager.c $(pkg-config --cflags --libs smf) -Wl,-rpath,$(pkg-config --variable=libdir smf) -o exec_manager
 * and run it as `./exec_manager 20` (prints 2432902008176640000, 20!). */
#include <stdio.h>
#include <stdlib.h>

#include <smf.h>

static const char *const FACTORIAL =
    "function %factorial(i64) -> i64 {\n"
    "    fn0 = %factorial(i64) -> i64\n"
    "block0(v0: i64):\n"
    "    v1 = iconst.i64 1\n"
    "    v2 = icmp sle v0, v1\n"
    "    brif v2, block1, block2\n"
    "block1:\n"
    "    return v1\n"
    "block2:\n"
    "    v3 = isub v0, v1\n"
    "    v4 = call fn0(v3)\n"
    "    v5 = imul v0, v4\n"
    "    return v5\n"
    "}\n";

int main(int argc, char **argv) {
    int64_t n = argc > 1 ? strtoll(argv[1], NULL, 0) : 10;
    int64_t manager = rt_exec_manager_create("cranelift:speed");
    if (manager == 0) {
        fprintf(stderr, "%s\n", smf_last_error());
        return 1;
    }
    const char *compiled = rt_exec_manager_compile_mir(manager, FACTORIAL);
    if (compiled[0] != '\0') {
        fprintf(stderr, "%s\n", compiled);
        rt_exec_manager_cleanup(manager);
        return 1;
    }
    /* A 0 result is a failure only if one was recorded: older failures forgotten first. */
    smf_take_error();
    int64_t result = rt_exec_manager_execute(manager, "factorial", &n, 1);
    if (result == 0 && smf_take_error() != NULL) {
        fprintf(stderr, "%s\n", rt_exec_manager_last_error(manager));
        rt_exec_manager_cleanup(manager);
        return 1;
    }
    printf("%lld\n", (long long)result);
    rt_exec_manager_cleanup(manager);
    return 0;
}
