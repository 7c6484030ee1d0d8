/* hello_smf.c - the smallest C program using the library: load a module, call a function,
 * release it. Build it against an installed library with
 *     cc hello_smf.c $(pkg-config --cflags --libs smf) -o hello_smf
 * and run it as `./hello_smf examples/recursion.smf fib 30` (prints 832040). */
#include <stdio.h>
#include <stdlib.h>

#include <smf.h>

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s MODULE FUNCTION [ARG]\n", argv[0]);
        return 2;
    }
    SmfModule *m = smf_module_load(argv[1]);
    if (m == NULL) {
        fprintf(stderr, "%s\n", smf_last_error());
        return 1;
    }
    int64_t arg = argc > 3 ? strtoll(argv[3], NULL, 0) : 0, result = 0;
    if (smf_module_call(m, argv[2], &arg, argc > 3 ? 1 : 0, &result) != 0) {
        fprintf(stderr, "%s\n", smf_last_error());
        smf_module_release(m);
        return 1;
    }
    printf("%lld\n", (long long)result);
    smf_module_release(m);
    return 0;
}
