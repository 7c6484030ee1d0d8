/* Recursion: the entry point returns fib(20) = 6765. */
long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

long factorial(long n) { return n <= 1 ? 1 : n * factorial(n - 1); }

long ackermann(long m, long n) {
    if (m == 0) return n + 1;
    if (n == 0) return ackermann(m - 1, 1);
    return ackermann(m - 1, ackermann(m, n - 1));
}

long main(void) { return fib(20); }
