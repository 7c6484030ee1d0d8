//! `smf prefetch`: a set of modules loaded on worker threads, with the failures named.

use crate::{example, smf};

/// `smf prefetch` loads every file on worker threads (a module whose imports another file of
/// the set provides loads whatever the order), reports the count and the time, and names each
/// file that failed.
#[test]
fn prefetch_loads_a_set_of_modules_and_names_the_failures() {
    // app.smf imports gcd from mathlib.smf, listed after it.
    let ok = smf(&[
        "prefetch",
        "--threads",
        "2",
        &example("app.smf"),
        &example("mathlib.smf"),
        &example("recursion.smf"),
    ]);
    assert_eq!(ok.status, 0, "{}", ok.err);
    assert!(ok.out.starts_with("3 modules loaded, 0 failed, in "), "{}", ok.out);
    assert!(ok.out.ends_with(" ms on 2 threads\n"), "{}", ok.out);
    let missing = example("missing.smf");
    let bad = smf(&["prefetch", &example("recursion.smf"), &missing]);
    assert_eq!(bad.status, 1);
    assert!(bad.out.starts_with("1 module loaded, 1 failed"), "{}", bad.out);
    assert!(bad.out.ends_with(" threads\n") || bad.out.ends_with(" on 1 thread\n"), "{}", bad.out);
    assert!(bad.err.starts_with(&format!("smf: {missing}: ")), "{}", bad.err);
    // A file named twice is one file; no more threads than files.
    let recursion = example("recursion.smf");
    let twice = smf(&["prefetch", "--threads", "99999", &recursion, &recursion]);
    assert_eq!(twice.status, 0, "{}", twice.err);
    assert!(twice.out.starts_with("1 module loaded, 0 failed, in "), "{}", twice.out);
    assert!(twice.out.ends_with(" ms on 1 thread\n"), "{}", twice.out);
    assert_eq!(smf(&["prefetch"]).status, 2);
    assert_eq!(smf(&["prefetch", "--threads", "0", &missing]).status, 2);
}
