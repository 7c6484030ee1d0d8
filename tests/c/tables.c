/* Read-only tables of pointers, as C programs write them: strings looked up by index, function
 * pointers dispatched through a table, and a constant struct array mixing both. gcc puts them in
 * .data.rel.ro (relocated with R_X86_64_64) and jump tables in .rodata (R_X86_64_PC32); `smf
 * pack` carries both as rodata with data relocations (in R72, which has no data sections, in the
 * code image), so they are relocated before they are sealed. */

static const char *const words[] = {"zero", "one", "two", "three", "four", "five", "six"};

long word_score(long i) {
    if (i < 0 || i >= (long)(sizeof words / sizeof words[0])) return -1;
    long score = 0;
    for (const char *c = words[i]; *c; c++) score = score * 31 + (*c - 'a' + 1);
    return score;
}

long word_initial(long i) { return words[i % 7][0]; }

static long op_add(long a, long b) { return a + b; }
static long op_sub(long a, long b) { return a - b; }
static long op_mul(long a, long b) { return a * b; }
static long op_min(long a, long b) { return a < b ? a : b; }

static long (*const operations[])(long, long) = {op_add, op_sub, op_mul, op_min};

long operate(long which, long a, long b) { return operations[which & 3](a, b); }

struct shape {
    const char *name;
    long (*area)(long);
};

static long square_area(long side) { return side * side; }
static long triangle_area(long side) { return side * side / 2; }

const struct shape shapes[] = {{"square", square_area}, {"triangle", triangle_area}};

long shape_score(long which, long side) {
    const struct shape *s = &shapes[which & 1];
    return s->area(side) * 100 + s->name[0];
}

long classify(long c) {
    switch (c) {
    case 'a': return word_score(1);
    case 'b': return operate(2, c, 3);
    case 'c': return shape_score(0, 4);
    case 'd': return 4;
    case 'e': return word_initial(5);
    case 'f': return -6;
    case 'g': return c * 7;
    default: return 0;
    }
}
