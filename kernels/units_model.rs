//! A model of how the counted kernels hand out work units (kernels/common.cuh: `rs::Tickets`,
//! `rs::Taker`, and `rs::Units`' taking ahead), checked on the CPU: blocks as state machines
//! taking turns on one counter word in every order a seeded scheduler picks, claims that
//! appear and vanish at any read, and a continuation (`RsTicket.chain`) that runs after its
//! first launch. Blocks take either as `rs::Units` does (the next ticket and the claim read
//! as a group's last unit begins, used when it ends) or as the Hopper GEMM's producer does
//! (`Taker::take` when the units in hand are done). Whatever the order
//! and claims, every unit is done exactly once and the counter is zero at the end, so the next
//! launch on the stream starts from a clean word. The GPU tests check the kernels themselves
//! (tests/gpu/claims.rs); this checks the protocol they follow, over far more interleavings.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// `rs::Tickets`: how the units after each block's first are handed out (`first`: how many
/// units are blocks' first units; `grid`: the grid the tail of single units is sized by).
#[derive(Debug, Clone, Copy)]
struct Tickets {
    big: u64,
    group: u64,
    first: u64,
}

impl Tickets {
    fn new(units: u64, group: u64, first: u64, grid: u64) -> Tickets {
        let rest = units - first;
        let tail = group * grid;
        Tickets { big: if rest > tail { (rest - tail) / group } else { 0 }, group, first }
    }
    fn count(&self, units: u64) -> u64 {
        self.big + (units - self.first - self.big * self.group)
    }
    fn first_of(&self, i: u64) -> u64 {
        self.first + if i < self.big { i * self.group } else { self.big * self.group + (i - self.big) }
    }
    fn size(&self, i: u64) -> u64 {
        if i < self.big {
            self.group
        } else {
            1
        }
    }
}

/// `RsTicket.chain`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Chain {
    Alone,
    Followed,
    Continues(u64),
}

/// One block: `rs::Taker` and the units it holds.
#[derive(Debug, Clone)]
struct Block {
    /// Units still to do of the ticket in hand: (next unit, how many left).
    hand: Option<(u64, u64)>,
    /// The ticket taken ahead (the counter before it) and what the claim read with it found.
    ahead: Option<(u64, bool)>,
    leaving: bool,
    last: bool,
    gone: bool,
}

struct Launch {
    units: u64,
    group: u64,
    grid: u64,
    chain: Chain,
    /// Whether blocks take ahead (`rs::Units`) or when their hand is empty (`Taker::take`).
    ahead: bool,
    blocks: Vec<Block>,
}

impl Launch {
    fn new(units: u64, group: u64, grid: u64, chain: Chain, ahead: bool) -> Launch {
        // A launch that takes all (followed, or a continuation) does no first unit.
        let first = |b: u64| match chain {
            Chain::Alone => (b < units).then_some((b, 1)),
            _ => None,
        };
        let blocks = (0..grid)
            .map(|b| Block { hand: first(b), ahead: None, leaving: false, last: false, gone: false })
            .collect();
        Launch { units, group, grid, chain, ahead, blocks }
    }

    /// `first_units`: units 0 … this - 1 are blocks' first units.
    fn first_units(&self) -> u64 {
        match self.chain {
            Chain::Alone => self.grid,
            _ => 0,
        }
    }

    /// `layout_grid`: the grid the tickets are laid out by.
    fn layout_grid(&self) -> u64 {
        match self.chain {
            Chain::Continues(g) => g,
            _ => self.grid,
        }
    }

    fn tickets(&self) -> Tickets {
        Tickets::new(self.units, self.group, self.first_units(), self.layout_grid())
    }

    fn followed(&self) -> bool {
        self.chain == Chain::Followed
    }

    /// `Taker::units_of` after the take that read `old`: the ticket, or none (and the last
    /// block out leaves the word).
    fn units_of(&mut self, b: usize, counter: &mut u64, old: u64) {
        let plan = self.tickets();
        let (taken, tickets) = (old & 0xffff_ffff, plan.count(self.units));
        if taken < tickets {
            self.blocks[b].hand = Some((plan.first_of(taken), plan.size(taken)));
            return;
        }
        if self.blocks[b].last || (taken - tickets) + (old >> 32) == self.grid - 1 {
            *counter = if self.followed() { tickets } else { 0 };
        }
        self.blocks[b].gone = true;
    }

    /// One step of block `b` with its hand empty: `Taker::take`, with `claimed` what its read of
    /// the claim found.
    fn take(&mut self, b: usize, counter: &mut u64, claimed: bool) {
        let blk = &mut self.blocks[b];
        if !blk.last && claimed {
            blk.leaving = true;
        }
        if blk.leaving && !blk.last {
            let old = *counter;
            *counter += 1 << 32;
            let tickets = self.tickets().count(self.units);
            let taken = old & 0xffff_ffff;
            let found_none = taken.saturating_sub(tickets);
            let last_out = found_none + (old >> 32) == self.grid - 1;
            if self.followed() || !last_out {
                if last_out {
                    *counter = taken.min(tickets);
                }
                self.blocks[b].gone = true;
                return;
            }
            self.blocks[b].last = true;
        }
        let old = *counter;
        *counter += 1;
        self.units_of(b, counter, old);
    }

    fn dynamic(&self) -> bool {
        self.units > self.first_units()
    }

    fn done(&self) -> bool {
        self.blocks.iter().all(|b| b.gone)
    }

    /// Runs the launch to its end on `counter`, the scheduler picking which block moves and
    /// whether each claim read finds a claim (`claim_odds` of the time); adds each unit done to
    /// `done`.
    fn run(&mut self, counter: &mut u64, rng: &mut StdRng, claim_odds: f64, done: &mut [u32]) {
        if !self.dynamic() {
            // The plain order: block b does b, b + grid, …; a launch that takes all has no units.
            if self.chain == Chain::Alone {
                for u in 0..self.units {
                    done[u as usize] += 1;
                }
            }
            return;
        }
        while !self.done() {
            let live: Vec<usize> = (0..self.blocks.len()).filter(|&b| !self.blocks[b].gone).collect();
            let b = live[rng.random_range(0..live.len())];
            let blk = &self.blocks[b];
            match (blk.hand, blk.ahead) {
                // `Units::begin` of a ticket's last unit: the next ticket and the claim, ahead.
                (Some((_, 1)), None) if self.ahead && !blk.leaving && !blk.last => {
                    let old = *counter;
                    *counter += 1;
                    self.blocks[b].ahead = Some((old, rng.random_bool(claim_odds)));
                }
                (Some((unit, left)), _) => {
                    done[unit as usize] += 1;
                    self.blocks[b].hand = (left > 1).then_some((unit + 1, left - 1));
                }
                // `Units::next` after it: the ticket taken ahead; a claim makes it leave after.
                (None, Some((old, claimed))) => {
                    self.blocks[b].ahead = None;
                    self.units_of(b, counter, old);
                    if claimed {
                        self.blocks[b].leaving = true;
                    }
                }
                (None, None) => {
                    let claimed = rng.random_bool(claim_odds);
                    self.take(b, counter, claimed);
                }
            }
        }
    }
}

/// Runs a launch and, when `followed`, its continuation after it, their blocks taking ahead
/// or not; returns the counter at the end and how often each unit was done.
fn launch_and_continue(
    units: u64,
    group: u64,
    grids: (u64, u64),
    followed: bool,
    ahead: bool,
    rng: &mut StdRng,
    odds: (f64, f64),
) -> (u64, Vec<u32>) {
    let mut counter = 0u64;
    let mut done = vec![0u32; units as usize];
    let chain = if followed { Chain::Followed } else { Chain::Alone };
    let mut first = Launch::new(units, group, grids.0, chain, ahead);
    first.run(&mut counter, rng, odds.0, &mut done);
    if followed {
        let mut cont = Launch::new(units, group, grids.1, Chain::Continues(grids.0), ahead);
        cont.run(&mut counter, rng, odds.1, &mut done);
    }
    (counter, done)
}

#[test]
fn every_unit_is_done_once_and_the_counter_ends_at_zero_in_any_order_and_under_any_claims() {
    let mut rng = StdRng::seed_from_u64(0x5eed_c1a1);
    for case in 0..20_000 {
        let grid = rng.random_range(1..12u64);
        let units = rng.random_range(1..6 * grid + 40);
        let group = [1, 2, 4, 8][rng.random_range(0..4)];
        let followed = rng.random_bool(0.5);
        let ahead = rng.random_bool(0.5);
        let cont_grid = rng.random_range(1..12u64);
        // Claims from none to nearly every read; the continuation's SMs are claimed less often.
        let odds = (rng.random_range(0.0..1.0), rng.random_range(0.0..0.9));
        let (counter, done) = launch_and_continue(units, group, (grid, cont_grid), followed, ahead, &mut rng, odds);
        let what = format!(
            "case {case}: {units} units, group {group}, grid {grid}, followed {followed} by {cont_grid} blocks, \
             ahead {ahead}, claims {odds:?}"
        );
        assert!(done.iter().all(|&d| d == 1), "{what}: units done {done:?}");
        assert_eq!(counter, 0, "{what}: the counter ends at {counter:#x}");
    }
}

#[test]
fn a_launch_whose_every_read_finds_a_claim_is_finished_by_its_continuation() {
    let mut rng = StdRng::seed_from_u64(7);
    let (units, grid) = (200u64, 8u64);
    // Alone, the last block out does what the others left.
    let mut counter = 0;
    let mut done = vec![0u32; units as usize];
    let mut alone = Launch::new(units, 1, grid, Chain::Alone, true);
    alone.run(&mut counter, &mut rng, 1.0, &mut done);
    assert!(done.iter().all(|&d| d == 1) && counter == 0);
    // Followed: every block of the first launch reads the claim before its first take and
    // leaves with nothing done (the work on a claimed SM is not touched), the last one out
    // leaves the word at the tickets taken (none), and the continuation, whose SMs nobody
    // claims, does all 200.
    let (mut counter, mut done) = (0, vec![0u32; units as usize]);
    let mut first = Launch::new(units, 1, grid, Chain::Followed, true);
    first.run(&mut counter, &mut rng, 1.0, &mut done);
    assert_eq!(done.iter().sum::<u32>(), 0, "no unit done on a claimed SM");
    assert_eq!(counter, 0, "no ticket taken, no block in");
    let mut cont = Launch::new(units, 1, 4, Chain::Continues(grid), true);
    cont.run(&mut counter, &mut rng, 0.0, &mut done);
    assert!(done.iter().all(|&d| d == 1) && counter == 0);
}

/// A launch alone given a continuation's chain (its own grid) from a zeroed counter takes every
/// unit from the counter, reading the claim before its first one too, even at one unit a block;
/// and its last block out does what the others left, claims or not. So such a launch, with no
/// launch before it and no continuation after it, gives up a claimed SM before touching its
/// work and still does every unit once: what a best-effort kernel of one round would need for a
/// claim to move its work (docs/harness-h200.md, 2026-11-28).
#[test]
fn a_launch_with_its_own_grid_as_its_chain_reads_the_claim_first_and_finishes_alone() {
    let mut rng = StdRng::seed_from_u64(0x0e_70d0);
    for case in 0..20_000 {
        let grid = rng.random_range(1..12u64);
        // One round (a unit a block) as often as more.
        let units = if rng.random_bool(0.5) { grid } else { rng.random_range(1..6 * grid + 40) };
        let group = [1, 2, 4, 8][rng.random_range(0..4)];
        let ahead = rng.random_bool(0.5);
        let odds = rng.random_range(0.0..1.0);
        let (mut counter, mut done) = (0u64, vec![0u32; units as usize]);
        Launch::new(units, group, grid, Chain::Continues(grid), ahead).run(&mut counter, &mut rng, odds, &mut done);
        let what = format!("case {case}: {units} units, group {group}, grid {grid}, ahead {ahead}, claims {odds}");
        assert!(done.iter().all(|&d| d == 1), "{what}: units done {done:?}");
        assert_eq!(counter, 0, "{what}: the counter ends at {counter:#x}");
    }
    // Every read finds a claim: only the last block out does any unit, all of them.
    let (units, grid) = (16u64, 16u64);
    let (mut counter, mut done) = (0u64, vec![0u32; units as usize]);
    let mut launch = Launch::new(units, 1, grid, Chain::Continues(grid), false);
    launch.run(&mut counter, &mut rng, 1.0, &mut done);
    assert!(done.iter().all(|&d| d == 1) && counter == 0);
    assert_eq!(launch.blocks.iter().filter(|b| b.last).count(), 1, "one block did the work");
}
