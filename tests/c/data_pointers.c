/* Pointers held in writable data, which data relocations carry (issue 27): the one-line
 * greeting, a table of functions the program changes at run time, a table of strings, and a
 * statically linked list. Every function takes and returns longs, for the native driver. */

const char *greeting = "hello";

long first(void) { return greeting[0]; }

static long add(long a, long b) { return a + b; }
static long subtract(long a, long b) { return a - b; }

/* Writable: set_operation replaces its entries. */
static long (*operations[])(long, long) = {add, subtract};

long operate(long which, long a, long b) { return operations[which & 1](a, b); }

long set_operation(long which, long to_subtract) {
    operations[which & 1] = to_subtract ? subtract : add;
    return 0;
}

const char *names[] = {"zero", "one", "two", "three"};

/* The sum of the name's bytes (a length would become a call to strlen). */
long name_sum(long i) {
    const char *name = names[i & 3];
    long sum = 0;
    for (long n = 0; name[n]; n++) sum += name[n];
    return sum;
}

struct node {
    long value;
    struct node *next;
};

static struct node third = {30, 0};
static struct node second = {20, &third};
static struct node head = {10, &second};

long list_sum(void) {
    long sum = 0;
    for (struct node *n = &head; n; n = n->next) sum += n->value;
    return sum;
}

long greeting_moves(long steps) {
    greeting += steps;
    return greeting[0];
}
