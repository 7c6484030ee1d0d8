//! C++ names in the C library's messages as C++ spells them: every name a message quotes in
//! backticks that is mangled by the Itanium C++ ABI (`_Z...`) is written demangled
//! (`` `_ZN3foo3barEv` `` becomes `` `foo::bar()` ``), by the C++ runtime the process already
//! has (`__cxa_demangle`, of a C++ host, or of `libstdc++`/`libc++abi` loaded by a module that
//! needs it). The library loads no runtime for it: where none is loaded, names stay mangled.
//! Messages are demangled as they are written ([`Demangling`]), with no allocation of the
//! library's own (the runtime's demangler allocates the name it returns, freed at once).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The longest name demangled: a longer one is written as it is.
const NAME_BYTES: usize = 512;

/// A demangler: the mangled name (NUL-terminated) to what it writes for it, if it knows it.
pub(crate) type Demangler = fn(&CStr, &mut dyn fmt::Write) -> bool;

/// Where a [`Demangling`] writer is in the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Outside backticks.
    Outside,
    /// Inside backticks, collecting the name.
    Quoted,
    /// Inside backticks, past [`NAME_BYTES`]: written as it comes.
    Passing,
}

/// Writes a message to `out` with the mangled names it quotes demangled by `demangler`.
pub(crate) struct Demangling<'w> {
    out: &'w mut dyn fmt::Write,
    /// The demangler, once looked for (`None` until a message quotes a mangled name: a
    /// message without one costs no lookup).
    demangler: Option<Option<Demangler>>,
    state: State,
    /// The quoted name so far, with room for its NUL.
    name: [u8; NAME_BYTES + 1],
    len: usize,
}

impl<'w> Demangling<'w> {
    /// A writer to `out`, demangling with the process's C++ runtime if it has one (looked for
    /// at the first mangled name quoted).
    pub(crate) fn new(out: &'w mut dyn fmt::Write) -> Self {
        Self { out, demangler: None, state: State::Outside, name: [0; NAME_BYTES + 1], len: 0 }
    }

    /// A writer to `out` demangling with `demangler` (none: names as they are).
    #[cfg(test)]
    fn with(out: &'w mut dyn fmt::Write, demangler: Option<Demangler>) -> Self {
        Self { demangler: Some(demangler), ..Self::new(out) }
    }

    /// Ends the message: a quote left open is written as it came.
    pub(crate) fn finish(mut self) -> fmt::Result {
        if self.state == State::Quoted {
            self.write_collected()?;
        }
        Ok(())
    }

    /// The name collected, as it came.
    fn write_collected(&mut self) -> fmt::Result {
        // Whole characters were collected.
        self.out.write_str(std::str::from_utf8(&self.name[..self.len]).unwrap_or_default())
    }

    /// The name collected, demangled where it is a mangled name the demangler knows.
    fn write_name(&mut self) -> fmt::Result {
        if !self.name[..self.len].starts_with(b"_Z") {
            return self.write_collected();
        }
        if let Some(demangle) = *self.demangler.get_or_insert_with(process_demangler) {
            self.name[self.len] = 0;
            if let Ok(name) = CStr::from_bytes_with_nul(&self.name[..=self.len]) {
                if demangle(name, self.out) {
                    return Ok(());
                }
            }
        }
        self.write_collected()
    }
}

impl fmt::Write for Demangling<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            match (self.state, c) {
                (State::Outside, '`') => {
                    self.out.write_char(c)?;
                    self.state = State::Quoted;
                    self.len = 0;
                }
                (State::Quoted, '`') => {
                    self.write_name()?;
                    self.out.write_char(c)?;
                    self.state = State::Outside;
                }
                (State::Passing, '`') => {
                    self.out.write_char(c)?;
                    self.state = State::Outside;
                }
                (State::Quoted, c) if self.len + c.len_utf8() <= NAME_BYTES => {
                    self.len += c.encode_utf8(&mut self.name[self.len..NAME_BYTES]).len();
                }
                (State::Quoted, c) => {
                    self.write_collected()?;
                    self.out.write_char(c)?;
                    self.state = State::Passing;
                }
                (_, c) => self.out.write_char(c)?,
            }
        }
        Ok(())
    }
}

// The C library's.
unsafe extern "C" {
    fn dlsym(handle: *mut c_void, name: *const c_char) -> *mut c_void;
    fn free(pointer: *mut c_void);
}

/// `__cxa_demangle(mangled, buffer, length, status)`.
type CxaDemangle = unsafe extern "C" fn(*const c_char, *mut c_char, *mut usize, *mut c_int) -> *mut c_char;

/// The `__cxa_demangle` found, as an address (0: not found yet).
static CXA_DEMANGLE: AtomicUsize = AtomicUsize::new(0);

/// The process's demangler, if a C++ runtime is loaded: looked for until found (a runtime a
/// later module needs may be loaded after a first message), kept once found (a runtime the
/// process loaded stays: `dlclose` of a C++ runtime does not unload it).
fn process_demangler() -> Option<Demangler> {
    if CXA_DEMANGLE.load(Ordering::Acquire) == 0 {
        let found = find_cxa_demangle()?;
        CXA_DEMANGLE.store(found, Ordering::Release);
    }
    Some(demangle_with_runtime)
}

/// `__cxa_demangle` of the process's global scope (a C++ host), or of a C++ runtime already
/// loaded (`libstdc++`, `libc++abi`, opened by a module's needs).
fn find_cxa_demangle() -> Option<usize> {
    // SAFETY: dlsym of the global scope with a NUL-terminated name.
    let global = unsafe { dlsym(std::ptr::null_mut(), c"__cxa_demangle".as_ptr()) } as usize;
    if global != 0 {
        return Some(global);
    }
    // A C++ runtime, once loaded, is never unloaded.
    [c"libstdc++.so.6", c"libc++abi.so.1"].into_iter().find_map(|library| {
        let [found] = crate::native::symbols_of_loaded(library, [c"__cxa_demangle"])?;
        (found != 0).then_some(found)
    })
}

/// Writes what the process's `__cxa_demangle` makes of `name`; `false` if it refuses it.
fn demangle_with_runtime(name: &CStr, out: &mut dyn fmt::Write) -> bool {
    let address = CXA_DEMANGLE.load(Ordering::Acquire);
    // SAFETY: a nonzero value is `__cxa_demangle`'s address (found above), whose signature
    // the Itanium C++ ABI fixes, in a runtime that stays loaded.
    let Some(demangle) = (unsafe { smf_runtime::exec::function_pointer::<CxaDemangle>(address) }) else {
        return false;
    };
    let mut status: c_int = -1;
    // SAFETY: a NUL-terminated name; no buffer given, so the demangler allocates the result
    // with malloc, which is freed below.
    let demangled =
        unsafe { demangle(name.as_ptr(), std::ptr::null_mut(), std::ptr::null_mut(), &mut status) };
    if demangled.is_null() {
        return false;
    }
    // SAFETY: on success the demangler returns a NUL-terminated string, freed once here after
    // it was written.
    let written = unsafe {
        let text = CStr::from_ptr(demangled).to_str().ok();
        let written = status == 0 && text.is_some_and(|text| out.write_str(text).is_ok());
        free(demangled.cast());
        written
    };
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Knows two names.
    fn fake(name: &CStr, out: &mut dyn fmt::Write) -> bool {
        let text = match name.to_bytes() {
            b"_Z3foov" => "foo()",
            b"_ZN1a1bEi" => "a::b(int)",
            _ => return false,
        };
        out.write_str(text).is_ok()
    }

    fn demangled(pieces: &[&str], demangler: Option<Demangler>) -> String {
        let mut out = String::new();
        let mut writer = Demangling::with(&mut out, demangler);
        for piece in pieces {
            fmt::Write::write_str(&mut writer, piece).unwrap();
        }
        writer.finish().unwrap();
        out
    }

    #[test]
    fn quoted_mangled_names_are_demangled_and_everything_else_written_as_it_came() {
        let message = "2 unresolved imports: `_Z3foov`, `_ZN1a1bEi` and `plain` (`_Zunknown`, _Z3foov)";
        let expected = "2 unresolved imports: `foo()`, `a::b(int)` and `plain` (`_Zunknown`, _Z3foov)";
        assert_eq!(demangled(&[message], Some(fake)), expected);
        // However the formatter cuts the message into pieces.
        let chars: Vec<String> = message.chars().map(String::from).collect();
        let pieces: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(demangled(&pieces, Some(fake)), expected);
        assert_eq!(demangled(&[message], None), message, "no runtime: names as they are");
    }

    #[test]
    fn a_message_quoting_no_mangled_name_looks_for_no_demangler() {
        let mut out = String::new();
        let mut writer = Demangling::new(&mut out);
        fmt::Write::write_str(&mut writer, "no exported symbol `main` in module `a.smf`").unwrap();
        assert_eq!(writer.demangler, None, "not looked for");
        fmt::Write::write_str(&mut writer, ": `_Z3foov`").unwrap();
        assert!(writer.demangler.is_some(), "looked for at the first mangled name");
    }

    #[test]
    fn an_open_quote_a_long_name_and_other_scripts_pass_through_whole() {
        assert_eq!(demangled(&["ends in `_Z3foov"], Some(fake)), "ends in `_Z3foov");
        let long = format!("`_Z{}` then `_Z3foov`", "x".repeat(NAME_BYTES));
        assert_eq!(demangled(&[&long], Some(fake)), format!("`_Z{}` then `foo()`", "x".repeat(NAME_BYTES)));
        let wide = format!("`{}é`", "é".repeat(NAME_BYTES / 2));
        assert_eq!(demangled(&[&wide], Some(fake)), wide, "a name cut between two-byte characters");
        assert_eq!(demangled(&["`Grüße` `_Z3foov`"], Some(fake)), "`Grüße` `foo()`");
    }
}
