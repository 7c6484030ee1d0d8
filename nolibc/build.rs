//! Links the loader as a static executable with no C runtime: no crt start files, no libc, no
//! dynamic loader (`_start` is ours, in `src/main.rs`).

fn main() {
    // No unwind table index (panics abort), identical functions folded into one.
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static",
        "-Wl,--gc-sections",
        "-Wl,--build-id=none",
        "-Wl,--no-eh-frame-hdr",
        "-Wl,--icf=all",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
}
