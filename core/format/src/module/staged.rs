//! The one door from a file's bytes to a [`Module`], in three typed steps, so that a caller
//! who needs every symbol and relocation (the loader) is handed each as validation decodes it
//! and never reads a table's bytes itself:
//!
//! 1. [`ModuleTables::check`]: the layout is chosen (dialect and header placement) and the
//!    header, the section table and every section are validated: sizes, counts and sections
//!    can be read, symbols and relocations cannot yet.
//! 2. [`ModuleTables::decode_symbols`]: every symbol, validated, to the caller's function.
//! 3. [`ModuleSymbols::decode_relocations`]: every relocation, validated, to the caller's
//!    function; the result is the validated [`Module`].
//!
//! [`Module::parse_with`] is the three steps with functions that keep nothing.

use super::validate::Failure;
use super::*;

/// A module whose header, section table and sections are validated; its symbols and
/// relocations are not yet ([`ModuleTables::decode_symbols`]).
#[derive(Clone, Copy, Debug)]
pub struct ModuleTables<'a> {
    module: Module<'a>,
    /// The error to report instead of one from decoding the tables: another layout's, which
    /// ranks above any decoding error of this one ([`Module::parse`]'s choice of error).
    rival: Option<Error>,
}

/// A module whose symbols are validated too; its relocations are not yet
/// ([`ModuleSymbols::decode_relocations`]).
#[derive(Clone, Copy, Debug)]
pub struct ModuleSymbols<'a> {
    tables: ModuleTables<'a>,
}

/// Why a table could not be decoded: the module breaks a rule, or the caller's function
/// stopped at an entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError<E> {
    /// The module is malformed.
    Format(Error),
    /// The caller's function returned this error.
    Stopped(E),
}

impl<'a> ModuleTables<'a> {
    /// Detects the dialect and validates the header, the section table and every section.
    ///
    /// Of the layouts detection allows, the one whose tables validate is chosen. When more
    /// than one do, the whole module is validated as each to choose ([`Module::parse`]'s rule:
    /// the first that validates, preferring a header whose section table directly follows it);
    /// its symbols and relocations are then decoded again by the caller.
    pub fn check(file: &'a [u8], options: &ParseOptions) -> Result<Self> {
        Self::check_layouts(file, options).map_err(|error| elf_instead(file, error))
    }

    /// [`ModuleTables::check`]'s work.
    fn check_layouts(file: &'a [u8], options: &ParseOptions) -> Result<Self> {
        // One per probe at most.
        let mut tried: [Option<Tried<'a>>; detect::PROBE_COUNT] = [None; detect::PROBE_COUNT];
        for (slot, candidate) in tried.iter_mut().zip(detect::candidates(file, options.dialect)?) {
            let follows = detect::table_follows_header(file, candidate);
            *slot = Some(Tried { follows, tables: Module::tables_as(file, candidate, options) });
        }
        let layouts = tried.iter().flatten();
        let mut valid = layouts.clone().filter(|t| t.tables.is_ok());
        let chosen = match (valid.next(), valid.next()) {
            (None, _) => return Err(best_error(layouts.filter_map(Tried::error))),
            (Some(_), Some(_)) => return choose_by_validating(layouts),
            (Some(chosen), None) => chosen,
        };
        let Ok(module) = chosen.tables else { return Err(Error::new(ErrorKind::BadMagic, 0)) };
        let chosen_at = layouts.clone().position(|t| t.tables.is_ok()).unwrap_or(0);
        let rival = rival(layouts, chosen_at, chosen.follows);
        Ok(Self { module, rival })
    }

    /// Validates every symbol, in table order, handing each (with its index) to `each`, which
    /// may stop the decoding with an error of its own.
    #[inline(always)]
    pub fn decode_symbols<E>(
        mut self,
        each: impl FnMut(u32, SymbolRepr) -> core::result::Result<(), E>,
    ) -> core::result::Result<ModuleSymbols<'a>, DecodeError<E>> {
        match self.module.validate_symbols(each) {
            Ok(()) => Ok(ModuleSymbols { tables: self }),
            Err(failure) => Err(self.failed(failure)),
        }
    }

    /// A decoding failure as the caller sees it (a rival layout's error first).
    #[cold]
    fn failed<E>(&self, failure: Failure<E>) -> DecodeError<E> {
        match failure {
            Failure::Format(error) => DecodeError::Format(self.rival.unwrap_or(error)),
            Failure::Stopped(stop) => DecodeError::Stopped(stop),
        }
    }

    /// The dialect found (or forced).
    pub const fn dialect(&self) -> Dialect {
        self.module.dialect
    }

    /// Where the header was found.
    pub const fn placement(&self) -> HeaderPlacement {
        self.module.placement
    }

    /// The decoded header.
    pub const fn header(&self) -> &Header {
        &self.module.header
    }

    /// Bytes of code ([`Module::code_size`]).
    pub const fn code_size(&self) -> u64 {
        self.module.code_size
    }

    /// Bytes of the read-only data region ([`Module::read_only_size`]).
    pub const fn read_only_size(&self) -> u64 {
        self.module.read_only_size
    }

    /// Bytes of the writable data region ([`Module::read_write_size`]).
    pub const fn read_write_size(&self) -> u64 {
        self.module.read_write_size
    }

    /// The largest data alignment ([`Module::data_alignment`]).
    pub const fn data_alignment(&self) -> u64 {
        self.module.data_alignment
    }

    /// The largest alignment a code section asks for ([`Module::code_alignment`]).
    pub const fn code_alignment(&self) -> u64 {
        self.module.code_alignment
    }

    /// Where the writable region starts in the data image ([`Module::writable_data_start`]).
    pub const fn writable_data_start(&self) -> u64 {
        self.module.writable_data_start
    }

    /// Number of symbols.
    pub const fn symbol_count(&self) -> u32 {
        self.module.header.symbol_count
    }

    /// Number of relocations.
    pub const fn relocation_count(&self) -> u64 {
        self.module.relocation_count
    }

    /// Number of relocations that patch the code ([`Module::code_relocation_count`]).
    pub const fn code_relocation_count(&self) -> u64 {
        self.module.code_relocation_count
    }

    /// Number of relocations whose kind needs a GOT slot ([`Module::got_relocation_count`]).
    pub const fn got_relocation_count(&self) -> u64 {
        self.module.got_relocation_count
    }

    /// The string table bytes.
    pub const fn strings(&self) -> &'a [u8] {
        self.module.strings
    }

    /// Code sections with their offset in the code image ([`Module::code_sections`]).
    pub fn code_sections(&self) -> impl Iterator<Item = (Section<'a>, u64)> + '_ {
        self.module.code_sections()
    }

    /// What `section` puts in memory ([`Module::payload`]).
    pub fn payload(&self, section: &Section<'a>) -> crate::compress::Payload<'a> {
        self.module.payload(section)
    }

    /// Data sections with their place in the data image ([`Module::data_sections`]).
    pub fn data_sections(&self) -> impl Iterator<Item = DataPlacement<'a>> + '_ {
        self.module.data_sections()
    }

    /// The constructor and destructor arrays ([`Module::call_arrays`]).
    pub fn call_arrays(&self) -> impl Iterator<Item = (CallArray, DataPlacement<'a>)> + '_ {
        self.module.call_arrays()
    }

    /// The shared libraries the module names as needed ([`Module::needed_libraries`]).
    pub fn needed_libraries(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.module.needed_libraries()
    }

    /// The function-names section's bytes as they lie, checked (empty without one;
    /// [`Module::function_names_bytes`]).
    pub fn function_names_bytes(&self) -> &'a [u8] {
        self.module.function_names_bytes()
    }

    /// Number of constructor and destructor array sections.
    pub const fn call_array_count(&self) -> u32 {
        self.module.call_arrays
    }
}

impl<'a> ModuleSymbols<'a> {
    /// Validates every relocation, in table order, handing each to `sink` (a function, or a
    /// [`RelocationSink`] that takes code and data relocations apart), which may stop the
    /// decoding with an error of its own. The module is then wholly validated.
    #[inline(always)]
    pub fn decode_relocations<S: RelocationSink>(
        self,
        sink: &mut S,
    ) -> core::result::Result<Module<'a>, DecodeError<S::Stop>> {
        let mut module = self.tables.module;
        match module.validate_relocations(sink) {
            Ok(()) => Ok(module),
            Err(failure) => Err(self.tables.failed(failure)),
        }
    }

    /// The module's tables ([`ModuleTables`]'s readers).
    pub const fn tables(&self) -> &ModuleTables<'a> {
        &self.tables
    }

    /// Number of imports (symbols resolved from outside the module).
    pub const fn import_count(&self) -> u32 {
        self.tables.module.import_count
    }
}

impl<'a> Module<'a> {
    /// Detects the dialect and validates the whole module.
    pub fn parse(file: &'a [u8]) -> Result<Self> {
        Self::parse_with(file, &ParseOptions::default())
    }

    /// [`Module::parse`] with an explicit dialect or image limit.
    pub fn parse_with(file: &'a [u8], options: &ParseOptions) -> Result<Self> {
        validate_fully(ModuleTables::check(file, options)?)
    }
}

/// The three steps, keeping nothing.
fn validate_fully(tables: ModuleTables<'_>) -> Result<Module<'_>> {
    let keep_nothing = |failure: DecodeError<core::convert::Infallible>| match failure {
        DecodeError::Format(error) => error,
        DecodeError::Stopped(never) => match never {},
    };
    let symbols = tables.decode_symbols(|_, _| Ok(())).map_err(keep_nothing)?;
    symbols.decode_relocations(&mut |_| Ok(())).map_err(keep_nothing)
}

/// The stage of the errors found while decoding symbols and relocations ([`Error::stage`]).
const LAST_STAGE: u8 = 3;

/// One layout tried: whether its header is directly followed by its section table, and its
/// tables validated or why not.
#[derive(Clone, Copy)]
struct Tried<'a> {
    follows: bool,
    tables: Result<Module<'a>>,
}

impl Tried<'_> {
    /// Why its tables did not validate, with the rank of its header's placement.
    fn error(&self) -> Option<(bool, Error)> {
        self.tables.as_ref().err().map(|&error| (self.follows, error))
    }
}

/// `error`, or for a file that is no module because it is an ELF file, that
/// ([`ErrorKind::ElfFile`]: what to make a module of it with).
fn elf_instead(file: &[u8], error: Error) -> Error {
    match (error.kind, file) {
        (ErrorKind::BadMagic | ErrorKind::FileTooSmall { .. }, [0x7f, b'E', b'L', b'F', ..]) => {
            // e_type, little-endian at 16 (0 when the file is shorter).
            let object_type = match file.get(16..18) {
                Some(&[low, high]) => u16::from_le_bytes([low, high]),
                _ => 0,
            };
            Error::new(ErrorKind::ElfFile { object_type }, 0)
        }
        _ => error,
    }
}

/// Of the errors of several layouts (in the order they were tried), the one to report: first
/// a header whose section table directly follows it (the spec's tie rule), then the one that
/// got furthest through validation, then the first tried.
fn best_error(errors: impl Iterator<Item = (bool, Error)>) -> Error {
    let mut best: Option<((bool, u8), Error)> = None;
    for (follows, error) in errors {
        let rank = (follows, error.stage());
        if best.is_none_or(|(b, _)| rank > b) {
            best = Some((rank, error));
        }
    }
    best.map_or(Error::new(ErrorKind::BadMagic, 0), |(_, e)| e)
}

/// Of the layouts tried, the error to report should decoding the tables of the one at
/// `chosen_at` fail (whose header its section table `follows` or not): a layout that failed
/// outranks every decoding error of the chosen one when its header is the better placed, or
/// equally placed, it failed as late and was tried first ([`best_error`]'s order).
fn rival<'t, 'a: 't>(
    layouts: impl Iterator<Item = &'t Tried<'a>> + Clone,
    chosen_at: usize,
    follows: bool,
) -> Option<Error> {
    let rivals = layouts.enumerate().filter_map(|(at, tried)| {
        let (their_follows, error) = tried.error()?;
        let outranks = (their_follows, error.stage()) > (follows, LAST_STAGE)
            || (their_follows == follows && error.stage() == LAST_STAGE && at < chosen_at);
        outranks.then_some((their_follows, error))
    });
    rivals.clone().next().map(|_| best_error(rivals))
}

/// Of several layouts whose tables validate, the first whose whole module does, preferring a
/// header directly followed by its section table; else the best error of them all.
#[cold]
fn choose_by_validating<'a, 't>(layouts: impl Iterator<Item = &'t Tried<'a>>) -> Result<ModuleTables<'a>>
where
    'a: 't,
{
    let mut chosen: Option<Module<'a>> = None;
    // Each layout's error, in the order they were tried.
    let mut errors: [Option<(bool, Error)>; detect::PROBE_COUNT] = [None; detect::PROBE_COUNT];
    for (error_of_this, tried) in errors.iter_mut().zip(layouts) {
        let module = match tried.tables {
            Ok(module) => module,
            Err(error) => {
                *error_of_this = Some((tried.follows, error));
                continue;
            }
        };
        if chosen.is_some() && !tried.follows {
            continue; // it could not displace the one chosen
        }
        match validate_fully(ModuleTables { module, rival: None }) {
            Ok(_) if tried.follows => return Ok(ModuleTables { module, rival: None }),
            Ok(_) => chosen = chosen.or(Some(module)),
            Err(error) => *error_of_this = Some((tried.follows, error)),
        }
    }
    match chosen {
        Some(module) => Ok(ModuleTables { module, rival: None }),
        None => Err(best_error(errors.into_iter().flatten())),
    }
}

#[cfg(all(test, feature = "alloc"))]
mod tests {
    use super::*;
    use crate::write::{samples, ModuleBuilder, SymbolSpec};
    use alloc::vec::Vec;

    fn sample(dialect: Dialect) -> Vec<u8> {
        let mut b = ModuleBuilder::new(dialect);
        b.add_code(b".text", &[0xC3; 32]);
        b.add_symbol(SymbolSpec::function(b"first", 0, 1));
        b.add_symbol(SymbolSpec::import(b"outside"));
        b.add_symbol(SymbolSpec::function(b"second", 16, 1).with_binding(Binding::Local));
        b.add_relocation(4, 1, RelocKind::Abs64, 8);
        b.add_relocation(20, 1, RelocKind::GotPc32, -4);
        b.add_relocation(24, 2, RelocKind::Pc32, -1);
        b.build().unwrap()
    }

    #[test]
    fn relocations_of_the_code_are_counted_apart_from_the_datas() {
        let count = |file: &[u8]| {
            ModuleTables::check(file, &ParseOptions::default()).unwrap().code_relocation_count()
        };
        for dialect in Dialect::ALL {
            assert_eq!(count(&sample(dialect)), 3, "{dialect:?}");
        }
        let with_data = |code_relocations: bool| {
            let mut b = ModuleBuilder::new(Dialect::S128);
            b.add_code(b".text", &[0xC3; 32]);
            let flags = crate::SectionFlags::READ | crate::SectionFlags::WRITE;
            b.add_section(crate::write::SectionSpec::new(
                crate::SectionType::Data,
                b".data",
                flags,
                alloc::vec![0; 16],
                8,
            ));
            b.add_symbol(SymbolSpec::function(b"first", 0, 1));
            b.add_data_relocation(1, 0, 0, RelocKind::Abs64, 0);
            if code_relocations {
                b.add_relocation(4, 0, RelocKind::Abs64, 0);
            }
            b.build().unwrap()
        };
        assert_eq!(count(&with_data(false)), 0, "data relocations and their marker patch no code");
        assert_eq!(count(&with_data(true)), 1);
    }

    #[test]
    fn each_symbol_and_relocation_is_handed_over_once_in_table_order() {
        for dialect in Dialect::ALL {
            let file = sample(dialect);
            let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
            assert_eq!(tables.dialect(), dialect);
            assert_eq!(tables.got_relocation_count(), 1, "counted with the sections, before decoding");
            let mut symbols = Vec::new();
            let decoded = tables
                .decode_symbols(|index, repr| {
                    symbols.push((index, repr));
                    Ok::<(), ()>(())
                })
                .unwrap();
            assert_eq!(decoded.import_count(), 1, "{dialect:?}");
            let mut relocations = Vec::new();
            let module = decoded
                .decode_relocations(&mut |r| {
                    relocations.push(r);
                    Ok::<(), ()>(())
                })
                .unwrap();
            let parsed: Vec<Symbol<'_>> = module.symbols().collect();
            assert_eq!(symbols.len(), parsed.len(), "{dialect:?}");
            for ((index, repr), symbol) in symbols.iter().zip(&parsed) {
                assert_eq!(*index, symbol.index);
                assert_eq!(Symbol::from_repr(*index, module.symbol_name(repr), repr), *symbol);
            }
            assert_eq!(relocations, module.relocations().collect::<Vec<_>>(), "{dialect:?}");
            assert_eq!(relocations.len(), 3);
        }
    }

    #[test]
    fn data_relocations_are_handed_over_apart_and_as_the_module_lists_them() {
        use crate::kinds::RelocKind as Kind;
        struct Apart(Vec<Relocation>, Vec<Relocation>);
        impl RelocationSink for Apart {
            type Stop = ();
            fn code(&mut self, r: Relocation) -> core::result::Result<(), ()> {
                self.0.push(r);
                Ok(())
            }
            fn data(&mut self, r: Relocation) -> core::result::Result<(), ()> {
                self.1.push(r);
                Ok(())
            }
        }
        for dialect in Dialect::ALL {
            let mut b = ModuleBuilder::new(dialect);
            b.add_code(b".text", &[0xC3; 16]);
            let data = b.add_data(b".data", &[0; 16]);
            b.add_symbol(SymbolSpec::function(b"f", 0, 1));
            b.add_relocation(8, 0, Kind::Abs64, 0);
            b.add_data_relocation(data, 8, 0, Kind::Abs64, 0);
            b.add_data_relocation(data, 0, 0, Kind::Abs64, 4);
            let file = b.build().unwrap();
            let symbols = ModuleTables::check(&file, &ParseOptions::default())
                .unwrap()
                .decode_symbols(|_, _| Ok::<(), ()>(()))
                .unwrap();
            let mut apart = Apart(Vec::new(), Vec::new());
            let module = symbols.decode_relocations(&mut apart).unwrap();
            assert!(module.has_data_relocations_marker());
            let (code, data) = (&apart.0, &apart.1);
            assert_eq!(
                code.iter().map(|r| (r.index, r.image)).collect::<Vec<_>>(),
                [(3, RelocatedImage::Code)]
            );
            let data_at: Vec<_> = data.iter().map(|r| (r.index, r.image, r.offset, r.addend)).collect();
            let writable = module.writable_data_start();
            assert_eq!(
                data_at,
                [(1, RelocatedImage::Data, writable, 4), (2, RelocatedImage::Data, writable + 8, 0)],
                "{dialect:?}: sorted by offset, after the marker (relocation 0)"
            );
            let listed: Vec<Relocation> = module.relocations().collect();
            assert_eq!(listed, [data[0], data[1], code[0]], "{dialect:?}");
        }
    }

    #[test]
    fn the_callers_error_stops_the_decoding_at_that_entry() {
        let file = sample(Dialect::S128);
        let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
        let mut seen = 0;
        let stop = tables.decode_symbols(|index, _| {
            seen += 1;
            if index == 1 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!(stop.err(), Some(DecodeError::Stopped("stop")));
        assert_eq!(seen, 2, "nothing after the entry it stopped at");

        let symbols = tables.decode_symbols(|_, _| Ok::<(), &str>(())).unwrap();
        let mut seen = 0;
        let stop = symbols.decode_relocations(&mut |r: Relocation| {
            seen += 1;
            if r.index == 0 {
                Err("stop")
            } else {
                Ok(())
            }
        });
        assert_eq!(stop.err(), Some(DecodeError::Stopped("stop")));
        assert_eq!(seen, 1);
    }

    #[test]
    fn a_malformed_entry_is_the_error_module_parse_gives() {
        let mut b = ModuleBuilder::new(Dialect::S128);
        b.add_code(b".text", &[0xC3; 8]);
        b.add_symbol(SymbolSpec::function(b"f", 4, 8)); // runs past the code
        let file = b.build().unwrap();
        let tables = ModuleTables::check(&file, &ParseOptions::default()).unwrap();
        let error = tables.decode_symbols(|_, _| Ok::<(), ()>(())).err().unwrap();
        let expected = Module::parse(&file).unwrap_err();
        assert_eq!(expected.kind, ErrorKind::SymbolOutsideCode { symbol: 0 });
        assert_eq!(error, DecodeError::Format(expected));

        let mut b = ModuleBuilder::new(Dialect::R96);
        b.add_code(b".text", &[0xC3; 8]);
        b.add_symbol(SymbolSpec::function(b"f", 0, 1));
        b.add_relocation(6, 0, RelocKind::Abs64, 0); // patches bytes past the code
        let file = b.build().unwrap();
        let symbols = ModuleTables::check(&file, &ParseOptions::default())
            .unwrap()
            .decode_symbols(|_, _| Ok::<(), ()>(()))
            .unwrap();
        let error = symbols.decode_relocations(&mut |_| Ok::<(), ()>(())).err().unwrap();
        let expected = Module::parse(&file).unwrap_err();
        assert_eq!(expected.kind, ErrorKind::RelocationOutsideCode { relocation: 0 });
        assert_eq!(error, DecodeError::Format(expected));
    }

    #[test]
    fn real_files_have_one_layout_whose_tables_validate() {
        // So a load decodes each table once: choosing by validating whole modules is for files
        // built to be read two ways.
        for file in
            [samples::rich(Dialect::R72), samples::rich(Dialect::R96), samples::return_42(Dialect::R72)]
        {
            let valid = detect::candidates(&file, None)
                .unwrap()
                .filter(|&c| Module::tables_as(&file, c, &ParseOptions::default()).is_ok())
                .count();
            assert_eq!(valid, 1);
        }
    }

    #[test]
    fn of_layouts_whose_tables_validate_the_first_whole_module_wins_unless_a_followed_header_does() {
        let options = ParseOptions::default();
        let start = |dialect| detect::Candidate { dialect, placement: HeaderPlacement::Start };
        let good = sample(Dialect::R96);
        let mut b = ModuleBuilder::new(Dialect::R72);
        b.add_code(b".text", &[0xC3; 8]);
        b.add_symbol(SymbolSpec::function(b"f", 4, 8)); // runs past the code
        let bad = b.build().unwrap();
        let tried = |file, dialect, follows| Tried {
            follows,
            tables: Module::tables_as(file, start(dialect), &options),
        };
        let bad_error = Module::parse(&bad).unwrap_err();
        let chosen =
            |layouts: &[Tried<'_>]| choose_by_validating(layouts.iter()).map(|t| t.module.file.as_ptr());

        // A later layout whose header its table follows displaces the first valid one.
        let (first, second) = (good.clone(), good.clone());
        let layouts = [tried(&first, Dialect::R96, false), tried(&second, Dialect::R96, true)];
        assert_eq!(chosen(&layouts), Ok(second.as_ptr()));
        // One that does not validate does not.
        let layouts = [tried(&good, Dialect::R96, false), tried(&bad, Dialect::R72, true)];
        assert_eq!(chosen(&layouts), Ok(good.as_ptr()));
        // None validates: the best error, here the followed header's.
        let failed = Error::new(ErrorKind::BadMagic, 0);
        let layouts = [Tried { follows: false, tables: Err(failed) }, tried(&bad, Dialect::R72, true)];
        assert_eq!(chosen(&layouts), Err(bad_error));
    }

    #[test]
    fn a_layout_that_failed_better_placed_or_as_late_and_earlier_is_the_error_to_report() {
        let late = Error::new(ErrorKind::EntryOutsideCode { entry: 1, code_size: 0 }, 1);
        let early = Error::new(ErrorKind::BadMagic, 2);
        let failed = |follows, error| Tried { follows, tables: Err(error) };
        // A followed header outranks an unfollowed chosen one, however early it failed.
        let layouts = [failed(true, early), failed(false, late)];
        assert_eq!(rival(layouts.iter(), 5, false), Some(early));
        // As late, and tried before the chosen one.
        assert_eq!(rival(layouts[1..].iter(), 5, false), Some(late));
        // As late but tried after, or earlier, or worse placed: the chosen one's own error.
        assert_eq!(rival(layouts[1..].iter(), 0, false), None);
        assert_eq!(rival([failed(false, early)].iter(), 5, false), None);
        assert_eq!(rival([failed(false, late)].iter(), 5, true), None);
    }

    #[test]
    fn the_best_error_prefers_a_header_followed_by_its_table_then_the_furthest_then_the_first() {
        let e = |kind, at| Error::new(kind, at);
        let late = e(ErrorKind::EntryOutsideCode { entry: 1, code_size: 0 }, 1);
        let early = e(ErrorKind::BadMagic, 2);
        let late_too = e(ErrorKind::EntryOutsideCode { entry: 2, code_size: 0 }, 3);
        assert_eq!(best_error([(false, late), (true, early)].into_iter()), early);
        assert_eq!(best_error([(false, early), (false, late)].into_iter()), late);
        assert_eq!(best_error([(true, late), (true, late_too)].into_iter()), late);
        assert_eq!(best_error(core::iter::empty()).kind, ErrorKind::BadMagic);
    }
}
