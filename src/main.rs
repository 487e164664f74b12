//! The `postmesh` binary: every role, one command. See `postmesh --help`.

fn main() -> std::process::ExitCode {
    postmesh::cli::main()
}
