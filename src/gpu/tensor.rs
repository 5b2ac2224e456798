//! Device tensors: an f32 storage buffer with a shape, uploaded and downloaded explicitly.

use std::sync::Arc;

use super::{Gpu, MemTicket};
use crate::error::{Error, Result};
use crate::shapes::{check_len, numel};

/// A dense, row-major f32 tensor in GPU memory.
#[derive(Clone)]
pub struct GpuTensor {
    gpu: Gpu,
    buffer: wgpu::Buffer,
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
            // wgpu cannot bind an empty buffer; keep one element at least.
            bytes.max(4),
            wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
        )?;
        Ok(GpuTensor {
            gpu: gpu.clone(),
            buffer,
            shape: shape.to_vec(),
            _memory: Arc::new(memory),
        })
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
                self.gpu
                    .queue()
                    .write_buffer(&self.buffer, 0, bytemuck::cast_slice(data))
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

    /// The buffer, for callers that record their own GPU work on it.
    pub fn buffer(&self) -> &wgpu::Buffer {
        &self.buffer
    }

    pub fn gpu(&self) -> &Gpu {
        &self.gpu
    }

    pub(crate) fn bytes(&self) -> u64 {
        self.len() as u64 * 4
    }

    /// Copies the tensor to the host, blocking until the GPU is done.
    pub fn download(&self) -> Result<Vec<f32>> {
        pollster::block_on(self.download_async())
    }

    /// Copies the tensor to the host. On native backends the device must be polled for the
    /// map to complete, which this future does (blocking) before awaiting the answer.
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
        encoder.copy_buffer_to_buffer(&self.buffer, 0, &staging, 0, size);
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
