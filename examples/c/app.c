/* Calls across two modules: every function and datum used here lives in mathlib.c. */
extern long scale;
long gcd(long a, long b);
long power(long base, long exp);
long scaled(long x);

long lcm(long a, long b) { return a / gcd(a, b) * b; }

long set_scale(long s) {
    scale = s;
    return scaled(7);
}

long main(void) { return lcm(21, 6) + power(2, 10) + scaled(scale); }
