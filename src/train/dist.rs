//! Data-parallel training across processes: the collectives a trainer needs, behind one
//! trait. [`SingleProcess`] is the no-op of one rank; `Mpi` (cargo feature `mpi`) runs
//! them over MPI through rsmpi, for `mpirun -np N wgpu-rnn train ...`.
//!
//! Each rank runs forward, loss and backward on its contiguous share of the global batch's
//! rows ([`share`]) with the loss normalized by the whole batch's weights, so the sum of
//! the ranks' gradients is the gradient of the whole batch; the gradients are read back,
//! summed across ranks, written back, and every rank applies the same clip and update.

use std::ops::Range;

use crate::error::{Error, Result};

/// The collectives of data-parallel training. Every rank must make the same calls in the
/// same order (as with MPI itself).
pub trait Communicator: Send + Sync {
    /// This process's rank, 0..size.
    fn rank(&self) -> usize;
    /// Number of ranks.
    fn size(&self) -> usize;
    /// Replaces `buf` with the element-wise sum of every rank's `buf`.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()>;
    /// Replaces `buf` with rank 0's `buf` (same length on every rank).
    fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()>;
    /// Replaces `buf` with rank 0's `buf` (same length on every rank).
    fn broadcast_bytes(&self, buf: &mut [u8]) -> Result<()>;
    /// Every rank's `local` (lengths may differ), in rank order, on every rank.
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<Vec<f32>>>;
    /// Whether `ok` holds on every rank (every rank gets the same answer).
    fn all_agree(&self, ok: bool) -> Result<bool>;
    /// Ends every rank of the job with `code` after printing `why` (a failing rank must
    /// not leave the others waiting in a collective).
    fn abort(&self, why: &str, code: i32) -> !;

    fn is_root(&self) -> bool {
        self.rank() == 0
    }
}

/// One process: every collective is the identity.
#[derive(Debug, Clone, Copy, Default)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast_f32(&self, _: &mut [f32]) -> Result<()> {
        Ok(())
    }
    fn broadcast_bytes(&self, _: &mut [u8]) -> Result<()> {
        Ok(())
    }
    fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<Vec<f32>>> {
        Ok(vec![local.to_vec()])
    }
    fn all_agree(&self, ok: bool) -> Result<bool> {
        Ok(ok)
    }
    fn abort(&self, why: &str, code: i32) -> ! {
        eprintln!("error: {why}");
        std::process::exit(code)
    }
}

/// Rank `rank`'s rows of a global batch of `b` rows over `size` ranks: contiguous, the
/// shares differing by at most one row (rows `rank·b/size .. (rank+1)·b/size`). Every rank
/// needs a row: `b` must be at least `size`.
pub fn share(b: usize, rank: usize, size: usize) -> Result<Range<usize>> {
    if size == 0 || rank >= size {
        return Err(Error::Distributed(format!("rank {rank} of {size} ranks")));
    }
    if b < size {
        return Err(Error::Distributed(format!(
            "a batch of {b} rows cannot give each of {size} ranks a row; use --batch {size} \
             or more, or fewer ranks"
        )));
    }
    Ok(rank * b / size..(rank + 1) * b / size)
}

/// A cheap hash of values' bits (FNV-1a over 64 bits), to check that ranks hold bitwise the
/// same parameters.
pub fn checksum<'a>(values: impl IntoIterator<Item = &'a [f32]>) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for v in values {
        for x in v {
            for byte in x.to_bits().to_le_bytes() {
                h ^= byte as u64;
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
    }
    h
}

/// Whether every rank's `hash` equals rank 0's.
pub fn same_everywhere(comm: &dyn Communicator, hash: u64) -> Result<bool> {
    let mut root = hash.to_le_bytes();
    comm.broadcast_bytes(&mut root)?;
    comm.all_agree(u64::from_le_bytes(root) == hash)
}

#[cfg(feature = "mpi")]
pub use self::mpi_comm::Mpi;

#[cfg(feature = "mpi")]
mod mpi_comm {
    use super::Communicator;
    use crate::error::{Error, Result};
    use mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
    use mpi::datatype::PartitionMut;
    use mpi::environment::Threading;
    use mpi::topology::{Communicator as _, SimpleCommunicator};
    use mpi::Count;
    use std::sync::Mutex;

    /// MPI's world communicator. Holds the MPI environment: MPI is finalized when this is
    /// dropped, and cannot be initialized again in the same process.
    pub struct Mpi {
        world: Mutex<SimpleCommunicator>,
        rank: usize,
        size: usize,
        _universe: mpi::environment::Universe,
    }

    // MPI is initialized at `Threading::Serialized` and every call goes through the mutex:
    // any thread may call, never two at once, which is what that level allows.
    unsafe impl Send for Mpi {}
    unsafe impl Sync for Mpi {}

    impl Mpi {
        /// Initializes MPI. Errors where MPI was initialized before or offers less than
        /// serialized threading.
        pub fn init() -> Result<Mpi> {
            let (universe, level) = mpi::initialize_with_threading(Threading::Serialized)
                .ok_or_else(|| {
                    Error::Distributed("MPI was already initialized in this process".into())
                })?;
            if !matches!(level, Threading::Serialized | Threading::Multiple) {
                return Err(Error::Distributed(format!(
                    "this MPI offers threading level {level:?}; serialized is needed"
                )));
            }
            let world = universe.world();
            Ok(Mpi {
                rank: world.rank() as usize,
                size: world.size() as usize,
                world: Mutex::new(world),
                _universe: universe,
            })
        }

        fn world(&self) -> std::sync::MutexGuard<'_, SimpleCommunicator> {
            self.world.lock().unwrap_or_else(|p| p.into_inner())
        }
    }

    impl Communicator for Mpi {
        fn rank(&self) -> usize {
            self.rank
        }
        fn size(&self) -> usize {
            self.size
        }
        fn all_reduce_sum(&self, buf: &mut [f32]) -> Result<()> {
            let send = buf.to_vec();
            self.world()
                .all_reduce_into(&send[..], buf, SystemOperation::sum());
            Ok(())
        }
        fn broadcast_f32(&self, buf: &mut [f32]) -> Result<()> {
            self.world().process_at_rank(0).broadcast_into(buf);
            Ok(())
        }
        fn broadcast_bytes(&self, buf: &mut [u8]) -> Result<()> {
            self.world().process_at_rank(0).broadcast_into(buf);
            Ok(())
        }
        fn all_gather_f32(&self, local: &[f32]) -> Result<Vec<Vec<f32>>> {
            let too_long = || {
                Error::Distributed(format!(
                    "{} values to gather: MPI counts them in 32 bits",
                    local.len()
                ))
            };
            let mine = Count::try_from(local.len()).map_err(|_| too_long())?;
            let world = self.world();
            let mut counts: Vec<Count> = vec![0; self.size];
            world.all_gather_into(&mine, &mut counts[..]);
            let mut displs = Vec::with_capacity(self.size);
            let mut total: Count = 0;
            for &c in &counts {
                displs.push(total);
                total = total.checked_add(c).ok_or_else(too_long)?;
            }
            let mut all = vec![0.0f32; total as usize];
            {
                let mut parts = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
                world.all_gather_varcount_into(local, &mut parts);
            }
            Ok(counts
                .iter()
                .zip(&displs)
                .map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec())
                .collect())
        }
        fn all_agree(&self, ok: bool) -> Result<bool> {
            let mine = ok as i32;
            let mut all = 0i32;
            self.world()
                .all_reduce_into(&mine, &mut all, SystemOperation::logical_and());
            Ok(all != 0)
        }
        fn abort(&self, why: &str, code: i32) -> ! {
            // One write, so that the line is not cut by other ranks' output on the pipe
            // mpirun shares between them.
            let line = format!("error on rank {} of {}: {why}\n", self.rank, self.size);
            let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
            // Not through the mutex: a rank may abort while another thread holds it.
            mpi::topology::SimpleCommunicator::world().abort(code.max(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_cover_the_batch_in_order_and_differ_by_at_most_one_row() {
        for size in 1..6 {
            for b in size..20 {
                let rows: Vec<_> = (0..size).map(|r| share(b, r, size).unwrap()).collect();
                assert_eq!(rows[0].start, 0);
                assert_eq!(rows[size - 1].end, b);
                assert!(rows.windows(2).all(|w| w[0].end == w[1].start));
                let lens: Vec<_> = rows.iter().map(|r| r.len()).collect();
                assert!(lens.iter().max().unwrap() - lens.iter().min().unwrap() <= 1);
                assert!(lens.iter().all(|&l| l > 0));
            }
        }
        assert!(share(1, 0, 2).is_err());
    }

    #[test]
    fn checksum_sees_a_single_bit() {
        let a = [1.0f32, 2.0, 3.0];
        let mut b = a;
        b[2] = f32::from_bits(b[2].to_bits() ^ 1);
        assert_ne!(checksum([&a[..]]), checksum([&b[..]]));
        assert!(same_everywhere(&SingleProcess, 7).unwrap());
    }
}
