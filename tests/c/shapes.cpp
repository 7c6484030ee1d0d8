// C++ as libraries write it: a class hierarchy with virtual calls, a global object built by a
// static constructor, and a function-local static.
struct Shape {
    virtual ~Shape() {}
    virtual long area() const = 0;
    virtual long sides() const { return 0; }
};
struct Square : Shape {
    long side;
    explicit Square(long s) : side(s) {}
    long area() const override { return side * side; }
    long sides() const override { return 4; }
};
struct Triangle : Shape {
    long base, height;
    Triangle(long b, long h) : base(b), height(h) {}
    long area() const override { return base * height / 2; }
    long sides() const override { return 3; }
};

struct Registry {
    long created;
    Registry() : created(100) {}
};
static Registry registry;  // built by a static constructor

static long counter() {
    static long calls = registry.created;  // function-local static, initialized once
    return ++calls;
}

extern "C" long shape_area(long kind, long a, long b) {
    Square sq(a);
    Triangle tr(a, b);
    const Shape *s = kind ? static_cast<const Shape *>(&tr) : &sq;
    return s->area() * 10 + s->sides();
}

extern "C" long next_count(void) { return counter(); }
extern "C" long registry_created(void) { return registry.created; }
