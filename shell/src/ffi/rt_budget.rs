//! The process-wide budget of `rt_*` executable memory: what `rt_alloc_exec_memory` and
//! `rt_alloc_rw_memory` hold (page-rounded, until the memory is really gone: a freed allocation
//! that a running call still uses counts until the call returns) never passes it.
//!
//! The budget is [`DEFAULT_BUDGET`] unless `SMF_EXEC_BUDGET` (bytes, read at the first use)
//! says otherwise, and `smf_set_exec_budget` changes it at any time; 0 means no budget. Lowering
//! it below what is held frees nothing: allocations fail until enough is freed. A [`Charge`] is
//! one allocation's share, taken before the memory is mapped and given back when dropped.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use super::rt_error::RtError;

/// The environment variable that sets the budget, in bytes (0: none).
pub(crate) const EXEC_BUDGET_ENV: &str = "SMF_EXEC_BUDGET";

/// The budget when `SMF_EXEC_BUDGET` does not set one: 4 GiB (four allocations of the largest
/// size, 1 GiB).
pub(crate) const DEFAULT_BUDGET: u64 = 4 << 30;

/// Bytes charged now.
static CHARGED: AtomicU64 = AtomicU64::new(0);

/// The budget `value` (the environment variable's text, if set) asks for: a number of bytes,
/// else the default.
fn budget_from(value: Option<&str>) -> u64 {
    value.and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(DEFAULT_BUDGET)
}

/// The budget, read from the environment at the first use.
fn budget_cell() -> &'static AtomicU64 {
    static BUDGET: OnceLock<AtomicU64> = OnceLock::new();
    BUDGET.get_or_init(|| AtomicU64::new(budget_from(std::env::var(EXEC_BUDGET_ENV).ok().as_deref())))
}

/// The budget now (0: none).
pub(crate) fn budget() -> u64 {
    budget_cell().load(Ordering::Relaxed)
}

/// Sets the budget (0: none); returns the one it replaces.
pub(crate) fn set_budget(bytes: u64) -> u64 {
    budget_cell().swap(bytes, Ordering::Relaxed)
}

/// One allocation's share of the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Charge(u64);

impl Drop for Charge {
    fn drop(&mut self) {
        CHARGED.fetch_sub(self.0, Ordering::Relaxed);
    }
}

/// Takes `bytes` of the budget, or says why not (what is held, what was asked, the budget and
/// how to change it).
pub(crate) fn charge(bytes: usize) -> Result<Charge, RtError> {
    let bytes = bytes as u64;
    let mut held = CHARGED.load(Ordering::Relaxed);
    loop {
        let budget = budget();
        let after = held.checked_add(bytes).filter(|&after| budget == 0 || after <= budget);
        let Some(after) = after else {
            return Err(RtError::BudgetSpent { bytes, held, budget });
        };
        match CHARGED.compare_exchange_weak(held, after, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return Ok(Charge(bytes)),
            Err(now) => held = now,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_sets_bytes_or_leaves_the_default() {
        assert_eq!(budget_from(None), DEFAULT_BUDGET);
        assert_eq!(budget_from(Some("65536")), 65536);
        assert_eq!(budget_from(Some(" 0 ")), 0);
        assert_eq!(budget_from(Some("4G")), DEFAULT_BUDGET, "not a number of bytes");
        assert_eq!(budget_from(Some("-1")), DEFAULT_BUDGET);
    }
}
