/* Calls between a module's own functions, static and global, beside references to its data:
 * `smf pack` links the calls when it packs (`tests/tests/pack/linking.rs`), as `ld` does, and
 * keeps the references to data, which need the load address. */

static const char greeting[] = "hello, module";
static long counter;

__attribute__((noinline)) static long twice(long x) { return 2 * x + counter; }

__attribute__((noinline)) long square(long x) { return x * x; }

long combine(long x) {
    counter++;
    return twice(x) + square(x) + greeting[x & 7];
}

long combine_again(long x) { return combine(x) + combine(x + 1); }

/* A string literal: gcc keeps it in a mergeable section under a label of its own (`.LC0`). */
__attribute__((noinline)) static const char *farewell(void) { return "goodbye, module"; }

long farewell_char(long x) { return farewell()[x & 7]; }
