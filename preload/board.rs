//! Following the load across processes: a board in a shared file where each process of a
//! group says when it is busy. Each process's kernels run where they were launched (the whole
//! device, shared as under MPS) unless SMs are kept free for a latency-critical or a starving
//! process; then the busy best-effort processes split the rest among them, a part each.
//!
//! The board is a file of 64-byte slots, one per process (`RIGHTSIZE_BOARD` names it,
//! `RIGHTSIZE_SLOT` is this process's slot; whoever starts the processes makes the file, zeros
//! of 64 × their number bytes). A slot holds when its process last launched a kernel and how
//! many of its threads are waiting for the GPU (`cuStreamSynchronize`, `cuEventSynchronize`,
//! `cuCtxSynchronize`, as the application looks them up through `cuGetProcAddress`).
//! A process is *busy* while one of its threads waits, or for `RIGHTSIZE_HOLD_US` (default
//! 2,000 µs) after a launch (recorded once a tenth of the hold, so up to a tenth longer:
//! [`RECORD_PARTS_OF_HOLD`]); a process whose slot says nothing for that long is idle. The
//! clock is `CLOCK_MONOTONIC`, one for every process of the host.
//!
//! A latency-critical process (`RIGHTSIZE_CLASS=latency-critical`, `RIGHTSIZE_QUOTA_SMS=N`)
//! says so in its slot: its kernels run where it launched them, and while it is busy the
//! best-effort processes' parts are laid out beyond the groups of the SMs kept free for it:
//! what its kernels of this hold and the one before need ([`Demand`]; a kernel's need as any
//! process's, [`crate::sizing`]), at most `N`; all `N` in its first hold after a pause, and
//! while it waits without having launched within the hold. Whether the quota is kept at all
//! is tried by the process's own work ([`crate::quota`]): kept where that work ran faster with
//! it, else the process says on the board that it is latency-critical with nothing kept.
//!
//! Each best-effort process also says how many times slower than alone it gets its work done,
//! and one that starves beside the others ([`crate::starving`]) says so in its slot with the
//! part of the device it is owed; while it is busy the others keep that part free for it, as
//! they keep a latency-critical quota, and its own kernels run where they were launched.
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
    /// Latency-critical (flagged [`CRITICAL`]): its quota, the most SMs kept free of
    /// best-effort kernels while it is busy (0: best-effort).
    critical_sms: AtomicU64,
    /// The SMs its recent kernels need ([`Demand`]; 0: not said, taken as the whole device).
    demand_sms: AtomicU64,
    /// Starving ([`crate::starving`], flagged [`STARVING`]): the SMs of its part, which the
    /// others keep free while it is busy (0: not starving).
    starving_sms: AtomicU64,
    /// How many times slower than alone it gets its work done beside the others
    /// ([`crate::starving`]; the bits of an `f64`, 0: not known).
    slowdown: AtomicU64,
    /// The launches of its periods that have ended ([`crate::starving`]; a best-effort
    /// process's): the work it got done, which a latency-critical process's quota trial reads
    /// at the ends of its windows ([`crate::quota`]).
    done: AtomicU64,
}

/// Bytes of one slot in the file.
pub(crate) const SLOT_BYTES: usize = 64;
const _: () = assert!(std::mem::size_of::<Slot>() == SLOT_BYTES);

/// A launch records its time only when the last one recorded is older than this part of the
/// hold, so a stream of launches writes the shared line seldom. Each write takes the line from
/// every other process's cache, and each of them misses on its next look at the board (at
/// least ~100 ns a miss between cores, more between sockets): at one write per 20 µs, each of
/// four processes launching without pause would miss ~150,000 times a second on the other
/// three's writes. A tenth of the hold (200 µs of the default 2 ms) cuts that tenfold. A slot
/// counts as busy for the hold and this part of it after its recorded time, so a process is
/// busy for at least the hold after its last launch, and at most a tenth longer.
const RECORD_PARTS_OF_HOLD: u64 = 10;

/// The board, mapped.
pub(crate) struct Board {
    slots: &'static [Slot],
    me: usize,
    hold_ns: u64,
    /// How much older than a launch its recorded time may be ([`RECORD_PARTS_OF_HOLD`]).
    record_ns: u64,
    demand: Demand,
    /// This process's quota if it is latency-critical (0: none, or best-effort).
    quota: u32,
    /// Processes busy at this process's latest view ([`Board::busy_seen`]).
    busy_seen: std::sync::atomic::AtomicU32,
}

/// What this process's kernels need, kept across its threads: the most SMs any kernel needed
/// in the current hold (a span of the hold's length from its first launch) and in the hold
/// before it. A hold that begins after a pause has no hold before it whose need is known, so
/// until it ends its need is the whole device (`u32::MAX`): a process's first kernels after
/// a pause (a latency-critical request's first, say) are not taken for all it needs.
struct Demand {
    /// The current hold's most.
    sms: std::sync::atomic::AtomicU32,
    /// The hold before's most (`u32::MAX`: not known).
    before: std::sync::atomic::AtomicU32,
    /// When the current hold began (its first launch).
    since_ns: AtomicU64,
}

impl Default for Demand {
    fn default() -> Demand {
        Demand {
            sms: std::sync::atomic::AtomicU32::new(0),
            before: std::sync::atomic::AtomicU32::new(u32::MAX),
            since_ns: AtomicU64::new(0),
        }
    }
}

impl Demand {
    /// Notes a kernel needing `sms` at `now`; returns the demand.
    fn note(&self, now: u64, hold_ns: u64, sms: u32) -> u32 {
        let age = now.saturating_sub(self.since_ns.load(Ordering::Relaxed));
        if age >= hold_ns {
            // A new hold: this kernel's need alone, beside the last hold's if it ended just
            // now (a race with another thread's new hold loses at most one kernel's need
            // until the next).
            let before = if age < 2 * hold_ns { self.sms.load(Ordering::Relaxed) } else { u32::MAX };
            self.before.store(before, Ordering::Relaxed);
            self.since_ns.store(now, Ordering::Relaxed);
            self.sms.store(sms, Ordering::Relaxed);
        } else if sms > self.sms.load(Ordering::Relaxed) {
            // (Compared first: a locked read-modify-write on every launch costs more than the
            // rest of the note, and a need no greater than the most changes nothing.)
            self.sms.fetch_max(sms, Ordering::Relaxed);
        }
        // Read after the update: what every thread's kernels of both holds need.
        self.sms.load(Ordering::Relaxed).max(self.before.load(Ordering::Relaxed))
    }
}

/// Now, on the clock every process of the host shares.
pub(crate) use rightsize::runtime::monotonic_ns as now_ns;

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
        Ok(Board {
            slots,
            me,
            hold_ns,
            record_ns: (hold_ns / RECORD_PARTS_OF_HOLD).max(1),
            demand: Demand::default(),
            quota: critical_sms.unwrap_or(0),
            busy_seen: std::sync::atomic::AtomicU32::new(1),
        })
    }

    /// Records a launch at `now` of a kernel that needs `sms` SMs: the process's demand is the
    /// most any of its kernels needed within this hold and the one before ([`Demand`]).
    pub(crate) fn launched(&self, now: u64, sms: u32) {
        let slot = &self.slots[self.me];
        if now.saturating_sub(slot.last_ns.load(Ordering::Relaxed)) >= self.record_ns {
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
        let v = self.view_at(now);
        self.busy_seen.store(v.busy, Ordering::Relaxed);
        v
    }

    fn view_at(&self, now: u64) -> View {
        let mut v = View { critical: self.critical(self.me).is_some(), ..View::default() };
        // A busy latency-critical process's quota comes first: while one is busy with SMs kept
        // for it, starving processes share what it leaves as the other best-effort ones do.
        let critical_busy = self
            .slots
            .iter()
            .enumerate()
            .any(|(i, s)| self.active(i, s, now) && self.critical(i).is_some_and(|sms| sms > 0));
        for (i, s) in self.slots.iter().enumerate() {
            if !self.active(i, s, now) {
                continue;
            }
            v.busy += 1;
            // Busy only by waiting, with no launch within the hold, its need is not known.
            let demand = if self.launched_lately(s, now) { s.demand() } else { u32::MAX };
            let starving = if critical_busy { None } else { self.starving(i) };
            match (self.critical(i), starving) {
                // Its quota is the most kept free: what its recent kernels need, when less.
                (Some(sms), _) => v.reserved_sms = v.reserved_sms.saturating_add(sms.min(demand)),
                (None, Some(part)) => {
                    v.reserved_sms = v.reserved_sms.saturating_add(part.min(demand));
                    v.starving |= i == self.me;
                }
                (None, None) => {
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

    /// Whether slot `i` (`s`) is busy at `now`: this process always, another while one of its
    /// threads waits for the GPU or within the hold (and its tenth) after its last recorded launch.
    fn active(&self, i: usize, s: &Slot, now: u64) -> bool {
        i == self.me || s.waiting.load(Ordering::Relaxed) > 0 || self.launched_lately(s, now)
    }

    /// Whether `s`'s process launched within the hold (and its tenth) before `now`.
    fn launched_lately(&self, s: &Slot, now: u64) -> bool {
        now.saturating_sub(s.last_ns.load(Ordering::Relaxed)) < self.hold_ns + self.record_ns
    }

    /// Says how many times slower than alone this process gets its work done (`None`: not
    /// known).
    pub(crate) fn set_slowdown(&self, slowdown: Option<f64>) {
        let bits = slowdown.filter(|s| s.is_finite() && *s > 0.0).map_or(0, f64::to_bits);
        // Written only when it changes (it is said at every wait): each write takes the shared
        // line from the other processes, which then miss on their next look at the board.
        let slot = &self.slots[self.me];
        if slot.slowdown.load(Ordering::Relaxed) != bits {
            slot.slowdown.store(bits, Ordering::Relaxed);
        }
    }

    /// The least slowdown another busy best-effort process says at `now` (`None`: none says
    /// one).
    pub(crate) fn least_other_slowdown(&self, now: u64) -> Option<f64> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, s)| i != self.me && self.active(i, s, now) && self.critical(i).is_none())
            .map(|(_, s)| f64::from_bits(s.slowdown.load(Ordering::Relaxed)))
            .filter(|&x| x > 0.0)
            .min_by(f64::total_cmp)
    }

    /// Counts `launches` more of this process's work done: a period of them ended.
    pub(crate) fn done(&self, launches: u64) {
        self.slots[self.me].done.fetch_add(launches, Ordering::Relaxed);
    }

    /// The work every other best-effort process has got done so far (the launches of its
    /// ended periods), by slot; a process that never ended one is not listed.
    pub(crate) fn others_done(&self) -> Vec<(usize, u64)> {
        self.slots
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != self.me && self.critical(i).is_none())
            .map(|(i, s)| (i, s.done.load(Ordering::Relaxed)))
            .filter(|&(_, n)| n > 0)
            .collect()
    }

    /// The quota of slot `i`'s process if it is latency-critical.
    fn critical(&self, i: usize) -> Option<u32> {
        flagged(self.slots[i].critical_sms.load(Ordering::Relaxed), CRITICAL)
    }

    /// The part slot `i`'s process is owed if it is starving.
    fn starving(&self, i: usize) -> Option<u32> {
        flagged(self.slots[i].starving_sms.load(Ordering::Relaxed), STARVING)
    }

    /// Whether this process is latency-critical (its quota is kept free already).
    pub(crate) fn latency_critical(&self) -> bool {
        self.critical(self.me).is_some()
    }

    /// This process's quota if it is latency-critical (0: none, or best-effort).
    pub(crate) fn quota(&self) -> u32 {
        self.quota
    }

    /// Says how many SMs of this latency-critical process's quota the others keep free while it
    /// is busy: 0 releases it, and at most the quota is kept ([`crate::quota`]: its trial, and
    /// where its cost is weighed, its size); a best-effort process says nothing.
    pub(crate) fn keep_quota(&self, sms: u32) {
        if !self.latency_critical() {
            return;
        }
        let word = u64::from(sms.min(self.quota)) | CRITICAL;
        let slot = &self.slots[self.me];
        if slot.critical_sms.load(Ordering::Relaxed) != word {
            slot.critical_sms.store(word, Ordering::Relaxed);
        }
    }

    /// Whether the others keep this process's quota free while it is busy.
    #[cfg(test)]
    pub(crate) fn keeps_quota(&self) -> bool {
        self.critical(self.me).is_some_and(|sms| sms > 0)
    }

    /// Says this process starves and is owed `part` SMs, or (`None`) that it does not.
    pub(crate) fn set_starving(&self, part: Option<u32>) {
        let word = part.map_or(0, |sms| u64::from(sms) | STARVING);
        let slot = &self.slots[self.me];
        if slot.starving_sms.load(Ordering::Relaxed) != word {
            slot.starving_sms.store(word, Ordering::Relaxed);
        }
    }

    /// Whether this process says it starves.
    pub(crate) fn is_starving(&self) -> bool {
        self.starving(self.me).is_some()
    }

    /// The SMs this process's recent kernels need (as its slot says; `u32::MAX`: the device).
    pub(crate) fn need(&self) -> u32 {
        self.slots[self.me].demand()
    }

    /// Processes busy (this one included) at this process's latest view, from any thread.
    pub(crate) fn busy_seen(&self) -> u32 {
        self.busy_seen.load(Ordering::Relaxed)
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

#[cfg(test)]
impl Board {
    /// A board of `slots` zeroed slots in a new temporary file, this process in slot `me`,
    /// busy for 2 ms after a launch.
    pub(crate) fn for_test(slots: usize, me: usize) -> Board {
        Board::open(&Board::test_file(slots), me, 2_000_000, None).unwrap()
    }

    /// A new temporary board file of `slots` zeroed slots.
    pub(crate) fn test_file(slots: usize) -> std::path::PathBuf {
        static MADE: AtomicU64 = AtomicU64::new(0);
        let n = MADE.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rightsize-board-{}-{}-{n}", std::process::id(), now_ns()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("board");
        std::fs::write(&path, vec![0u8; slots * SLOT_BYTES]).unwrap();
        path
    }
}

/// The flag of a latency-critical slot's `critical_sms`.
const CRITICAL: u64 = 1 << 63;

/// The flag of a starving slot's `starving_sms`.
const STARVING: u64 = 1 << 63;

/// The SMs of a word that says them under `flag` (`None`: the flag is not set).
fn flagged(word: u64, flag: u64) -> Option<u32> {
    (word & flag != 0).then(|| u32::try_from(word & !flag).unwrap_or(u32::MAX))
}

impl Slot {
    /// The SMs its process's recent kernels need (`u32::MAX`: not said, the whole device).
    fn demand(&self) -> u32 {
        match self.demand_sms.load(Ordering::Relaxed) {
            0 => u32::MAX,
            sms => u32::try_from(sms).unwrap_or(u32::MAX),
        }
    }
}

/// The board as one launch sees it ([`Board::view`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct View {
    /// Processes busy, this one included.
    pub busy: u32,
    /// This process is latency-critical.
    pub critical: bool,
    /// This process starves ([`crate::starving`]): the others keep its part free.
    pub starving: bool,
    /// Busy best-effort processes not starving (this one included when it is one).
    pub best_effort: u32,
    /// This process's rank among them (those in lower slots).
    pub rank: u32,
    /// SMs kept free for the busy latency-critical processes (what their recent kernels need,
    /// at most their quotas) and the busy starving processes' parts (this one's included).
    pub reserved_sms: u32,
    /// The demands in SMs of the busy best-effort processes not starving, in slot order
    /// (`u32::MAX`: not said, the whole device); the first [`MAX_SHARERS`].
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
        Board::test_file(slots)
    }

    const HOLD: u64 = 2_000_000;

    /// `b` launches a kernel needing `sms` a hold before `t` and at `t`: a process launching
    /// without pause, whose need is known ([`Demand`]).
    fn steady(b: &Board, t: u64, sms: u32) {
        b.launched(t - HOLD, sms);
        b.launched(t, sms);
    }

    /// Three processes on a new board, the first latency-critical with `quota` if given.
    fn three(quota: Option<u32>) -> (Board, Board, Board) {
        let path = file(3);
        let open = |i, q| Board::open(&path, i, HOLD, q).unwrap();
        (open(0, quota), open(1, None), open(2, None))
    }

    #[test]
    fn the_work_the_best_effort_processes_got_done_is_read_by_slot() {
        let (lc, b, c) = three(Some(48));
        assert_eq!(lc.others_done(), vec![], "nothing done yet");
        b.done(10);
        b.done(5);
        lc.done(7);
        assert_eq!(lc.others_done(), vec![(1, 15)], "c has ended no period; lc's own is not listed");
        c.done(3);
        assert_eq!(lc.others_done(), vec![(1, 15), (2, 3)]);
        assert_eq!(b.others_done(), vec![(2, 3)], "a latency-critical process's work is not listed");
    }

    #[test]
    fn a_process_is_contended_while_another_launches_or_waits() {
        let hold = HOLD;
        let (a, b, c) = three(None);
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
        assert_eq!(busy(&b, t + hold + hold / 10), (1, 0), "a is idle after the hold (and its tenth)");
        {
            let _w = c.waiting();
            assert_eq!(busy(&a, t + 10 * hold), (2, 0), "c waits for the GPU: a ranks first");
            assert_eq!(busy(&b, t + 10 * hold), (2, 0), "b ranks before c");
        }
        assert_eq!(busy(&b, t + 10 * hold), (1, 0), "c stopped waiting");
        assert_eq!(a.len(), 3);
    }

    #[test]
    fn a_process_launching_without_pause_stays_busy_and_writes_its_time_seldom() {
        let path = file(2);
        let (a, b) = (Board::open(&path, 0, HOLD, None).unwrap(), Board::open(&path, 1, HOLD, None).unwrap());
        let t = now_ns();
        let (mut writes, mut recorded) = (0, 0);
        // A launch every microsecond for ten holds.
        for i in 0..20_000u64 {
            let now = t + i * 1_000;
            a.launched(now, 8);
            let r = a.slots[0].last_ns.load(Ordering::Relaxed);
            if r != recorded {
                (writes, recorded) = (writes + 1, r);
            }
            assert_eq!(b.view(now).busy, 2, "busy throughout");
        }
        assert_eq!(writes, 100, "its time written once a tenth of the hold, not at every launch");
        let last = t + 19_999_000;
        assert_eq!(b.view(last + HOLD - 1).busy, 2, "busy at least the hold after its last launch");
        assert_eq!(b.view(last + HOLD + HOLD / 10).busy, 1, "idle a tenth of the hold later");
    }

    #[test]
    fn a_latency_critical_process_keeps_its_quota_free_while_it_is_busy() {
        let hold = HOLD;
        let (lc, b, c) = three(Some(32));
        let t = now_ns();
        let alone = lc.view(t);
        assert!(alone.critical && alone.busy == 1 && alone.best_effort == 0 && alone.reserved_sms == 32);
        steady(&c, t, 40);
        assert_eq!(
            b.view(t),
            View {
                busy: 2,
                critical: false,
                starving: false,
                best_effort: 2,
                rank: 0,
                reserved_sms: 0,
                demands: demands(&[u32::MAX, 40])
            },
            "the latency-critical one is idle: nothing kept free; b has said no need yet"
        );
        steady(&lc, t, 8);
        steady(&b, t, 16);
        let want = |rank, reserved_sms| View {
            busy: 3,
            critical: false,
            starving: false,
            best_effort: 2,
            rank,
            reserved_sms,
            demands: demands(&[16, 40]),
        };
        assert_eq!(b.view(t), want(0, 8), "its kernels need 8 SMs: those are kept free");
        assert_eq!(c.view(t), want(1, 8));
        lc.launched(t + 1, 64);
        assert_eq!(b.view(t + 1), want(0, 32), "a kernel that needs more: at most its quota");
        assert_eq!(c.view(t + 1), want(1, 32));
        // A hold on, a small kernel: the hold before's need still counts.
        let next = t + HOLD;
        lc.launched(next, 8);
        steady(&b, next, 16);
        steady(&c, next, 40);
        assert_eq!(b.view(next).reserved_sms, 32, "the hold before needed more");
        lc.launched(next + HOLD, 8);
        assert_eq!(b.view(next + HOLD).reserved_sms, 8, "two holds of small kernels");
        // After a pause its need is not known: its first kernels keep the whole quota free.
        let later = next + 10 * HOLD;
        lc.launched(later, 8);
        steady(&b, later, 16);
        assert_eq!(b.view(later).reserved_sms, 32, "a request's first kernel is not all it needs");
        // Busy only by waiting, with no launch within the hold: not known either.
        let waiting = later + 3 * HOLD;
        lc.launched(waiting - 2 * HOLD, 8);
        lc.launched(waiting - HOLD - HOLD / 2, 8);
        steady(&b, waiting, 16);
        let _wait = lc.waiting();
        assert_eq!(b.view(waiting).reserved_sms, 32, "waiting, no launch within the hold");
        // A latency-critical process without a quota is one still.
        let path = file(2);
        let none = Board::open(&path, 0, hold, Some(0)).unwrap();
        assert!(none.view(t).critical);
        assert_eq!(none.view(t).reserved_sms, 0, "and keeps nothing free");
        // A quota released by its trial (crate::quota): still latency-critical, nothing kept;
        // kept again, the whole quota as before.
        assert!(lc.keeps_quota() && lc.quota() == 32);
        lc.keep_quota(0);
        assert!(!lc.keeps_quota() && lc.latency_critical() && lc.quota() == 32);
        assert_eq!(b.view(waiting).reserved_sms, 0, "released: nothing kept free");
        assert!(lc.view(waiting).critical);
        lc.keep_quota(lc.quota());
        assert_eq!(b.view(waiting).reserved_sms, 32);
        // Sized below the quota by its cost (crate::quota::sized), and never above it.
        lc.keep_quota(16);
        assert_eq!(b.view(waiting).reserved_sms, 16);
        lc.keep_quota(500);
        assert_eq!(b.view(waiting).reserved_sms, 32);
        b.keep_quota(8);
        assert!(!b.latency_critical() && b.quota() == 0, "a best-effort process says nothing");
    }

    #[test]
    fn a_starving_process_is_kept_its_part_while_it_is_busy() {
        let hold = HOLD;
        let (a, b, c) = three(None);
        let t = now_ns();
        steady(&a, t, 132);
        steady(&b, t, 24);
        steady(&c, t, 132);
        assert_eq!(b.view(t).reserved_sms, 0);
        assert_eq!(a.busy_seen(), 1, "a has not looked since it launched");
        b.set_starving(Some(40));
        let seen_by_a = a.view(t);
        assert_eq!(a.busy_seen(), 3);
        assert_eq!(
            (seen_by_a.busy, seen_by_a.best_effort, seen_by_a.rank, seen_by_a.reserved_sms, seen_by_a.starving),
            (3, 2, 0, 24, false),
            "b's part, at most what it needs, kept free; b is not a sharer"
        );
        assert_eq!(&seen_by_a.demands[..3], &[132, 132, 0], "the sharers' demands: a's and c's");
        assert_eq!(c.view(t).rank, 1);
        let own = b.view(t);
        assert!(own.starving && !own.critical && own.best_effort == 2);
        assert_eq!(b.need(), 24);
        // Idle, it is owed nothing; fed, nothing either.
        assert_eq!(a.view(t + hold + hold / 10).reserved_sms, 0);
        b.set_starving(None);
        assert!(!b.view(t).starving);
        assert_eq!(c.view(t).reserved_sms, 0);

        // Beside a busy latency-critical process, a starving one shares what its quota leaves.
        let (lc, b, c) = three(Some(32));
        b.launched(t, 132);
        c.launched(t, 132);
        b.set_starving(Some(40));
        assert_eq!(c.view(t).reserved_sms, 40, "the latency-critical one is idle");
        lc.launched(t, 64);
        let (vb, vc) = (b.view(t), c.view(t));
        assert_eq!((vb.starving, vb.best_effort, vb.rank, vb.reserved_sms), (false, 2, 0, 32));
        assert_eq!((vc.best_effort, vc.rank, vc.reserved_sms), (2, 1, 32));
        // Its quota released by its trial (crate::quota): nothing kept for it, so the starving
        // one is kept its part again.
        lc.keep_quota(0);
        let vb = b.view(t);
        assert_eq!((vb.starving, vb.best_effort, vb.reserved_sms), (true, 1, 40));
        assert_eq!(c.view(t).reserved_sms, 40);
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
        steady(&b, t, 132);
        let need = |t| a.view(t).demand(0);
        a.launched(t - hold, 16);
        assert_eq!(need(t - hold), u32::MAX, "a hold after a pause: not known until it ends");
        a.launched(t, 16);
        a.launched(t + 10, 48);
        a.launched(t + 20, 8);
        assert_eq!(need(t + 20), 48, "the most within the hold and the one before");
        assert_eq!(a.view(t + 20).demand(1), 132, "b's");
        assert_eq!(a.view(t + 20).demand(MAX_SHARERS as u32), u32::MAX, "beyond the kept ones: the device");
        a.launched(t + hold, 8);
        assert_eq!(need(t + hold), 48, "a new hold: the one before still counts");
        a.launched(t + 2 * hold, 8);
        assert_eq!(need(t + 2 * hold), 8, "a hold later, only the kernels since");
        a.launched(t + 5 * hold, 8);
        assert_eq!(need(t + 5 * hold), u32::MAX, "after a pause, not known again");

        // More busy processes than a view keeps: the first ones' demands stay theirs.
        let path = file(MAX_SHARERS + 2);
        let many: Vec<Board> = (0..MAX_SHARERS + 2).map(|i| Board::open(&path, i, hold, None).unwrap()).collect();
        for (i, b) in many.iter().enumerate() {
            steady(b, t, 8 * (i as u32 + 1));
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
