//! What [`KrispShare`](super::KrispShare) sizes windows by: each tenant's [`Share`], its
//! [`Speeds`], and the arithmetic that turns them into group counts.

use super::super::{PriorityClass, Topology};

/// The share of its objective a latency-critical tenant's request may take, beside a
/// co-runner, on its quota for the tenant to be bounded to its window ([`Share::bounded`]):
/// the rest is left to queueing and the tail.
pub const BOUNDED_SLO_SHARE: f64 = 0.5;

/// Whether a request whose times beside a co-runner are `beside` (`(sms, µs)`, ascending; a
/// profile's request curve) meets `slo_ms` × [`BOUNDED_SLO_SHARE`] on `sms` SMs, judged at the
/// largest profiled count not above it (none: no): whether a latency-critical tenant with a
/// quota of `sms` may be [`Share::bounded`].
pub fn meets_on(beside: &[(u32, f64)], sms: u32, slo_ms: f64) -> bool {
    beside.iter().rev().find(|p| p.0 <= sms).is_some_and(|p| p.1 > 0.0 && p.1 <= slo_ms * 1e3 * BOUNDED_SLO_SHARE)
}

/// One tenant as [`KrispShare`](super::KrispShare) sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Share {
    /// Its class: latency-critical tenants are laid out first and go out at high priority.
    pub class: PriorityClass,
    /// Groups guaranteed to it whenever it contends; `None`: its part of what the quotas of
    /// the contending tenants leave (by speeds where every taker has them, else equal).
    pub quota: Option<u32>,
    /// A latency-critical tenant whose objective its quota already meets: it runs on its
    /// window (its quota while others contend, more as they go idle), at high priority and
    /// never borrowing, instead of on the whole device. Ignored for best-effort tenants.
    pub bounded: bool,
}

/// How fast a tenant's requests run on a window of each size, relative to the whole device:
/// from the request's time on each profiled SM count (its profile's request curve).
#[derive(Debug, Clone, PartialEq)]
pub struct Speeds {
    /// `plain[g - 1]`: on `g` groups.
    plain: Vec<f64>,
    /// `rest[g - 1]`: on `g` groups and the split's remaining SMs.
    rest: Vec<f64>,
}

impl Speeds {
    /// Speeds on `topo`'s windows from a request's time on SM counts (`(sms, µs)`, ascending),
    /// interpolated linearly between counts and held flat beyond them; `None` without two
    /// positive times to go by.
    pub fn from_times(times: &[(u32, f64)], topo: &Topology) -> Option<Speeds> {
        let pts: Vec<(f64, f64)> = times.iter().filter(|p| p.1 > 0.0).map(|&(s, us)| (f64::from(s), us)).collect();
        if pts.len() < 2 || pts.windows(2).any(|w| w[0].0 >= w[1].0) {
            return None;
        }
        let at = |sms: f64| -> f64 {
            let i = pts.partition_point(|p| p.0 < sms);
            match (pts.get(i.wrapping_sub(1)), pts.get(i)) {
                (Some(a), Some(b)) => a.1 + (b.1 - a.1) * (sms - a.0) / (b.0 - a.0),
                (None, Some(b)) => b.1,
                (Some(a), None) => a.1,
                (None, None) => f64::NAN,
            }
        };
        let total = f64::from(topo.sms());
        let whole = at(total);
        let speed = |sms: u32| whole / at(f64::from(sms));
        let plain = (1..=topo.groups).map(|g| speed(g * topo.granularity)).collect();
        let rest = (1..=topo.groups).map(|g| speed(g * topo.granularity + topo.rest_sms)).collect();
        Some(Speeds { plain, rest })
    }

    /// Speed on `g` groups (at least one), with the remaining SMs or not.
    pub fn on(&self, g: u32, rest: bool) -> f64 {
        let v = if rest { &self.rest } else { &self.plain };
        v.get(g.max(1) as usize - 1).or(v.last()).copied().unwrap_or(1.0)
    }
}

/// Cuts the largest of the sizes of `set` (by id, the lowest id first on ties) by a group
/// at a time until they add up to at most `budget`; a size of one group is cut only when all
/// are (so with no fewer groups than members, none goes below one).
pub(super) fn cut_to_fit(set: u64, size: &mut [u32; 64], budget: u32) {
    while ids(set).map(|t| size[t]).sum::<u32>() > budget {
        match ids(set).filter(|&t| size[t] > 0).max_by_key(|&t| (size[t], std::cmp::Reverse(t))) {
            Some(largest) => size[largest] -= 1,
            None => return,
        }
    }
}

/// Splits `left` groups among the takers `tk` (their speeds `sp`, sizes so far `size` by id)
/// to maximize Σ log speed, each taker with no groups yet getting at least one; `last` is laid
/// last and has the split's remaining SMs too. Exact (dynamic programming over takers and
/// groups), so steps in the speed curves do not trap it.
pub(super) fn share_out(tk: &[usize], sp: &[&Speeds], size: &[u32; 64], left: u32, last: usize) -> Option<Vec<u32>> {
    let (m, r) = (tk.len(), left as usize);
    // best[j][x]: the best sum over the first j takers using x groups; pick[j][x]: taker j-1's.
    let mut best = vec![vec![f64::NEG_INFINITY; r + 1]; m + 1];
    let mut pick = vec![vec![0u32; r + 1]; m + 1];
    best[0][0] = 0.0;
    for j in 0..m {
        let t = tk[j];
        let lo = u32::from(size[t] == 0) as usize;
        for used in 0..=r {
            if best[j][used] == f64::NEG_INFINITY {
                continue;
            }
            for x in lo..=r - used {
                let v = best[j][used] + sp[j].on(size[t] + x as u32, t == last).max(f64::MIN_POSITIVE).ln();
                if v > best[j + 1][used + x] {
                    best[j + 1][used + x] = v;
                    pick[j + 1][used + x] = x as u32;
                }
            }
        }
    }
    // Every group is handed out; none if some taker would be left without a group.
    if best[m][r] == f64::NEG_INFINITY {
        return None;
    }
    let (mut used, mut out) = (r, vec![0u32; m]);
    for j in (1..=m).rev() {
        out[j - 1] = pick[j][used];
        used -= pick[j][used] as usize;
    }
    Some(out)
}

/// The tenant ids of a set (a bit per id), ascending.
pub(super) fn ids(mut set: u64) -> impl Iterator<Item = usize> {
    std::iter::from_fn(move || {
        (set != 0).then(|| {
            let t = set.trailing_zeros() as usize;
            set &= set - 1;
            t
        })
    })
}
