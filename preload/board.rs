//! Following the load across processes: a board in a shared file where each process of a
//! group says when it is busy, so each runs on the whole device while it is alone and on its
//! part of the device, split among the busy ones, while others are busy.
//!
//! The board is a file of 64-byte slots, one per process (`RIGHTSIZE_BOARD` names it,
//! `RIGHTSIZE_SLOT` is this process's slot; whoever starts the processes makes the file, zeros
//! of 64 × their number bytes). A slot holds when its process last launched a kernel and how
//! many of its threads are waiting for the GPU (`cuStreamSynchronize`, `cuEventSynchronize`,
//! `cuCtxSynchronize`, as the application looks them up through `cuGetProcAddress`).
//! A process is *busy* while one of its threads waits, or for `RIGHTSIZE_HOLD_US` (default
//! 2,000 µs) after a launch; a process whose slot says nothing for that long is idle. The
//! clock is `CLOCK_MONOTONIC`, one for every process of the host.
//!
//! A latency-critical process (`RIGHTSIZE_CLASS=latency-critical`, `RIGHTSIZE_QUOTA_SMS=N`)
//! says so in its slot: its kernels run where it launched them, and while it is busy the
//! best-effort processes' parts are laid out beyond the first `N` SMs' groups, which are kept
//! free for it.
//!
//! Waits some other way (polling `cuStreamQuery`, a blocking copy) are not seen: a process
//! that waits only so is busy for the hold after its last launch. A process killed while
//! waiting leaves its slot busy: a board lives for one run of one group of processes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

/// One process's slot (a cache line of its own).
#[repr(C, align(64))]
pub(crate) struct Slot {
    /// `CLOCK_MONOTONIC` nanoseconds of its last launch (0: never).
    last_ns: AtomicU64,
    /// Its threads waiting for the GPU now.
    waiting: AtomicU64,
    /// Latency-critical: the SMs its quota keeps free of best-effort kernels while it is busy
    /// (0: best-effort).
    critical_sms: AtomicU64,
    /// The SMs its recent kernels need ([`Demand`]; 0: not said, taken as the whole device).
    demand_sms: AtomicU64,
}

/// Bytes of one slot in the file.
pub(crate) const SLOT_BYTES: usize = 64;
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

/// A launch records its time only when the last one recorded is older than this, so a
/// stream of launches writes the shared line seldom.
const RECORD_EVERY_NS: u64 = 20_000;

/// The board, mapped.
pub(crate) struct Board {
    slots: &'static [Slot],
    me: usize,
    hold_ns: u64,
    demand: Demand,
}

/// What this process's kernels need: the most SMs any kernel launched within the hold needed,
/// kept across its threads.
#[derive(Default)]
struct Demand {
    sms: std::sync::atomic::AtomicU32,
    /// When the current hold began (its first launch).
    since_ns: AtomicU64,
}

impl Demand {
    /// Notes a kernel needing `sms` at `now`; returns the demand.
    fn note(&self, now: u64, hold_ns: u64, sms: u32) -> u32 {
        if now.saturating_sub(self.since_ns.load(Ordering::Relaxed)) >= hold_ns {
            // A new hold: this kernel's need alone (a race with another thread's new hold
            // loses at most one kernel's need until the next).
            self.since_ns.store(now, Ordering::Relaxed);
            self.sms.store(sms, Ordering::Relaxed);
            sms
        } else {
            self.sms.fetch_max(sms, Ordering::Relaxed).max(sms)
        }
    }
}

/// Now, on the clock every process of the host shares.
pub(crate) fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

impl Board {
    /// Maps the board file `path` with this process in slot `me`, latency-critical with a quota
    /// of `critical_sms` SMs if given; busy for `hold_ns` after each launch.
    pub(crate) fn open(
        path: &std::path::Path,
        me: usize,
        hold_ns: u64,
        critical_sms: Option<u32>,
    ) -> Result<Board, String> {
        use std::os::fd::AsRawFd as _;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        let len = file.metadata().map_err(|e| e.to_string())?.len() as usize;
        let n = len / SLOT_BYTES;
        if n == 0 || len % SLOT_BYTES != 0 {
            return Err(format!("{} is {len} bytes, not a whole number of {SLOT_BYTES}-byte slots", path.display()));
        }
        if me >= n {
            return Err(format!("slot {me} is not on a board of {n} slots"));
        }
        // SAFETY: maps the whole file shared, read and write; the mapping outlives the file
        // handle and is never unmapped (the board lives as long as the process).
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(format!("cannot map {}: {}", path.display(), std::io::Error::last_os_error()));
        }
        // SAFETY: `n` slots of 64 bytes, page-aligned, zero or written by processes of the
        // same layout; atomics of u64 accept any bit pattern.
        let slots = unsafe { std::slice::from_raw_parts(p.cast::<Slot>(), n) };
        // A latency-critical process without a quota still says it is one (and keeps none free).
        let critical = critical_sms.map_or(0, |sms| u64::from(sms) | CRITICAL);
        slots[me].critical_sms.store(critical, Ordering::Relaxed);
        Ok(Board { slots, me, hold_ns, demand: Demand::default() })
    }

    /// Records a launch at `now` of a kernel that needs `sms` SMs: the process's demand is the
    /// most any of its kernels needed within the hold.
    pub(crate) fn launched(&self, now: u64, sms: u32) {
        let slot = &self.slots[self.me];
        if now.saturating_sub(slot.last_ns.load(Ordering::Relaxed)) >= RECORD_EVERY_NS {
            slot.last_ns.store(now, Ordering::Relaxed);
        }
        let demand = self.demand.note(now, self.hold_ns, sms);
        // The shared line is written only when the demand changes.
        if slot.demand_sms.load(Ordering::Relaxed) != u64::from(demand) {
            slot.demand_sms.store(u64::from(demand), Ordering::Relaxed);
        }
    }

    /// The board as a launch of this process sees it at `now` (this process counted as busy).
    pub(crate) fn view(&self, now: u64) -> View {
        let mut v = View { critical: self.critical(self.me).is_some(), ..View::default() };
        for (i, s) in self.slots.iter().enumerate() {
            let active = i == self.me
                || s.waiting.load(Ordering::Relaxed) > 0
                || now.saturating_sub(s.last_ns.load(Ordering::Relaxed)) < self.hold_ns;
            if !active {
                continue;
            }
            v.busy += 1;
            match self.critical(i) {
                Some(sms) => v.reserved_sms = v.reserved_sms.saturating_add(sms),
                None => {
                    let sms = u32::try_from(s.demand_sms.load(Ordering::Relaxed)).unwrap_or(u32::MAX);
                    let demand = if sms == 0 { u32::MAX } else { sms };
                    if let Some(d) = v.demands.get_mut(v.best_effort as usize) {
                        *d = demand;
                    }
                    v.best_effort += 1;
                    v.rank += u32::from(i < self.me);
                }
            }
        }
        v
    }

    /// The quota of slot `i`'s process if it is latency-critical.
    fn critical(&self, i: usize) -> Option<u32> {
        let c = self.slots[i].critical_sms.load(Ordering::Relaxed);
        (c & CRITICAL != 0).then(|| u32::try_from(c & !CRITICAL).unwrap_or(u32::MAX))
    }

    /// Marks one of this process's threads as waiting for the GPU until the guard drops.
    pub(crate) fn waiting(&self) -> Waiting<'_> {
        self.slots[self.me].waiting.fetch_add(1, Ordering::Relaxed);
        Waiting(&self.slots[self.me])
    }

    /// Slots on the board.
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }
}

/// The flag of a latency-critical slot's `critical_sms`.
const CRITICAL: u64 = 1 << 63;

/// The board as one launch sees it ([`Board::view`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct View {
    /// Processes busy, this one included.
    pub busy: u32,
    /// This process is latency-critical.
    pub critical: bool,
    /// Busy best-effort processes (this one included when it is one).
    pub best_effort: u32,
    /// This process's rank among them (those in lower slots).
    pub rank: u32,
    /// SMs the busy latency-critical processes' quotas keep free (this one's included).
    pub reserved_sms: u32,
    /// The busy best-effort processes' demands in SMs, in slot order (`u32::MAX`: not said,
    /// the whole device); the first [`MAX_SHARERS`].
    pub demands: [u32; MAX_SHARERS],
}

/// Best-effort processes whose demands a view keeps (a board of more lays the rest out as
/// if they needed the whole device).
pub(crate) const MAX_SHARERS: usize = 16;

#[cfg(test)]
impl View {
    /// Busy best-effort processes' demands (this one's at [`View::rank`]), each `u32::MAX`
    /// beyond the first [`MAX_SHARERS`].
    pub(crate) fn demand(&self, i: u32) -> u32 {
        if (i as usize) < MAX_SHARERS {
            self.demands[i as usize]
        } else {
            u32::MAX
        }
    }
}

/// A thread waiting for the GPU ([`Board::waiting`]).
pub(crate) struct Waiting<'a>(&'a Slot);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The board of `RIGHTSIZE_BOARD` and `RIGHTSIZE_SLOT`, opened on first use; `None` when
/// unset, or when it cannot be opened (said once on stderr): then every launch goes to the
/// window.
pub(crate) fn board() -> Option<&'static Board> {
    static BOARD: OnceLock<Option<Board>> = OnceLock::new();
    BOARD
        .get_or_init(|| {
            let path = std::env::var_os("RIGHTSIZE_BOARD")?;
            let me = super::setting("RIGHTSIZE_SLOT").unwrap_or(0) as usize;
            let hold_us = super::setting("RIGHTSIZE_HOLD_US").unwrap_or(2_000);
            let critical = std::env::var("RIGHTSIZE_CLASS").is_ok_and(|c| c.trim() == "latency-critical");
            let quota = critical.then(|| super::setting("RIGHTSIZE_QUOTA_SMS").unwrap_or(0));
            match Board::open(std::path::Path::new(&path), me, u64::from(hold_us) * 1_000, quota) {
                Ok(b) => {
                    // A process that is never contended makes no window, and still says so.
                    crate::stats::write_log_at_exit();
                    Some(b)
                }
                Err(e) => {
                    eprintln!("rightsize preload: no board ({e}); kernels always run on the window");
                    None
                }
            }
        })
        .as_ref()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(slots: usize) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rightsize-board-{}-{}", std::process::id(), now_ns()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("board");
        std::fs::write(&path, vec![0u8; slots * SLOT_BYTES]).unwrap();
        path
    }

    #[test]
    fn a_process_is_contended_while_another_launches_or_waits() {
        let path = file(3);
        let hold = 2_000_000;
        let (a, b, c) = (
            Board::open(&path, 0, hold, None).unwrap(),
            Board::open(&path, 1, hold, None).unwrap(),
            Board::open(&path, 2, hold, None).unwrap(),
        );
        let busy = |b: &Board, t| {
            let v = b.view(t);
            assert_eq!((v.best_effort, v.reserved_sms, v.critical), (v.busy, 0, false));
            (v.busy, v.rank)
        };
        let t = now_ns();
        assert_eq!((busy(&a, t), busy(&b, t)), ((1, 0), (1, 0)), "nobody has launched: each alone");
        a.launched(t, 132);
        assert_eq!(busy(&b, t + hold - 1), (2, 1), "a launched: b sees it, ranked after it");
        assert_eq!(busy(&a, t), (1, 0), "a does not count b, which has not launched");
        assert_eq!(busy(&b, t + hold), (1, 0), "a is idle after the hold");
        {
            let _w = c.waiting();
            assert_eq!(busy(&a, t + 10 * hold), (2, 0), "c waits for the GPU: a ranks first");
            assert_eq!(busy(&b, t + 10 * hold), (2, 0), "b ranks before c");
        }
        assert_eq!(busy(&b, t + 10 * hold), (1, 0), "c stopped waiting");
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_latency_critical_process_keeps_its_quota_free_while_it_is_busy() {
        let path = file(3);
        let hold = 2_000_000;
        let (lc, b, c) = (
            Board::open(&path, 0, hold, Some(32)).unwrap(),
            Board::open(&path, 1, hold, None).unwrap(),
            Board::open(&path, 2, hold, None).unwrap(),
        );
        let t = now_ns();
        let alone = lc.view(t);
        assert!(alone.critical && alone.busy == 1 && alone.best_effort == 0 && alone.reserved_sms == 32);
        c.launched(t, 40);
        assert_eq!(
            b.view(t),
            View {
                busy: 2,
                critical: false,
                best_effort: 2,
                rank: 0,
                reserved_sms: 0,
                demands: demands(&[u32::MAX, 40])
            },
            "the latency-critical one is idle: nothing kept free; b has said no need yet"
        );
        lc.launched(t, 8);
        b.launched(t, 16);
        let want = |rank| View {
            busy: 3,
            critical: false,
            best_effort: 2,
            rank,
            reserved_sms: 32,
            demands: demands(&[16, 40]),
        };
        assert_eq!(b.view(t), want(0));
        assert_eq!(c.view(t), want(1));
        // A latency-critical process without a quota is one still.
        let path = file(2);
        let none = Board::open(&path, 0, hold, Some(0)).unwrap();
        assert!(none.view(t).critical);
        assert_eq!(none.view(t).reserved_sms, 0, "and keeps nothing free");
    }

    fn demands(d: &[u32]) -> [u32; MAX_SHARERS] {
        let mut a = [0; MAX_SHARERS];
        a[..d.len()].copy_from_slice(d);
        a
    }

    #[test]
    fn a_process_needs_the_most_its_kernels_needed_within_the_hold() {
        let path = file(2);
        let hold = 2_000_000;
        let (a, b) = (Board::open(&path, 0, hold, None).unwrap(), Board::open(&path, 1, hold, None).unwrap());
        let t = now_ns();
        b.launched(t, 132);
        let need = |t| a.view(t).demand(0);
        a.launched(t, 16);
        a.launched(t + 10, 48);
        a.launched(t + 20, 8);
        assert_eq!(need(t + 20), 48, "the most within the hold");
        assert_eq!(a.view(t + 20).demand(1), 132, "b's");
        assert_eq!(a.view(t + 20).demand(MAX_SHARERS as u32), u32::MAX, "beyond the kept ones: the device");
        a.launched(t + hold, 8);
        assert_eq!(need(t + hold), 8, "a new hold starts from its first kernel");

        // More busy processes than a view keeps: the first ones' demands stay theirs.
        let path = file(MAX_SHARERS + 2);
        let many: Vec<Board> = (0..MAX_SHARERS + 2).map(|i| Board::open(&path, i, hold, None).unwrap()).collect();
        for (i, b) in many.iter().enumerate() {
            b.launched(t, 8 * (i as u32 + 1));
        }
        let v = many[0].view(t);
        assert_eq!((v.best_effort as usize, v.demands[0], v.demands[1]), (MAX_SHARERS + 2, 8, 16));
    }

    #[test]
    fn a_bad_board_is_refused_with_the_reason() {
        let path = file(2);
        let refused = |path: &std::path::Path, me| Board::open(path, me, 1, None).err().unwrap_or_default();
        assert!(refused(&path, 2).contains("slot 2 is not on a board of 2 slots"));
        std::fs::write(&path, [0u8; 65]).unwrap();
        assert!(refused(&path, 0).contains("not a whole number"));
        assert!(refused(&path.with_extension("none"), 0).contains("cannot open"));
    }
}
