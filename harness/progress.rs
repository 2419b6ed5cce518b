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
    /// Where the bars are not drawn (stderr not a terminal: a log file, a pipe), a line on
    /// stderr says each run as it starts instead.
    pub(super) fn track<T>(&self, label: &str, total: u64, f: impl FnOnce(Arc<AtomicU64>) -> T) -> T {
        if self.runs.is_hidden() {
            eprintln!("{}", run_line(self.runs.position(), self.runs.length(), label));
        }
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

    /// Ends the runs' bar with `message`, which a line on stderr says where no bar is drawn.
    pub(super) fn finish(&self, message: String) {
        if self.runs.is_hidden() {
            eprintln!("{message}");
        }
        self.runs.finish_with_message(message);
        self.requests.finish_and_clear();
    }

    /// Prints `line` on stderr above the bars, or alone where they are not drawn (a bar's own
    /// `println` prints nothing then: a failure would be lost from a log).
    pub(super) fn println(&self, line: &str) {
        self.runs.suspend(|| eprintln!("{line}"));
    }
}

/// The line that says a run starts where no bar is drawn: `done` runs of `total` before it.
fn run_line(done: u64, total: Option<u64>, label: &str) -> String {
    match total {
        // A load sweep's runs are guessed ahead, so a comparison may run more than it said.
        Some(total) if done < total => format!("run {}/{total}: {label}", done + 1),
        _ => format!("run {}: {label}", done + 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn where_no_bar_is_drawn_each_run_is_a_line_of_its_own() {
        // Drawn or not (a terminal or a log), tracking a run counts it and returns its result.
        let bars = Bars::new(2);
        assert_eq!(bars.track("solo a", 0, |_| 7), 7);
        assert_eq!(bars.runs.position(), 1);
        bars.println("solo b failed: no GPU");
        assert_eq!(run_line(0, Some(2), "solo a"), "run 1/2: solo a");
        assert_eq!(run_line(1, Some(2), "krisp"), "run 2/2: krisp");
        assert_eq!(run_line(2, Some(2), "sweep x1.5"), "run 3: sweep x1.5");
        assert_eq!(run_line(0, None, "solo a"), "run 1: solo a");
    }
}
