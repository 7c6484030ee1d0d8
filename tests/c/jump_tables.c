/* Switch statements that gcc -O2 -fPIC compiles to jump tables: tables of 32-bit offsets in
 * .rodata, each relocated against the code (R_X86_64_PC32 in a data section). `smf pack` carries
 * such read-only data in the code image, the only part of an SMF module relocations may patch.
 * Nothing here needs a data section of its own, so every dialect can hold it (R72 too). */

long dispatch(long op, long a, long b) {
    switch (op) {
    case 0: return a + b;
    case 1: return a - b;
    case 2: return a * b;
    case 3: return b ? a / b : -1;
    case 4: return b ? a % b : -1;
    case 5: return a << (b & 31);
    case 6: return a >> (b & 31);
    case 7: return a ^ b;
    case 8: return a & b;
    case 9: return a | b;
    default: return -999;
    }
}

/* A small interpreter: a jump table inside a loop. */
long run_program(long seed, long steps) {
    long acc = seed;
    for (long i = 0; i < steps; i++) {
        switch ((acc ^ i) & 7) {
        case 0: acc = acc * 3 + 1; break;
        case 1: acc = acc / 2 + i; break;
        case 2: acc ^= 0x5bd1e995; break;
        case 3: acc -= i * i; break;
        case 4: acc = (acc << 3) - acc; break;
        case 5: acc += 12345; break;
        case 6: acc = ~acc; break;
        default: acc = acc * 7 - 11; break;
        }
    }
    return acc;
}
