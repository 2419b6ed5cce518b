//! The progress bars of a comparison: runs overall, and the counted requests of the run in
//! progress (counted by the run's tenants as they go).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// Progress bars: runs overall, and the counted requests of the current run.
pub(super) struct Bars {
    pub(super) runs: ProgressBar,
    pub(super) requests: ProgressBar,
}

impl Bars {
    pub(super) fn new(total_runs: u64) -> Bars {
        let multi = MultiProgress::new();
        let style = |t: &str| ProgressStyle::with_template(t).unwrap_or_else(|_| ProgressStyle::default_bar());
        let runs = multi.add(ProgressBar::new(total_runs));
        runs.set_style(style("runs     {bar:30} {pos}/{len} {elapsed_precise} (eta {eta}) {msg}"));
        let requests = multi.add(ProgressBar::new(0));
        requests.set_style(style("requests {bar:30} {pos}/{len} {msg}"));
        Bars { runs, requests }
    }

    /// Runs `f`, showing `counted` against `total` requests while it does.
    pub(super) fn track<T>(&self, label: &str, total: u64, f: impl FnOnce(Arc<AtomicU64>) -> T) -> T {
        let counted = Arc::new(AtomicU64::new(0));
        self.runs.set_message(label.to_string());
        self.requests.set_length(total);
        self.requests.set_position(0);
        let done = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (counted, done, bar) = (counted.clone(), done.clone(), self.requests.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(counted.load(Ordering::Relaxed));
                    std::thread::park_timeout(std::time::Duration::from_millis(100));
                }
            })
        };
        let r = f(counted);
        done.store(true, Ordering::Relaxed);
        // Woken at once: a run's wall time does not wait out the bar's tick.
        ticker.thread().unpark();
        let _ = ticker.join();
        self.runs.inc(1);
        r
    }

    pub(super) fn println(&self, line: &str) {
        self.runs.println(line);
    }
}
