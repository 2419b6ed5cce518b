//! Policies that ignore the load: every kernel on the whole device ([`Full`]), or on its
//! tenant's fixed window ([`Static`]).

use super::{Decision, Demand, GroupLoad, GroupRange, Policy, Region, Topology};

/// Every kernel on the whole device.
#[derive(Debug, Clone, Copy, Default)]
pub struct Full;

impl Policy for Full {
    fn name(&self) -> &'static str {
        "full"
    }
    fn reads_load(&self) -> bool {
        false
    }
    fn place(&self, _: &Demand, _: &GroupLoad, _: &Topology, _: GroupRange) -> Decision {
        Decision::run(Region::Whole, false)
    }
}

/// A fixed window per tenant; tenants without one get the whole device.
#[derive(Debug, Clone, Default)]
pub struct Static {
    /// Window of tenant `i` at index `i`.
    pub windows: Vec<Option<GroupRange>>,
}

impl Static {
    /// Windows side by side from group 0: tenant `i` gets `sizes[i]` SMs rounded up to
    /// groups, or (`None`) an equal part of the groups the sized ones leave. Refused when
    /// they need more groups than `groups`.
    pub fn side_by_side(sizes: &[Option<u32>], groups: u32, granularity: u32) -> Result<Static, String> {
        let granularity = granularity.max(1);
        let fixed: u32 = sizes.iter().flatten().map(|sms| sms.div_ceil(granularity)).sum();
        let open = sizes.iter().filter(|s| s.is_none()).count() as u32;
        if fixed + open > groups {
            return Err(format!(
                "static partitions need {} groups; the device has {groups} of {granularity} SMs",
                fixed + open
            ));
        }
        let mut shares = equal_windows(groups - fixed, open).into_iter().map(|w| w.count);
        let mut first = 0;
        let windows = sizes
            .iter()
            .map(|size| {
                let count = match size {
                    Some(sms) => sms.div_ceil(granularity),
                    None => shares.next().unwrap_or(1),
                };
                let w = GroupRange { first, count };
                first += count;
                Some(w)
            })
            .collect();
        Ok(Static { windows })
    }
}

/// Splits `groups` groups into `n` consecutive windows as evenly as possible (the first get
/// the extra groups).
pub fn equal_windows(groups: u32, n: u32) -> Vec<GroupRange> {
    let n = n.max(1).min(groups.max(1));
    let (base, extra) = (groups / n, groups % n);
    let mut first = 0;
    (0..n)
        .map(|i| {
            let count = base + u32::from(i < extra);
            let w = GroupRange { first, count };
            first += count;
            w
        })
        .collect()
}

impl Policy for Static {
    fn name(&self) -> &'static str {
        "static"
    }
    fn reads_load(&self) -> bool {
        false
    }
    fn place(&self, d: &Demand, _: &GroupLoad, _: &Topology, _: GroupRange) -> Decision {
        let region = match self.windows.get(d.tenant as usize).copied().flatten() {
            Some(w) => Region::Groups(w),
            None => Region::Whole,
        };
        Decision::run(region, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::policy::tests::{demand, groups, TENANTS, TOPO};

    #[test]
    fn static_uses_each_tenants_window() {
        let w = GroupRange { first: 5, count: 4 };
        let p = Static { windows: vec![None, Some(w)] };
        let load = GroupLoad::new(TOPO.groups, TENANTS);
        assert_eq!(groups(p.decide(&demand(1, Some(8)), &load, &TOPO)), Some(w));
        assert_eq!(p.decide(&demand(0, Some(8)), &load, &TOPO), Decision::run(Region::Whole, false));
    }
}
