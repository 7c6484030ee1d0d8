/* More shapes of real compiled code for tests/tests/pack.rs: static functions, local statics,
 * unsigned and wide arithmetic, function pointers built at run time, recursion through a
 * static helper, string tables in read-only data. */
static long hidden_square(long x) { return x * x; }

long sum_squares(long n) {
    long s = 0;
    for (long i = 1; i <= n; i++) s += hidden_square(i);
    return s;
}

long next_id(void) {
    static long id = 1000;
    return id++;
}

long mulhi(long a, long b) {
    unsigned __int128 p = (unsigned __int128)(unsigned long)a * (unsigned long)b;
    return (long)(p >> 64);
}

static long add(long a, long b) { return a + b; }
static long sub(long a, long b) { return a - b; }

long apply(long which, long a, long b) {
    long (*f)(long, long) = which ? add : sub;
    return f(a, b);
}


long collatz(long n) {
    long steps = 0;
    while (n != 1) {
        n = n % 2 ? 3 * n + 1 : n / 2;
        steps++;
    }
    return steps;
}

long six(long a, long b, long c, long d, long e, long f) { return a - b + c - d + e - f; }
