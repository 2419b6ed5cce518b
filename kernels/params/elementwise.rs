//! Params of the kernels over elements or rows: the vector kernels and the SM-id probe, norms,
//! embedding, activations (GELU, SwiGLU), fill and argmax.

use super::{ensure, has, key, optional, packed_chunk, pointers, ParamError, Params};
use crate::kernels::abi::*;
use crate::kernels::KernelId;

/// Work units of `vector_add_f16` for `n` elements.
pub fn vector_units(n: u64) -> u64 {
    n.div_ceil(u64::from(RS_VECTOR_UNIT))
}

impl Params for SmidParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.units)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        pointers(k, &[("sm", self.sm, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.units), self.spin_cycles])
    }
}

/// Elementwise kernels over `n` elements: work units of `RS_VECTOR_UNIT`, shape = n, and the
/// listed pointers (name, field, alignment) required.
macro_rules! elementwise {
    ($($t:ty => [$(($name:literal, $field:ident, $align:literal)),*];)*) => {$(
        impl Params for $t {
            fn units(&self, _: KernelId) -> u64 {
                vector_units(self.n)
            }
            fn check(&self, k: KernelId) -> Result<(), ParamError> {
                pointers(k, &[$(($name, self.$field, $align)),*])
            }
            fn shape_key(&self) -> u64 {
                key(&[self.n])
            }
        }
    )*};
}

elementwise! {
    VectorAddParams => [("a", a, 2), ("b", b, 2), ("c", c, 2)];
    AddU32Params => [("x", x, 4)];
    SetU32Params => [("x", x, 4)];
    CopyU32Params => [("src", src, 4), ("dst", dst, 4)];
}

impl Params for NormParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.rows.div_ceil(RS_NORM_ROWS))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure((1..=RS_NORM_MAX_COLS).contains(&self.cols), k, || {
            format!("cols = {} must be in 1..={RS_NORM_MAX_COLS}", self.cols)
        })?;
        ensure(self.eps >= 0.0 && self.eps.is_finite(), k, || format!("eps = {}", self.eps))?;
        pointers(k, &[("x", self.x, 2), ("gamma", self.gamma, 2), ("y", self.y, 2)])?;
        optional(k, &[("residual", self.residual, 2), ("sum_out", self.sum_out, 2), ("beta", self.beta, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.rows), u64::from(self.cols), has(self.residual), has(self.sum_out), has(self.beta)])
    }
}

impl Params for EmbeddingParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.batch) * u64::from(self.tokens)
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.hidden >= 1 && self.vocab >= 1, k, || "hidden and vocab must be positive".into())?;
        ensure(self.pos == 0 || self.max_pos >= 1, k, || "a position table needs max_pos ≥ 1".into())?;
        ensure(self.tok_packed <= 1, k, || format!("tok_packed = {} (0 or 1)", self.tok_packed))?;
        ensure(self.tok_packed == 0 || packed_chunk(self.hidden).is_some(), k, || {
            format!(
                "packed token rows: hidden = {} must be a multiple of {RS_GEMM_P_KC}, or below it of 256",
                self.hidden
            )
        })?;
        pointers(k, &[("ids", self.ids, 4), ("tok", self.tok, 2), ("out", self.out, 2)])?;
        optional(k, &[("pos", self.pos, 2), ("type", self.type_, 2), ("start", self.start, 4)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.batch, self.tokens, self.hidden, self.vocab, self.max_pos]
            .map(u64::from)
            .into_iter()
            .chain([has(self.pos), has(self.type_)])
            .collect::<Vec<_>>())
    }
}

impl Params for GeluParams {
    fn units(&self, _: KernelId) -> u64 {
        self.n.div_ceil(u64::from(RS_ACT_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.act == RS_ACT_GELU_TANH || self.act == RS_ACT_GELU_ERF, k, || format!("act = {}", self.act))?;
        pointers(k, &[("x", self.x, 2), ("y", self.y, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.n, u64::from(self.act)])
    }
}

impl Params for SwigluParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.rows) * u64::from(self.cols).div_ceil(u64::from(RS_ACT_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        let c = self.cols;
        ensure(self.paired <= 1, k, || format!("paired = {} (0 or 1)", self.paired))?;
        // Paired, column c is read at 16·(c / 8) + c % 8: the rows span about twice the columns.
        let span = if self.paired == 1 && c > 0 { (c - 1) / 8 * 16 + (c - 1) % 8 + 1 } else { c };
        ensure(self.gate_stride >= span && self.up_stride >= span && self.out_stride >= c, k, || {
            format!("strides must be at least cols = {c} (gate and up {span})")
        })?;
        if self.paired == 1 && self.rows > 0 && c > 0 {
            // A paired unit reads columns other units write: out apart from gate's and up's rows.
            let end = |at: u64, stride: u32, width: u32| {
                at + 2 * (u64::from(self.rows - 1) * u64::from(stride) + u64::from(width))
            };
            let (lo, hi) = (
                self.gate.min(self.up),
                end(self.gate, self.gate_stride, span).max(end(self.up, self.up_stride, span)),
            );
            ensure(end(self.out, self.out_stride, c) <= lo || self.out >= hi, k, || {
                "paired: out must not overlap gate's or up's rows".into()
            })?;
        }
        pointers(k, &[("gate", self.gate, 2), ("up", self.up, 2), ("out", self.out, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.rows), u64::from(self.cols)])
    }
}

impl Params for FillParams {
    fn units(&self, _: KernelId) -> u64 {
        self.n.div_ceil(u64::from(RS_FILL_UNIT))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.scale.is_finite() && self.mean.is_finite(), k, || "scale and mean must be finite".into())?;
        pointers(k, &[("x", self.x, 2)])
    }
    fn shape_key(&self) -> u64 {
        key(&[self.n])
    }
}

/// Parts `argmax_f16` scans a row of `cols` columns in: its work units a row.
pub fn argmax_parts(cols: u32) -> u32 {
    cols.div_ceil(RS_ARGMAX_PART_COLS).max(1)
}

/// Words of `partial` and of `arrived` `argmax_f16` needs for `rows` rows of `cols` columns
/// (zeroed before the first launch); `None` where a row is one part (neither is read).
pub fn argmax_scratch(rows: u32, cols: u32) -> Option<(usize, usize)> {
    let parts = argmax_parts(cols) as usize;
    (parts > 1 && rows > 0).then(|| (2 * rows as usize * parts, rows as usize))
}

impl Params for ArgmaxParams {
    fn units(&self, _: KernelId) -> u64 {
        u64::from(self.rows) * u64::from(argmax_parts(self.cols))
    }
    fn check(&self, k: KernelId) -> Result<(), ParamError> {
        ensure(self.cols >= 1 && self.stride >= self.cols, k, || {
            format!("cols = {} must be ≥ 1 and ≤ stride = {}", self.cols, self.stride)
        })?;
        // (The kernel counts a row's parts in 32 bits: cols + RS_ARGMAX_PART_COLS - 1 must fit.)
        ensure(self.cols <= u32::MAX - RS_ARGMAX_PART_COLS, k, || format!("cols = {} is too many", self.cols))?;
        ensure(self.units(k) <= u64::from(u32::MAX), k, || {
            format!("{} units (rows × parts) do not fit 32 bits", self.units(k))
        })?;
        pointers(k, &[("logits", self.logits, 2), ("out", self.out, 4)])?;
        if argmax_scratch(self.rows, self.cols).is_some() {
            pointers(k, &[("partial", self.partial, 8), ("arrived", self.arrived, 4)])?;
        }
        if self.advance != 0 {
            ensure(self.advance_n >= 1, k, || "advance names positions: advance_n must be ≥ 1".into())?;
            ensure(self.rows >= 1, k, || "positions are advanced by the rows' writers: rows must be ≥ 1".into())?;
            optional(k, &[("advance", self.advance, 4)])?;
        }
        Ok(())
    }
    // (Without `advance`: the positions add a word or two of work to a row's writer, which
    // no profile's timing resolves, and every decode step's argmax has them.)
    fn shape_key(&self) -> u64 {
        key(&[u64::from(self.rows), u64::from(self.cols)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_kernels_count_rows() {
        let n = NormParams { x: 2, gamma: 2, y: 2, rows: 1024, cols: 768, eps: 1e-5, ..Default::default() };
        assert_eq!(n.units(KernelId::LayerNorm), 1024 / 8, "8 rows a unit, a warp each");
        assert_eq!(NormParams { rows: 1025, ..n }.units(KernelId::RmsNorm), 129);
        assert!(n.check(KernelId::LayerNorm).is_ok());
        assert!(NormParams { cols: RS_NORM_MAX_COLS + 1, ..n }.check(KernelId::LayerNorm).is_err());
        // Rows in parts of RS_ARGMAX_PART_COLS columns: GPT-2's vocabulary in 13, a unit each.
        let a = ArgmaxParams {
            logits: 2,
            out: 4,
            partial: 8,
            arrived: 4,
            rows: 8,
            cols: 50257,
            stride: 50257,
            ..Default::default()
        };
        assert_eq!(argmax_parts(50257), 13);
        assert_eq!(a.units(KernelId::Argmax), 8 * 13);
        assert!(a.check(KernelId::Argmax).is_ok());
        assert!(ArgmaxParams { stride: 100, ..a }.check(KernelId::Argmax).is_err());
        assert!(ArgmaxParams { arrived: 0, ..a }.check(KernelId::Argmax).is_err(), "a row of parts needs the counts");
        assert!(ArgmaxParams { partial: 4, ..a }.check(KernelId::Argmax).is_err(), "pairs of words, 8-byte aligned");
        assert_eq!(argmax_scratch(8, 50257), Some((2 * 8 * 13, 8)));
        // A row of one part is written at once: no scratch.
        let short =
            ArgmaxParams { partial: 0, arrived: 0, cols: RS_ARGMAX_PART_COLS, stride: RS_ARGMAX_PART_COLS, ..a };
        assert_eq!(short.units(KernelId::Argmax), 8);
        assert!(short.check(KernelId::Argmax).is_ok());
        assert_eq!(argmax_scratch(8, RS_ARGMAX_PART_COLS), None);
        assert_eq!(argmax_parts(RS_ARGMAX_PART_COLS + 1), 2);
        // No rows: nothing launched, nothing needed.
        assert_eq!(argmax_scratch(0, 50257), None);
        assert!(ArgmaxParams { rows: 0, partial: 0, arrived: 0, ..a }.check(KernelId::Argmax).is_ok());
        assert!(ArgmaxParams { cols: u32::MAX, stride: u32::MAX, ..a }.check(KernelId::Argmax).is_err());
        // Positions advanced by the rows' writers: words, and rows to write them.
        let adv = ArgmaxParams { advance: 4, advance_n: 8, delta: 1, ..a };
        assert!(adv.check(KernelId::Argmax).is_ok());
        assert!(ArgmaxParams { advance: 2, ..adv }.check(KernelId::Argmax).is_err(), "4-byte words");
        assert!(ArgmaxParams { advance_n: 0, ..adv }.check(KernelId::Argmax).is_err());
        assert!(ArgmaxParams { rows: 0, partial: 0, arrived: 0, ..adv }.check(KernelId::Argmax).is_err());
        let g = GeluParams { x: 2, y: 2, n: 4097, act: RS_ACT_GELU_ERF, _pad: 0 };
        assert_eq!(g.units(KernelId::Gelu), 3);
        assert!(GeluParams { act: RS_ACT_NONE, ..g }.check(KernelId::Gelu).is_err());
    }

    #[test]
    fn paired_swiglu_reads_interleaved_columns_into_a_separate_output() {
        let k = KernelId::Swiglu;
        // 4 rows of [gate | up] interleaved by 8 over 2 × 1000 columns, at 1 MiB; out at 2 MiB.
        let p = SwigluParams {
            gate: 1 << 20,
            up: (1 << 20) + 16,
            out: 2 << 20,
            rows: 4,
            cols: 1000,
            gate_stride: 2000,
            up_stride: 2000,
            out_stride: 1000,
            paired: 1,
        };
        assert!(p.check(k).is_ok());
        assert!(SwigluParams { gate_stride: 1990, ..p }.check(k).unwrap_err().reason.contains("1992"));
        assert!(SwigluParams { out: (1 << 20) + 4000, ..p }.check(k).unwrap_err().reason.contains("overlap"));
        assert!(SwigluParams { out: 1 << 20, ..p }.check(k).unwrap_err().reason.contains("overlap"));
        // Unpaired, out may alias gate (every load of a unit comes before its stores).
        let unpaired = SwigluParams { up: (1 << 20) + 2000, out: 1 << 20, paired: 0, ..p };
        assert!(unpaired.check(k).is_ok());
        assert!(SwigluParams { paired: 2, ..p }.check(k).unwrap_err().reason.contains("paired"));
    }
}
