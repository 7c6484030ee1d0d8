//! The values the command line's options and arguments take, parsed for clap (a bad one is
//! a usage error with its reason): `--dialect`, `--compress`, and `smf run`'s typed arguments.

use smf_format::Dialect;
use smf_tool::pack::Compression;

use super::CallArg;

pub(super) fn dialect(text: &str) -> Result<Dialect, UnknownDialect> {
    Dialect::from_name(text).ok_or_else(|| UnknownDialect(text.to_owned()))
}

/// The `--compress` method and level.
pub(super) fn compression(text: &str) -> Result<Compression, UnknownMethod> {
    Compression::from_name(text).ok_or_else(|| UnknownMethod(text.to_owned()))
}

/// A `--compress` value that names no method this tool writes, or a level it does not have.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnknownMethod(pub(crate) String);

impl std::fmt::Display for UnknownMethod {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let levels = smf_tool::pack::ZSTD_LEVELS;
        write!(
            f,
            "unknown compression `{}` (lz4, zstd or zstd:LEVEL, {} to {}; zstd is zstd:{})",
            self.0,
            levels.start(),
            levels.end(),
            smf_tool::pack::ZSTD_DEFAULT_LEVEL
        )
    }
}

impl std::error::Error for UnknownMethod {}

/// A `--dialect` value that names no dialect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct UnknownDialect(pub(crate) String);

impl std::fmt::Display for UnknownDialect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "unknown dialect `{}` (s128, r96 or r72)", self.0)
    }
}

impl std::error::Error for UnknownDialect {}

/// `ARG` of `smf run`: an integer, a floating-point number, or `TYPE:VALUE`.
pub(super) fn call_arg(text: &str) -> Result<CallArg, BadArgument> {
    let bad = |why: &'static str| BadArgument { text: text.to_owned(), why };
    if let Some((kind, value)) = text.split_once(':') {
        return match kind {
            "f64" => finite(value).map(CallArg::F64).map_err(bad),
            "f32" => finite(value).map(CallArg::F32).map_err(bad),
            "i64" => typed_integer(value, i128::from(i64::MIN), i128::from(i64::MAX))
                .map(CallArg::Int)
                .map_err(bad),
            "u64" => typed_integer(value, 0, i128::from(u64::MAX)).map(CallArg::Int).map_err(bad),
            _ => Err(bad("the types are f64, f32, i64 and u64")),
        };
    }
    match integer(text) {
        Ok(value) => Ok(CallArg::Int(value)),
        // Not an integer at all (one too large stays an error): a number with a fraction, an
        // exponent, inf or nan is a double.
        Err(NOT_A_NUMBER) => finite(text).map(CallArg::F64).map_err(bad),
        Err(why) => Err(bad(why)),
    }
}

/// An integer: decimal (optionally negative) or `0x` hexadecimal, within 64 bits (signed or
/// unsigned: `u64::MAX` is taken as its two's-complement `-1`).
pub(crate) fn integer(text: &str) -> Result<i64, &'static str> {
    typed_integer(text, i128::from(i64::MIN), i128::from(u64::MAX))
}

/// [`integer`] within `min..=max` (an `i64:` argument within the signed range, a `u64:` one
/// within the unsigned one), as its 64-bit two's-complement pattern.
fn typed_integer(text: &str, min: i128, max: i128) -> Result<i64, &'static str> {
    let value = wide_integer(text)?;
    if !(min..=max).contains(&value) {
        return Err(OUT_OF_RANGE);
    }
    i64::try_from(value).or_else(|_| u64::try_from(value).map(|v| v as i64)).map_err(|_| OUT_OF_RANGE)
}

/// A floating-point value of type `F` that the text gives, refused where a finite number
/// overflows to infinity (`inf` and `nan`, written so, stay what they say).
fn finite<F: std::str::FromStr + Into<f64> + Copy>(text: &str) -> Result<F, &'static str> {
    let value: F = text.parse().map_err(|_| NOT_A_NUMBER)?;
    let named = text.trim_start_matches(['-', '+']).to_ascii_lowercase();
    let infinite = value.into().is_infinite() && !matches!(named.as_str(), "inf" | "infinity");
    if infinite {
        return Err(OUT_OF_FLOAT_RANGE);
    }
    Ok(value)
}

/// The integer `text` gives, decimal or `0x` hexadecimal, optionally negative, as an `i128`.
fn wide_integer(text: &str) -> Result<i128, &'static str> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let magnitude = match digits.strip_prefix("0x").or_else(|| digits.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => digits.parse::<u64>(),
    };
    let magnitude = magnitude.map_err(|e| match e.kind() {
        std::num::IntErrorKind::PosOverflow => OUT_OF_RANGE,
        _ => NOT_A_NUMBER,
    })?;
    Ok(if negative { 0i128 - i128::from(magnitude) } else { i128::from(magnitude) })
}

/// Why an argument is refused: it is no number.
const NOT_A_NUMBER: &str = "not a number";
/// Why an argument is refused: an integer that does not fit.
const OUT_OF_RANGE: &str = "out of the 64-bit range";
/// Why an argument is refused: a finite number too large for its floating-point type.
const OUT_OF_FLOAT_RANGE: &str = "too large for its floating-point type (write inf for infinity)";

/// An `ARG` of `smf run` that is not a value (a usage error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct BadArgument {
    /// As given.
    pub(crate) text: String,
    /// Why not.
    pub(crate) why: &'static str,
}

impl std::fmt::Display for BadArgument {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "argument `{}`: {}", self.text, self.why)
    }
}

impl std::error::Error for BadArgument {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_arguments_are_integers_floats_or_typed() {
        assert_eq!(call_arg("-7"), Ok(CallArg::Int(-7)));
        assert_eq!(call_arg("0xff"), Ok(CallArg::Int(255)));
        assert_eq!(call_arg("0xffffffffffffffff"), Ok(CallArg::Int(-1)));
        assert_eq!(call_arg("1.5"), Ok(CallArg::F64(1.5)));
        assert_eq!(call_arg("-2e3"), Ok(CallArg::F64(-2000.0)));
        assert_eq!(call_arg("f32:1.5"), Ok(CallArg::F32(1.5)));
        assert_eq!(call_arg("f64:2"), Ok(CallArg::F64(2.0)));
        assert_eq!(call_arg("i64:-1"), Ok(CallArg::Int(-1)));
        assert_eq!(call_arg("u64:0x10"), Ok(CallArg::Int(16)));
        let refused =
            |text: &str, why: &'static str| call_arg(text) == Err(BadArgument { text: text.into(), why });
        assert!(refused("ten", "not a number"));
        assert!(refused("0x1g", "not a number"));
        assert!(refused("-0x8000000000000001", "out of the 64-bit range"));
        assert!(refused("99999999999999999999", "out of the 64-bit range"));
        assert!(refused("f16:1", "the types are f64, f32, i64 and u64"));
        assert!(refused("f64:x", "not a number"));
        // A typed argument keeps to its type's range.
        assert_eq!(call_arg("u64:0xffffffffffffffff"), Ok(CallArg::Int(-1)));
        assert!(refused("u64:-5", "out of the 64-bit range"));
        assert_eq!(call_arg("i64:-9223372036854775808"), Ok(CallArg::Int(i64::MIN)));
        assert!(refused("i64:9223372036854775808", "out of the 64-bit range"));
        let too_large = "too large for its floating-point type (write inf for infinity)";
        assert!(refused("1e400", too_large));
        assert!(refused("f32:1e39", too_large));
        assert!(refused("f64:-1e400", too_large));
        assert_eq!(call_arg("f32:-inf"), Ok(CallArg::F32(f32::NEG_INFINITY)));
        assert_eq!(call_arg("inf"), Ok(CallArg::F64(f64::INFINITY)));
        assert!(matches!(call_arg("nan"), Ok(CallArg::F64(v)) if v.is_nan()));
    }

    #[test]
    fn an_unknown_dialect_is_a_typed_refusal() {
        assert_eq!(dialect("r96"), Ok(Dialect::R96));
        assert_eq!(dialect("elf64"), Err(UnknownDialect("elf64".into())));
        assert_eq!(UnknownDialect("elf64".into()).to_string(), "unknown dialect `elf64` (s128, r96 or r72)");
    }
}
