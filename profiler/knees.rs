//! Knees of a latency curve: the latency knee (the fewest SMs within ε of the kernel's full
//! speed, counting the partition switch; and beside a co-runner) and the efficiency knee (the
//! most SMs whose SM·time stays within ε of the least).

use super::profile::{KernelProfile, Point};

impl KernelProfile {
    /// The efficiency knee: the most SMs whose SM·time (SMs × latency) stays within ε of the
    /// least on the curve — beyond it, more SMs buy less than their share of speed. Below it
    /// a kernel gives back SMs in proportion to the time it loses.
    pub fn efficiency_sms(&self, epsilon: f64) -> u32 {
        efficiency_knee(&self.curve, epsilon)
    }

    /// The efficiency knee beside the co-runner (0 where not measured).
    pub fn efficiency_sms_beside(&self, epsilon: f64) -> u32 {
        efficiency_knee(&self.beside, epsilon)
    }
}

/// The most SMs of `curve` whose SM·time is within ε of the curve's least (its first point if
/// the curve is empty of positive times).
pub fn efficiency_knee(curve: &[Point], epsilon: f64) -> u32 {
    let cost = |p: &Point| f64::from(p.sms) * p.us;
    let least = curve.iter().map(cost).filter(|c| *c > 0.0).fold(f64::INFINITY, f64::min);
    curve.iter().filter(|p| cost(p) <= least * (1.0 + epsilon)).map(|p| p.sms).max().unwrap_or(0)
}

/// The fewest SMs of `curve` (ascending, the whole device last) whose latency — plus
/// `switch_us` for a partition, what getting onto it costs — is ≤ max((1 + ε) × best,
/// best + `abs_tol_us`); the last point's SMs (the whole device) when none is. `best` is the
/// kernel's full speed: `full_us`, or a partition's latency where that measured less. A
/// partition's SMs are some of the device's and its grid one the device could run too, so a
/// faster partition says what the whole device can do; a whole-device median that noise put
/// above it would otherwise move the limit, and on a flat curve the knee with it (by several
/// steps, between the first SM count the curve is flat from and the whole device).
pub fn knee(curve: &[Point], full_us: f64, epsilon: f64, abs_tol_us: f64, switch_us: f64) -> u32 {
    let best = curve.iter().map(|p| p.us).fold(full_us, f64::min);
    let limit = ((1.0 + epsilon) * best).max(best + abs_tol_us);
    let last = curve.len().saturating_sub(1);
    let cost = |i: usize, p: &Point| if i < last { p.us + switch_us } else { p.us };
    curve.iter().enumerate().find(|&(i, p)| cost(i, p) <= limit).map(|(_, p)| p).or(curve.last()).map_or(0, |p| p.sms)
}

/// The latency knee of a curve measured beside a co-runner (every point a partition): the
/// fewest SMs within max((1 + ε) × least, least + `abs_tol_us`) of the least latency on it;
/// 0 for an empty curve.
pub fn knee_beside(beside: &[Point], epsilon: f64, abs_tol_us: f64) -> u32 {
    if beside.is_empty() {
        return 0;
    }
    knee(beside, f64::INFINITY, epsilon, abs_tol_us, 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profiler::tests::pts;

    #[test]
    fn knee_is_the_fewest_sms_within_epsilon() {
        let c = pts(&[(8, 50.0), (16, 26.0), (24, 21.5), (32, 20.1), (132, 20.0)]);
        assert_eq!(knee(&c, 20.0, 0.05, 0.0, 0.0), 32);
        assert_eq!(knee(&c, 20.0, 0.25, 0.0, 0.0), 24);
        assert_eq!(knee(&c, 20.0, 2.0, 0.0, 0.0), 8);
        // Nothing within ε (noise made every partition slower): the whole device.
        assert_eq!(knee(&pts(&[(8, 30.0), (132, 20.0)]), 10.0, 0.05, 0.0, 0.0), 132);
        // A 3 µs kernel whose curve is launch latency plus noise: the absolute tolerance wins.
        let flat = pts(&[(8, 3.4), (16, 3.45), (24, 3.5), (132, 3.2)]);
        assert_eq!(knee(&flat, 3.2, 0.05, 0.0, 0.0), 132);
        assert_eq!(knee(&flat, 3.2, 0.05, 0.5, 0.0), 8);
        // A switch of 1.5 µs outweighs what right-sizing the 3 µs kernel frees: it stays on
        // the whole device, whose own latency pays no switch.
        assert_eq!(knee(&flat, 3.2, 0.05, 0.5, 1.5), 132);
        // On a 20 µs kernel, a 0.5 µs switch only moves the knee up a step.
        assert_eq!(knee(&c, 20.0, 0.05, 0.0, 0.5), 32);
        assert_eq!(knee(&c, 20.0, 0.10, 0.0, 0.5), 24);
        assert_eq!(knee(&c, 20.0, 0.10, 0.0, 1.5), 32);
        // A kernel of 96 tiles: as fast on 96 SMs as on 132. With a 1.7 µs switch it belongs
        // on the whole device, whether the device's median came out at 18.5 or (noise) 19.2 µs;
        // against the device's own median the second would put its knee at 96.
        let tiles = |full: f64| pts(&[(88, 30.0), (96, 18.56), (120, 18.55), (132, full)]);
        assert_eq!(knee(&tiles(18.5), 18.5, 0.05, 0.5, 1.7), 132);
        assert_eq!(knee(&tiles(19.2), 19.2, 0.05, 0.5, 1.7), 132);
        assert_eq!(knee(&tiles(19.2), 19.2, 0.05, 0.5, 0.5), 96);
    }

    #[test]
    fn the_knee_beside_a_co_runner_is_against_the_best_there() {
        // Beside the co-runner nothing reaches the idle device's 10 µs; the knee is the fewest
        // SMs within ε of the best beside it (17.5 µs on 120 SMs): 18.0 on 64.
        let c = pts(&[(8, 40.0), (16, 20.0), (64, 18.0), (120, 17.5)]);
        assert_eq!(knee_beside(&c, 0.05, 0.0), 64);
        assert_eq!(knee_beside(&c, 0.2, 0.0), 16);
        // The absolute tolerance counts as on the idle curve; not measured: 0.
        assert_eq!(knee_beside(&pts(&[(8, 3.4), (64, 3.1)]), 0.05, 0.5), 8);
        assert_eq!(knee_beside(&[], 0.05, 0.5), 0);
    }

    #[test]
    fn efficiency_knee_is_the_most_sms_before_sm_time_rises() {
        // Perfect scaling to 32 SMs (SM·time 320), then flat: the knee is 32.
        let c = pts(&[(8, 40.0), (16, 20.0), (24, 13.4), (32, 10.0), (64, 10.0), (132, 10.0)]);
        assert_eq!(efficiency_knee(&c, 0.05), 32);
        // A looser ε reaches further; a latency-bound (flat) curve's knee is its fewest SMs.
        assert_eq!(efficiency_knee(&c, 1.0), 64);
        assert_eq!(efficiency_knee(&pts(&[(8, 5.0), (64, 5.0), (132, 5.0)]), 0.05), 8);
        // A step edge: two waves up to 120 SMs, one on 132: the knee is the edge.
        let waves = pts(&[(64, 20.0), (120, 20.0), (132, 10.0)]);
        assert_eq!(efficiency_knee(&waves, 0.05), 132);
        assert_eq!(efficiency_knee(&[], 0.05), 0);
    }
}
