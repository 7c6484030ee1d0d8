//! Gives `libsmf.so` a SONAME (`libsmf.so.<major>`), so programs linked against it record the
//! versioned name that `cargo xtask install` installs, as shared libraries on Linux do.

fn main() {
    let major = std::env::var("CARGO_PKG_VERSION_MAJOR").unwrap_or_else(|_| "0".into());
    if std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux") {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libsmf.so.{major}");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
