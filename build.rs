//! Build script: compiles `kernels/*.cu` with the pinned nvcc (13.0.x) into fatbins holding
//! sm_90a and sm_80 machine code plus compute_80 PTX, embeds them, and runs bindgen on
//! `kernels/abi.h` so Rust and CUDA share every kernel's parameter struct.
//!
//! Writes only into OUT_DIR. A missing nvcc or libclang is one clear error that names the
//! setup command, never a panic.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

#[path = "kernels/image_hash.rs"]
mod image_hash;

/// The nvcc release the kernels are built with: newer PTX would not JIT on a 13.0 driver.
const NVCC_RELEASE: &str = "13.0";
const SETUP: &str = "scripts/setup.sh";

/// Architectures in each fatbin: Hopper machine code with wgmma/TMA (sm_90a), Ampere machine
/// code, and compute_80 PTX that newer GPUs JIT-compile.
const GENCODE: &[&str] = &[
    "-gencode=arch=compute_90a,code=sm_90a",
    "-gencode=arch=compute_80,code=sm_80",
    "-gencode=arch=compute_80,code=compute_80",
];

/// The other nvcc flags.
const FLAGS: &[&str] = &["-O3", "-std=c++17", "--resource-usage", "-Werror", "all-warnings"];

fn main() {
    if let Err(msg) = run() {
        eprintln!("error: {msg}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").map_err(|e| e.to_string())?);
    let out = PathBuf::from(env::var("OUT_DIR").map_err(|e| e.to_string())?);
    let kernels = root.join("kernels");
    for var in ["NVCC", "CUDA_HOME", "CUDA_PATH", "PATH", "LIBCLANG_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    println!("cargo:rerun-if-changed={}", kernels.display());
    println!("cargo:rerun-if-changed={}", root.join("kernels/image_hash.rs").display());

    let mut sources = Vec::new();
    let entries = fs::read_dir(&kernels).map_err(|e| format!("reading {}: {e}", kernels.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        match path.extension().and_then(|e| e.to_str()) {
            Some("cu") => sources.push(path.clone()),
            Some("h" | "cuh") => {}
            _ => continue,
        }
        println!("cargo:rerun-if-changed={}", path.display());
    }
    sources.sort();

    let (nvcc, version) = find_nvcc(&root)?;
    compile_all(&nvcc, &kernels, &out, &sources)?;
    let (hash, per_kernel) = kernel_hash(&out, &sources, &version)?;
    write_images(&out, &sources, hash, &per_kernel)?;
    generate_abi(&kernels.join("abi.h"), &out.join("abi.rs"))
}

/// Looks for nvcc 13.0 in $NVCC, $CUDA_HOME, $CUDA_PATH, PATH and the project-local toolchain;
/// returns it and its `--version` text.
fn find_nvcc(root: &Path) -> Result<(PathBuf, String), String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = env::var_os("NVCC") {
        candidates.push(PathBuf::from(p));
    }
    for var in ["CUDA_HOME", "CUDA_PATH"] {
        if let Some(home) = env::var_os(var) {
            candidates.push(PathBuf::from(home).join("bin/nvcc"));
        }
    }
    if let Some(path) = env::var_os("PATH") {
        candidates.extend(env::split_paths(&path).map(|d| d.join("nvcc")));
    }
    candidates.push(root.join(".toolchain/nvidia/cu13/bin/nvcc"));
    candidates.push(PathBuf::from("/usr/local/cuda/bin/nvcc"));

    let mut seen = Vec::new();
    for nvcc in candidates.into_iter().filter(|p| p.is_file()) {
        let version = Command::new(&nvcc).arg("--version").output();
        let text = match version {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).into_owned(),
            _ => continue,
        };
        if text.contains(&format!("release {NVCC_RELEASE},")) {
            println!("cargo:rerun-if-changed={}", nvcc.display());
            return Ok((nvcc, text));
        }
        let release = text.lines().find(|l| l.contains("release")).unwrap_or("unknown version");
        seen.push(format!("{} ({})", nvcc.display(), release.trim()));
    }
    let found = if seen.is_empty() {
        "no nvcc was found".to_string()
    } else {
        format!("found only other releases: {}", seen.join("; "))
    };
    Err(format!(
        "rightsize compiles its CUDA kernels with nvcc {NVCC_RELEASE}.x, and {found}. \
         Run `{SETUP}` to install the pinned nvcc into .toolchain/ (or point $NVCC at an nvcc {NVCC_RELEASE})."
    ))
}

fn compile_all(nvcc: &Path, kernels: &Path, out: &Path, sources: &[PathBuf]) -> Result<(), String> {
    // One nvcc per source, in parallel: builds are the slow part of a clean CI run.
    let results: Vec<Result<(), String>> = std::thread::scope(|s| {
        let handles: Vec<_> = sources.iter().map(|src| s.spawn(move || compile(nvcc, kernels, out, src))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("nvcc thread panicked".into()))).collect()
    });
    results.into_iter().collect()
}

fn compile(nvcc: &Path, kernels: &Path, out: &Path, src: &Path) -> Result<(), String> {
    let stem = stem(src);
    let fatbin = out.join(format!("{stem}.fatbin"));
    // nvcc's intermediate files are kept for the PTX of each architecture (`kernel_hash`).
    let keep = ptx_dir(out, &stem);
    if keep.exists() {
        fs::remove_dir_all(&keep).map_err(|e| format!("clearing {}: {e}", keep.display()))?;
    }
    fs::create_dir_all(&keep).map_err(|e| format!("creating {}: {e}", keep.display()))?;
    let output = Command::new(nvcc)
        .arg("-fatbin")
        .args(GENCODE)
        .args(FLAGS)
        .arg("-I")
        .arg(kernels)
        .arg("--keep")
        .arg("--keep-dir")
        .arg(&keep)
        .arg("-o")
        .arg(&fatbin)
        .arg(src)
        .output()
        .map_err(|e| format!("running {}: {e}", nvcc.display()))?;
    let log = [output.stdout.as_slice(), output.stderr.as_slice()].concat();
    // The resource report (registers, shared memory, spills) is kept for reading.
    fs::write(out.join(format!("{stem}.resource-usage.txt")), &log).map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!("nvcc failed on {}:\n{}", src.display(), String::from_utf8_lossy(&log)));
    }
    // Only the PTX is read; the preprocessed sources and cubins would take tens of MB.
    for entry in fs::read_dir(&keep).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.extension().and_then(|e| e.to_str()) != Some("ptx") {
            fs::remove_file(&path).map_err(|e| format!("removing {}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// Where nvcc keeps the intermediate files of `kernels/{stem}.cu`.
fn ptx_dir(out: &Path, stem: &str) -> PathBuf {
    out.join("ptx").join(stem)
}

/// The virtual architectures of [`GENCODE`], each once, in order (`compute_90a`, `compute_80`).
fn virtual_archs() -> Vec<&'static str> {
    let mut archs: Vec<&str> = Vec::new();
    for g in GENCODE {
        let arch = g.split("arch=").nth(1).and_then(|a| a.split(',').next()).unwrap_or_default();
        if !arch.is_empty() && !archs.contains(&arch) {
            archs.push(arch);
        }
    }
    archs
}

/// FNV-1a over what the profiles time (kernels/image_hash.rs): for each source and each
/// architecture, the PTX of the kernels' plain builds with what they use, comments left out;
/// then nvcc's version text and the flags, which make the machine code of that PTX. Also each
/// plain kernel's own hash, by symbol (its code on each architecture, the version and flags),
/// from which a profile's identity is made (kernels/mod.rs `kernels_hash`). Not over the
/// fatbins themselves: nvcc names the statics of anonymous namespaces after the source's
/// absolute path, so the same kernels built in another directory give other bytes, and
/// profiles must carry over.
fn kernel_hash(out: &Path, sources: &[PathBuf], nvcc_version: &str) -> Result<(u64, Vec<(String, u64)>), String> {
    let mut hash = image_hash::FNV_START;
    let mut per_kernel: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    for src in sources {
        let stem = stem(src);
        hash = image_hash::fnv(hash, stem.as_bytes());
        for arch in virtual_archs() {
            let path = ptx_dir(out, &stem).join(format!("{stem}.{arch}.ptx"));
            let ptx = fs::read_to_string(&path).map_err(|e| format!("reading nvcc's PTX {}: {e}", path.display()))?;
            let hashing = |e: String| format!("hashing {}: {e}", path.display());
            let code = image_hash::plain_code(&ptx).map_err(hashing)?;
            hash = image_hash::fnv(hash, arch.as_bytes());
            hash = image_hash::fnv(hash, code.as_bytes());
            for (name, code) in image_hash::entry_codes(&ptx).map_err(hashing)? {
                let h = per_kernel.entry(name).or_insert(image_hash::FNV_START);
                *h = image_hash::fnv(image_hash::fnv(*h, arch.as_bytes()), code.as_bytes());
            }
        }
    }
    let mut tools = image_hash::fnv(image_hash::FNV_START, nvcc_version.trim().as_bytes());
    for flag in GENCODE.iter().chain(FLAGS) {
        tools = image_hash::fnv(tools, flag.as_bytes());
    }
    hash = image_hash::fnv(hash, &tools.to_le_bytes());
    let per_kernel = per_kernel.into_iter().map(|(name, h)| (name, image_hash::fnv(h, &tools.to_le_bytes()))).collect();
    Ok((hash, per_kernel))
}

/// Writes `images.rs`: one aligned static per fatbin, and the kernels' hash (profiles record
/// it, so a profile measured on other kernels is refused).
fn write_images(out: &Path, sources: &[PathBuf], hash: u64, per_kernel: &[(String, u64)]) -> Result<(), String> {
    let mut code = String::from("// Generated by build.rs: the embedded kernel images.\n");
    for src in sources {
        let stem = stem(src);
        let path = out.join(format!("{stem}.fatbin"));
        writeln!(
            code,
            "/// Fatbin of `kernels/{stem}.cu`.\npub(crate) static {}: &Image = &Aligned(*include_bytes!({:?}));",
            stem.to_uppercase(),
            path.display().to_string()
        )
        .map_err(|e| e.to_string())?;
    }
    writeln!(
        code,
        "/// Hash of the plain kernels' code (PTX of each architecture), nvcc's version and flags (build.rs `kernel_hash`, kernels/image_hash.rs).\npub const IMAGE_HASH: u64 = {hash:#018x};"
    )
        .map_err(|e| e.to_string())?;
    code.push_str("/// Each plain kernel's own hash, by symbol, sorted (build.rs `kernel_hash`).\npub(crate) static KERNEL_HASHES: &[(&str, u64)] = &[\n");
    for (name, h) in per_kernel {
        writeln!(code, "    ({name:?}, {h:#018x}),").map_err(|e| e.to_string())?;
    }
    code.push_str("];\n");
    fs::write(out.join("images.rs"), code).map_err(|e| e.to_string())
}

fn generate_abi(header: &Path, dest: &Path) -> Result<(), String> {
    // bindgen panics when it cannot load libclang; turn that into the one clear error.
    let header = header.to_path_buf();
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = std::panic::catch_unwind(move || {
        bindgen::Builder::default()
            .header(header.display().to_string())
            .allowlist_type(".*Params")
            .allowlist_type("DecoderLayerWeights")
            .allowlist_type("RsTicket")
            .allowlist_var("RS_.*")
            .derive_default(true)
            .derive_debug(true)
            .layout_tests(true)
            .use_core()
            .generate()
    });
    std::panic::set_hook(default_hook);
    let bindings = match result {
        Ok(Ok(b)) => b,
        Ok(Err(e)) => return Err(format!("bindgen could not read kernels/abi.h: {e}")),
        Err(_) => {
            return Err(format!(
                "bindgen needs libclang to read kernels/abi.h and could not load it. \
                 Run `{SETUP}` (it installs Debian's libclang-dev), or set $LIBCLANG_PATH."
            ))
        }
    };
    bindings.write_to_file(dest).map_err(|e| format!("writing {}: {e}", dest.display()))
}

fn stem(src: &Path) -> String {
    src.file_stem().and_then(|s| s.to_str()).unwrap_or_default().to_string()
}
