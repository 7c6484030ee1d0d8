//! How `smf pack` compresses (`--compress lz4|zstd[:LEVEL]`): the method, and for Zstandard the
//! level libzstd encodes at, 1 to 22 (the core's own writer has only ruzstd's fastest; libzstd
//! is the reference encoder, and its default level 3 already packs tighter).

use smf_format::compress::Method;
use smf_format::write::ModuleBuilder;

/// A method and its level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compression {
    /// The method.
    pub method: Method,
    /// Zstandard's level (1 to 22, written in the header's `compression_level`); LZ4 has one.
    pub level: Option<u8>,
}

/// libzstd's levels, as `zstd -1` to `zstd --ultra -22`.
pub const ZSTD_LEVELS: core::ops::RangeInclusive<u8> = 1..=22;

/// The level `zstd` means without one (libzstd's default).
pub const ZSTD_DEFAULT_LEVEL: u8 = 3;

impl Compression {
    /// `lz4`, `zstd` or `zstd:LEVEL`; `None` for anything else (an unknown method, a level
    /// out of range, a level for LZ4).
    pub fn from_name(text: &str) -> Option<Self> {
        let (name, level) = match text.split_once(':') {
            Some((name, level)) => (name, Some(parse_level(level)?)),
            None => (text, None),
        };
        match (name, level) {
            ("lz4", None) => Some(Method::Lz4.into()),
            ("zstd", level) => {
                Some(Compression { method: Method::Zstd, level: Some(level.unwrap_or(ZSTD_DEFAULT_LEVEL)) })
            }
            _ => None,
        }
    }

    /// Tells `builder` to compress so.
    pub(crate) fn apply(self, builder: &mut ModuleBuilder) {
        match (self.method, self.level) {
            (Method::Zstd, Some(level)) => builder.compress_with(Method::Zstd, level, libzstd),
            (method, _) => builder.compress(method),
        };
    }
}

/// A level as decimal digits, no sign and no leading zero, within [`ZSTD_LEVELS`].
fn parse_level(text: &str) -> Option<u8> {
    let digits = text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    text.parse::<u8>().ok().filter(|level| digits && ZSTD_LEVELS.contains(level))
}

impl From<Method> for Compression {
    /// The method at its writer's one level (LZ4) or fastest (Zstandard through the core's
    /// ruzstd).
    fn from(method: Method) -> Self {
        Compression { method, level: None }
    }
}

/// Zstandard data for `bytes` at `level` through libzstd.
fn libzstd(bytes: &[u8], level: u8) -> Vec<u8> {
    // Fails only for a level libzstd does not have (never: `ZSTD_LEVELS`) or when memory is
    // exhausted, where allocating the result would abort anyway.
    zstd::bulk::compress(bytes, i32::from(level)).expect("libzstd compresses at levels 1 to 22")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_levels() {
        let zstd = |level| Some(Compression { method: Method::Zstd, level: Some(level) });
        assert_eq!(Compression::from_name("lz4"), Some(Method::Lz4.into()));
        assert_eq!(Compression::from_name("zstd"), zstd(3));
        assert_eq!(Compression::from_name("zstd:1"), zstd(1));
        assert_eq!(Compression::from_name("zstd:22"), zstd(22));
        for refused in [
            "zstd:0", "zstd:23", "zstd:", "zstd:x", "lz4:1", "gzip", "zstd:-1", "", "zstd:+3", "zstd:03",
            "zstd: 3",
        ] {
            assert_eq!(Compression::from_name(refused), None, "{refused}");
        }
    }
}
