//! Where a cell's states lie in time, shared by the CPU reference and the GPU plan (and
//! mirrored, with the same names, in shaders/recurrence.wgsl): T + 1 blocks of (B, H)
//! values. A forward cell keeps its initial state at block 0 and time τ (1-based) at
//! block τ; a reverse cell runs from τ = T down to 1, keeps time τ at block τ − 1 and its
//! initial state at block T. Either way the outputs of times 1..T are T consecutive
//! blocks in time order.

/// The time and block indexing of one cell of a sequence of T steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeline {
    /// T, the sequence length.
    pub t: usize,
    /// Whether the cell runs backwards in time.
    pub reverse: bool,
}

impl Timeline {
    pub fn new(t: usize, reverse: bool) -> Self {
        Timeline { t, reverse }
    }

    /// The 1-based time τ of forward iteration n (0-based, n < T): a reverse cell starts
    /// at T.
    pub fn forward_time(self, n: usize) -> usize {
        if self.reverse {
            self.t - n
        } else {
            n + 1
        }
    }

    /// The time of backward iteration n (n < T): the forward order reversed.
    pub fn backward_time(self, n: usize) -> usize {
        if self.reverse {
            n + 1
        } else {
            self.t - n
        }
    }

    /// The block the step at time τ writes.
    pub fn out_block(self, tau: usize) -> usize {
        if self.reverse {
            tau - 1
        } else {
            tau
        }
    }

    /// The block the step at time τ reads (h_prev, c_prev).
    pub fn prev_block(self, tau: usize) -> usize {
        if self.reverse {
            tau
        } else {
            tau - 1
        }
    }

    /// The block of the initial state (h0, c0).
    pub fn initial_block(self) -> usize {
        if self.reverse {
            self.t
        } else {
            0
        }
    }

    /// The block of the final state (h_n, c_n), written by the last forward iteration.
    pub fn final_block(self) -> usize {
        self.t - self.initial_block()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_directions_write_every_block_but_the_initial_one_and_read_the_one_before() {
        for reverse in [false, true] {
            let tl = Timeline::new(5, reverse);
            let mut written = Vec::new();
            let mut before = tl.initial_block();
            for n in 0..tl.t {
                let tau = tl.forward_time(n);
                assert_eq!(tau, tl.backward_time(tl.t - 1 - n));
                assert_eq!(
                    tl.prev_block(tau),
                    before,
                    "reads what the step before wrote"
                );
                before = tl.out_block(tau);
                written.push(before);
            }
            assert_eq!(before, tl.final_block());
            written.sort_unstable();
            let expected: Vec<usize> = (0..=tl.t).filter(|&k| k != tl.initial_block()).collect();
            assert_eq!(written, expected);
            // Outputs of times 1..T lie in time order from out_block(1).
            for tau in 1..=tl.t {
                assert_eq!(tl.out_block(tau), tl.out_block(1) + tau - 1);
            }
        }
    }
}
