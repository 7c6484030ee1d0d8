//! The compiler driver's options a link line carries, which `smf pack` takes as `gcc` takes
//! them when it links: its own link options (`-pthread`, `-rdynamic`, ...), each with why pack
//! has nothing to do for it, and compile options (a makefile's CFLAGS), with nothing to compile.
//! `args.rs` hands them to the linker options' reader (`linker.rs`), which notes them.

/// The compiler driver's link options, each with why pack has nothing to do for it; `*` ends
/// a prefix. (`-static` and `-shared` are taken: see `crate::args`.)
const DRIVER: [(&str, &str); 9] = [
    ("-pthread", "the C library's threads need no library"),
    ("-rdynamic", "a module's symbols are its exports"),
    ("-pie", "a module is position-independent"),
    ("-no-pie", "a module is position-independent"),
    ("-static-libgcc", "libgcc's members are packed where -lgcc names its archive"),
    ("-shared-libgcc", "a module has no such setting"),
    ("-nostdlib", "pack adds no library of its own"),
    ("-nostartfiles", "pack adds no start files"),
    ("-nodefaultlibs", "pack adds no library of its own"),
];

/// Compile options a link line may carry (a makefile's CFLAGS), which have nothing to compile
/// here: prefixes, and `-W` warnings (not `-Wl,`).
const COMPILE_PREFIXES: [&str; 9] = ["-f", "-O", "-g", "-march=", "-mtune=", "-std=", "-D", "-I", "-m64"];

/// Whether `option`, given to `smf pack` on its own, is a compiler driver's link option or a
/// compile option ([`DRIVER`], [`COMPILE_PREFIXES`], `-static-libstdc++`, `-static-pie`,
/// `-pipe`, warnings), which pack reads among the linker's.
pub(crate) fn is_driver_option(option: &str) -> bool {
    nothing_to_do(option).is_some()
        || matches!(option, "-static-libstdc++" | "-static-pie")
        || is_compile_option(option)
}

/// Why pack has nothing to do for the driver's link option `option`, if it is one of them.
pub(crate) fn nothing_to_do(option: &str) -> Option<&'static str> {
    DRIVER.iter().find(|(name, _)| *name == option).map(|&(_, why)| why)
}

/// Whether `option` is a compile option ([`COMPILE_PREFIXES`], `-pipe`, `-W` warnings).
pub(crate) fn is_compile_option(option: &str) -> bool {
    option == "-pipe"
        || COMPILE_PREFIXES.iter().any(|prefix| option.starts_with(prefix) && option.len() > 1)
        || (option.starts_with("-W") && !option.starts_with("-Wl,") && option.len() > 2)
}
