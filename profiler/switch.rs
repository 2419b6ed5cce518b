//! What a change of partition costs between two dependent kernels of a replayed plan: two
//! CUDA graphs of the recorded request, one alternating partitions, timed against each other.

use cudarc::driver::sys;

use super::median;
use super::profile::ProfileError;
use crate::runtime::{DeviceBuffer, EventTimer, PartitionId, Placement, Recorded, Runtime};

/// What a change of partition costs between two dependent kernels of a replayed plan, in µs.
///
/// The recorded request is captured twice as a CUDA graph: every launch on the whole device,
/// and with every other launch that fits it (no more blocks than it has SMs, so each block has
/// an SM of its own either way) on the widest partition instead. The difference of the two graphs' median replay times, over the
/// number of partition changes in the second, is the cost of one change. Both graphs run the
/// same kernels in the same order, each block on an SM of its own, so what differs is the
/// switching. When no kernel of the request fits, a chain of 64 one-block kernels stands in.
///
/// # Safety
/// As [`profile_launches`].
///
/// [`profile_launches`]: super::profile_launches
pub unsafe fn switch_cost_us(rt: &Runtime, launches: &[Recorded], repeats: u32) -> Result<f64, ProfileError> {
    let widest = rt.pool().iter().filter(|(_, p)| !p.is_whole_device()).max_by_key(|(_, p)| p.sms());
    let Some((widest, part)) = widest else {
        return Ok(0.0);
    };
    // At most one block per SM on either side, so the kernel itself runs alike.
    let width = u64::from(part.sms());
    type Launch<'a> = Box<dyn Fn(Placement) -> crate::runtime::Result<u32> + 'a>;
    let mut chain: Vec<(bool, Launch)> = launches
        .iter()
        // SAFETY (of each replay): forwarded contract.
        .map(|l| (l.units <= width, Box::new(move |pl| unsafe { l.replay(rt, pl) }) as Launch))
        .collect();
    // A request none of whose kernels fits (every one has more blocks than the partition has
    // SMs) is measured on a chain of one-block kernels instead.
    let fits_none = !chain.iter().any(|(fits, _)| *fits);
    let probe = if fits_none { Some(DeviceBuffer::<u32>::filled(rt.device(), 1, 0)?) } else { None };
    if let Some(probe) = &probe {
        let p = crate::kernels::abi::SetU32Params { x: probe.ptr(), n: 1, value: 1, _pad: 0 };
        chain = (0..64)
            .map(|_| {
                // SAFETY: a live one-element buffer.
                (true, Box::new(move |pl| unsafe { rt.launch(crate::kernels::SET_U32, &p, pl) }) as Launch)
            })
            .collect();
    }
    let whole = rt.pool().get(PartitionId::WHOLE).map_err(crate::runtime::Error::from)?;
    let (s0, s1) =
        (whole.stream(0).map_err(crate::runtime::Error::from)?, part.stream(0).map_err(crate::runtime::Error::from)?);
    let event = crate::runtime::OrderEvent::new(rt.device())?;
    let capture = |alternate: bool| -> Result<(crate::runtime::Plan, usize), ProfileError> {
        let mut switches = 0usize;
        let plan = crate::runtime::Plan::capture(rt, s0, || {
            let (mut cur, mut flip) = (s0, false);
            let mut order = |to: sys::CUstream, switches: &mut usize| -> Result<(), ProfileError> {
                if to != cur {
                    event.order(cur, to)?;
                    cur = to;
                    *switches += 1;
                }
                Ok(())
            };
            for (fits, launch) in &chain {
                let on_part = alternate && *fits && {
                    flip = !flip;
                    flip
                };
                let (stream, placement) = if on_part { (s1, Placement::on(widest)) } else { (s0, Placement::WHOLE) };
                order(stream, &mut switches)?;
                launch(placement)?;
            }
            order(s0, &mut switches)
        })?;
        Ok((plan, switches))
    };
    let (same, _) = capture(false)?;
    let (alt, switches) = capture(true)?;
    if switches == 0 {
        return Ok(0.0);
    }
    let events = EventTimer::new(rt.device())?;
    let time = |plan: &crate::runtime::Plan| -> Result<f64, ProfileError> {
        // SAFETY: a plan captured on s0, replayed there.
        Ok(unsafe { events.time_ms(s0, || plan.launch(rt, s0)) }? * 1e3)
    };
    for _ in 0..2 {
        time(&same)?;
        time(&alt)?;
    }
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(3) {
        a.push(time(&same)?);
        b.push(time(&alt)?);
    }
    Ok(((median(&mut b) - median(&mut a)) / switches as f64).max(0.0))
}
