//! The `rightsize` executable: the command line of [`rightsize::cli`].

fn main() -> std::process::ExitCode {
    // Before any thread or CUDA call: the most hardware queues for this process's tenants,
    // unless the user chose (the processes it starts get theirs: rightsize::runtime::queues).
    rightsize::runtime::queues::raise_for_this_process();
    std::process::ExitCode::from(rightsize::cli::run(std::env::args_os()))
}
