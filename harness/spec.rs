//! What a scenario's tenant does over time and what goes wrong in it: data that the
//! scenario file states and the execution modules act on (`drive` for the phases, `fault` for
//! the faults), kept apart from both so that the scenario's types import no execution module.

/// A tenant that alternates busy and idle phases (a time-varying load): from `offset_s` after
/// the start, `busy_s` seconds of requests, then `idle_s` seconds of none, and again; before
/// `offset_s` it is idle.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Phases {
    /// Length of each busy phase, seconds.
    pub busy_s: f64,
    /// Length of each idle phase, seconds.
    pub idle_s: f64,
    /// When the first busy phase starts, seconds after the start.
    #[serde(default)]
    pub offset_s: f64,
}

impl Phases {
    /// The first time ≥ `t` (seconds after the start) that lies in a busy phase.
    pub fn next_busy(&self, t: f64) -> f64 {
        if t < self.offset_s {
            return self.offset_s;
        }
        let period = self.busy_s + self.idle_s;
        let into = (t - self.offset_s) % period;
        if into < self.busy_s {
            t
        } else {
            t + period - into
        }
    }

    /// The time after the start at which `busy` seconds of busy phases have passed (so open-loop
    /// arrivals drawn on busy time land in busy phases only).
    pub fn at_busy_time(&self, busy: f64) -> f64 {
        let periods = (busy / self.busy_s).floor();
        self.offset_s + periods * (self.busy_s + self.idle_s) + (busy - periods * self.busy_s)
    }
}

/// What goes wrong, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// The kind of fault.
    pub kind: FaultKind,
    /// The request it happens in, counting from 1 (warm-up requests included).
    pub at: u32,
}

/// The kinds of injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// A kernel writes far out of bounds (a test-only kernel): the context is lost.
    Kernel,
    /// The request asks for more device memory than the GPU has.
    Oom,
    /// The request is larger than the tenant's model and workspace take (one sequence too many).
    Invalid,
}
