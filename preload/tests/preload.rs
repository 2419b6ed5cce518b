//! The interposer loaded into programs that are not CUDA applications: they run as without it
//! (its `dlsym` hands back every symbol as libc's), and with settings but no GPU it places
//! nothing and says nothing.

use std::path::PathBuf;
use std::process::Command;

/// The built library: target/<profile>/deps/librightsize_preload.so, beside this test.
fn library() -> PathBuf {
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    let lib = deps.join("librightsize_preload.so");
    assert!(lib.is_file(), "{} was not built", lib.display());
    lib
}

#[test]
fn a_shell_runs_as_without_it() {
    let out = Command::new("sh")
        .args(["-c", "echo $((6 * 7))"])
        .env("LD_PRELOAD", library())
        .env("RIGHTSIZE_SMS", "16")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "42");
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn python_loads_extension_modules_through_its_dlsym() {
    let Ok(out) = Command::new("python3")
        .args(["-c", "import ctypes, json, ssl, sqlite3; print(json.dumps(ctypes.sizeof(ctypes.c_void_p)))"])
        .env("LD_PRELOAD", library())
        .output()
    else {
        eprintln!("no python3 here; skipped");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "8");
}

/// The switch `scripts/torch_app.py --ab` uses: found in the process's global namespace as
/// that script finds it, off at first, on and off again as asked, each call saying what it was.
#[test]
fn python_finds_the_bypass_switch_and_it_toggles() {
    let script = "import ctypes\n\
                  f = ctypes.CDLL(None).rightsize_preload_bypass\n\
                  f.argtypes = [ctypes.c_int]\n\
                  f.restype = ctypes.c_int\n\
                  print(f(1), f(1), f(0), f(0))";
    let Ok(out) = Command::new("python3").args(["-c", script]).env("LD_PRELOAD", library()).output() else {
        eprintln!("no python3 here; skipped");
        return;
    };
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0 1 1 0");
}
