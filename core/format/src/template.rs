//! Readers for the template-code (`GTPL`) and template-meta (`META`) sections.
//!
//! Template code: magic `GTPL`, u16 version, u32 count, then entries. Every entry starts with
//! u8 kind, u32 name length, name, u8 generic parameter count (the "short form" the older Rust
//! reader knows). The self-hosted compiler's full form continues with the parameter names
//! (u32 length + bytes each) and a kind-specific body. The body's grammar differs per kind and
//! compiler version, so entries are located through the symbols that point at them
//! (`template_offset`): an entry runs to the next entry a symbol points at, or to the end of the
//! section. Without such symbols, entries are read one after another in the short form.
//!
//! Template meta: magic `META`, u16 version, four u32 counts (functions, structs, enums,
//! traits), then per category that many entries of (u32 name length, name, u32 specialization
//! count).

use crate::bytes::Cursor;
use crate::error::ErrorKind;

type Result<T> = core::result::Result<T, ErrorKind>;

/// Template-code magic.
pub const TEMPLATE_CODE_MAGIC: [u8; 4] = *b"GTPL";
/// Template-meta magic.
pub const TEMPLATE_META_MAGIC: [u8; 4] = *b"META";
/// Size of the template-code header.
pub const TEMPLATE_CODE_HEADER: usize = 10;
/// Size of the template-meta header.
pub const TEMPLATE_META_HEADER: usize = 22;

/// What a template defines.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TemplateKind {
    /// 0
    Function,
    /// 1
    Struct,
    /// 2
    Class,
    /// 3
    Enum,
    /// 4
    Trait,
}

impl TemplateKind {
    /// Meaning of the wire byte.
    pub const fn from_wire(value: u8) -> Option<Self> {
        match value {
            0 => Some(TemplateKind::Function),
            1 => Some(TemplateKind::Struct),
            2 => Some(TemplateKind::Class),
            3 => Some(TemplateKind::Enum),
            4 => Some(TemplateKind::Trait),
            _ => None,
        }
    }

    /// The wire byte.
    pub const fn to_wire(self) -> u8 {
        self as u8
    }

    /// The name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            TemplateKind::Function => "function",
            TemplateKind::Struct => "struct",
            TemplateKind::Class => "class",
            TemplateKind::Enum => "enum",
            TemplateKind::Trait => "trait",
        }
    }
}

/// The template-code section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateCode<'a> {
    bytes: &'a [u8],
    version: u16,
    count: u32,
}

/// One template entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateEntry<'a> {
    /// Offset of the entry in the section.
    pub offset: u64,
    /// What it defines.
    pub kind: TemplateKind,
    /// Its name.
    pub name: &'a [u8],
    /// Number of generic parameters.
    pub param_count: u8,
    /// Encoded parameter names (empty in the short form).
    params: &'a [u8],
    /// The kind-specific body after the parameter names (empty in the short form).
    pub body: &'a [u8],
    /// The whole entry, as handed to a compiler.
    pub bytes: &'a [u8],
}

impl<'a> TemplateEntry<'a> {
    /// The generic parameter names (none in the short form).
    pub fn params(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let mut cursor = Cursor::new(self.params);
        core::iter::from_fn(move || cursor.text())
    }

    /// Whether the entry carries more than the short prefix.
    pub fn is_full_form(&self) -> bool {
        !self.params.is_empty() || !self.body.is_empty()
    }
}

impl<'a> TemplateCode<'a> {
    /// Checks the header.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut cursor = Cursor::new(bytes);
        let magic = cursor.take(4).ok_or(ErrorKind::TemplateTruncated)?;
        if magic != TEMPLATE_CODE_MAGIC {
            return Err(ErrorKind::TemplateBadMagic);
        }
        let version = cursor.u16().ok_or(ErrorKind::TemplateTruncated)?;
        let count = cursor.u32().ok_or(ErrorKind::TemplateTruncated)?;
        Ok(Self { bytes, version, count })
    }

    /// The whole section.
    pub const fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Format version.
    pub const fn version(&self) -> u16 {
        self.version
    }

    /// Number of entries the header claims.
    pub const fn count(&self) -> u32 {
        self.count
    }

    /// Section length in bytes.
    pub const fn len(&self) -> u64 {
        self.bytes.len() as u64
    }

    /// Whether the section is only a header.
    pub const fn is_empty(&self) -> bool {
        self.bytes.len() <= TEMPLATE_CODE_HEADER
    }

    /// The short prefix at `offset`: kind, name, parameter count, and where the prefix ends.
    fn prefix(&self, offset: usize) -> Result<(TemplateKind, &'a [u8], u8, usize)> {
        if offset < TEMPLATE_CODE_HEADER {
            return Err(ErrorKind::TemplateTruncated);
        }
        let mut cursor = Cursor::new(self.bytes.get(offset..).ok_or(ErrorKind::TemplateTruncated)?);
        let raw_kind = cursor.u8().ok_or(ErrorKind::TemplateTruncated)?;
        let kind = TemplateKind::from_wire(raw_kind).ok_or(ErrorKind::TemplateBadKind { value: raw_kind })?;
        let name = cursor.text().ok_or(ErrorKind::TemplateTruncated)?;
        let param_count = cursor.u8().ok_or(ErrorKind::TemplateTruncated)?;
        Ok((kind, name, param_count, offset + cursor.position()))
    }

    /// Checks that an entry's short prefix (kind, name, parameter count) lies at `offset`:
    /// the O(1) check validation applies to every template symbol.
    pub fn check_entry(&self, offset: u64) -> Result<()> {
        let start = usize::try_from(offset).map_err(|_| ErrorKind::TemplateTruncated)?;
        self.prefix(start).map(|_| ())
    }

    /// The entry at `offset` that runs to `end` (exclusive; clamped to the section).
    ///
    /// If the entry has bytes past its short prefix, they must start with `param_count`
    /// parameter names; the rest is the body.
    pub fn entry_at(&self, offset: u64, end: u64) -> Result<TemplateEntry<'a>> {
        let start = usize::try_from(offset).map_err(|_| ErrorKind::TemplateTruncated)?;
        let end = usize::try_from(end.min(self.len())).map_err(|_| ErrorKind::TemplateTruncated)?;
        let (kind, name, param_count, prefix_end) = self.prefix(start)?;
        if prefix_end > end {
            return Err(ErrorKind::TemplateTruncated);
        }
        let extra = &self.bytes[prefix_end..end];
        let (params, body) = if extra.is_empty() {
            (&extra[..0], &extra[..0])
        } else {
            let mut cursor = Cursor::new(extra);
            for _ in 0..param_count {
                cursor.text().ok_or(ErrorKind::TemplateTruncated)?;
            }
            extra.split_at(cursor.position())
        };
        Ok(TemplateEntry { offset, kind, name, param_count, params, body, bytes: &self.bytes[start..end] })
    }

    /// The entries read one after another in the short form, as the older reader does.
    ///
    /// Yields an error and stops at the first entry that does not parse.
    pub fn short_entries(&self) -> impl Iterator<Item = Result<TemplateEntry<'a>>> + 'a {
        let this = *self;
        let mut at = TEMPLATE_CODE_HEADER;
        let mut left = self.count;
        core::iter::from_fn(move || {
            if left == 0 {
                return None;
            }
            match this.prefix(at) {
                Ok((_, _, _, end)) => {
                    let entry = this.entry_at(at as u64, end as u64);
                    at = end;
                    left -= 1;
                    Some(entry)
                }
                Err(err) => {
                    left = 0;
                    Some(Err(err))
                }
            }
        })
    }

    /// Whether the section is exactly `count` short-form entries.
    pub fn is_short_form(&self) -> bool {
        let mut end = TEMPLATE_CODE_HEADER as u64;
        for entry in self.short_entries() {
            match entry {
                Ok(e) => end = e.offset + e.bytes.len() as u64,
                Err(_) => return false,
            }
        }
        end == self.len()
    }
}

/// A template-meta category.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetaCategory {
    /// Generic functions.
    Functions,
    /// Generic structs.
    Structs,
    /// Generic enums.
    Enums,
    /// Generic traits.
    Traits,
}

impl MetaCategory {
    /// The categories in file order.
    pub const ALL: [MetaCategory; 4] =
        [MetaCategory::Functions, MetaCategory::Structs, MetaCategory::Enums, MetaCategory::Traits];

    /// The name used in reports and JSON.
    pub const fn name(self) -> &'static str {
        match self {
            MetaCategory::Functions => "functions",
            MetaCategory::Structs => "structs",
            MetaCategory::Enums => "enums",
            MetaCategory::Traits => "traits",
        }
    }
}

/// One template-meta entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetaEntry<'a> {
    /// Its category.
    pub category: MetaCategory,
    /// The template name.
    pub name: &'a [u8],
    /// How many specializations were emitted.
    pub specializations: u32,
}

/// The template-meta section (validated in full by [`TemplateMeta::parse`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TemplateMeta<'a> {
    bytes: &'a [u8],
    version: u16,
    counts: [u32; 4],
}

impl<'a> TemplateMeta<'a> {
    /// Checks the header and that every entry the counts announce is present.
    pub fn parse(bytes: &'a [u8]) -> Result<Self> {
        let mut cursor = Cursor::new(bytes);
        let magic = cursor.take(4).ok_or(ErrorKind::TemplateTruncated)?;
        if magic != TEMPLATE_META_MAGIC {
            return Err(ErrorKind::TemplateBadMagic);
        }
        let version = cursor.u16().ok_or(ErrorKind::TemplateTruncated)?;
        let mut counts = [0u32; 4];
        for count in &mut counts {
            *count = cursor.u32().ok_or(ErrorKind::TemplateTruncated)?;
        }
        let meta = Self { bytes, version, counts };
        // Each entry takes at least 8 bytes, so this loop ends within the section's length.
        for entry in meta.raw_entries() {
            entry?;
        }
        Ok(meta)
    }

    /// Format version.
    pub const fn version(&self) -> u16 {
        self.version
    }

    /// Entry counts: functions, structs, enums, traits.
    pub const fn counts(&self) -> [u32; 4] {
        self.counts
    }

    fn raw_entries(&self) -> impl Iterator<Item = Result<MetaEntry<'a>>> + 'a {
        let mut cursor = Cursor::new(self.bytes);
        let _ = cursor.take(TEMPLATE_META_HEADER);
        let counts = self.counts;
        let (mut category, mut left, mut failed) = (0usize, counts[0], false);
        core::iter::from_fn(move || {
            if failed {
                return None;
            }
            while left == 0 {
                category += 1;
                left = *counts.get(category)?;
            }
            left -= 1;
            let entry = (|| {
                let name = cursor.text()?;
                let specializations = cursor.u32()?;
                Some(MetaEntry { category: MetaCategory::ALL[category], name, specializations })
            })();
            failed = entry.is_none();
            Some(entry.ok_or(ErrorKind::TemplateTruncated))
        })
    }

    /// The entries, category by category.
    pub fn entries(&self) -> impl Iterator<Item = MetaEntry<'a>> + 'a {
        self.raw_entries().map_while(core::result::Result::ok)
    }
}
