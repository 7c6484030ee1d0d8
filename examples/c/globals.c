/* Global data: initialized (.data), zeroed (.bss), and updated across calls. */
long counter = 100;
long table[256];
static long calls;

long bump(long by) {
    calls++;
    counter += by;
    return counter;
}

long fill_and_sum(long start) {
    long sum = 0;
    for (int i = 0; i < 256; i++) table[i] = start + i;
    for (int i = 0; i < 256; i++) sum += table[i];
    return sum;
}

long call_count(void) { return calls; }

long main(void) { return bump(1) + fill_and_sum(0); }
