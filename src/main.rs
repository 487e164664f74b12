//! The `postmesh` binary: every role, one command. See `postmesh --help`.

/// jemalloc, whose background threads give freed memory back to the system:
/// with glibc's allocator the server kept its peak after a burst, and most
/// of it after every connection closed (bench/RESULTS.md).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

#[cfg(all(feature = "mimalloc", not(feature = "jemalloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    postmesh::cli::main()
}
