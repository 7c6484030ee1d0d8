//! C++ names as C++ spells them, for every message of the tool's (pack's problems, `smf run`'s
//! and `smf verify`'s load errors, `-z defs`): Itanium ABI names (`_Z...`, as `nm -C` shows
//! them) demangled, within a bound on the text a name may produce (names built so that
//! substitutions nest, 100 bytes each demangling to half a megabyte, stay as they are).

use std::borrow::Cow;

/// Bytes a demangled name may take: 4 KiB and 32 a byte of the mangled name (real C++
/// names, templates of templates included, stay well within it).
pub fn limit(name: &[u8]) -> usize {
    4096 + 32 * name.len()
}

/// `name` demangled, unless it is not a C++ name or its demangled form would pass [`limit`].
pub fn demangled(name: &[u8]) -> Option<String> {
    /// A string that refuses to grow past its limit.
    struct Bounded {
        text: String,
        limit: usize,
    }
    impl std::fmt::Write for Bounded {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            if self.text.len() + s.len() > self.limit {
                return Err(std::fmt::Error);
            }
            self.text.push_str(s);
            Ok(())
        }
    }
    if !name.starts_with(b"_Z") {
        return None;
    }
    let symbol = cpp_demangle::Symbol::new(name).ok()?;
    let mut out = Bounded { text: String::new(), limit: limit(name) };
    symbol.structured_demangle(&mut out, &cpp_demangle::DemangleOptions::default()).ok()?;
    Some(out.text)
}

/// `name` for a message: demangled where it is a C++ name, else as it is.
pub fn readable(name: &str) -> Cow<'_, str> {
    demangled(name.as_bytes()).map_or(Cow::Borrowed(name), Cow::Owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpp_names_read_as_cpp_spells_them_and_others_as_they_are() {
        assert_eq!(readable("_ZN3foo3barEv"), "foo::bar()");
        assert_eq!(readable("_ZNSt7__cxx1112basic_stringIcSt11char_traitsIcESaIcEED1Ev"), "std::__cxx11::basic_string<char, std::char_traits<char>, std::allocator<char> >::~basic_string()");
        assert_eq!(readable("strlen"), "strlen");
        assert_eq!(readable("_Znot a name"), "_Znot a name");
        // 15 nested substitutions: 118 bytes that demangle to some 557 KB, left as they are.
        let bomb = "_Z3f151PIS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IS_IiiES0_ES1_ES2_ES3_ES4_ES5_ES6_ES7_ES8_ES9_ESA_ESB_ESC_ESD_ESE_E";
        assert_eq!(readable(bomb), bomb);
    }
}
