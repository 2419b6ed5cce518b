//! Timeline traces of runs (`rightsize run --trace FILE`): what every tenant ran on the GPU and
//! when, written as Chrome trace-event JSON, which Perfetto (ui.perfetto.dev) and
//! chrome://tracing open.
//!
//! Layout: a process per tenant of each traced run ("scenario / mode · tenant"); in it a
//! `requests` track with each request's span as the host saw it, a track per stream its work
//! went to (partition, SMs, priority) with a slice per kernel, cuBLASLt call or plan replay,
//! and a counter `SMs allotted` with the SMs of the partition its current kernel runs on (0
//! when it has had no kernel for over 4 µs).
//! Times are microseconds from the first event of the file; `otherData.origin_unix_ns` is that
//! instant on the host clock.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::runtime::{unix_ns, GpuSlice, Tenant};

/// One request as its tenant's host thread saw it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RequestSpan {
    /// Its index among the tenant's requests (warm-up and uncounted ones included).
    pub request: u64,
    /// Issued, ns since the Unix epoch.
    pub start_ns: u64,
    /// Completed, ns since the Unix epoch.
    pub end_ns: u64,
}

/// What one tenant of a run did, when traced.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TenantTrace {
    /// Its GPU work, in completion order.
    pub slices: Vec<GpuSlice>,
    /// Its requests.
    pub requests: Vec<RequestSpan>,
    /// Launches left out because the timeline's limit was reached.
    pub dropped: u64,
}

/// Times a tenant's requests for the trace (when on) and tags its launches with the request.
#[derive(Debug, Default)]
pub struct Spans {
    on: bool,
    list: Vec<RequestSpan>,
}

impl Spans {
    /// Spans that record when `on`.
    pub fn new(on: bool) -> Spans {
        Spans { on, list: Vec::new() }
    }

    /// Runs one request of `t`, recording its span when on.
    pub fn request(&mut self, t: &Tenant, f: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<()> {
        if !self.on {
            return f();
        }
        let request = self.list.len() as u64;
        t.set_request(Some(request));
        let start_ns = unix_ns();
        let r = f();
        t.set_request(None);
        r?;
        self.list.push(RequestSpan { request, start_ns, end_ns: unix_ns() });
        Ok(())
    }

    /// The spans recorded.
    pub fn into_vec(self) -> Vec<RequestSpan> {
        self.list
    }
}

/// A traced run: its name and each tenant's trace.
#[derive(Debug, Clone, PartialEq)]
pub struct TracedRun {
    /// Scenario name.
    pub scenario: String,
    /// Mode name.
    pub mode: String,
    /// Tenant labels, in scenario order.
    pub tenants: Vec<String>,
    /// Their traces, in the same order.
    pub traces: Vec<TenantTrace>,
}

/// Processes per run in the file's numbering (run `r`'s tenant `i` is process `(r+1)·1000+i`).
const PIDS_PER_RUN: usize = 1000;
const REQUESTS_TID: u64 = 1;
/// A gap between a tenant's slices longer than this shows as 0 SMs allotted (shorter ones are
/// launch gaps between back-to-back kernels).
const IDLE_NS: u64 = 4_000;

/// The first host time in `runs`, ns since the Unix epoch (0 if none): the zero of their times.
fn first_ns(runs: &[TracedRun]) -> u64 {
    runs.iter()
        .flat_map(|r| &r.traces)
        .flat_map(|t| t.slices.iter().map(|s| s.start_ns).chain(t.requests.iter().map(|q| q.start_ns)))
        .min()
        .unwrap_or(0)
}

/// The events of `run`, the `r`-th of its file, with times in µs from `origin` (ns since the
/// Unix epoch).
fn run_events(run: &TracedRun, r: usize, origin: u64) -> Vec<Value> {
    let us = |ns: u64| ns.saturating_sub(origin) as f64 / 1e3;
    let mut events = Vec::new();
    for (i, (label, trace)) in run.tenants.iter().zip(&run.traces).enumerate() {
        let pid = (r + 1) * PIDS_PER_RUN + i;
        events.push(json!({"ph": "M", "name": "process_name", "pid": pid,
            "args": {"name": format!("{} / {} · t{i} {label}", run.scenario, run.mode)}}));
        events.push(json!({"ph": "M", "name": "process_sort_index", "pid": pid, "args": {"sort_index": pid}}));
        events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": REQUESTS_TID,
            "args": {"name": "requests"}}));
        for q in &trace.requests {
            events.push(json!({"ph": "X", "cat": "request", "name": format!("request {}", q.request),
                "pid": pid, "tid": REQUESTS_TID, "ts": us(q.start_ns),
                "dur": q.end_ns.saturating_sub(q.start_ns) as f64 / 1e3, "args": {"request": q.request}}));
        }
        // A track per (partition, priority), numbered in order of first use.
        let mut tracks: BTreeMap<(u16, i32), u64> = BTreeMap::new();
        let mut slices: Vec<&GpuSlice> = trace.slices.iter().collect();
        slices.sort_by_key(|s| (s.start_ns, s.end_ns));
        for s in &slices {
            let next = REQUESTS_TID + 1 + tracks.len() as u64;
            let tid = *tracks.entry((s.partition, s.priority)).or_insert_with(|| {
                let place = if s.partition == 0 {
                    format!("whole device · {} SMs", s.sms)
                } else {
                    format!("partition {} · {} SMs", s.partition, s.sms)
                };
                events.push(json!({"ph": "M", "name": "thread_name", "pid": pid, "tid": next,
                    "args": {"name": format!("{place} · priority {}", s.priority)}}));
                next
            });
            events.push(json!({"ph": "X", "cat": "gpu", "name": s.name, "pid": pid, "tid": tid,
                "ts": us(s.start_ns), "dur": s.end_ns.saturating_sub(s.start_ns) as f64 / 1e3,
                "args": {"grid": s.grid, "sms": s.sms, "partition": s.partition,
                         "priority": s.priority, "request": s.request}}));
        }
        // SMs allotted: the partition of the running slice; 0 in gaps longer than IDLE_NS.
        let mut last = None;
        for (k, s) in slices.iter().enumerate() {
            if last != Some(s.sms) {
                events.push(json!({"ph": "C", "name": "SMs allotted", "pid": pid, "ts": us(s.start_ns),
                    "args": {"SMs": s.sms}}));
                last = Some(s.sms);
            }
            let idle_after = slices.get(k + 1).is_none_or(|n| n.start_ns > s.end_ns + IDLE_NS);
            if idle_after {
                events.push(json!({"ph": "C", "name": "SMs allotted", "pid": pid, "ts": us(s.end_ns),
                    "args": {"SMs": 0}}));
                last = Some(0);
            }
        }
    }
    events
}

/// The file's closing part: display unit and metadata.
fn other_data(origin: u64, dropped: u64) -> Value {
    json!({"producer": "rightsize", "origin_unix_ns": origin, "dropped_launches": dropped})
}

/// The trace-event JSON of `runs`, times from their first event.
pub fn chrome_trace(runs: &[TracedRun]) -> Value {
    let origin = first_ns(runs);
    let events: Vec<Value> = runs.iter().enumerate().flat_map(|(r, run)| run_events(run, r, origin)).collect();
    let dropped = runs.iter().flat_map(|r| &r.traces).map(|t| t.dropped).sum::<u64>();
    json!({"traceEvents": events, "displayTimeUnit": "ns", "otherData": other_data(origin, dropped)})
}

/// What a valid trace holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TraceStats {
    /// Complete events ("X").
    pub slices: usize,
    /// Counter events ("C").
    pub counters: usize,
    /// Named processes.
    pub processes: usize,
}

/// Checks `trace` against the trace-event format as this module writes it: a `traceEvents`
/// array of objects, each with a known phase and the fields that phase needs (numeric,
/// non-negative times; integer ids), and every process and track used by a slice named.
pub fn validate(trace: &Value) -> Result<TraceStats, String> {
    let events = trace.get("traceEvents").and_then(Value::as_array).ok_or("no traceEvents array")?;
    let mut stats = TraceStats::default();
    let mut processes = std::collections::HashSet::new();
    let mut threads = std::collections::HashSet::new();
    let mut used = Vec::new();
    for (k, e) in events.iter().enumerate() {
        let bad = |why: &str| format!("event {k}: {why}: {e}");
        let ph = e.get("ph").and_then(Value::as_str).ok_or_else(|| bad("no phase"))?;
        let pid = e.get("pid").and_then(Value::as_u64).ok_or_else(|| bad("no integer pid"))?;
        let name = e.get("name").and_then(Value::as_str).ok_or_else(|| bad("no name"))?;
        let time = |field: &str| -> Result<f64, String> {
            let t = e.get(field).and_then(Value::as_f64).ok_or_else(|| bad(&format!("no numeric {field}")))?;
            if t.is_finite() && t >= 0.0 {
                Ok(t)
            } else {
                Err(bad(&format!("{field} is negative or not finite")))
            }
        };
        match ph {
            "X" => {
                time("ts")?;
                time("dur")?;
                let tid = e.get("tid").and_then(Value::as_u64).ok_or_else(|| bad("no integer tid"))?;
                used.push((k, pid, tid));
                stats.slices += 1;
            }
            "C" => {
                time("ts")?;
                let args = e.get("args").and_then(Value::as_object).ok_or_else(|| bad("no args"))?;
                if args.is_empty() || !args.values().all(Value::is_number) {
                    return Err(bad("counter args must be numbers"));
                }
                stats.counters += 1;
            }
            "M" => {
                let args = e.get("args").and_then(Value::as_object).ok_or_else(|| bad("no args"))?;
                match name {
                    "process_name" | "thread_name" => {
                        args.get("name").and_then(Value::as_str).ok_or_else(|| bad("no args.name"))?;
                    }
                    "process_sort_index" | "thread_sort_index" => {
                        args.get("sort_index").and_then(Value::as_i64).ok_or_else(|| bad("no args.sort_index"))?;
                    }
                    _ => return Err(bad("unknown metadata")),
                }
                if name == "process_name" {
                    processes.insert(pid);
                }
                if name == "thread_name" {
                    let tid = e.get("tid").and_then(Value::as_u64).ok_or_else(|| bad("no integer tid"))?;
                    threads.insert((pid, tid));
                }
            }
            _ => return Err(bad("unknown phase")),
        }
    }
    if let Some((k, pid, tid)) = used.iter().find(|(_, p, t)| !processes.contains(p) || !threads.contains(&(*p, *t))) {
        return Err(format!("event {k}: process {pid} or its track {tid} has no name"));
    }
    stats.processes = processes.len();
    Ok(stats)
}

/// Writes a trace file run by run, so a long comparison keeps no trace in memory: events go
/// out as each run is added (checked with [`validate`] first), the closing part on
/// [`TraceWriter::finish`]. Times count from when the writer was made.
#[derive(Debug)]
pub struct TraceWriter {
    out: std::io::BufWriter<std::fs::File>,
    path: std::path::PathBuf,
    origin: u64,
    runs: usize,
    events: usize,
    dropped: u64,
    stats: TraceStats,
}

impl TraceWriter {
    /// Creates `path` (and its directory) and writes the file's opening.
    pub fn create(path: &Path) -> anyhow::Result<TraceWriter> {
        Self::with_origin(path, unix_ns())
    }

    fn with_origin(path: &Path, origin: u64) -> anyhow::Result<TraceWriter> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let file = std::fs::File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
        let mut w = TraceWriter {
            out: std::io::BufWriter::new(file),
            path: path.to_path_buf(),
            origin,
            runs: 0,
            events: 0,
            dropped: 0,
            stats: TraceStats::default(),
        };
        w.put(b"{\"traceEvents\":[")?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use std::io::Write as _;
        self.out.write_all(bytes).with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Appends the events of `run`.
    pub fn add(&mut self, run: &TracedRun) -> anyhow::Result<()> {
        let events = Value::Array(run_events(run, self.runs, self.origin));
        let stats = validate(&json!({ "traceEvents": &events }))
            .map_err(|e| anyhow::anyhow!("the trace of {} / {} is malformed: {e}", run.scenario, run.mode))?;
        for e in events.as_array().into_iter().flatten() {
            let sep: &[u8] = if self.events == 0 { b"" } else { b",\n" };
            self.put(sep)?;
            let text = serde_json::to_vec(e)?;
            self.put(&text)?;
            self.events += 1;
        }
        self.runs += 1;
        self.dropped += run.traces.iter().map(|t| t.dropped).sum::<u64>();
        self.stats.slices += stats.slices;
        self.stats.counters += stats.counters;
        self.stats.processes += stats.processes;
        Ok(())
    }

    /// Writes the closing part and returns what the file holds.
    pub fn finish(mut self) -> anyhow::Result<TraceStats> {
        use std::io::Write as _;
        let tail = json!({"displayTimeUnit": "ns", "otherData": other_data(self.origin, self.dropped)});
        // `tail` is an object: its text without the opening brace continues the file's object.
        let text = serde_json::to_string(&tail)?;
        self.put(b"],")?;
        self.put(&text.as_bytes()[1..])?;
        self.out.flush().with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(self.stats)
    }
}

/// Writes the trace of `runs` to `path`, times from their first event.
pub fn write(runs: &[TracedRun], path: &Path) -> anyhow::Result<TraceStats> {
    let mut w = TraceWriter::with_origin(path, first_ns(runs))?;
    for run in runs {
        w.add(run)?;
    }
    w.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(name: &'static str, partition: u16, sms: u32, start_ns: u64, end_ns: u64) -> GpuSlice {
        GpuSlice { tenant: 0, name: name.into(), partition, sms, grid: 4, priority: 0, request: 0, start_ns, end_ns }
    }

    fn run() -> TracedRun {
        let t0 = 1_700_000_000_000_000_000;
        let a = TenantTrace {
            slices: vec![
                slice("gemm", 3, 64, t0 + 12_000, t0 + 20_000),
                slice("layernorm", 0, 132, t0 + 10_000, t0 + 12_000),
                slice("softmax", 3, 64, t0 + 25_000, t0 + 26_000),
            ],
            requests: vec![RequestSpan { request: 0, start_ns: t0 + 5_000, end_ns: t0 + 30_000 }],
            dropped: 2,
        };
        let b = TenantTrace {
            slices: vec![slice("plan", 0, 132, t0 + 1_000, t0 + 9_000)],
            requests: vec![RequestSpan { request: 0, start_ns: t0, end_ns: t0 + 9_500 }],
            dropped: 0,
        };
        TracedRun {
            scenario: "pair".into(),
            mode: "krisp-isolated".into(),
            tenants: vec!["bert-base".into(), "gpt2".into()],
            traces: vec![a, b],
        }
    }

    fn events<'a>(v: &'a Value, ph: &str) -> Vec<&'a Value> {
        v["traceEvents"].as_array().unwrap().iter().filter(|e| e["ph"] == ph).collect()
    }

    #[test]
    fn a_process_per_tenant_a_track_per_stream_and_times_from_the_first_event() {
        let v = chrome_trace(&[run()]);
        let stats = validate(&v).unwrap();
        assert_eq!(stats, TraceStats { slices: 6, counters: 7, processes: 2 });
        let names: Vec<&str> = events(&v, "M")
            .iter()
            .filter(|e| e["name"] == "process_name")
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["pair / krisp-isolated · t0 bert-base", "pair / krisp-isolated · t1 gpt2"]);
        let tracks: Vec<&str> = events(&v, "M")
            .iter()
            .filter(|e| e["name"] == "thread_name" && e["pid"] == 1000)
            .map(|e| e["args"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(tracks, ["requests", "whole device · 132 SMs · priority 0", "partition 3 · 64 SMs · priority 0"]);
        let x = events(&v, "X");
        // The earliest event (t1's request at t0) is time 0; t0's gemm starts 12 µs later.
        let gemm = x.iter().find(|e| e["name"] == "gemm").unwrap();
        assert_eq!((gemm["ts"].as_f64(), gemm["dur"].as_f64()), (Some(12.0), Some(8.0)));
        assert_eq!(gemm["args"]["sms"], 64);
        assert!(x.iter().any(|e| e["name"] == "request 0" && e["ts"] == 0.0));
        assert_eq!(v["otherData"]["dropped_launches"], 2);
    }

    #[test]
    fn the_sm_counter_drops_to_zero_only_between_slices() {
        let v = chrome_trace(&[run()]);
        let c: Vec<(f64, u64)> = events(&v, "C")
            .iter()
            .filter(|e| e["pid"] == 1000)
            .map(|e| (e["ts"].as_f64().unwrap(), e["args"]["SMs"].as_u64().unwrap()))
            .collect();
        // layernorm 10–12 then gemm 12–20 back to back, idle for 5 µs, softmax 25–26.
        assert_eq!(c, [(10.0, 132), (12.0, 64), (20.0, 0), (25.0, 64), (26.0, 0)]);
        // A gap of at most 4 µs is a launch gap, not idleness; an unchanged value is not repeated.
        let mut r = run();
        r.traces[0].slices[2].start_ns -= 2_000;
        r.traces[0].slices[2].end_ns -= 2_000;
        r.traces[0].slices[1].sms = 64;
        let v = chrome_trace(&[r]);
        let c: Vec<(f64, u64)> = events(&v, "C")
            .iter()
            .filter(|e| e["pid"] == 1000)
            .map(|e| (e["ts"].as_f64().unwrap(), e["args"]["SMs"].as_u64().unwrap()))
            .collect();
        assert_eq!(c, [(10.0, 64), (24.0, 0)]);
    }

    #[test]
    fn validate_rejects_what_viewers_would_not_show() {
        let ok = chrome_trace(&[run()]);
        let broken = |f: &dyn Fn(&mut Value)| {
            let mut v = ok.clone();
            f(&mut v);
            validate(&v).unwrap_err()
        };
        let first_x = |v: &mut Value| -> usize {
            v["traceEvents"].as_array().unwrap().iter().position(|e| e["ph"] == "X").unwrap()
        };
        assert!(broken(&|v| {
            let k = first_x(v);
            v["traceEvents"][k]["dur"] = json!(-1.0)
        })
        .contains("dur is negative"));
        assert!(broken(&|v| {
            let k = first_x(v);
            v["traceEvents"][k]["tid"] = json!(99)
        })
        .contains("has no name"));
        assert!(broken(&|v| v["traceEvents"][0]["ph"] = json!("Q")).contains("unknown phase"));
        assert!(broken(&|v| v["traceEvents"] = json!({})).contains("no traceEvents"));
    }

    #[test]
    fn write_creates_a_file_that_parses_back() {
        let dir = std::env::temp_dir().join(format!("rightsize-trace-{}", std::process::id()));
        let path = dir.join("sub").join("t.json");
        let stats = write(&[run()], &path).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(validate(&back).unwrap(), stats);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_streamed_file_is_the_same_trace_as_the_whole() {
        let runs = [run(), run()];
        let dir = std::env::temp_dir().join(format!("rightsize-trace-stream-{}", std::process::id()));
        let path = dir.join("t.json");
        write(&runs, &path).unwrap();
        let back: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(back, chrome_trace(&runs));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_empty_trace_is_valid() {
        let v = chrome_trace(&[]);
        assert_eq!(validate(&v).unwrap(), TraceStats::default());
    }
}
