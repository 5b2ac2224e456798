//! Device tensors: an f32 storage buffer with a shape, uploaded and downloaded explicitly.

use std::sync::Arc;

use super::{Gpu, MemTicket};
use crate::error::{Error, Result};
use crate::shapes::{check_len, numel};

/// A dense, row-major f32 tensor in GPU memory: its own buffer, or a range of a buffer
/// shared with other tensors (a model's parameters live in one buffer, so that the
/// optimizer updates them all in one dispatch); [`GpuTensor::offset`] says where.
#[derive(Clone)]
pub struct GpuTensor {
    gpu: Gpu,
    buffer: wgpu::Buffer,
    /// First value's index in `buffer`.
    offset: usize,
    shape: Vec<usize>,
    _memory: Arc<MemTicket>,
}

impl std::fmt::Debug for GpuTensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuTensor")
            .field("shape", &self.shape)
            .finish()
    }
}

impl GpuTensor {
    /// An uninitialised-by-contract (zeroed by wgpu) tensor; `what` names it in errors.
    pub(crate) fn empty(gpu: &Gpu, shape: &[usize], what: &'static str) -> Result<Self> {
        let bytes = check_fits(gpu, what, shape)?;
        let (buffer, memory) = gpu.buffer(
            what,
            // wgpu cannot bind an empty buffer; and whole vec4s, so that kernels may read
            // the buffer as array<vec4<f32>> (the tiled gemm does) up to its end.
            bytes.max(4).next_multiple_of(16),
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuTensor {
            gpu: gpu.clone(),
            buffer,
            offset: 0,
            shape: shape.to_vec(),
            _memory: Arc::new(memory),
        })
    }

    /// Zeroed buffers holding tensors of `shapes` back to back, as few as the device's
    /// binding limit allows (usually one): returns each buffer whole (a flat tensor) and
    /// a view of each part, in order.
    pub(crate) fn packed(
        gpu: &Gpu,
        shapes: &[&[usize]],
        what: &'static str,
    ) -> Result<(Vec<Self>, Vec<Self>)> {
        let limits = gpu.limits();
        let max = limits
            .max_storage_buffer_binding_size
            .min(limits.max_buffer_size) as usize
            / 4;
        // Runs of consecutive shapes that fit one buffer.
        let mut runs: Vec<(usize, usize)> = Vec::new(); // (first shape, values)
        for (i, s) in shapes.iter().enumerate() {
            check_fits(gpu, what, s)?;
            match runs.last_mut() {
                Some((_, len)) if *len + numel(s) <= max => *len += numel(s),
                _ => runs.push((i, numel(s))),
            }
        }
        let mut wholes = Vec::new();
        let mut parts = Vec::new();
        for (k, &(first, len)) in runs.iter().enumerate() {
            let end = runs.get(k + 1).map_or(shapes.len(), |r| r.0);
            let whole = Self::empty(gpu, &[len], what)?;
            let mut offset = 0;
            for s in &shapes[first..end] {
                parts.push(GpuTensor {
                    offset,
                    shape: s.to_vec(),
                    ..whole.clone()
                });
                offset += numel(s);
            }
            wholes.push(whole);
        }
        Ok((wholes, parts))
    }

    /// A zero-filled tensor.
    pub fn zeros(gpu: &Gpu, shape: &[usize]) -> Result<Self> {
        Self::empty(gpu, shape, "tensor")
    }

    /// Uploads `data` (row-major, `shape.iter().product()` values).
    pub fn from_slice(gpu: &Gpu, shape: &[usize], data: &[f32]) -> Result<Self> {
        check_len("tensor data", shape, data.len())?;
        let t = Self::empty(gpu, shape, "tensor")?;
        t.write(data)?;
        Ok(t)
    }

    /// Overwrites the contents with `data` (same number of values as the shape holds).
    pub fn write(&self, data: &[f32]) -> Result<()> {
        check_len("tensor write", &self.shape, data.len())?;
        self.write_prefix(data)
    }

    /// Overwrites the first `data.len()` values.
    pub(crate) fn write_prefix(&self, data: &[f32]) -> Result<()> {
        if data.len() > self.len() {
            return Err(Error::DataLength {
                what: "tensor write",
                shape: self.shape.clone(),
                expected: self.len(),
                got: data.len(),
            });
        }
        if !data.is_empty() {
            self.gpu.scoped("writing a tensor", || {
                self.gpu.queue().write_buffer(
                    &self.buffer,
                    self.byte_offset(),
                    bytemuck::cast_slice(data),
                )
            })?;
        }
        Ok(())
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of values.
    pub fn len(&self) -> usize {
        numel(&self.shape)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The buffer, for callers that record their own GPU work on it; the tensor's values
    /// start at [`GpuTensor::offset`] in it.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    /// Index of the first value in [`GpuTensor::buffer`] (0 unless the buffer is shared).
    pub fn offset(&self) -> usize {
        self.offset
    }

    pub(crate) fn byte_offset(&self) -> u64 {
        self.offset as u64 * 4
    }

    /// Records a copy of all values into `dst`, which must have as many, on the same
    /// device.
    pub fn record_copy(&self, rec: &mut super::Recorder<'_>, dst: &GpuTensor) -> Result<()> {
        if !self.gpu.same_device(&dst.gpu) {
            return Err(Error::WrongDevice("the copy's destination"));
        }
        check_len("the copy's destination", &self.shape, dst.len())?;
        self.record_copy_to(rec.encoder(), dst);
        Ok(())
    }

    /// Records a copy of all values into `dst` (same number of values).
    pub(crate) fn record_copy_to(&self, enc: &mut wgpu::CommandEncoder, dst: &GpuTensor) {
        debug_assert_eq!(self.len(), dst.len());
        enc.copy_buffer_to_buffer(
            &self.buffer,
            self.byte_offset(),
            &dst.buffer,
            dst.byte_offset(),
            self.bytes(),
        );
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// Copies the tensor to the host, blocking until the GPU is done (native only; the
    /// browser awaits [`GpuTensor::download_async`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn download(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.download_async())
    }

    /// Copies the tensor to the host. On native backends the device must be polled for the
    /// map to complete, which this future does (blocking) before awaiting the answer; in
    /// the browser it only awaits.
    pub async fn download_async(&self) -> Result<Vec<f32>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let gpu = &self.gpu;
        let size = self.bytes();
        let (staging, _memory) = gpu.buffer(
            "readback",
            size,
            wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
        )?;
        let mut encoder = gpu
            .device()
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(&self.buffer, self.byte_offset(), &staging, 0, size);
        gpu.submit("copying a tensor for readback", encoder)?;

        gpu.read_mapped(&staging).await
    }
}

/// Checks that a tensor of `shape` fits one buffer and one storage binding (every tensor
/// is bound whole by some kernel); returns its bytes.
pub(crate) fn check_fits(gpu: &Gpu, what: &str, shape: &[usize]) -> Result<u64> {
    let bytes = shape
        .iter()
        .try_fold(4u64, |acc, &d| acc.checked_mul(d as u64))
        .unwrap_or(u64::MAX);
    let limits = gpu.limits();
    for (limit, value) in [
        ("max_buffer_size", limits.max_buffer_size),
        (
            "max_storage_buffer_binding_size",
            limits.max_storage_buffer_binding_size,
        ),
    ] {
        if bytes > value {
            return Err(Error::DeviceLimit {
                what: format!("{what} {shape:?} ({bytes} bytes)"),
                limit,
                value,
                asked: bytes,
                advice: "use a smaller batch, sequence length or hidden size, or a device \
                         with a larger limit",
            });
        }
    }
    Ok(bytes)
}
