//! The multi-tenant harness: scenarios, sharing modes, the request loop, the one metrics
//! module and the comparison that runs them.
//!
//! - [`scenario`]: tenants, workloads and modes (TOML), and the embedded default set;
//! - [`drive`]: one tenant's request loop (closed or open loop), the same in every mode;
//! - [`fault`]: faults a scenario injects into a tenant, and failed requests;
//! - [`serve`]: a tenant's model on the GPU and what one request is; profiling a model;
//! - [`session`]: one tenant in one process — its fault, where its loop goes on from, its
//!   model and requests — the same for a tenant thread ([`inproc`]) and a worker ([`worker`]);
//! - [`inproc`]: the one-process modes (streams, static partitions, krisp policies);
//! - [`host`]: a one-process run in a child process, restarted after a kernel fault;
//! - [`worker`] and [`mps`]: the multi-process modes (time slicing, MPS, MPS with limits);
//! - [`child`]: the protocol of a child process, worker or host: its messages, the
//!   children running now; `supervisor` (private): the harness's side of it, one pass of children;
//! - [`torch`]: PyTorch tenants, a Python worker each, placed by the interposer under
//!   `static` and `krisp`;
//! - [`pcie`]: background host↔device copies;
//! - [`spec`]: a tenant's busy/idle phases and injected faults, as the scenario states them;
//! - [`metrics`]: latency, throughput, slowdown, STP, ANTT, fairness, SLO attainment;
//! - [`compare`] and [`output`]: solo baselines, every scenario under every mode, tables;
//! - [`sweep`]: load sweeps of open-loop scenarios (a search over repeated runs) and their
//!   SLO goodput;
//! - [`trace`] and [`counters`]: timeline traces of runs, GPU counters sampled during them;
//! - [`csv`]: the one CSV format of every table the harness writes (and `soak.csv` read back);
//! - [`plots`] and [`report`]: plots and a Markdown report of a results directory.

pub mod bad_input;
pub mod child;
pub mod compare;
pub mod counters;
pub mod csv;
pub mod drive;
pub mod fault;
pub mod frontier;
pub mod host;
pub mod inproc;
pub mod metrics;
pub mod mps;
pub mod output;
pub mod pcie;
pub mod plots;
mod progress;
pub mod report;
pub mod results;
pub mod rounds;
pub mod scenario;
pub mod serve;
pub mod session;
pub mod soak;
pub mod spec;
mod supervisor;
pub mod sweep;
pub mod torch;
pub mod trace;
pub mod worker;

pub use compare::{compare, CompareOptions};
pub use results::Report;
pub use scenario::{Mode, Scenario, ScenarioFile, Sharing, TenantSpec};
