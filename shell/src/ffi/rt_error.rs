//! [`RtError`]: why an `rt_*` call refused, with the address, size, path or value at fault.

use std::fmt;
use std::path::PathBuf;

use smf_runtime::exec::ExecError;
use smf_runtime::sys::SysError;

/// What an address or range argument was expected to be inside.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Inside {
    /// A live rt allocation.
    Allocation,
    /// A live file mapping or rt allocation.
    MappingOrAllocation,
    /// Code of this library (an rt allocation's, a module's).
    Code,
    /// Code of this library that may be called.
    ExecutableCode,
}

/// Which kind of thing a freed or unmapped range had to start, or match the size of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Owned {
    /// An rt allocation (`rt_free_exec_memory`).
    Allocation,
    /// A file mapping (`rt_munmap`).
    Mapping,
}

/// Why an `rt_*` call refused.
#[derive(Debug)]
pub(crate) enum RtError {
    /// The address argument is 0.
    ZeroAddress,
    /// `address + offset + length` overflows.
    Overflows,
    /// A size of 0 where bytes are needed.
    ZeroSize,
    /// An allocation larger than the largest (1 GiB).
    TooLarge(usize),
    /// The allocation would pass the process's executable-memory budget.
    BudgetSpent {
        /// Bytes asked for.
        bytes: u64,
        /// Bytes held already.
        held: u64,
        /// The budget.
        budget: u64,
    },
    /// `start..start+len` is not inside what the call needs.
    NotInside {
        /// The range's start.
        start: usize,
        /// Its length (`None`: an address alone).
        len: Option<usize>,
        /// What it should be inside.
        what: Inside,
    },
    /// The address does not start an allocation or a mapping.
    NotAStart(usize, Owned),
    /// A size that is neither the allocation's (or mapping's) nor the size asked for.
    SizeMismatch {
        /// The size given.
        size: usize,
        /// The size it has.
        actual: usize,
        /// Of what.
        of: Owned,
    },
    /// A write that would leave its allocation.
    LeavesAllocation,
    /// Memory for a copy of the bytes to write could not be had.
    NoRoomForCopy(usize),
    /// The allocation at this address failed to seal earlier.
    Broken(usize),
    /// Sealing the allocation at this address failed.
    SealFailed(usize, ExecError),
    /// The allocation holding this address is not sealed yet, so not callable.
    NotSealed(usize),
    /// Code at this address that the allocator will not hand out as a function.
    NotCallable(usize),
    /// Sealed code is never made writable again.
    SealedStaysSealed,
    /// A protection allocations do not take.
    AllocationProtection,
    /// A protection change of part of a file mapping.
    NotWholeMapping,
    /// An executable file mapping.
    ExecutableFile,
    /// PROT_WRITE with PROT_EXEC.
    WriteAndExec,
    /// PROT_* bits outside the supported sets.
    Protection(i32),
    /// MAP_* flags other than MAP_SHARED and MAP_PRIVATE.
    MapFlags(i32),
    /// A file offset that is not a multiple of the page size.
    UnalignedOffset {
        /// The offset.
        offset: usize,
        /// The page size.
        page: usize,
    },
    /// The file could not be opened or examined.
    File(PathBuf, std::io::Error),
    /// The path names something that is not a regular file.
    NotRegularFile(PathBuf),
    /// No bytes of the file at or after the offset.
    NothingToMap {
        /// The file.
        path: PathBuf,
        /// The offset.
        offset: usize,
        /// The file's size.
        file_len: u64,
    },
    /// The bytes asked for run past the end of the file.
    PastEnd {
        /// The file.
        path: PathBuf,
        /// Bytes asked for.
        len: usize,
        /// From this offset.
        offset: usize,
        /// The file's size.
        file_len: u64,
    },
    /// A file size that does not fit in `int64_t`.
    FileSizeOverflows(PathBuf),
    /// `rt_msync` of something that is not a file mapping.
    NotAFileMapping,
    /// Advice outside 0..=4.
    Advice(i32),
    /// MADV_DONTNEED on sealed code.
    DontNeedOnCode,
    /// A mapping without PROT_READ, read at this address.
    NotReadable(usize),
    /// A file mapping whose file shrank: these bytes are gone.
    FileShrank {
        /// Where the read started.
        start: usize,
        /// Its length.
        len: usize,
    },
    /// The executable allocator refused.
    Exec(ExecError),
    /// A syscall failed.
    Sys(SysError),
}

impl fmt::Display for Inside {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Inside::Allocation => "a live rt allocation",
            Inside::MappingOrAllocation => "a live mapping or allocation of this library",
            Inside::Code => "code of this library",
            Inside::ExecutableCode => "executable code of this library",
        })
    }
}

impl fmt::Display for RtError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RtError::ZeroAddress => f.write_str("address is 0"),
            RtError::Overflows => f.write_str("address + offset + length overflows"),
            RtError::ZeroSize => f.write_str("size is 0"),
            RtError::TooLarge(size) => write!(f, "size {size} is over the 1 GiB limit"),
            RtError::BudgetSpent { bytes, held, budget } => write!(
                f,
                "the executable-memory budget is spent: {bytes} more bytes on the {held} held would pass \
                 its {budget} bytes (free some, or raise it with SMF_EXEC_BUDGET or smf_set_exec_budget)"
            ),
            RtError::NotInside { start, len: Some(len), what } => {
                write!(f, "{start:#x}+{len} is not inside {what}")
            }
            RtError::NotInside { start, len: None, what } => write!(f, "{start:#x} is not inside {what}"),
            RtError::NotAStart(start, Owned::Allocation) => {
                write!(f, "{start:#x} is not the start of an rt allocation")
            }
            RtError::NotAStart(start, Owned::Mapping) => {
                write!(f, "{start:#x} is not the start of a mapping made by rt_mmap_file")
            }
            RtError::SizeMismatch { size, actual, of } => {
                let of = match of {
                    Owned::Allocation => "allocation",
                    Owned::Mapping => "mapping",
                };
                write!(f, "size {size} does not match the {of} ({actual} bytes)")
            }
            RtError::LeavesAllocation => f.write_str("address + offset + len leaves the allocation"),
            RtError::NoRoomForCopy(n) => {
                write!(f, "out of memory: no room for a copy of the {n} bytes to write")
            }
            RtError::Broken(addr) => {
                write!(f, "the allocation at {addr:#x} failed to seal earlier; free it and allocate again")
            }
            RtError::SealFailed(addr, e) => write!(f, "sealing {addr:#x}: {e}"),
            RtError::NotSealed(addr) => {
                write!(f, "{addr:#x} is not sealed yet (call rt_get_function_pointer or rt_make_executable)")
            }
            RtError::NotCallable(addr) => write!(f, "{addr:#x} cannot be called"),
            RtError::SealedStaysSealed => {
                f.write_str("sealed code is never made writable again; patch it with rt_write_exec_memory")
            }
            RtError::AllocationProtection => {
                f.write_str("allocations support READ|WRITE (before sealing) and READ|EXEC")
            }
            RtError::NotWholeMapping => f.write_str("rt_set_protection applies to a whole file mapping"),
            RtError::ExecutableFile => f.write_str(
                "file mappings are never executable: another mapping of the same file (MAP_SHARED, \
                 writable) could change the code while it runs; load modules with smf_module_load, or \
                 copy code into rt_alloc_exec_memory",
            ),
            RtError::WriteAndExec => f.write_str("PROT_WRITE|PROT_EXEC together is refused (W^X)"),
            RtError::Protection(prot) => {
                write!(f, "protection {prot} is not supported (use 0, READ, READ|WRITE or READ|EXEC)")
            }
            RtError::MapFlags(flags) => write!(f, "flags {flags}: use MAP_SHARED (1) or MAP_PRIVATE (2)"),
            RtError::UnalignedOffset { offset, page } => {
                write!(f, "offset {offset} is not a multiple of the page size {page}")
            }
            RtError::File(path, e) => write!(f, "{}: {e}", path.display()),
            RtError::NotRegularFile(path) => {
                write!(f, "{}: not a regular file (only files can be mapped)", path.display())
            }
            RtError::NothingToMap { path, offset, file_len } => {
                write!(f, "{}: nothing to map at offset {offset} (file is {file_len} bytes)", path.display())
            }
            RtError::PastEnd { path, len, offset, file_len } => write!(
                f,
                "{}: {len} bytes at offset {offset} run past the end of the file ({file_len} bytes)",
                path.display()
            ),
            RtError::FileSizeOverflows(path) => {
                write!(f, "{}: the file's size does not fit in int64_t", path.display())
            }
            RtError::NotAFileMapping => f.write_str("rt_msync needs a mapping made by rt_mmap_file"),
            RtError::Advice(advice) => write!(f, "advice {advice} is not one of 0..=4"),
            RtError::DontNeedOnCode => f.write_str("MADV_DONTNEED would erase sealed code"),
            RtError::NotReadable(addr) => write!(f, "{addr:#x} is in a mapping without PROT_READ"),
            RtError::FileShrank { start, len } => {
                write!(f, "{start:#x}+{len}: the mapped file no longer has these bytes (it shrank)")
            }
            RtError::Exec(e) => e.fmt(f),
            RtError::Sys(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for RtError {}

impl From<ExecError> for RtError {
    fn from(e: ExecError) -> Self {
        RtError::Exec(e)
    }
}

impl From<SysError> for RtError {
    fn from(e: SysError) -> Self {
        RtError::Sys(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The refusals `ffi/tests.rs` cannot provoke without failing the kernel or the allocator
    /// (memory for a copy, a seal that fails, a file over `int64_t`), with their messages.
    #[test]
    fn refusals_that_need_a_failing_kernel_keep_their_messages() {
        let sys = SysError { op: "mprotect", errno: 12 };
        let exec = ExecError::UnknownBatch;
        let cases: [(RtError, String); 7] = [
            (RtError::NoRoomForCopy(64), "out of memory: no room for a copy of the 64 bytes to write".into()),
            (
                RtError::Broken(0x1000),
                "the allocation at 0x1000 failed to seal earlier; free it and allocate again".into(),
            ),
            (RtError::SealFailed(0x1000, exec), format!("sealing 0x1000: {exec}")),
            (RtError::NotCallable(0x1000), "0x1000 cannot be called".into()),
            (RtError::FileSizeOverflows("big".into()), "big: the file's size does not fit in int64_t".into()),
            (exec.into(), exec.to_string()),
            (sys.into(), sys.to_string()),
        ];
        for (error, message) in cases {
            assert_eq!(error.to_string(), message, "{error:?}");
        }
    }
}
