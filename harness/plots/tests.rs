//! The plots of a sample report and of a committed profile, written and read back.

use std::path::{Path, PathBuf};

use super::*;
use crate::harness::output::tests::report;
use crate::harness::results::Status;
use crate::profiler::Profile;

fn out(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("rightsize-plots-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(files: &[PathBuf]) {
    assert_eq!(files.len(), 2);
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("</svg>"), "{}", &svg[..svg.len().min(200)]);
    let png = std::fs::read(&files[1]).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    assert!(png.len() > 2000, "{} bytes", png.len());
}

#[test]
fn every_plot_of_a_report_is_written_as_svg_and_png_with_labelled_axes() {
    let r = report();
    let dir = out("report");
    let cdf = latency_cdfs(&r, "pair", &dir).unwrap();
    check(&cdf);
    let svg = std::fs::read_to_string(&cdf[0]).unwrap();
    assert!(svg.contains("request latency (ms)") && svg.contains("krisp-conserved"), "axis and legend");
    let bars = throughput_bars(&r, "pair", &dir).unwrap();
    check(&bars);
    assert!(std::fs::read_to_string(&bars[0]).unwrap().contains("requests/s"));
    let heat = slowdown_heatmap(&r, &dir).unwrap().expect("the report has pairs");
    check(&heat);
    let svg = std::fs::read_to_string(&heat[0]).unwrap();
    assert!(svg.contains("co-runner") && svg.contains("gpt2") && svg.contains("×"));
    let sweep = sweep_plot(&r, "pair", &dir).unwrap().expect("the report has a sweep");
    check(&sweep);
    let svg = std::fs::read_to_string(&sweep[0]).unwrap();
    assert!(svg.contains("offered load") && svg.contains("krisp") && svg.contains("p99 ÷ SLO"));
    assert!(svg.contains("bars: the range over a scale"));
    // The spread: krisp's runs at ×1 and at ×2 differ in p99 (equal in attainment), a bar
    // with two caps each; with one run per scale there are none.
    let mut single = r.clone();
    single.sweeps.retain(|p| p.repeat == 0);
    let one = sweep_plot(&single, "pair", &out("single")).unwrap().unwrap();
    let lines = |f: &PathBuf| std::fs::read_to_string(f).unwrap().matches("<polyline").count();
    assert_eq!(lines(&sweep[0]), lines(&one[0]) + 2 * 3);
    std::fs::remove_dir_all(one[0].parent().unwrap()).unwrap();
    assert!(sweep_plot(&r, "nope", &dir).unwrap().is_none());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_scenario_without_results_is_an_error_not_an_empty_plot() {
    let mut r = report();
    r.runs.retain(|x| !matches!(x.status, Status::Ok));
    let dir = out("empty");
    let e = throughput_bars(&r, "pair", &dir).unwrap_err().to_string();
    assert!(e.contains("no run of pair"), "{e}");
    assert!(slowdown_heatmap(&r, &dir).unwrap().is_none());
    assert!(latency_cdfs(&r, "nope", &dir).is_err());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn curves_of_a_committed_profile() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("profiles/nvidia-h200/gpt2-b8-s128.json");
    let p = Profile::load(&path).unwrap();
    let dir = out("curves");
    let files = kernel_curves(&p, "gpt2-b8-s128", 6, &dir).unwrap();
    check(&files);
    assert!(files[0].file_name().unwrap().to_string_lossy().starts_with("curves-gpt2-b8-s128."));
    let svg = std::fs::read_to_string(&files[0]).unwrap();
    assert!(svg.contains("SMs of the partition") && svg.contains("knee"));
    assert!(svg.contains("; beside: "), "each kernel's knees beside the co-runner in its label");
    std::fs::remove_dir_all(dir).unwrap();
}
