/* Constructors and destructors as C libraries write them: with and without priorities (gcc
 * puts `constructor(N)` in .init_array.N, plain ones in .init_array), and a destructor that
 * reports the state the constructors built. Loaded before ctor_app.c, which imports from it. */

void record(long value);

long lib_state;

__attribute__((constructor)) static void plain(void) { lib_state = lib_state * 10 + 2; }
__attribute__((constructor(200))) static void middle(void) { lib_state = lib_state * 10 + 3; }
__attribute__((constructor(101))) static void early(void) { lib_state = 1; }

__attribute__((destructor)) static void lib_goodbye(void) { record(lib_state); }
__attribute__((destructor(150))) static void lib_last(void) { record(-150); }

long lib_value(void) { return lib_state; }
