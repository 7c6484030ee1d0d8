/* Calls into the C library that gcc -O2 keeps as calls: strlen and memcpy of run-time lengths,
 * sqrt (a call on its error path), hypot. */
#include <math.h>
#include <string.h>

long count_chars(long n) {
    char buf[128];
    memset(buf, 'x', (size_t)(n & 127));
    buf[n & 127] = 0;
    return (long)strlen(buf);
}

long copy_and_sum(long n) {
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    char buf[64];
    size_t len = (size_t)(n & 31);
    memcpy(buf, digits, len);
    long sum = 0;
    for (size_t i = 0; i < len; i++) sum += buf[i];
    return sum;
}

long root(long x) { return (long)sqrt((double)x); }

long hypotenuse(long a, long b) { return (long)hypot((double)a, (double)b); }

double square_root(long x) { return sqrt((double)x); }
