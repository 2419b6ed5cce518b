//! One tenant's session in one process, the same whether the tenant is a thread of a
//! one-process run ([`super::inproc`]) or a worker process of its own ([`super::worker`]): where
//! its loop goes on from and its injected fault, its model (loaded and warmed up, unless its
//! kernel faulted in an earlier process), its requests through the loop, and what it leaves for
//! the run's results. Each caller loads the model its own way, and decides what an error of a
//! request means to it: the two differ on a lost context.

use anyhow::Context as _;

use super::drive::{drive_with, Gate, Interrupted, LoopSpec, Position, Sink, TenantState};
use super::fault::Faults;
use super::metrics::Sample;
use super::scenario::TenantSpec;
use super::serve::Served;
use super::trace::{RequestSpan, Spans};
use crate::runtime::Tenant;

/// The loop of `tenant`: the run's warm-up, counted requests, arrival seed and duration, with
/// the tenant's own rate, phases and queue limit.
pub fn loop_spec(tenant: &TenantSpec, warmup: u32, requests: u32, seed: u64, duration_s: Option<f64>) -> LoopSpec {
    LoopSpec {
        warmup,
        requests,
        rate: tenant.rate,
        seed,
        duration: duration_s.map(std::time::Duration::from_secs_f64),
        phases: tenant.phases,
        queue_limit: tenant.queue_limit,
    }
}

/// One tenant's session in one process: see the module's documentation.
#[derive(Debug)]
pub struct Session {
    /// Where its loop goes on from (the start, in a run's first process).
    from: Position,
    faults: Faults,
    /// Its model; `None` when its kernel faulted in an earlier process (or once unloaded).
    loaded: Option<(Tenant, Served)>,
    spans: Spans,
    /// When it first served a request in this process, seconds after the common start.
    first_served: Option<f64>,
}

/// What a session leaves for the run's results.
#[derive(Debug)]
pub struct SessionOutcome {
    /// Its requests' spans (empty unless traced).
    pub spans: Vec<RequestSpan>,
    /// Why its first failed request failed, if one did.
    pub failure: Option<String>,
    /// When it first served a request in this process, seconds after the common start.
    pub first_served: Option<f64>,
    /// Where its loop stood and its faults, for a process that goes on with the run.
    pub state: TenantState,
}

impl Session {
    /// The session of `tenant`, going on from `resume` (where an earlier process left it) or
    /// from the start. Unless its kernel faulted in an earlier process, `load` loads its model,
    /// which then serves one request before the start (first-launch costs are not counted);
    /// their errors are returned as they are.
    pub fn new(
        tenant: &TenantSpec,
        resume: Option<TenantState>,
        traced: bool,
        load: impl FnOnce() -> anyhow::Result<(Tenant, Served)>,
    ) -> anyhow::Result<Session> {
        let (from, faults) = match resume {
            Some(st) => (st.position, st.faults),
            None => (Position::default(), Faults::new(tenant.fault)),
        };
        // A tenant whose kernel faulted in an earlier process loads nothing.
        let loaded = if faults.stopped() {
            None
        } else {
            let (t, served) = load()?;
            // One request before the start: first-launch costs are not counted.
            served.request(&t)?;
            Some((t, served))
        };
        Ok(Session { from, faults, loaded, spans: Spans::new(traced), first_served: None })
    }

    /// Its tenant handle, while its model is loaded.
    pub fn tenant(&self) -> Option<&Tenant> {
        self.loaded.as_ref().map(|(t, _)| t)
    }

    /// Runs its loop ([`drive_with`]) from where it stood. Once its kernel has faulted, each
    /// request is refused with its fault's refusal; once the gate says the run was
    /// interrupted, the loop stops where it stands; else its model serves the request,
    /// `before_first` being called just before the first. `on_error` says what an error of a
    /// served request becomes (counted as failed, [`Interrupted`], or the end of the loop),
    /// given the faults as that request left them: the callers differ on a lost context.
    pub fn drive(
        &mut self,
        spec: &LoopSpec,
        gate: &dyn Gate,
        sink: Option<Sink<'_>>,
        before_first: impl FnOnce(&Tenant),
        mut on_error: impl FnMut(anyhow::Error, &Faults) -> anyhow::Error,
    ) -> anyhow::Result<(Vec<Sample>, Position)> {
        let Session { from, faults, loaded, spans, first_served } = self;
        let mut before_first = Some(before_first);
        // Each served request's latency goes to its tenant (`Tenant::observe`: its pressure, and
        // krisp's layout trial).
        let tenant = loaded.as_ref().map(|(t, _)| t);
        let observe = |latency: f64| {
            if let Some(t) = tenant {
                t.observe(std::time::Duration::from_secs_f64(latency.max(0.0)));
            }
        };
        // A request that is behind (it queued, or another arrived behind it) asks its tenant to
        // protect it (`Tenant::protect_next`: where the policy hushes best-effort work).
        let behind = |b: bool| {
            if let (true, Some(t)) = (b, tenant) {
                t.protect_next();
            }
        };
        drive_with(
            spec,
            gate,
            sink,
            from,
            || {
                if faults.stopped() {
                    return Err(faults.refusal().into());
                }
                if gate.interrupted() {
                    return Err(Interrupted.into());
                }
                let (t, served) = loaded.as_ref().context("the tenant has no model loaded")?;
                if let Some(f) = before_first.take() {
                    f(t);
                }
                match spans.request(t, || faults.request(t, served)) {
                    Ok(()) => {
                        first_served.get_or_insert_with(|| gate.since_start());
                        Ok(())
                    }
                    Err(e) => Err(on_error(e, faults)),
                }
            },
            observe,
            Some(behind),
        )
    }

    /// Takes its model out, for the caller to free when it may (freeing synchronizes the
    /// device).
    pub fn unload(&mut self) -> Option<(Tenant, Served)> {
        self.loaded.take()
    }

    /// What it leaves for the results, its loop having stopped at `position`.
    pub fn end(self, position: Position) -> SessionOutcome {
        SessionOutcome {
            spans: self.spans.into_vec(),
            failure: self.faults.first_failure().map(str::to_owned),
            first_served: self.first_served,
            state: TenantState { position, faults: self.faults },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    use super::*;
    use crate::harness::spec::Phases;

    /// The gate of a tenant alone: its loop stops once it has counted.
    struct Alone {
        start: Instant,
        finished: AtomicBool,
    }

    impl Alone {
        fn new() -> Alone {
            Alone { start: Instant::now(), finished: AtomicBool::new(false) }
        }
    }

    impl Gate for Alone {
        fn start(&self) -> anyhow::Result<Instant> {
            Ok(self.start)
        }
        fn finished(&self) {
            self.finished.store(true, Ordering::SeqCst);
        }
        fn stopped(&self) -> bool {
            self.finished.load(Ordering::SeqCst)
        }
        fn since_start(&self) -> f64 {
            self.start.elapsed().as_secs_f64()
        }
    }

    fn tenant(toml_text: &str) -> TenantSpec {
        toml::from_str(toml_text).unwrap()
    }

    /// Where a tenant whose kernel faulted at its 3rd request stood after 7 requests.
    fn faulted() -> TenantState {
        let json = r#"{"position": {"issued": 7, "drawn": 7, "waiting": [], "upcoming": null, "done": false,
            "counting": true, "counted": 2},
            "faults": {"spec": {"kind": "kernel", "at": 3}, "issued": 3,
            "stopped": "the tenant stopped: its kernel faulted (an illegal address)",
            "first_failure": "an injected kernel fault: an illegal address"}}"#;
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn a_tenant_whose_kernel_faulted_loads_nothing_and_refuses_every_request() {
        let spec = tenant("model = \"gpt2\"\nrate = 2000.0\nfault = { kind = \"kernel\", at = 3 }");
        let mut session = Session::new(&spec, Some(faulted()), false, || panic!("it loads nothing")).unwrap();
        assert!(session.tenant().is_none());
        // An open loop, so that every arrival is issued and refused (a closed loop stops at the
        // first refusal); 2 of its 5 requests were counted in the earlier process.
        let loop_spec = loop_spec(&spec, 0, 5, 1, None);
        let (samples, position) = session
            .drive(&loop_spec, &Alone::new(), None, |_| panic!("it serves nothing"), |e, _| panic!("{e:#}"))
            .unwrap();
        assert_eq!(samples.len(), 3);
        assert!(samples.iter().all(|s| s.failed));
        assert_eq!((position.issued, position.counted, position.done), (10, 5, true));
        let end = session.end(position.clone());
        assert!(end.state.faults.stopped());
        assert_eq!(end.state.position, position);
        assert_eq!(end.failure.as_deref(), Some("an injected kernel fault: an illegal address"));
        assert_eq!(end.first_served, None);
        assert!(end.spans.is_empty());
    }

    #[test]
    fn a_tenant_that_still_serves_loads_its_model_resumed_or_not() {
        let spec = tenant("model = \"gpt2\"\nfault = { kind = \"oom\", at = 3 }");
        let resumed = TenantState { faults: Faults::new(spec.fault), ..TenantState::default() };
        for resume in [None, Some(resumed)] {
            let mut loads = 0;
            let e = Session::new(&spec, resume, false, || {
                loads += 1;
                anyhow::bail!("no GPU here")
            })
            .unwrap_err();
            assert_eq!((loads, format!("{e:#}")), (1, "no GPU here".to_owned()));
        }
    }

    #[test]
    fn its_loop_has_the_runs_counts_and_the_tenants_arrivals() {
        let spec = tenant(
            "model = \"gpt2\"\nrate = 50.0\nqueue_limit = 4\nphases = { busy_s = 1.0, idle_s = 0.5 }\n\
             fault = { kind = \"kernel\", at = 3 }",
        );
        let phases = Phases { busy_s: 1.0, idle_s: 0.5, offset_s: 0.0 };
        assert_eq!(
            loop_spec(&spec, 2, 10, 7, Some(1.5)),
            LoopSpec {
                warmup: 2,
                requests: 10,
                rate: Some(50.0),
                seed: 7,
                duration: Some(Duration::from_millis(1500)),
                phases: Some(phases),
                queue_limit: Some(4),
            }
        );
    }
}
