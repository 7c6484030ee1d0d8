/* GNU indirect functions: a resolver picks the implementation when the module starts. */

static long times_three(long x) { return x * 3; }
static long times_five(long x) { return x * 5; }

static int resolved;

/* Picks by a value only known at run time in a real program (the CPU); here, counts its calls. */
static long (*pick(void))(long) {
    resolved++;
    return resolved > 0 ? times_three : times_five;
}

long triple(long x) __attribute__((ifunc("pick")));

/* Its address in a table of pointers, filled by a data relocation. */
long (*const table[])(long) = { triple };

static long early;

/* A constructor calls it: the resolver ran before. */
__attribute__((constructor(101))) static void before_main(void) { early = triple(2); }

long ifunc_call(long x) { return triple(x); }
long ifunc_table(long x) { return table[0](x); }
long ifunc_early(void) { return early; }
long ifunc_resolved(void) { return resolved; }
long ifunc_same_address(void) {
    long (*volatile f)(long) = triple;
    return f == table[0];
}
