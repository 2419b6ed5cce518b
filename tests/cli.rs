//! The command line as a user meets it; runs everywhere (with or without a GPU).

use std::process::Command;

fn rightsize(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rightsize")).args(args).output().expect("run rightsize")
}

#[test]
fn info_reports_the_gpu_or_fails_in_one_line() {
    let out = rightsize(&["info"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert!(stdout.contains("SMs") && stdout.contains("stream priorities"), "{stdout}");
        assert!(stdout.contains("MPS control daemon"), "{stdout}");
        // The command takes the most queues for its tenants where the user set none.
        let queues = stdout.lines().find(|l| l.contains("hardware queues")).expect("a hardware queues line");
        if std::env::var_os("CUDA_DEVICE_MAX_CONNECTIONS").is_none() {
            assert!(queues.contains("32, set by rightsize") || queues.contains("MPS control daemon"), "{queues}");
        }
    } else {
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line, got: {stderr}");
        assert!(stderr.starts_with("rightsize: "), "{stderr}");
        assert!(stdout.is_empty());
    }
}

#[test]
fn info_json_is_json_or_fails_in_one_line() {
    let out = rightsize(&["info", "--json"]);
    if out.status.success() {
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
        assert!(v["device"]["sm_count"].as_u64().unwrap() > 0);
        assert!(v["hardware_queues"].is_string(), "{v}");
    } else {
        assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end().lines().count(), 1);
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = rightsize(&["frobnicate"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("Usage"));
}

#[test]
fn profile_refuses_bad_options_or_a_missing_gpu_in_one_line() {
    let out = rightsize(&["profile", "--model", "gpt2", "--repeats", "0"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("repeats"), "{stderr}");
    let out = rightsize(&["profile", "--model", "gpt5"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown model"));
}

#[test]
fn profile_stale_names_the_profiles_of_other_kernels() {
    // The committed H200 profiles are of this build's kernels (a unit test holds it): none is
    // named, on a host without a GPU or on an H200.
    let committed = concat!(env!("CARGO_MANIFEST_DIR"), "/profiles/nvidia-h200");
    let out = rightsize(&["profile", "--stale", committed]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let named = String::from_utf8_lossy(&out.stdout).into_owned();
    let gpu = rightsize(&["info", "--json"]);
    let h200 = gpu.status.success()
        && serde_json::from_slice::<serde_json::Value>(&gpu.stdout).unwrap()["device"]["name"] == "NVIDIA H200";
    if h200 || !gpu.status.success() {
        assert!(named.is_empty(), "named: {named}");
    }
    // A profile of other kernels is named; a folder that is not there is one line of error.
    let dir = std::env::temp_dir().join(format!("rightsize-cli-stale-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = std::fs::read_to_string(format!("{committed}/gpt2-b8-s128.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    v["kernel_image_hash"] = "0000000000000000".into();
    std::fs::write(dir.join("gpt2-b8-s128.json"), v.to_string()).unwrap();
    let out = rightsize(&["profile", "--stale", dir.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).trim_end().ends_with("gpt2-b8-s128.json"));
    // A reader that stopped reading (`| head`) ends it quietly: no panic, success. (Its
    // standard output is a socket whose other end is closed: a write fails as on a pipe.)
    let (gone, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    drop(gone);
    let out = Command::new(env!("CARGO_BIN_EXE_rightsize"))
        .args(["profile", "--stale", dir.to_str().unwrap()])
        .stdout(std::os::fd::OwnedFd::from(writer))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(out.status.success() && out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = rightsize(&["profile", "--stale", dir.join("missing").to_str().unwrap()]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim_end().lines().count(), 1);
    // A folder without model profiles (the GPUs' parent, say) is no "none stale".
    let out = rightsize(&["profile", "--stale", concat!(env!("CARGO_MANIFEST_DIR"), "/profiles")]);
    assert!(!out.status.success() && out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no model profiles there"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn run_and_compare_refuse_bad_input_in_one_line() {
    let dir = std::env::temp_dir().join(format!("rightsize-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.toml");
    std::fs::write(&bad, "[[scenario]]\nname = \"x\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nbatch = 0\n").unwrap();
    let d = dir.to_str().unwrap();
    let cases: [(&[&str], &str); 15] = [
        (&["run", "no-such-file.toml"], "cannot read no-such-file.toml"),
        (&["run", bad.to_str().unwrap()], "batch and seq must be at least 1"),
        (&["compare", "--modes", "mig"], "unknown mode \"mig\""),
        (&["compare", "--scenario", "nope"], "no scenario \"nope\""),
        (&["compare", "--requests", "0"], "--requests must be at least 1"),
        (&["compare", "--trace", "t.json", "--trace-limit", "0"], "--trace-limit must be at least 1"),
        // The overrides are checked as the file's own values are.
        (&["compare", "--scenario", "lc-open", "--warmup", "100000"], "nothing would be counted"),
        // Paths, before the GPU is opened and anything is written.
        (&["compare", "--scenario", "encoders", "--trace", d], "is a directory: name the trace file"),
        (&["compare", "--scenario", "encoders", "--out", bad.to_str().unwrap()], "is a file, not a results directory"),
        (
            &["compare", "--scenario", "encoders", "--solos", "no-such-dir"],
            "--solos no-such-dir: no-such-dir does not exist",
        ),
        (&["compare", "--scenario", "encoders", "--resume", bad.to_str().unwrap()], "is not a rightsize results file"),
        (&["report", "no-such-dir"], "no-such-dir does not exist"),
        (&["report", d], "has no results.json"),
        (&["rounds", "no-such-dir"], "no-such-dir does not exist"),
        (&["rounds", "docs/compare-h200", "docs/compare-h200/results.json"], "are the same results"),
    ];
    for (args, want) in cases {
        let out = rightsize(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains(want), "{args:?}: {want:?} not in {stderr}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn profile_refuses_bad_arguments_naming_the_flag_before_the_gpu() {
    let cases: [(&[&str], &str); 6] = [
        (&["profile", "--model", "gpt2", "--batch", "0"], "--batch must be at least 1"),
        (&["profile", "--model", "gpt2", "--repeats", "0"], "--repeats must be at least 1"),
        (&["profile", "--model", "gpt2", "--epsilon", "nan"], "--epsilon must be a finite number"),
        // A decoder's request is its prefill and a decode step: one position more than --seq.
        (&["profile", "--model", "gpt2", "--seq", "1024"], "1025 tokens exceed gpt2's 1024 positions"),
        (&["profile", "--model", "nope"], "nope"),
        (&["profile", "--checkpoint", "no-such-dir"], "--checkpoint no-such-dir: not a directory"),
    ];
    for (args, want) in cases {
        let out = rightsize(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(stderr.contains(want) && !stderr.contains("GPU"), "{args:?}: {want:?} not in {stderr}");
    }
}

#[test]
fn compare_without_a_gpu_fails_in_one_line() {
    if rightsize(&["info"]).status.success() {
        return; // a GPU host: the comparison itself is exercised by the GPU workflow
    }
    let out = rightsize(&["compare", "--scenario", "encoders", "--out", "target/no-gpu-results"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot open the GPU"), "{stderr}");
}

#[test]
fn text_commands_explain_a_directory_without_a_tokenizer() {
    let dir = std::env::temp_dir().join(format!("rightsize-cli-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let d = dir.to_str().unwrap();
    for args in [vec!["embed", "--model", d, "a sentence"], vec!["generate", "--model", d, "Once upon a time"]] {
        let out = rightsize(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains("has no tokenizer.json"), "{args:?}: {stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line, got: {stderr}");
    }
    // A model name or a path that is not there: no such directory, what one holds.
    for model in ["bert-base", "Cargo.toml"] {
        let out = rightsize(&["embed", "--model", model, "a sentence"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let why = if model == "bert-base" { "no such directory" } else { "not a directory" };
        assert!(!out.status.success() && stderr.contains(why) && stderr.contains("tokenizer.json"), "{stderr}");
    }
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn embed_with_the_real_tokenizer_needs_a_gpu_or_says_so() {
    // With the MiniLM directory present (`make test` fetches it), the tokenizer and
    // checkpoint load on any machine; only the GPU can be missing.
    let dir = std::path::Path::new("models/all-MiniLM-L6-v2");
    if !dir.join("tokenizer.json").is_file() {
        eprintln!("skipped: {} is not here (scripts/minilm.sh)", dir.display());
        return;
    }
    let gen = rightsize(&["generate", "--model", dir.to_str().unwrap(), "A cat."]);
    assert!(String::from_utf8_lossy(&gen.stderr).contains("is an encoder"), "{gen:?}");
    let out = rightsize(&["embed", "--model", dir.to_str().unwrap(), "--similarity", "A cat.", "A dog."]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        assert_eq!(stdout.lines().count(), 2, "{stdout}");
        assert!(stdout.starts_with(" 1.000"), "{stdout}");
    } else {
        assert!(stderr.contains("GPU"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "one line, got: {stderr}");
    }
}
