//! GPU time per dispatch from timestamp queries, for `bench --profile`.

use super::Gpu;
use crate::error::{Error, Result};

/// GPU time of dispatches, from timestamps written at the start and end of one compute
/// pass per dispatch (the adapter must offer `TIMESTAMP_QUERY`).
pub(crate) struct Profiler {
    query_set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    readback: wgpu::Buffer,
    sections: Vec<&'static str>,
    capacity: usize,
}

// Timing a step (`Trainer::profile_step`) blocks: native only.
#[cfg_attr(target_arch = "wasm32", allow(dead_code))]
impl Profiler {
    /// The most dispatches one profiler times (two timestamps each in one query set).
    pub const MAX_DISPATCHES: usize = wgpu::QUERY_SET_MAX_QUERIES as usize / 2;

    /// Room for `dispatches` timed dispatches.
    pub fn new(gpu: &Gpu, dispatches: usize) -> Result<Self> {
        if !gpu
            .device()
            .features()
            .contains(wgpu::Features::TIMESTAMP_QUERY)
        {
            return Err(Error::Unsupported(
                "GPU timestamps (TIMESTAMP_QUERY): this adapter cannot profile dispatches",
            ));
        }
        let queries = dispatches * 2;
        if queries > wgpu::QUERY_SET_MAX_QUERIES as usize {
            return Err(Error::TooLarge {
                what: "timed dispatches",
                value: dispatches as u64,
                limit: wgpu::QUERY_SET_MAX_QUERIES as u64 / 2,
                why: "timestamps in one query set; profile a shorter sequence",
            });
        }
        let bytes = (queries * 8) as u64;
        gpu.scoped("creating a profiler", || Profiler {
            query_set: gpu.device().create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("dispatch timestamps"),
                ty: wgpu::QueryType::Timestamp,
                count: queries as u32,
            }),
            resolve: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamps"),
                size: bytes,
                usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                mapped_at_creation: false,
            }),
            readback: gpu.device().create_buffer(&wgpu::BufferDescriptor {
                label: Some("timestamp readback"),
                size: bytes,
                usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                mapped_at_creation: false,
            }),
            sections: Vec::new(),
            capacity: dispatches,
        })
    }

    pub(crate) fn pass<'e>(
        &mut self,
        enc: &'e mut wgpu::CommandEncoder,
        section: &'static str,
    ) -> Result<wgpu::ComputePass<'e>> {
        let i = self.sections.len();
        if i >= self.capacity {
            return Err(Error::TooLarge {
                what: "timed dispatches",
                value: i as u64 + 1,
                limit: self.capacity as u64,
                why: "the profiler's capacity",
            });
        }
        self.sections.push(section);
        Ok(enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(section),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set: &self.query_set,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            }),
        }))
    }

    /// Resolves the timestamps into `enc`; call [`Profiler::read`] after submitting it.
    pub fn resolve(&self, enc: &mut wgpu::CommandEncoder) {
        let n = 2 * self.sections.len() as u32;
        if n > 0 {
            enc.resolve_query_set(&self.query_set, 0..n, &self.resolve, 0);
            enc.copy_buffer_to_buffer(&self.resolve, 0, &self.readback, 0, n as u64 * 8);
        }
    }

    /// Milliseconds per section, summed over its dispatches, in order of first use.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<(&'static str, f64)>> {
        if self.sections.is_empty() {
            return Ok(Vec::new());
        }
        let bytes = gpu.read_mapped_bytes(&self.readback).await?;
        // A Vec<u8> need not be 8-byte aligned: copy into u64s.
        let ticks: Vec<u64> = bytemuck::pod_collect_to_vec(&bytes);
        let period_ns = gpu.queue().get_timestamp_period() as f64;
        let mut out: Vec<(&'static str, f64)> = Vec::new();
        for (i, &section) in self.sections.iter().enumerate() {
            let ms = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * period_ns / 1e6;
            match out.iter_mut().find(|(s, _)| *s == section) {
                Some(entry) => entry.1 += ms,
                None => out.push((section, ms)),
            }
        }
        Ok(out)
    }
}
