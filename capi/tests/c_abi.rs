//! The C ABI: its header is the one cbindgen makes from `lib.rs`, the C example compiles and
//! links against `librightsize_c.so` (cc crate), wrong calls are refused with a reason and no
//! crash, and — on a GPU — the examples run one of the library's kernels and a kernel of
//! their own on a partition.

use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::ptr;

use rightsize_c::*;

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn last_error() -> String {
    // SAFETY: a NUL-terminated string owned by this thread's error slot.
    unsafe { CStr::from_ptr(rightsize_last_error()) }.to_string_lossy().into_owned()
}

#[test]
fn the_committed_header_is_the_one_cbindgen_makes() {
    let dir = crate_dir();
    let config = cbindgen::Config::from_file(dir.join("cbindgen.toml")).unwrap();
    let mut made = Vec::new();
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(dir.join("lib.rs"))
        .generate()
        .expect("cbindgen reads lib.rs")
        .write(&mut made);
    let made = String::from_utf8(made).unwrap();
    let path = dir.join("rightsize.h");
    if std::env::var_os("RIGHTSIZE_BLESS").is_some() {
        std::fs::write(&path, &made).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == made, "capi/rightsize.h is stale: run `RIGHTSIZE_BLESS=1 cargo test -p rightsize-c`");
    for name in ["rightsize_runtime_create", "rightsize_launch", "rightsize_last_error", "RS_STATUS_INVALID_ARGUMENT"] {
        assert!(made.contains(name), "{name}");
    }
}

/// Where the built example lies, beside a copy of the library: target/<profile>/c-example.
fn example_dir() -> PathBuf {
    // The test binary is target/<profile>/deps/c_abi-…; the library is built into deps too.
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    deps.parent().unwrap().join("c-example")
}

/// Compiles and links `examples/<name>.c` with the C compiler the cc crate finds, into
/// `rightsize-c-<name>` beside a copy of the library.
fn build_example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let lib = deps.join("librightsize_c.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    let out = example_dir();
    std::fs::create_dir_all(&out).unwrap();
    std::fs::copy(&lib, out.join("librightsize_c.so")).unwrap();
    let compiler = cc::Build::new()
        .target(env!("RIGHTSIZE_C_TARGET"))
        .host(env!("RIGHTSIZE_C_HOST"))
        .opt_level(2)
        .cargo_metadata(false)
        .cargo_warnings(false)
        .get_compiler();
    let exe = out.join(format!("rightsize-c-{}", name.replace('_', "-")));
    let status = compiler
        .to_command()
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pthread"])
        .arg("-I")
        .arg(crate_dir())
        .arg(crate_dir().join(format!("examples/{name}.c")))
        .arg("-L")
        .arg(&out)
        .args(["-lrightsize_c", "-Wl,-rpath,$ORIGIN", "-o"])
        .arg(&exe)
        .status()
        .expect("a C compiler");
    assert!(status.success(), "compiling the C example: {status}");
    exe
}

#[test]
fn the_c_examples_compile_and_link_against_the_library() {
    for name in EXAMPLES {
        assert!(build_example(name).is_file(), "{name}");
    }
}

/// The C programs under `examples/`.
const EXAMPLES: [&str; 3] = ["vector_add", "two_tenants", "foreign_kernel"];

#[test]
#[ignore = "needs a CUDA GPU"]
fn the_c_example_runs_a_kernel_on_a_partition_and_checks_its_output() {
    let text = run_example(&build_example("vector_add"));
    assert!(text.contains("0 wrong") && text.contains("on 32 of"), "{text}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn two_tenants_in_two_threads_share_a_runtime() {
    let text = run_example(&build_example("two_tenants"));
    assert!(text.contains("tenant 0: 200 rounds, 0 wrong") && text.contains("tenant 1: 200 rounds, 0 wrong"), "{text}");
}

#[test]
#[ignore = "needs a CUDA GPU"]
fn an_engines_own_kernel_runs_on_its_window_by_grid_and_by_units() {
    let text = run_example(&build_example("foreign_kernel"));
    for want in ["fixed grid of 4096 blocks: 0 wrong", "units: the runtime launched", "broken PTX refused"] {
        assert!(text.contains(want), "{want}: {text}");
    }
}

/// Runs an example and returns what it printed (from a GPU host without cargo, the binaries
/// and library are in gpu-bin/, copied by scripts/gpu-build.sh).
fn run_example(exe: &Path) -> String {
    let out = std::process::Command::new(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn wrong_calls_are_refused_with_a_reason() {
    let mut rt = ptr::null_mut();
    // SAFETY (of every call): null and valid pointers only.
    assert_eq!(unsafe { rightsize_runtime_create(ptr::null(), &mut rt) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("options is null"), "{}", last_error());
    assert_eq!(unsafe { rightsize_tenant_observe(ptr::null(), 1500) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("tenant is null"), "{}", last_error());
    let policy = CString::new("fastest").unwrap();
    let mut spec = RsTenantSpec { class: RsClass::LatencyCritical, quota_sms: 32, slo_us: 2000, profile: 0 };
    let mut o = RsRuntimeOptions {
        device: 0,
        policy: policy.as_ptr(),
        tenants: &spec,
        tenant_count: 1,
        profiles: ptr::null(),
        profile_count: 0,
    };
    assert_eq!(unsafe { rightsize_runtime_create(&o, &mut rt) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("unknown policy \"fastest\"") && last_error().contains("krisp"), "{}", last_error());
    let krisp = CString::new("krisp").unwrap();
    o.policy = krisp.as_ptr();
    o.tenant_count = 0;
    assert_eq!(unsafe { rightsize_runtime_create(&o, &mut rt) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("at least one tenant"), "{}", last_error());
    o.tenant_count = 1;
    spec.profile = 1;
    o.tenants = &spec;
    assert_eq!(unsafe { rightsize_runtime_create(&o, &mut rt) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("tenant 0 names profile 1 of 0 given"), "{}", last_error());
    spec.profile = 0;
    o.tenants = &spec;
    o.profile_count = 2;
    assert_eq!(unsafe { rightsize_runtime_create(&o, &mut rt) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("options.profiles is null"), "{}", last_error());
    // Null handles.
    assert_eq!(unsafe { rightsize_tenant_synchronize(ptr::null()) }, RsStatus::InvalidArgument);
    assert!(last_error().contains("tenant is null"));
    let mut t = ptr::null_mut();
    assert_eq!(unsafe { rightsize_tenant_create(ptr::null(), 0, &mut t) }, RsStatus::InvalidArgument);
    assert_eq!(unsafe { rightsize_buffer_address(ptr::null()) }, 0);
    unsafe { rightsize_runtime_destroy(ptr::null_mut()) };
    assert_eq!(unsafe { rightsize_tenant_destroy(ptr::null_mut()) }, RsStatus::Ok);
    // Valid options: a runtime where there is a GPU, a clear "no GPU" where there is none.
    o.profile_count = 0;
    match unsafe { rightsize_runtime_create(&o, &mut rt) } {
        RsStatus::Ok => unsafe { rightsize_runtime_destroy(rt) },
        RsStatus::NoGpu => assert!(!last_error().is_empty()),
        other => panic!("{other:?}: {}", last_error()),
    }
}

#[test]
fn the_last_error_is_per_thread() {
    // SAFETY: a null pointer, refused.
    assert_eq!(unsafe { rightsize_tenant_synchronize(ptr::null()) }, RsStatus::InvalidArgument);
    let there = std::thread::spawn(last_error).join().unwrap();
    assert!(there.is_empty(), "{there}");
    assert!(last_error().contains("tenant is null"));
}
