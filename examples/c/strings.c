/* String constants in read-only data, reached from code through PC-relative relocations. */
static const char text[] = "The Simple Module Format keeps code and data apart.";

long text_length(void) {
    long n = 0;
    while (text[n]) n++;
    return n;
}

long count_char(long c) {
    long n = 0;
    for (const char *p = text; *p; p++) n += *p == (char)c;
    return n;
}

long checksum(void) {
    unsigned long h = 14695981039346656037ul;
    for (const char *p = text; *p; p++) h = (h ^ (unsigned char)*p) * 1099511628211ul;
    return (long)(h >> 1);
}

long main(void) { return count_char('e'); }
