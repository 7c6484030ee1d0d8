/* The handlers a library registers with glibc's libc_nonshared.a functions (pthread_atfork,
   at_quick_exit, atexit), which register under the library's own __dso_handle: a packed
   module gets its own, so that its handlers go when it is released. */
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

static int prepared, in_parent, in_child;

static void prepare(void) { prepared++; }
static void parent(void) { in_parent++; }
static void child(void) { in_child++; }

/* Registers fork handlers once, forks: the prepare and parent handlers here, the child's in
   the child (its exit status). 111 when each ran once. */
long fork_handlers(void) {
    if (pthread_atfork(prepare, parent, child) != 0)
        return -1;
    pid_t pid = fork();
    if (pid == 0)
        _exit(in_child);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid)
        return -2;
    return prepared * 100 + in_parent * 10 + WEXITSTATUS(status);
}

static void on_quick_exit(void) { _exit(42); }

/* Registers a quick-exit handler that ends the process with status 42: 0 when registered. */
long quick_exit_registered(void) { return at_quick_exit(on_quick_exit); }

/* Forks a child that calls quick_exit(0): its exit status, 42 when a handler registered before
   (inherited from this process) ran, 0 when none did. */
long quick_exit_status(void) {
    pid_t pid = fork();
    if (pid == 0)
        quick_exit(0);
    int status = 0;
    if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}
