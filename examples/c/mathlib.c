/* A library for app.c: functions and data another module imports. */
long scale = 3;

long gcd(long a, long b) {
    while (b) {
        long t = a % b;
        a = b;
        b = t;
    }
    return a;
}

long power(long base, long exp) {
    long r = 1;
    while (exp-- > 0) r *= base;
    return r;
}

long scaled(long x) { return x * scale; }
