//! How a cache links what it loads: [`CacheLinking`], the cache's [`LinkOptions`] in a form it
//! can keep (its resolver shared).

use std::sync::Arc;

use smf_runtime::load::Resolver;

use crate::imports::LinkOptions;

/// How the cache's misses and prefetches link (host symbols and earlier loads apply always),
/// as [`LinkOptions`]; the default is [`LinkOptions::default`]'s.
#[derive(Clone)]
pub struct CacheLinking {
    /// Asked after host symbols and earlier loads.
    pub resolver: Option<Arc<dyn Resolver + Send + Sync>>,
    /// After the resolver: the process's global symbols.
    pub process_symbols: bool,
    /// Last resort: the C library and libm. On by default.
    pub c_library: bool,
    /// Cached modules' exports are not offered to later loads.
    pub local: bool,
    /// Cached modules are described to debuggers and profilers ([`LinkOptions::debug_info`]).
    pub debug_info: bool,
    /// The libraries cached modules need are opened ([`LinkOptions::open_needed`]).
    pub open_needed: bool,
}

impl Default for CacheLinking {
    fn default() -> Self {
        let link = LinkOptions::default();
        CacheLinking {
            resolver: None,
            process_symbols: link.process_symbols,
            c_library: link.c_library,
            local: link.local,
            debug_info: link.debug_info,
            open_needed: link.open_needed,
        }
    }
}

impl CacheLinking {
    /// As the loader's options.
    pub(super) fn options(&self) -> LinkOptions<'_> {
        LinkOptions {
            resolver: self.resolver.as_deref().map(|r| r as &dyn Resolver),
            process_symbols: self.process_symbols,
            c_library: self.c_library,
            local: self.local,
            debug_info: self.debug_info,
            open_needed: self.open_needed,
        }
    }
}

impl std::fmt::Debug for CacheLinking {
    /// As the loader's options it stands for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("CacheLinking").field(&self.options()).finish()
    }
}
