//! Every tenant's kernel launches so far, for `soak --launches` (runs under a sanitizer: to
//! see which launch holds them).

use std::borrow::Cow;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::runtime::policy::TenantId;
use crate::runtime::{LaunchRecord, TraceSink};

/// One tenant's launches so far.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TenantLaunches {
    /// How many.
    pub count: u64,
    /// The last one's kernel and how long before the report it was issued.
    pub last: Option<(Cow<'static, str>, Duration)>,
}

/// Every tenant's launches, as the runtime tells them before issuing each
/// ([`TraceSink::issuing`]; so a launch that blocks is the last one even while it runs): a
/// count and the last one's kernel and time, behind a lock of the tenant's own (taken once per
/// launch, and by the reader once per window).
#[derive(Debug)]
pub struct LaunchWatch {
    tenants: Vec<Mutex<Watched>>,
}

/// One tenant's launches in a [`LaunchWatch`].
#[derive(Debug, Default, Clone)]
struct Watched {
    count: u64,
    last: Option<(Cow<'static, str>, Instant)>,
}

impl LaunchWatch {
    /// A watch of `tenants` tenants (ids `0..tenants`; launches of others are not counted).
    pub fn new(tenants: usize) -> LaunchWatch {
        LaunchWatch { tenants: (0..tenants).map(|_| Mutex::default()).collect() }
    }

    /// Every tenant's launches so far, their last one's age taken at `now`.
    pub fn at(&self, now: Instant) -> Vec<TenantLaunches> {
        self.tenants
            .iter()
            .map(|t| {
                let Watched { count, last } = t.lock().clone();
                TenantLaunches { count, last: last.map(|(k, at)| (k, now.saturating_duration_since(at))) }
            })
            .collect()
    }
}

impl TraceSink for LaunchWatch {
    fn launch(&self, _: &LaunchRecord) {}

    fn issuing(&self, tenant: TenantId, name: Cow<'static, str>) {
        if let Some(t) = self.tenants.get(tenant as usize) {
            let mut t = t.lock();
            t.count += 1;
            t.last = Some((name, Instant::now()));
        }
    }
}

/// One line of every tenant's launches: `INDEX LABEL: N launches, last KERNEL S s ago; …`.
pub fn launches_line(labels: &[String], launches: &[TenantLaunches]) -> String {
    let tenant = |(i, (label, l)): (usize, (&String, &TenantLaunches))| {
        let last =
            l.last.as_ref().map_or(String::new(), |(k, ago)| format!(", last {k} {:.0} s ago", ago.as_secs_f64()));
        format!("{i} {label}: {} launches{last}", l.count)
    };
    labels.iter().zip(launches).enumerate().map(tenant).collect::<Vec<_>>().join("; ")
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn a_launch_watch_counts_each_tenants_launches_and_names_its_last() {
        let watch = Arc::new(LaunchWatch::new(2));
        let sink: Box<dyn TraceSink> = Box::new(watch.clone());
        sink.issuing(1, "layer_norm_f16".into());
        sink.issuing(1, "cublasLt".into());
        sink.issuing(5, "plan".into()); // not a tenant of the watch: not counted
        let later = Instant::now() + Duration::from_secs(3);
        let got = watch.at(later);
        assert_eq!(got[0], TenantLaunches::default());
        assert_eq!(got[1].count, 2);
        let (kernel, ago) = got[1].last.clone().unwrap();
        assert_eq!(kernel, "cublasLt");
        assert!((3.0..4.0).contains(&ago.as_secs_f64()), "{ago:?}");
        let labels = ["bert-base".to_string(), "gpt2-medium".to_string()];
        assert_eq!(
            launches_line(&labels, &got),
            "0 bert-base: 0 launches; 1 gpt2-medium: 2 launches, last cublasLt 3 s ago"
        );
    }
}
