//! What the interposer did with this process's launches: one set of counts, written at exit
//! as the log the harness reads back (`RIGHTSIZE_PRELOAD_LOG`; the type is shared,
//! [`rightsize::profiler::app::interposer_log`]).

use std::sync::atomic::AtomicU64;

use rightsize::profiler::app::interposer_log::{Counts, Interposed};

use crate::{at_exit, board, sizing, target};

/// The launches seen and what became of them, counted from every thread.
pub(crate) static COUNTS: Counts<AtomicU64> = Counts::new();

/// What was placed: the log's text (JSON).
pub fn report() -> String {
    let sms = target::target().map_or(0, |t| t.sms);
    let log = Interposed {
        sms,
        board_slots: board::board().map_or(0, board::Board::len) as u64,
        counts: COUNTS.load(),
        fits: sizing::fits_report(),
    };
    log.to_json()
}

extern "C" fn write_log() {
    if let Some(path) = std::env::var_os("RIGHTSIZE_PRELOAD_LOG") {
        if let Err(e) = std::fs::write(&path, report() + "\n") {
            eprintln!("rightsize preload: cannot write {}: {e}", std::path::Path::new(&path).display());
        }
    }
}

/// Has the log written at exit (once, however often asked).
pub(crate) fn write_log_at_exit() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| at_exit(write_log));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_settings_nothing_is_placed() {
        assert!(report().contains("\"sms\": 0"));
    }
}
