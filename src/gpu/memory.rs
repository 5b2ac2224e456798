//! Accounting of the device memory this crate allocates (buffer bytes, as requested;
//! drivers may round up, and pipelines and bind groups are not counted).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Device memory held by buffers of one [`Gpu`](super::Gpu) context.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryUse {
    /// Bytes in live buffers now.
    pub live_bytes: u64,
    /// Most bytes live at once since the context was made or the peak was last reset.
    pub peak_bytes: u64,
}

#[derive(Default)]
pub(crate) struct MemCounter {
    live: AtomicU64,
    peak: AtomicU64,
}

impl MemCounter {
    pub fn take(self: &Arc<Self>, bytes: u64) -> MemTicket {
        let now = self.live.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
        MemTicket {
            counter: self.clone(),
            bytes,
        }
    }

    pub fn get(&self) -> MemoryUse {
        MemoryUse {
            live_bytes: self.live.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
        }
    }

    pub fn reset_peak(&self) {
        self.peak
            .store(self.live.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}

/// Counts `bytes` as live until dropped.
pub(crate) struct MemTicket {
    counter: Arc<MemCounter>,
    bytes: u64,
}

impl Drop for MemTicket {
    fn drop(&mut self) {
        self.counter.live.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}
