//! CPU references for the kernels, computed in f32 from the same FP16 inputs.
//!
//! Each kernel's GPU test compares against the function named in its `.cu` header here.

use half::f16;

/// `vector_add_f16`: `c[i] = f16(f32(a[i]) + f32(b[i]))`.
///
/// # Panics
/// If `a` and `b` differ in length.
pub fn vector_add(a: &[f16], b: &[f16]) -> Vec<f16> {
    assert_eq!(a.len(), b.len(), "vector_add: lengths differ");
    a.iter().zip(b).map(|(x, y)| f16::from_f32(x.to_f32() + y.to_f32())).collect()
}

/// Relative error ‖out − ref‖₂ / ‖ref‖₂ in f64; infinite when `out` has a NaN or the lengths
/// differ, so a NaN never passes a tolerance.
pub fn relative_error(out: &[f16], reference: &[f16]) -> f64 {
    if out.len() != reference.len() || out.iter().any(|x| x.is_nan()) {
        return f64::INFINITY;
    }
    let (mut diff, mut norm) = (0.0f64, 0.0f64);
    for (o, r) in out.iter().zip(reference) {
        let (o, r) = (f64::from(o.to_f32()), f64::from(r.to_f32()));
        diff += (o - r) * (o - r);
        norm += r * r;
    }
    if norm == 0.0 {
        return if diff == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (diff / norm).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: &[f32]) -> Vec<f16> {
        v.iter().copied().map(f16::from_f32).collect()
    }

    #[test]
    fn vector_add_rounds_once_from_f32() {
        let a = h(&[1.0, -2.5, 65504.0, 0.1]);
        let b = h(&[2.0, 0.5, 65504.0, 0.2]);
        let c = vector_add(&a, &b);
        assert_eq!(c[0].to_f32(), 3.0);
        assert_eq!(c[1].to_f32(), -2.0);
        assert!(c[2].is_infinite(), "overflow saturates to inf as on the GPU");
        assert_eq!(c[3], f16::from_f32(f16::from_f32(0.1).to_f32() + f16::from_f32(0.2).to_f32()));
    }

    #[test]
    fn relative_error_catches_nan_and_length() {
        let r = h(&[1.0, 2.0]);
        assert_eq!(relative_error(&r, &r), 0.0);
        assert!(relative_error(&h(&[1.0, f32::NAN]), &r).is_infinite());
        assert!(relative_error(&h(&[1.0]), &r).is_infinite());
        let e = relative_error(&h(&[1.0, 2.02]), &r);
        assert!((e - 0.02 / 5f64.sqrt()).abs() < 1e-3, "{e}");
    }
}
