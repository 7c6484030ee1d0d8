/* Functions `smf run` calls with typed arguments and prints typed results (tests/tests/cli.rs). */
#include <stdio.h>

int minus_one(void) { return -1; }
unsigned char byte_200(void) { return 200; }
short minus_two(void) { return -2; }
double scale(long n, double factor) { return (double)n * factor; }
float halve(float x) { return x / 2; }
/* Integer and floating-point arguments interleaved: each kind has registers of its own. */
double mix(int a, double b, int c, float d) { return a + b + c + d; }
const char *greeting(void) { return "hi"; }

static int calls;
void count_call(void) {
    calls++;
    printf("counted %d\n", calls);
}

/* What module code prints through the C library comes before the result, even into a pipe. */
long say_then_return(void) {
    printf("printed by the module\n");
    return 7;
}
