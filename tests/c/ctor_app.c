/* A module whose constructor uses what its dependency's constructors built (ctor_lib.c): a
 * loader that runs a dependency's constructors first gives app_state = 132132. */

void record(long value);
extern long lib_state;
long lib_value(void);

long app_state;

__attribute__((constructor)) static void app_init(void) { app_state = lib_state * 1000 + lib_value(); }
__attribute__((destructor)) static void app_goodbye(void) { record(app_state + 1); }

long app_value(void) { return app_state; }
