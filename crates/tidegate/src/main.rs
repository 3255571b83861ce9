//! The stock `tidegate` binary: the bundled plugins only.

fn main() -> std::process::ExitCode {
    tidegate::main()
}
