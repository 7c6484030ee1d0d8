//! Links the loader as a static executable with no C runtime: no crt start files, no libc, no
//! dynamic loader (`_start` is ours, in `src/main.rs`).

fn main() {
    // No unwind tables (panics abort; `link.ld` drops those the precompiled core and alloc
    // bring), identical functions folded into one, and no RELRO segment: a static executable
    // has no relocations to protect, and without libc nothing would make it read-only anyway.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("link.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,--gc-sections",
        "-Wl,--build-id=none",
        "-Wl,--no-eh-frame-hdr",
        "-Wl,--icf=all",
        "-Wl,-z,norelro",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
