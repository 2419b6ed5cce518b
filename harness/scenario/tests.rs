//! Tests of [`super`].

use super::*;

#[test]
fn every_committed_scenario_file_loads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
    let mut names: Vec<String> = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let file = ScenarioFile::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
            assert!(!file.scenarios.is_empty(), "{}", path.display());
            // `krisp` reads the profile of every tenant of ours; a missing one is measured on
            // the spot (seconds per model, and under compute-sanitizer far longer), so the
            // committed scenarios have theirs committed for the H200.
            let profiles = dir.with_file_name("profiles");
            for t in file.scenarios.iter().flat_map(|s| &s.tenants).filter(|t| Sharing::Krisp.reads_profile_of(t)) {
                let want = crate::harness::serve::profile_path(&profiles, "NVIDIA H200", &t.model, t.batch, t.seq);
                assert!(want.is_file(), "{}: no committed profile {}", path.display(), want.display());
            }
            names.push(path.file_name().unwrap().to_string_lossy().into_owned());
        }
    }
    assert!(names.len() >= 6 && names.iter().any(|n| n == "overload.toml"), "{names:?}");
}

#[test]
fn the_default_set_parses_and_covers_the_study() {
    let f = ScenarioFile::defaults();
    let names: Vec<&str> = f.scenarios.iter().map(|s| s.name.as_str()).collect();
    for want in ["encoders", "mix-small-large", "mix-4"] {
        assert!(names.contains(&want), "{names:?}");
    }
    // The classic study: closed loops at batch 8, sequence 128, 10 + 100 requests.
    let classic: Vec<&Scenario> = f.scenarios.iter().take(4).collect();
    assert!(classic.iter().all(|s| s.warmup == 10 && s.requests == 100 && s.duration_s.is_none()));
    let tenants = || classic.iter().flat_map(|s| &s.tenants);
    assert!(tenants().all(|t| t.batch == 8 && t.seq == 128 && t.rate.is_none() && t.phases.is_none()));
    assert!(classic.iter().any(|s| s.tenants.len() == 4));
    // Serving: open loop at batch 1, a latency-critical tenant with a quota, Llama-style
    // decoders, a decoder generating 64 tokens, and busy and idle phases.
    let all = || f.scenarios.iter().flat_map(|s| &s.tenants);
    assert!(all().any(|t| t.rate.is_some() && t.batch == 1));
    assert!(all().any(|t| t.class == PriorityClass::LatencyCritical && t.quota_sms.is_some() && t.rate.is_some()));
    assert!(all().any(|t| t.model.starts_with("llama")) && all().any(|t| t.new_tokens >= 64));
    assert!(all().any(|t| t.phases.is_some()));
    // The study's own 7B decoder, batch 8 in a closed loop, beside smaller tenants; and a
    // latency-critical batch-1 decoder with an SLO beside busy best-effort tenants.
    assert!(f.scenarios.iter().any(|s| s.tenants.len() >= 3
        && s.tenants.iter().any(|t| t.model == "mistral-7b" && t.batch == 8 && t.rate.is_none())));
    assert!(f.scenarios.iter().any(|s| {
        let decoder = |t: &TenantSpec| ModelConfig::named(&t.model).is_ok_and(|c| c.is_decoder());
        s.tenants
            .iter()
            .any(|t| decoder(t) && t.class == PriorityClass::LatencyCritical && t.batch == 1 && t.slo_ms.is_some())
            && s.tenants.iter().any(|t| t.class == PriorityClass::BestEffort && t.rate.is_none())
    }));
    // Goodput where classes differ: a latency-critical tenant among best-effort ones, every
    // tenant open loop with an SLO, in a load sweep.
    assert!(f.scenarios.iter().any(|s| {
        s.sweep.is_some()
            && s.tenants.iter().all(|t| t.rate.is_some() && t.slo_ms.is_some())
            && s.tenants.iter().any(|t| t.class == PriorityClass::LatencyCritical)
            && s.tenants.iter().any(|t| t.class == PriorityClass::BestEffort)
    }));
}

#[test]
fn a_scenario_that_does_not_fit_is_refused_with_its_numbers() {
    let text = "[[scenario]]\nname = \"big\"\n[[scenario.tenant]]\nmodel = \"llama-3.2-1b\"\nbatch = 64\nseq = 4096\n\
                new_tokens = 64\n[[scenario.tenant]]\nmodel = \"bert-base\"\n";
    let s = &ScenarioFile::parse(text, "t").unwrap().scenarios[0];
    let llama = s.tenants[0].memory_need().unwrap();
    // 1.24 B parameters in FP16, and a KV cache of 16 layers × 2 × 64 × 4160 × 8 × 64 halves.
    assert!((2_400_000_000..2_600_000_000).contains(&llama.weights), "{llama:?}");
    assert!(llama.workspace > 16 * 2 * 64 * 4160 * 8 * 64 * 2, "{llama:?}");
    // Packing its tied LM head at load holds a second copy of it for a while.
    assert_eq!(llama.load, 2 * 128_256 * 2048, "{llama:?}");
    let need = llama.peak() + s.tenants[1].memory_need().unwrap().peak();
    assert!(s.check_memory(need - 1 + CONTEXT_BYTES, false).is_err());
    assert!(s.check_memory(need + CONTEXT_BYTES, false).is_ok());
    let e = s.check_memory(need + CONTEXT_BYTES, true).unwrap_err().to_string();
    assert!(
        e.contains("\"big\"") && e.contains("llama-3.2-1b") && e.contains("2 contexts") && e.contains("GiB free"),
        "{e}"
    );
    // A tenant's own budget is checked when the file is read.
    let over = "[[scenario]]\nname = \"b\"\n[[scenario.tenant]]\nmodel = \"bert-base\"\nmemory_mib = 100\n";
    let e = format!("{:#}", ScenarioFile::parse(over, "t").unwrap_err());
    assert!(e.contains("over its budget of 100 MiB") && e.contains("weights 208 MiB") && e.contains("tenant 0"), "{e}");
    assert!(ScenarioFile::parse(&over.replace("100", "1000"), "t").is_ok());
    // The default set fits in an H100's 80 GB, one process or a worker per tenant.
    for s in &ScenarioFile::defaults().scenarios {
        s.check_memory(75 << 30, true).unwrap();
    }
}

#[test]
fn krisp_reads_every_profile_and_krisp_equal_only_those_of_bounded_candidates() {
    let f = ScenarioFile::defaults();
    let lc_mix = f.scenarios.iter().find(|s| s.name == "lc-mix").expect("lc-mix");
    let reads = |m: Sharing| lc_mix.tenants.iter().map(|t| m.reads_profile_of(t)).collect::<Vec<_>>();
    // Under krisp-equal the latency-critical tenant (a quota and an objective) is read, the
    // best-effort ones are not; krisp sizes every window by its request curve.
    assert_eq!(reads(Sharing::KrispEqual), vec![true, false, false]);
    assert_eq!(reads(Sharing::Krisp), vec![true, true, true]);
    assert_eq!(reads(Sharing::Static), vec![false, false, false]);
}

#[test]
fn modes_round_trip_and_bad_names_are_refused() {
    for m in Mode::defaults() {
        assert_eq!(m.to_string().parse::<Mode>().unwrap(), m);
    }
    assert_eq!("mps-limit-plan".parse::<Mode>().unwrap(), Mode { sharing: Sharing::MpsLimit, plan: true });
    let e = "mig".parse::<Mode>().unwrap_err().to_string();
    assert!(e.contains("unknown mode") && e.contains("krisp-isolated"), "{e}");
    let e = "krisp-curves-plan".parse::<Mode>().unwrap_err().to_string();
    assert!(e.contains("`krisp` since") && e.contains("krisp-equal"), "{e}");
    assert_eq!(parse_modes("streams, static").unwrap().len(), 2);
    assert_eq!(parse_modes("all").unwrap(), Mode::defaults());
    // The default set beside others, and each mode once, in the order first named.
    let krisp_equal: Mode = "krisp-equal".parse().unwrap();
    let with = parse_modes("krisp-equal,default,krisp-equal").unwrap();
    assert_eq!(with[0], krisp_equal);
    assert_eq!(with[1..], Mode::defaults()[..]);
    assert_eq!(parse_modes("krisp, krisp").unwrap(), parse_modes("krisp").unwrap());
}

#[test]
fn bad_scenarios_say_what_is_wrong() {
    let cases = [
        ("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt5\"\n", "unknown model"),
        ("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = -1.0\n", "rate"),
        // Past what a results file holds (its figures stay within ±1e12), or a first arrival
        // past any run.
        ("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 1e-300\n", "rate = 1e-300 must be"),
        ("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nslo_ms = 1e13\n", "slo_ms = 10000000000000.0 must be positive and at most 1e12"),
        (
            "[[scenario]]\nname = \"a\"\nsweep = [1e13]\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 9.0\nslo_ms = 9.0\n",
            "sweep needs positive rate scales, from",
        ),
        ("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nseq = 1024\n", "positions"),
        ("[[scenario]]\nname = \"a\"\nrequests = 0\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "requests"),
        ("[[scenario]]\nname = \"a\"\n", "tenant"),
        ("[[scenario]]\nname = \"a\"\nmodes = []\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "modes is empty"),
        (
            "[[scenario]]\nname = \"a\"\nmodes = [\"mps\", \"krisp\", \"mps\"]\n[[scenario.tenant]]\nmodel = \"gpt2\"\n",
            "modes names mps twice",
        ),
        ("[[scenario]]\nname = \"a\"\nsweep = [2.0]\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "sweep needs"),
        ("[[scenario]]\nname = \"a\"\nsweep_modes = [\"mps\"]\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "need a sweep"),
        (
            "[[scenario]]\nname = \"a\"\nsweep = [2.0]\nsweep_duration_s = 0.0\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 9.0\nslo_ms = 9.0\n",
            "sweep_duration_s = 0 must be positive",
        ),
        (
            "[[scenario]]\nname = \"a\"\nsweep = [2.0]\nmodes = [\"mps\"]\nsweep_modes = [\"krisp\"]\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 9.0\nslo_ms = 9.0\n",
            "sweep_modes names krisp",
        ),
        ("[[scenario]]\nname = \"a\"\nbogus = 1\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "bogus"),
        (
            "[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n",
            "two scenarios",
        ),
        (
            "[[scenario]]\nname = \"a\"\nmodes = [\"mig\"]\n[[scenario.tenant]]\nmodel = \"gpt2\"\n",
            "unknown mode",
        ),
        (
            "[[scenario]]\nname = \"a\"\nwarmup = 3\nduration_s = 1.5\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 2.0\n",
            "nothing would be counted",
        ),
        (
            "[[scenario]]\nname = \"a\"\nwarmup = 3\nduration_s = 2.0\nsweep = [0.5]\nsweep_duration_s = 1.0\n\
             [[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 5.0\nslo_ms = 9.0\n",
            "a sweep run (1 s)",
        ),
    ];
    for (text, want) in cases {
        let e = format!("{:#}", ScenarioFile::parse(text, "t.toml").unwrap_err());
        assert!(e.contains(want), "{want:?} not in {e:?}");
    }
    // A warm-up a little shorter than the run is allowed.
    let short =
        "[[scenario]]\nname = \"a\"\nwarmup = 3\nduration_s = 1.6\n[[scenario.tenant]]\nmodel = \"gpt2\"\nrate = 2.0\n";
    ScenarioFile::parse(short, "t.toml").unwrap();
}

#[test]
fn pytorch_tenants_say_what_they_cannot_do() {
    let torch = |extra: &str| {
        format!("[[scenario]]\nname = \"t\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\nengine = \"torch\"\n{extra}")
    };
    let refused = |text: &str| ScenarioFile::parse(text, "t").map(|_| ()).unwrap_err();
    let e = format!("{:#}", refused(&torch("[[scenario.tenant]]\nmodel = \"bert-base\"\n")));
    assert!(e.contains("only with PyTorch tenants"), "{e}");
    for (field, line) in [("fault", "fault = { kind = \"oom\", at = 2 }"), ("memory_mib", "memory_mib = 4096")] {
        let e = format!("{:#}", refused(&torch(&format!("{line}\n"))));
        assert!(e.contains(field) && e.contains("not supported for PyTorch tenants"), "{field}: {e}");
    }
    // Their loop is the engine's: phases and queue limits.
    for line in ["phases = { busy_s = 1.0, idle_s = 1.0 }", "rate = 10.0\nqueue_limit = 2"] {
        ScenarioFile::parse(&torch(&format!("{line}\n")), "t").unwrap_or_else(|e| panic!("{line}: {e:#}"));
    }
    // A latency-critical PyTorch tenant with a quota is one the interposer's board serves,
    // without a profile.
    let lc = torch("class = \"latency-critical\"\nquota_sms = 32\nslo_ms = 5.0\n");
    let lc = ScenarioFile::parse(&lc, "t").unwrap().scenarios.remove(0);
    assert!(!Sharing::Krisp.reads_profile_of(&lc.tenants[0]));
    let s = ScenarioFile::parse(&torch(""), "t").unwrap().scenarios.remove(0);
    assert!(s.is_torch() && s.solo_key(0, false).starts_with("torch:gpt2/"));
    let runs = |m: &str| s.unsupported(m.parse().unwrap());
    for m in ["timeslice", "mps", "mps-limit", "static", "krisp"] {
        assert_eq!(runs(m), None, "{m}");
    }
    assert!(runs("streams").unwrap().contains("one-process mode"));
    assert!(runs("krisp-plan").unwrap().contains("eagerly"));
    // The engine's tenants keep their keys and files.
    let e = ScenarioFile::parse("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "t").unwrap();
    assert!(!e.scenarios[0].is_torch() && e.scenarios[0].unsupported("streams".parse().unwrap()).is_none());
    assert!(!serde_json::to_string(&e.scenarios[0]).unwrap().contains("engine"));
}

#[test]
fn mps_limits_add_up_to_the_whole_device() {
    let file = |pcts: &[Option<u32>]| {
        let mut text = String::from("[[scenario]]\nname = \"m\"\n");
        for p in pcts {
            text += "[[scenario.tenant]]\nmodel = \"gpt2\"\n";
            if let Some(p) = p {
                text += &format!("mps_percentage = {p}\n");
            }
        }
        ScenarioFile::parse(&text, "t")
    };
    let pcts = |p: &[Option<u32>]| file(p).unwrap().scenarios[0].mps_percentages();
    // The unset ones share what the set ones leave (not 100/n each: 25 + 34 + 34 = 93).
    assert_eq!(pcts(&[Some(25), None, None]), [25, 38, 37]);
    assert_eq!(pcts(&[None, None, None]), [34, 33, 33]);
    assert_eq!(pcts(&[None, Some(50), None, None]), [17, 50, 17, 16]);
    assert_eq!(pcts(&[Some(30), Some(30)]), [30, 30], "all set: as given");
    for p in [&[Some(60), Some(50)][..], &[Some(99), None, None][..]] {
        let e = format!("{:#}", file(p).unwrap_err());
        assert!(e.contains("tenant 0 (gpt2)") && e.contains("mps_percentage"), "{e}");
    }
}

#[test]
fn defaults_fill_a_minimal_tenant() {
    let f = ScenarioFile::parse("[[scenario]]\nname = \"a\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n", "t").unwrap();
    let t = &f.scenarios[0].tenants[0];
    assert_eq!((t.batch, t.seq, t.new_tokens, t.class, t.rate), (8, 128, 8, PriorityClass::BestEffort, None));
    assert_eq!(f.scenarios[0].solo_key(0, true), "gpt2/b8/s128/n8/plan");
}

#[test]
fn each_run_has_one_backend() {
    let parse = |tenants: &str| {
        let text = format!("[[scenario]]\nname = \"b\"\n[[scenario.tenant]]\nmodel = \"gpt2\"\n{tenants}");
        ScenarioFile::parse(&text, "t").unwrap().scenarios.remove(0)
    };
    let plain = parse("[[scenario.tenant]]\nmodel = \"bert-base\"\n");
    let faulting = parse("[[scenario.tenant]]\nmodel = \"bert-base\"\nfault = { kind = \"kernel\", at = 3 }\n");
    let oom = parse("[[scenario.tenant]]\nmodel = \"bert-base\"\nfault = { kind = \"oom\", at = 3 }\n");
    let torch = parse("engine = \"torch\"\n");
    let backend = |s: &Scenario, m: &str| s.backend(m.parse().unwrap());
    for m in ["timeslice", "mps", "mps-limit-plan"] {
        assert_eq!(backend(&plain, m), Backend::Workers, "{m}");
        assert_eq!(backend(&faulting, m), Backend::Workers, "{m}: a worker's fault ends only its process");
    }
    for m in ["streams", "static-plan", "krisp"] {
        assert_eq!(backend(&plain, m), Backend::InProcess, "{m}");
        assert_eq!(backend(&oom, m), Backend::InProcess, "{m}: an allocation failure keeps the context");
        assert_eq!(backend(&faulting, m), Backend::Host, "{m}: a kernel fault loses the context");
    }
    assert_eq!(backend(&torch, "krisp"), Backend::Workers, "PyTorch tenants run in their processes");
}
