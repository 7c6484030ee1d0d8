/* Lua 5.4 (the lua-src crate's sources, built as its users build them) driven through its C
 * API: packed into one SMF module with the Lua objects, and linked natively with the same
 * objects, the two must print the same (tests/tests/third_party.rs) and run at the same speed
 * (`cargo xtask bench lua`).
 *
 * Lua exercises what real C needs from a loader: pointers in initialized data (every library's
 * luaL_Reg table, the opcode names, the type names), function pointers called through tables,
 * setjmp/longjmp across module frames (errors, pcall, coroutines), and the C library (stdio,
 * string conversion, the math library, time). */

#include <stdio.h>
#include <time.h>

#include "lauxlib.h"
#include "lua.h"
#include "lualib.h"

/* Runs `script` in a fresh state; prints any error; returns the status. */
static long run(const char *script) {
    lua_State *L = luaL_newstate();
    if (L == NULL) return -1;
    luaL_openlibs(L);
    int status = luaL_dostring(L, script);
    if (status != LUA_OK) printf("error: %s\n", lua_tostring(L, -1));
    lua_close(L);
    fflush(stdout);
    return status;
}

/* A tour of the language and its libraries; every line it prints is deterministic. */
static const char *const tour =
    "local t = {} for i = 1, 10 do t[i] = i * i end print(table.concat(t, ','))\n"
    "local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end\n"
    "print('fib', fib(20))\n"
    "print(string.format('%5.2f %q %x %g %e', math.pi, 'a\\nb', 255, 1e300 * 10, 12345.678))\n"
    "print(pcall(function() error({code = 7}) end) == false)\n"
    "print(select(2, pcall(function() local x = nil; return x.y end)))\n"
    "print(select(2, xpcall(function() error('deep', 0) end, function(m) return 'handled ' .. m end)))\n"
    "local co = coroutine.wrap(function(a) local b = coroutine.yield(a + 1) return b * 2 end)\n"
    "print(co(1), co(10))\n"
    "local gen = coroutine.create(function() for i = 1, 3 do coroutine.yield(i) end error('done') end)\n"
    "for _ = 1, 5 do print(coroutine.resume(gen)) end\n"
    "print(('hello world'):gsub('o', '0'))\n"
    "local s = {} for w in ('the quick brown fox'):gmatch('%a+') do s[#s + 1] = w:upper() end\n"
    "table.sort(s) print(table.concat(s, ' '))\n"
    "table.sort(t, function(a, b) return a > b end) print(t[1], t[10])\n"
    "print(tostring(setmetatable({}, {__tostring = function() return 'meta' end})))\n"
    "local V = setmetatable({}, {__index = function(_, k) return k * 2 end, __call = function(_, x) return x + 1 end})\n"
    "print(V[21], V(41))\n"
    "print(utf8.char(72, 228, 8364), utf8.len('H\\u{E4}\\u{20AC}'), math.maxinteger, 7 // 2, 7.0 / 2, 1 << 62)\n"
    "print(select('#', 1, 2, 3), next({}), type(io.write), string.rep('ab', 3, '-'))\n"
    "print(math.floor(-3.5), math.sqrt(2), math.sin(1), math.fmod(7, 3), math.tointeger(3.0), 2^0.5)\n"
    "print(tonumber('0x1p4'), tonumber('  12  '), tonumber('z', 36), tostring(1/0), tostring(-0.0))\n"
    "print(string.pack('<i4', 1):byte(1, -1)) print(string.unpack('<d', string.pack('<d', 1.5)))\n"
    "print(os.date('!%Y-%m-%d %H:%M:%S', 86400 * 365), os.time({year = 2000, month = 1, day = 1, hour = 12}) ~= nil)\n"
    "local chunk = load('local a, b = ... return a * b') print(chunk(6, 7))\n"
    "print(load(string.dump(function(x) return x .. '!' end))('dumped'))\n"
    "goto skip print('never') ::skip:: print('goto')\n"
    "local ok, msg = pcall(string.rep) print(ok, msg)\n"
    "print(#debug.traceback('tb') > 0, debug.getinfo(1, 'S').what)\n"
    "local big = {} for i = 1, 10000 do big[i] = tostring(i) end print(#table.concat(big))\n"
    "collectgarbage() print(collectgarbage('isrunning'))\n"
    "print(string.format('%s|%10s|%-5d|%+.3f', 'x', 'right', 42, 2.5))\n";

/* The tour's output on standard output; returns 0 when it ran to the end. */
long lua_tour(void) { return run(tour); }

/* Work of the kinds interpreters spend their time on (calls, tables, strings, sorting,
 * closures, coroutines), printing one checksum. */
static const char *const work =
    "local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end\n"
    "local sum = fib(27)\n"
    "local t = {} for i = 1, 200000 do t[i] = (i * 7919) % 100003 end table.sort(t)\n"
    "sum = sum + t[1] + t[#t]\n"
    "local parts = {} for i = 1, 100000 do parts[#parts + 1] = tostring(i * 3) end\n"
    "local text = table.concat(parts, ',') for _ in text:gmatch('12') do sum = sum + 1 end\n"
    "local counters = {} for i = 1, 1000 do local c = 0 counters[i] = function() c = c + i return c end end\n"
    "for _ = 1, 100 do for i = 1, 1000 do sum = sum + counters[i]() end end\n"
    "local co = coroutine.wrap(function() for i = 1, 100000 do coroutine.yield(i) end end)\n"
    "for _ = 1, 100000 do sum = sum + co() end\n"
    "local m = {} for i = 1, 50000 do m['k' .. i] = i end for k, v in pairs(m) do sum = sum + #k + v end\n"
    "print(sum)\n";

/* The work, timed with the monotonic clock; returns the nanoseconds it took (its checksum on
 * standard output), or -1 if it failed. */
long lua_work(void) {
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    long status = run(work);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (status != 0) return -1;
    return (end.tv_sec - start.tv_sec) * 1000000000L + (end.tv_nsec - start.tv_nsec);
}

/* A call into Lua that needs no state, for the load benchmark (`cargo xtask bench real`): the
 * length of a type's name, read through Lua's table of pointers to the names (data that holds
 * addresses, relocated at load). */
long lua_type_name_length(long x) {
    const char *name = lua_typename(NULL, (int)(x % 9) - 1);
    long n = 0;
    while (name[n]) n++;
    return x + n;
}
