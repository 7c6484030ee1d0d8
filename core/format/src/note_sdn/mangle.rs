//! Instantiation names as Simple writes them, the one home of the rule: a template's name,
//! then `$` and its type arguments joined by `_` (`List$Float`, `Map$text_Int`); the name
//! alone without arguments. A note's `type_args` column lists the same arguments joined by
//! `,` (`"text,Int"`; readers trim spaces after the commas). `docs/format.md` says where in the
//! Simple compilers this comes from.

use core::fmt;

/// What follows the template's name when there are type arguments.
pub const ARGUMENTS_START: char = '$';
/// What separates type arguments in a mangled name.
pub const ARGUMENT_SEPARATOR: char = '_';
/// What separates type arguments in a note's `type_args` column.
pub const COLUMN_SEPARATOR: char = ',';

/// Writes `base` mangled with `type_args`.
pub fn write_mangled<'a>(
    out: &mut impl fmt::Write,
    base: &str,
    type_args: impl IntoIterator<Item = &'a str>,
) -> fmt::Result {
    out.write_str(base)?;
    for (i, arg) in type_args.into_iter().enumerate() {
        out.write_char(if i == 0 { ARGUMENTS_START } else { ARGUMENT_SEPARATOR })?;
        out.write_str(arg)?;
    }
    Ok(())
}

/// The length in bytes of `base` mangled with `type_args`; `None` if it overflows `usize`.
pub fn mangled_len<'a>(base: &str, type_args: impl IntoIterator<Item = &'a str>) -> Option<usize> {
    type_args.into_iter().try_fold(base.len(), |len, arg| len.checked_add(arg.len())?.checked_add(1))
}

/// The type arguments a note's `type_args` column lists (none for an empty column).
pub fn column_arguments(column: &str) -> impl Iterator<Item = &str> {
    let column = column.trim();
    column.split(COLUMN_SEPARATOR).map(str::trim).filter(move |_| !column.is_empty())
}

/// Whether `mangled` is `template` mangled with the arguments of the `type_args` column (a
/// note row agreeing with itself), compared without allocating.
pub fn row_agrees(mangled: &str, template: &str, type_args: &str) -> bool {
    struct Matching<'a>(&'a str);
    impl fmt::Write for Matching<'_> {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            self.0 = self.0.strip_prefix(s).ok_or(fmt::Error)?;
            Ok(())
        }
    }
    let mut rest = Matching(mangled);
    write_mangled(&mut rest, template, column_arguments(type_args)).is_ok() && rest.0.is_empty()
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use alloc::string::String;
    use alloc::vec::Vec;

    use super::*;

    fn mangled(base: &str, args: &[&str]) -> String {
        let mut out = String::new();
        write_mangled(&mut out, base, args.iter().copied()).unwrap();
        assert_eq!(mangled_len(base, args.iter().copied()), Some(out.len()));
        out
    }

    #[test]
    fn names_mangle_as_simple_mangles_them() {
        assert_eq!(mangled("List", &["Float"]), "List$Float");
        assert_eq!(mangled("Map", &["text", "Int"]), "Map$text_Int");
        assert_eq!(mangled("main", &[]), "main");
        assert_eq!(mangled_len("x", ["a"; 3]), Some(7));
    }

    #[test]
    fn a_rows_columns_agree_when_its_name_is_its_template_mangled_with_its_arguments() {
        assert!(row_agrees("Map$text_Int", "Map", "text,Int"));
        assert!(row_agrees("Pair$Int_text", "Pair", "Int, text"));
        assert!(row_agrees("List$Float", "List", "Float"));
        assert!(row_agrees("main", "main", ""));
        assert!(!row_agrees("Map$text$Int", "Map", "text,Int"), "arguments join with `_`");
        assert!(!row_agrees("Map$text_In", "Map", "text,Int"));
        assert!(!row_agrees("Map$text_Int_", "Map", "text,Int"));
        assert_eq!(column_arguments(" a , b,c ").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(column_arguments("").count(), 0);
    }
}
