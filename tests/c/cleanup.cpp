// C++ objects with destructors: two globals and a function-local static, each registered with
// __cxa_atexit under the module's __dso_handle when built; their destructors must run when the
// module is released (in reverse order of construction), never after its code is gone.

extern "C" void record(long value);

struct Logger {
    long id;
    explicit Logger(long i) : id(i) { record(id); }
    ~Logger() { record(-id); }
};

static Logger first(1);
static Logger second(2);

static Logger &late() {
    static Logger logger(3);
    return logger;
}

extern "C" long touch_late(void) { return late().id; }
