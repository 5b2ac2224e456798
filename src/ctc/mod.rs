//! Connectionist temporal classification: the f64 reference of the loss and its gradient,
//! the GPU kernel ([`gpu`], shaders/ctc.wgsl), and host decoding (greedy best path, prefix
//! beam search).
//!
//! Logits y are (T, B, C), time-major (the model's output); a log_softmax over C is taken
//! inside. Row b reads its first `input_lengths[b]` steps; its target is a label sequence
//! l of length U (no blank), extended to l' = (blank, l1, blank, l2, …, blank) of 2U+1
//! states. In log space, with lp_t(k) = log softmax(y_t)(k),
//!
//!   α_t(s) = lp_t(l'_s) + lse(α_{t−1}(s), α_{t−1}(s−1), [l'_s ≠ blank, l'_s ≠ l'_{s−2}] α_{t−1}(s−2))
//!   β_t(s) = lp_t(l'_s) + lse(β_{t+1}(s), β_{t+1}(s+1), [l'_s ≠ blank, l'_s ≠ l'_{s+2}] β_{t+1}(s+2))
//!
//! loss = −log p, p = α_{L−1}(2U) + α_{L−1}(2U−1) (L the row's length), and
//! dL/dy_t(k) = softmax(y_t)(k) − (1/p) Σ_{s: l'_s = k} α_t(s) β_t(s) / p_t(k) for t < L,
//! 0 past it. Reductions are PyTorch's `nn.CTCLoss`.

pub mod gpu;

use crate::error::{Error, Result};

/// The blank's index unless told otherwise (PyTorch's default).
pub const DEFAULT_BLANK: u32 = 0;

/// The longest target the GPU kernel takes: 2U+1 states of log α and log β each fit in
/// 16 KiB of workgroup memory (WebGPU's default limit).
pub const MAX_GPU_TARGET_LEN: usize = 1023;

/// Label sequences of a batch: row b's labels are `labels[o_b .. o_b + lengths[b]]`, o_b
/// the sum of the lengths before it (PyTorch's concatenated 1-D targets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Labels {
    pub labels: Vec<u32>,
    pub lengths: Vec<usize>,
}

impl Labels {
    /// Concatenates per-row sequences.
    pub fn from_rows<R: AsRef<[u32]>>(rows: &[R]) -> Labels {
        Labels {
            labels: rows
                .iter()
                .flat_map(|r| r.as_ref().iter().copied())
                .collect(),
            lengths: rows.iter().map(|r| r.as_ref().len()).collect(),
        }
    }

    /// Row b's labels (the lengths must be checked first).
    pub fn row(&self, b: usize) -> &[u32] {
        let start: usize = self.lengths[..b].iter().sum();
        &self.labels[start..start + self.lengths[b]]
    }

    /// The longest row.
    pub fn max_len(&self) -> usize {
        self.lengths.iter().copied().max().unwrap_or(0)
    }
}

/// How row losses are combined, as `nn.CTCLoss(reduction=...)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Reduction {
    /// Each row's loss divided by its target length (at least 1), then the batch mean.
    #[default]
    Mean,
    /// The sum of the row losses.
    Sum,
    /// No reduction: [`CtcLoss::rows`] are the losses; `loss` is their sum and the
    /// gradient is that of the sum.
    None,
}

/// Options of the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtcOptions {
    pub blank: u32,
    pub reduction: Reduction,
    /// An impossible alignment (input shorter than U plus the target's adjacent repeats)
    /// gives loss 0 and gradient 0 instead of an infinite loss (and a NaN gradient).
    pub zero_infinity: bool,
}

impl Default for CtcOptions {
    fn default() -> Self {
        CtcOptions {
            blank: DEFAULT_BLANK,
            reduction: Reduction::Mean,
            zero_infinity: false,
        }
    }
}

impl CtcOptions {
    /// Per-row factor the row's loss and gradient are multiplied by.
    pub fn row_scale(&self, target_len: usize, batch: usize) -> f64 {
        match self.reduction {
            Reduction::Mean => 1.0 / (target_len.max(1) as f64 * batch as f64),
            Reduction::Sum | Reduction::None => 1.0,
        }
    }
}

/// The loss of a batch.
#[derive(Debug, Clone, PartialEq)]
pub struct CtcLoss<F> {
    /// The reduced loss.
    pub loss: F,
    /// −log p(target | x) per row (0 for an impossible one with `zero_infinity`).
    pub rows: Vec<F>,
    /// dloss/dlogits (T, B, C).
    pub grad: Vec<F>,
}

/// Checks a batch for the loss: `input_lengths` (B) in 1..=T, label counts summing to the
/// labels given, the blank below C, labels below C and never the blank.
pub fn check(
    shape: [usize; 3],
    input_lengths: &[usize],
    targets: &Labels,
    blank: u32,
) -> Result<()> {
    let [t, b, c] = shape;
    crate::shapes::check_lengths(input_lengths, t, b)?;
    crate::shapes::check_len("CTC target lengths", &[b], targets.lengths.len())?;
    let total: usize = targets.lengths.iter().sum();
    crate::shapes::check_len("CTC target labels", &[total], targets.labels.len())?;
    if blank as usize >= c {
        return Err(Error::BadTarget {
            class: blank,
            classes: c,
        });
    }
    for row in 0..b {
        for (i, &k) in targets.row(row).iter().enumerate() {
            if k == blank || k as usize >= c {
                return Err(Error::CtcTarget {
                    row,
                    why: format!(
                        "label {i} is {k}; labels must be in 0..{c} (C) and not the blank {blank}"
                    ),
                });
            }
        }
    }
    Ok(())
}

/// The shortest input a target can align to: its length plus one blank between each
/// pair of equal adjacent labels.
pub fn min_input_len(target: &[u32]) -> usize {
    target.len() + target.windows(2).filter(|w| w[0] == w[1]).count()
}

fn lse2(a: f64, b: f64) -> f64 {
    if a == f64::NEG_INFINITY {
        return b;
    }
    if b == f64::NEG_INFINITY {
        return a;
    }
    let m = a.max(b);
    m + ((a - m).exp() + (b - m).exp()).ln()
}

/// log_softmax of each row of `row` (C) into `out`.
fn log_softmax(row: &[f64], out: &mut [f64]) {
    let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let lse = m + row.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
    for (o, v) in out.iter_mut().zip(row) {
        *o = v - lse;
    }
}

/// −log p(target | lp) for one row and dloss/dlogits (len, C), from log-probabilities
/// `lp` (len, C). Returns (nll, grad); an impossible alignment gives (∞, NaN).
fn row_forward_backward(lp: &[f64], c: usize, target: &[u32], blank: u32) -> (f64, Vec<f64>) {
    let len = lp.len() / c;
    let s_len = 2 * target.len() + 1;
    let ext = |s: usize| {
        if s.is_multiple_of(2) {
            blank
        } else {
            target[s / 2]
        }
    };
    // The skip from s − 2 to s (forward), i.e. from s to s − 2 backward.
    let skip = |s: usize| s >= 2 && ext(s) != blank && ext(s) != ext(s - 2);
    let neg = f64::NEG_INFINITY;
    let mut alpha = vec![neg; len * s_len];
    let mut beta = vec![neg; len * s_len];
    alpha[0] = lp[blank as usize];
    if s_len > 1 {
        alpha[1] = lp[ext(1) as usize];
    }
    for t in 1..len {
        for s in 0..s_len {
            let prev = &alpha[(t - 1) * s_len..t * s_len];
            let mut a = prev[s];
            if s >= 1 {
                a = lse2(a, prev[s - 1]);
            }
            if skip(s) {
                a = lse2(a, prev[s - 2]);
            }
            alpha[t * s_len + s] = a + lp[t * c + ext(s) as usize];
        }
    }
    let last = (len - 1) * s_len;
    beta[last + s_len - 1] = lp[(len - 1) * c + blank as usize];
    if s_len > 1 {
        beta[last + s_len - 2] = lp[(len - 1) * c + ext(s_len - 2) as usize];
    }
    for t in (0..len - 1).rev() {
        for s in 0..s_len {
            let next = &beta[(t + 1) * s_len..(t + 2) * s_len];
            let mut v = next[s];
            if s + 1 < s_len {
                v = lse2(v, next[s + 1]);
            }
            if s + 2 < s_len && skip(s + 2) {
                v = lse2(v, next[s + 2]);
            }
            beta[t * s_len + s] = v + lp[t * c + ext(s) as usize];
        }
    }
    let mut log_p = alpha[last + s_len - 1];
    if s_len > 1 {
        log_p = lse2(log_p, alpha[last + s_len - 2]);
    }
    if log_p == neg {
        return (f64::INFINITY, vec![f64::NAN; len * c]);
    }
    let mut grad = vec![0.0; len * c];
    let mut acc = vec![neg; c];
    for t in 0..len {
        acc.fill(neg);
        for s in 0..s_len {
            let k = ext(s) as usize;
            acc[k] = lse2(acc[k], alpha[t * s_len + s] + beta[t * s_len + s]);
        }
        for k in 0..c {
            let l = lp[t * c + k];
            grad[t * c + k] = l.exp() - (acc[k] - l - log_p).exp();
        }
    }
    (-log_p, grad)
}

/// The CTC loss of logits (T, B, C) as `nn.CTCLoss` on `log_softmax(logits, dim=2)`,
/// and its gradient with respect to the logits.
pub fn ctc_loss(
    logits: &[f64],
    shape: [usize; 3],
    input_lengths: &[usize],
    targets: &Labels,
    opts: &CtcOptions,
) -> Result<CtcLoss<f64>> {
    let [t_len, b_len, c] = shape;
    crate::shapes::check_len("CTC logits", &shape, logits.len())?;
    check(shape, input_lengths, targets, opts.blank)?;
    let mut grad = vec![0.0; logits.len()];
    let mut rows = vec![0.0; b_len];
    let mut loss = 0.0;
    let mut lp = vec![0.0; t_len * c];
    for b in 0..b_len {
        let len = input_lengths[b];
        for t in 0..len {
            let at = (t * b_len + b) * c;
            log_softmax(&logits[at..at + c], &mut lp[t * c..(t + 1) * c]);
        }
        let target = targets.row(b);
        let (mut nll, mut g) = row_forward_backward(&lp[..len * c], c, target, opts.blank);
        if nll.is_infinite() && opts.zero_infinity {
            nll = 0.0;
            g.fill(0.0);
        }
        let scale = opts.row_scale(target.len(), b_len);
        rows[b] = nll;
        loss += scale * nll;
        for t in 0..len {
            let at = (t * b_len + b) * c;
            for k in 0..c {
                grad[at + k] = scale * g[t * c + k];
            }
        }
    }
    Ok(CtcLoss { loss, rows, grad })
}

/// The best path of each row: the argmax class of each of its first `lengths[b]` steps
/// (all T without lengths), repeats collapsed, blanks dropped. `scores` (T, B, C) are
/// logits, probabilities or log-probabilities (any monotone score per step).
pub fn greedy_decode(
    scores: &[f32],
    shape: [usize; 3],
    lengths: Option<&[usize]>,
    blank: u32,
) -> Result<Vec<Vec<u32>>> {
    let [t_len, b_len, c] = shape;
    check_decode(scores, shape, lengths, blank)?;
    Ok((0..b_len)
        .map(|b| {
            let len = lengths.map_or(t_len, |l| l[b]);
            let mut out = Vec::new();
            let mut prev = None;
            for t in 0..len {
                let row = &scores[(t * b_len + b) * c..][..c];
                let k = (0..c).fold(0, |best, k| if row[k] > row[best] { k } else { best }) as u32;
                if k != blank && prev != Some(k) {
                    out.push(k);
                }
                prev = Some(k);
            }
            out
        })
        .collect())
}

fn check_decode(
    scores: &[f32],
    shape: [usize; 3],
    lengths: Option<&[usize]>,
    blank: u32,
) -> Result<()> {
    let [t, b, c] = shape;
    crate::shapes::check_len("CTC decoder scores", &shape, scores.len())?;
    if let Some(l) = lengths {
        crate::shapes::check_lengths(l, t, b)?;
    }
    if blank as usize >= c {
        return Err(Error::BadTarget {
            class: blank,
            classes: c,
        });
    }
    Ok(())
}

/// Standard CTC prefix beam search of each row with `beam` prefixes kept per step, no
/// language model: each prefix carries log P(prefix, ending in blank) and log P(prefix,
/// ending in its last label); the most probable prefix at the row's end is returned.
/// `logits` (T, B, C) are normalised with a log_softmax per step (so log-probabilities
/// may be passed too). Ties between prefixes keep the earlier-made one.
pub fn beam_search(
    logits: &[f32],
    shape: [usize; 3],
    lengths: Option<&[usize]>,
    blank: u32,
    beam: usize,
) -> Result<Vec<Vec<u32>>> {
    let [t_len, b_len, c] = shape;
    check_decode(logits, shape, lengths, blank)?;
    crate::shapes::nonzero("beam width", beam)?;
    let neg = f64::NEG_INFINITY;
    let mut lp = vec![0.0; c];
    let mut out = Vec::with_capacity(b_len);
    for b in 0..b_len {
        let len = lengths.map_or(t_len, |l| l[b]);
        // (prefix, log p ending in blank, log p ending in a label)
        let mut beams: Vec<(Vec<u32>, f64, f64)> = vec![(Vec::new(), 0.0, neg)];
        for t in 0..len {
            let row: Vec<f64> = logits[(t * b_len + b) * c..][..c]
                .iter()
                .map(|&v| v as f64)
                .collect();
            log_softmax(&row, &mut lp);
            let mut next: Vec<(Vec<u32>, f64, f64)> = Vec::new();
            let add =
                |next: &mut Vec<(Vec<u32>, f64, f64)>, p: &[u32], pb: f64, pnb: f64| match next
                    .iter_mut()
                    .find(|e| e.0 == p)
                {
                    Some(e) => {
                        e.1 = lse2(e.1, pb);
                        e.2 = lse2(e.2, pnb);
                    }
                    None => next.push((p.to_vec(), pb, pnb)),
                };
            for (prefix, pb, pnb) in &beams {
                let total = lse2(*pb, *pnb);
                // Blank: the prefix stays, now ending in blank.
                add(&mut next, prefix, total + lp[blank as usize], neg);
                for k in 0..c as u32 {
                    if k == blank {
                        continue;
                    }
                    let p = lp[k as usize];
                    let mut longer = prefix.clone();
                    longer.push(k);
                    if prefix.last() == Some(&k) {
                        // A repeat extends only across a blank; without one it merges.
                        add(&mut next, &longer, neg, pb + p);
                        add(&mut next, prefix, neg, pnb + p);
                    } else {
                        add(&mut next, &longer, neg, total + p);
                    }
                }
            }
            // Stable sort: equal scores keep their order of creation.
            next.sort_by(|x, y| lse2(y.1, y.2).total_cmp(&lse2(x.1, x.2)));
            next.truncate(beam);
            beams = next;
        }
        out.push(beams.swap_remove(0).0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_posteriors_count_the_alignments() {
        // With every class equally likely, p = (#alignments) / C^T. Target (1) over T = 2,
        // C = 2: alignments "1b", "b1", "11" → 3/4.
        let l = Labels::from_rows(&[[1u32]]);
        let opts = CtcOptions {
            reduction: Reduction::Sum,
            ..Default::default()
        };
        let out = ctc_loss(&[0.0; 4], [2, 1, 2], &[2], &l, &opts).unwrap();
        assert!((out.loss - -(0.75f64).ln()).abs() < 1e-12, "{}", out.loss);
    }

    #[test]
    fn min_input_len_counts_adjacent_repeats() {
        assert_eq!(min_input_len(&[1, 1, 2, 2, 2, 3]), 9);
        assert_eq!(min_input_len(&[]), 0);
    }
}
