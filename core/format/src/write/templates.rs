//! What the builder writes beside sections and symbols: the note.sdn text, template-code
//! entries (full or short form) with their symbols, and the template-meta table.

use alloc::vec;
use alloc::vec::Vec;

use super::{sat_u32, sat_u8, BuildError, MetaEntries, ModuleBuilder, SymbolSpec, TemplateSpec};
use crate::kinds::{SymbolFlags, SymbolKind};
use crate::template::{
    MetaCategory, TemplateKind, TEMPLATE_CODE_HEADER, TEMPLATE_CODE_MAGIC, TEMPLATE_META_MAGIC,
};

impl ModuleBuilder {
    /// Sets the note.sdn text (written without a trailing newline, then `# END_NOTE`).
    pub fn note_sdn(&mut self, text: &str) -> &mut Self {
        self.note_sdn = Some(text.trim_end_matches('\n').as_bytes().to_vec());
        self
    }

    /// Adds a template entry; returns its offset in the template-code section.
    pub fn add_template(&mut self, spec: TemplateSpec) -> u64 {
        let offset = self.template_code_len();
        self.templates.push(spec);
        offset as u64
    }

    /// Adds a template entry and a global template symbol pointing at it.
    pub fn add_template_symbol(&mut self, spec: TemplateSpec) -> u32 {
        let name = spec.name.clone();
        let params = sat_u8(spec.params.len());
        let kind = match spec.kind {
            TemplateKind::Function => SymbolKind::Function,
            TemplateKind::Trait => SymbolKind::Trait,
            _ => SymbolKind::Type,
        };
        let offset = self.add_template(spec);
        self.add_symbol(SymbolSpec {
            flags: SymbolFlags::TEMPLATE,
            template_param_count: params,
            template_offset: offset,
            ..SymbolSpec::new(&name, kind, 0, 0)
        })
    }

    /// Writes templates in the older short form (kind, name, parameter count only).
    pub fn short_form_templates(&mut self, short: bool) -> &mut Self {
        self.short_form_templates = short;
        self
    }

    /// Adds a template-meta entry.
    pub fn add_template_meta(
        &mut self,
        category: MetaCategory,
        name: &[u8],
        specializations: u32,
    ) -> &mut Self {
        let meta = self.template_meta.get_or_insert_with(Default::default);
        let slot = MetaCategory::ALL.iter().position(|&c| c == category).unwrap_or(0);
        meta[slot].push((name.to_vec(), specializations));
        self
    }

    fn template_entry(&self, spec: &TemplateSpec) -> Vec<u8> {
        let mut out = vec![spec.kind.to_wire()];
        push_text(&mut out, &spec.name);
        out.push(sat_u8(spec.params.len()));
        if !self.short_form_templates {
            for param in &spec.params {
                push_text(&mut out, param);
            }
            out.extend_from_slice(&spec.body);
        }
        out
    }

    pub(super) fn template_code_len(&self) -> usize {
        TEMPLATE_CODE_HEADER + self.templates.iter().map(|t| self.template_entry(t).len()).sum::<usize>()
    }

    pub(super) fn template_code(&self) -> Vec<u8> {
        let mut out = TEMPLATE_CODE_MAGIC.to_vec();
        out.extend_from_slice(&1u16.to_le_bytes());
        out.extend_from_slice(&sat_u32(self.templates.len()).to_le_bytes());
        for spec in &self.templates {
            out.extend_from_slice(&self.template_entry(spec));
        }
        out
    }

    pub(super) fn template_meta_bytes(meta: &MetaEntries) -> Vec<u8> {
        let mut out = TEMPLATE_META_MAGIC.to_vec();
        out.extend_from_slice(&1u16.to_le_bytes());
        for category in meta {
            out.extend_from_slice(&sat_u32(category.len()).to_le_bytes());
        }
        for (name, specializations) in meta.iter().flatten() {
            push_text(&mut out, name);
            out.extend_from_slice(&specializations.to_le_bytes());
        }
        out
    }
}

/// `text` after its length (u32, little-endian).
fn push_text(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(&sat_u32(text.len()).to_le_bytes());
    out.extend_from_slice(text);
}

/// Refuses a note text a reader would not read back whole: one with a terminator line of its
/// own (the reader's own search, [`crate::note_sdn::terminator_line`], finds it), or one whose
/// terminator, written after it, would lie past where readers look.
pub(super) fn readable_note(text: &[u8]) -> Result<(), BuildError> {
    if let Some(at) = crate::note_sdn::terminator_line(text) {
        return Err(BuildError::NoteHasTerminator { at });
    }
    // The terminator line starts right after the text and its newline.
    if text.len() >= crate::note_sdn::SCAN_LIMIT {
        return Err(BuildError::NoteTooLong { len: text.len() });
    }
    Ok(())
}
