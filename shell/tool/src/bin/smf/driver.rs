//! The compiler driver's options a link line carries, which `smf pack` takes as `gcc` takes
//! them when it links: its own link options (`-pthread`, `-rdynamic`, ...), each with why pack
//! has nothing to do for it, those that link a runtime library (`-fopenmp`: `-lgomp`), and
//! compile options (a makefile's CFLAGS), with nothing to compile.
//! `args.rs` hands them to the linker options' reader (`linker.rs`), which notes them.

/// The compiler driver's link options, each with why pack has nothing to do for it; `*` ends
/// a prefix. (`-static` and `-shared` are taken: see `crate::args`.)
const DRIVER: [(&str, &str); 9] = [
    ("-v", "pack says what it does with --verbose"),
    ("-pg", "the code's mcount calls go to the C library's; a module writes no gmon.out"),
    ("-pthread", "the C library's threads need no library"),
    ("-rdynamic", "a module's symbols are its exports"),
    ("-pie", "a module is position-independent"),
    ("-no-pie", "a module is position-independent"),
    ("-static-libgcc", "libgcc's archive is linked always, as for a shared library"),
    ("-shared-libgcc", "a module has no such setting"),
    ("-nostartfiles", "pack adds no start files"),
];

/// The driver's options that make it link a runtime library of the compiler's, as `-lNAME`:
/// OpenMP's, the sanitizers', coverage's.
const RUNTIME_LIBRARIES: [(&str, &str); 7] = [
    ("-fopenmp", "gomp"),
    ("-fsanitize=undefined", "ubsan"),
    ("-fsanitize=address", "asan"),
    ("-fsanitize=thread", "tsan"),
    ("-fsanitize=leak", "lsan"),
    ("--coverage", "gcov"),
    ("-fprofile-arcs", "gcov"),
];

/// Compile options a link line may carry (a makefile's CFLAGS), which have nothing to compile
/// here: prefixes (`-m`: the target's, `-mcmodel=large`, `-mavx2`), and `-W` warnings (not
/// `-Wl,`).
const COMPILE_PREFIXES: [&str; 8] = ["-f", "-O", "-g", "-m", "-std=", "-D", "-I", "-U"];

/// Whether `option`, given to `smf pack` on its own, is a compiler driver's link option or a
/// compile option ([`DRIVER`], [`COMPILE_PREFIXES`], `-static-libstdc++`, `-static-pie`,
/// `-nostdlib`, `-nodefaultlibs`, `-pipe`, warnings), which pack reads among the linker's.
pub(crate) fn is_driver_option(option: &str) -> bool {
    nothing_to_do(option).is_some()
        || runtime_library(option).is_some()
        || matches!(option, "-static-libstdc++" | "-static-pie" | "-nostdlib" | "-nodefaultlibs")
        || is_compile_option(option)
}

/// Why pack has nothing to do for the driver's link option `option`, if it is one of them.
pub(crate) fn nothing_to_do(option: &str) -> Option<&'static str> {
    DRIVER.iter().find(|(name, _)| *name == option).map(|&(_, why)| why)
}

/// The runtime library (its NAME for `-lNAME`) the driver links for `option`, if it links one
/// ([`RUNTIME_LIBRARIES`]).
pub(crate) fn runtime_library(option: &str) -> Option<&'static str> {
    RUNTIME_LIBRARIES.iter().find(|(name, _)| *name == option).map(|&(_, library)| library)
}

/// Whether `option` is a compile option ([`COMPILE_PREFIXES`], `-pipe`, `-W` warnings).
pub(crate) fn is_compile_option(option: &str) -> bool {
    // ld's `-m EMULATION` (its value the next argument) is the linker's.
    option != "-m"
        && (option == "-pipe"
            || COMPILE_PREFIXES.iter().any(|prefix| option.starts_with(prefix) && option.len() > 1)
            || (option.starts_with("-W") && !option.starts_with("-Wl,") && option.len() > 2))
}
