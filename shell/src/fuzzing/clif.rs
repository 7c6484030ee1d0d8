//! `clif`: the execution manager on any text as CLIF ([`fuzz_clif`]): parsed, verified,
//! compiled, linked and loaded, or refused with a message; never a crash, and nothing of a
//! refused batch defined. Nothing compiled is run (the text chooses what code does).

use crate::exec_manager::{ExecManager, OptLevel};

/// Compiles `data` (as UTF-8, lossily) as CLIF with a fresh manager at the opt level its first
/// byte picks; returns how many functions it defined. A refusal says why and defines nothing;
/// what it defines is listed, has an address, and leaves with the manager.
pub fn fuzz_clif(data: &[u8]) -> usize {
    let opt = match data.first().map(|b| b % 3) {
        Some(1) => OptLevel::Speed,
        Some(2) => OptLevel::SpeedAndSize,
        _ => OptLevel::None,
    };
    let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default());
    let Ok(manager) = ExecManager::new(opt) else { return 0 };
    match manager.compile_clif(&text) {
        Ok(names) => {
            assert_eq!(manager.function_names().len(), names.len(), "every name defined is listed");
            for name in &names {
                assert!(manager.address(name).is_some_and(|a| a != 0), "{name} has no address");
            }
            names.len()
        }
        Err(error) => {
            assert!(!error.to_string().is_empty(), "a refusal without a message");
            assert!(
                manager.function_names().is_empty(),
                "a refused batch defined {:?}",
                manager.function_names()
            );
            0
        }
    }
}
