/* GOT-relative loads under -fPIC: of this object's own globals (smf pack keeps them, through a GOT
   of the module's own, or with -z separate-code relaxes them to direct references, as a static
   linker does) and of an imported one (which keeps its GOT slot). */
long own = 7;
long own_table[4] = {1, 2, 3, 4};
extern long imported;

long read_own(void) { return own; }
long read_table(long i) { return own_table[i & 3]; }
long read_imported(void) { return imported; }
long sum(void) { return own + own_table[3] + imported; }
