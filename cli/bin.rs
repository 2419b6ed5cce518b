//! The `rightsize` executable: the command line of [`rightsize::cli`].

fn main() -> std::process::ExitCode {
    std::process::ExitCode::from(rightsize::cli::run(std::env::args_os()))
}
