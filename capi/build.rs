// The target and host triples, for the test that compiles the C example with the cc crate.
fn main() {
    for (var, name) in [("TARGET", "RIGHTSIZE_C_TARGET"), ("HOST", "RIGHTSIZE_C_HOST")] {
        println!("cargo:rustc-env={name}={}", std::env::var(var).unwrap_or_default());
    }
    println!("cargo:rerun-if-changed=build.rs");
}
