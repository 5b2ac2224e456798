//! The device: adapter choice, the context that owns device and queue, kernels, tensors.

#[cfg(test)]
mod gemm_tests;
mod kernels;
mod memory;
mod plan;
mod profiler;
mod tensor;
mod tuning;

pub(crate) use tensor::check_fits;

use std::sync::Arc;

pub(crate) use kernels::{
    no_consts, wgsl_struct, wgsl_u32, Access, Kernel, KernelDef, StructLayout, WgslStruct, COMMON,
};
#[cfg(test)]
pub(crate) use kernels::{KERNELS, MAX_STORAGE_BINDINGS};
pub(crate) use memory::MemTicket;
pub use memory::MemoryUse;
pub use plan::Recorder;
pub(crate) use plan::{to_u32, GemmSpec, Operand, Plan, PlanBuilder, WG};
pub(crate) use profiler::Profiler;
pub use tensor::GpuTensor;
pub use tuning::{cache_dir, tuning_path, GemmTuning, GemmVariant, TuningFile, TuningSource};

use crate::error::{Error, Result};
use kernels::Kernels;

/// Which adapter to use. `Default` honours nothing; [`GpuOptions::from_env`] reads
/// `WGPU_BACKEND` (e.g. `vulkan`, `gl`, `metal`, `dx12`, comma separated) and
/// `WGPU_ADAPTER_NAME` (a case-insensitive part of the adapter's name).
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct GpuOptions {
    /// Backends to consider; all of them when `None`.
    pub backends: Option<wgpu::Backends>,
    /// Pick the first adapter whose name contains this (case-insensitive).
    pub adapter_name: Option<String>,
    /// Pick the n-th (mod their number) of the adapters of the preferred one's backend and
    /// device type (among those `adapter_name` matches): one device per process when
    /// several processes share a machine, such as data-parallel ranks (rank r takes r).
    /// Identical cards share a name, so a name alone cannot tell them apart.
    pub adapter_index: Option<usize>,
    /// Limits to request instead of the adapter's best (each must be within what the
    /// adapter offers): to leave room for other work, or to test small devices.
    pub limits: Option<wgpu::Limits>,
    /// The matrix-product kernel to use instead of the adapter's default (see
    /// [`GemmTuning`]); `WGPU_RNN_GEMM` sets it for a whole process.
    pub gemm: Option<GemmTuning>,
    /// Where to look for the tuning file `wgpu-rnn tune` writes; the user's cache folder
    /// ([`cache_dir`]) when `None`.
    pub tuning_dir: Option<std::path::PathBuf>,
    /// Keep to the kernels without subgroup operations even where the adapter offers
    /// `Features::SUBGROUP` (`WGPU_RNN_SUBGROUPS=0`).
    pub no_subgroups: bool,
    /// Keep to per-dispatch uniforms even where the adapter offers `Features::IMMEDIATES`
    /// (`WGPU_RNN_IMMEDIATES=0`).
    pub no_immediates: bool,
    /// Batch rows of a stepwise-recurrence workgroup, 4 or 16, instead of the tuning
    /// file's or the adapter kind's default (see [`Gpu::stepwise_rows`]).
    pub stepwise_rows: Option<usize>,
    /// Whether the forward recurrence runs its subgroup kernel (where the adapter offers
    /// `Features::SUBGROUP`) instead of the plain one: `None` leaves it to the adapter
    /// kind (GPUs yes, CPU adapters no; see [`Gpu::subgroup_recurrence`]), or to
    /// `WGPU_RNN_SUBGROUP_RECURRENCE=1` or `0` where that is set.
    pub subgroup_recurrence: Option<bool>,
}

impl GpuOptions {
    /// Options from `WGPU_BACKEND`, `WGPU_ADAPTER_NAME` and `WGPU_RNN_TUNING_DIR` (the
    /// folder of tuning files, instead of the user's cache folder).
    pub fn from_env() -> Self {
        GpuOptions {
            backends: wgpu::Backends::from_env(),
            adapter_name: std::env::var("WGPU_ADAPTER_NAME")
                .ok()
                .filter(|s| !s.trim().is_empty()),
            adapter_index: None,
            limits: None,
            gemm: None,
            tuning_dir: std::env::var_os("WGPU_RNN_TUNING_DIR")
                .filter(|v| !v.is_empty())
                .map(Into::into),
            no_subgroups: env_off("WGPU_RNN_SUBGROUPS"),
            no_immediates: env_off("WGPU_RNN_IMMEDIATES"),
            stepwise_rows: None,
            subgroup_recurrence: None,
        }
    }

    pub fn with_backends(mut self, backends: wgpu::Backends) -> Self {
        self.backends = Some(backends);
        self
    }

    pub fn with_adapter_name(mut self, name: impl Into<String>) -> Self {
        self.adapter_name = Some(name.into());
        self
    }

    pub fn with_adapter_index(mut self, index: usize) -> Self {
        self.adapter_index = Some(index);
        self
    }

    pub fn with_limits(mut self, limits: wgpu::Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    pub fn with_gemm(mut self, gemm: GemmTuning) -> Self {
        self.gemm = Some(gemm);
        self
    }

    pub fn with_stepwise_rows(mut self, rows: usize) -> Self {
        self.stepwise_rows = Some(rows);
        self
    }

    pub fn without_immediates(mut self) -> Self {
        self.no_immediates = true;
        self
    }

    pub fn with_subgroup_recurrence(mut self, on: bool) -> Self {
        self.subgroup_recurrence = Some(on);
        self
    }

    pub fn without_subgroups(mut self) -> Self {
        self.no_subgroups = true;
        self
    }

    pub fn with_tuning_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.tuning_dir = Some(dir.into());
        self
    }
}

/// What the chosen adapter is, for logs and benchmark tables.
#[derive(Debug, Clone)]
pub struct AdapterSummary {
    pub name: String,
    pub backend: wgpu::Backend,
    pub device_type: wgpu::DeviceType,
    pub driver: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({:?}, {:?}{}{})",
            self.name,
            self.backend,
            self.device_type,
            if self.driver.is_empty() { "" } else { ", " },
            self.driver
        )
    }
}

impl From<wgpu::AdapterInfo> for AdapterSummary {
    fn from(info: wgpu::AdapterInfo) -> Self {
        let driver = [info.driver, info.driver_info]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        AdapterSummary {
            name: info.name,
            backend: info.backend,
            device_type: info.device_type,
            driver,
        }
    }
}

/// The GPU context: device, queue, adapter facts and the pipeline cache. Cheap to clone
/// (shared inside); everything on one device goes through one `Gpu`.
#[derive(Clone)]
pub struct Gpu {
    inner: Arc<Inner>,
}

struct Inner {
    device: wgpu::Device,
    queue: wgpu::Queue,
    adapter: AdapterSummary,
    kernels: Kernels,
    gemm_source: TuningSource,
    memory: Arc<memory::MemCounter>,
    health: Arc<std::sync::Mutex<Health>>,
}

/// What the device's callbacks reported outside any call of ours.
#[derive(Default)]
struct Health {
    /// Set by the device-lost callback: every later call fails with this.
    lost: Option<String>,
    /// An error wgpu raised outside our error scopes; the next call returns it.
    uncaptured: Option<Error>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("adapter", &self.inner.adapter)
            .finish()
    }
}

/// Whether the environment variable `name` turns a feature off (0, off or false).
fn env_off(name: &str) -> bool {
    env_switch(name) == Some(false)
}

/// `Some(true)` for 1/on/true, `Some(false)` for 0/off/false, else `None`.
fn env_switch(name: &str) -> Option<bool> {
    match std::env::var(name).ok()?.trim() {
        "1" | "on" | "true" => Some(true),
        "0" | "off" | "false" => Some(false),
        _ => None,
    }
}

/// The limits a device asks for: WebGPU's defaults (what every browser grants; lowered to
/// the adapter's where it offers less), raised to the adapter's own where a kernel path
/// can use more: buffer and binding sizes (bigger models and batches), workgroup memory
/// (the recurrence keeps W_hh in it when it fits, `model::plan`), workgroup sizes and
/// counts (the larger gemm tiles), and immediates when they are wanted. A path that needs
/// more than the device got is not chosen.
pub fn requested_limits(adapter: &wgpu::Limits, immediates: bool) -> wgpu::Limits {
    wgpu::Limits {
        max_buffer_size: adapter.max_buffer_size,
        max_storage_buffer_binding_size: adapter.max_storage_buffer_binding_size,
        max_compute_workgroup_storage_size: adapter.max_compute_workgroup_storage_size,
        max_compute_invocations_per_workgroup: adapter.max_compute_invocations_per_workgroup,
        max_compute_workgroup_size_x: adapter.max_compute_workgroup_size_x,
        max_compute_workgroup_size_y: adapter.max_compute_workgroup_size_y,
        max_compute_workgroup_size_z: adapter.max_compute_workgroup_size_z,
        max_compute_workgroups_per_dimension: adapter.max_compute_workgroups_per_dimension,
        max_immediate_size: if immediates {
            adapter.max_immediate_size
        } else {
            0
        },
        ..wgpu::Limits::default().or_worse_values_from(adapter)
    }
}

/// Preference among adapters when no name is given: real GPUs first, then software.
fn rank(info: &wgpu::AdapterInfo) -> (u8, u8) {
    let ty = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Other => 3,
        wgpu::DeviceType::Cpu => 4,
    };
    let backend = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (ty, backend)
}

impl Gpu {
    /// Picks an adapter as [`GpuOptions::from_env`] says and creates a device on it.
    /// (Native only: it blocks. The browser uses [`Gpu::new_async`].)
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new() -> Result<Self> {
        Self::with_options(&GpuOptions::from_env())
    }

    /// Picks an adapter as `options` says and creates a device on it (native only: it
    /// blocks; see [`Gpu::with_options_async`]).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn with_options(options: &GpuOptions) -> Result<Self> {
        pollster::block_on(Self::with_options_async(options))
    }

    /// Async form of [`Gpu::new`], the one the browser uses.
    pub async fn new_async() -> Result<Self> {
        Self::with_options_async(&GpuOptions::from_env()).await
    }

    /// Async form of [`Gpu::with_options`]. The device gets WebGPU's default limits, raised
    /// to the adapter's where a kernel path can use more ([`requested_limits`]), or
    /// `options.limits`.
    pub async fn with_options_async(options: &GpuOptions) -> Result<Self> {
        let backends = options.backends.unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        let adapter = Self::choose(&instance, backends, options).await?;
        let info = adapter.get_info();
        let immediates = !options.no_immediates && adapter.limits().max_immediate_size >= 4;
        let limits = options
            .limits
            .clone()
            .unwrap_or_else(|| requested_limits(&adapter.limits(), immediates));
        let mut wanted = wgpu::Features::TIMESTAMP_QUERY;
        if immediates && limits.max_immediate_size >= 4 {
            wanted |= wgpu::Features::IMMEDIATES;
        }
        if !options.no_subgroups {
            wanted |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("wgpu-rnn"),
                // Timestamps only serve `wgpu-rnn bench --profile`, subgroups a faster
                // path of some kernels; ask where offered.
                required_features: adapter.features() & wanted,
                required_limits: limits,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::RequestDevice {
                adapter: info.name.clone(),
                reason: e.to_string(),
            })?;
        let dir = options.tuning_dir.clone().or_else(cache_dir);
        let gpu = Self::build(
            device,
            queue,
            info.into(),
            options.gemm,
            options.stepwise_rows,
            options.subgroup_recurrence,
            dir.as_deref(),
        )?;
        // Errors outside our error scopes must not abort the host process (wgpu's default
        // handler panics): keep the first for the next call to return. A lost device
        // fails every later call instead of hanging it.
        let health = gpu.inner.health.clone();
        gpu.inner.device.on_uncaptured_error(Arc::new(move |e| {
            let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
            h.uncaptured.get_or_insert_with(|| {
                Error::from_wgpu("earlier GPU work (reported outside any call)", e)
            });
        }));
        let health = gpu.inner.health.clone();
        gpu.inner
            .device
            .set_device_lost_callback(move |reason, message| {
                let mut h = health.lock().unwrap_or_else(|p| p.into_inner());
                h.lost = Some(format!("{reason:?}: {message}"));
            });
        Ok(gpu)
    }

    /// Lists every adapter the backends in `options` can see (for `info`-style reports;
    /// native only: it blocks).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn adapters(options: &GpuOptions) -> Vec<AdapterSummary> {
        let backends = options.backends.unwrap_or(wgpu::Backends::all());
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        let instance = wgpu::Instance::new(desc);
        pollster::block_on(instance.enumerate_adapters(backends))
            .into_iter()
            .map(|a| a.get_info().into())
            .collect()
    }

    async fn choose(
        instance: &wgpu::Instance,
        backends: wgpu::Backends,
        options: &GpuOptions,
    ) -> Result<wgpu::Adapter> {
        let mut adapters = instance.enumerate_adapters(backends).await;
        if adapters.is_empty() {
            return Err(Error::NoAdapter {
                backends: format!("{backends:?}"),
            });
        }
        adapters.sort_by_key(|a| rank(&a.get_info()));
        if let Some(wanted) = &options.adapter_name {
            let needle = wanted.to_lowercase();
            let available = adapters
                .iter()
                .map(|a| {
                    let i = a.get_info();
                    format!("{:?} ({:?})", i.name, i.backend)
                })
                .collect::<Vec<_>>()
                .join(", ");
            adapters.retain(|a| a.get_info().name.to_lowercase().contains(&needle));
            if adapters.is_empty() {
                return Err(Error::AdapterNotFound {
                    wanted: wanted.clone(),
                    available,
                });
            }
        }
        let Some(index) = options.adapter_index else {
            return Ok(adapters.swap_remove(0));
        };
        // The same device appears once per backend: count devices of the best kind only.
        let best = adapters[0].get_info();
        adapters.retain(|a| {
            let i = a.get_info();
            i.backend == best.backend && i.device_type == best.device_type
        });
        let n = adapters.len();
        Ok(adapters.swap_remove(index % n))
    }

    /// Wraps a caller's own device and queue, for embedding in a program that already
    /// uses wgpu. The caller keeps control of the device's error handler.
    pub fn from_device(device: wgpu::Device, queue: wgpu::Queue) -> Result<Self> {
        let info = device.adapter_info();
        Self::build(
            device,
            queue,
            info.into(),
            None,
            None,
            None,
            cache_dir().as_deref(),
        )
    }

    // The browser's wgpu types are neither Send nor Sync (one thread there); natively the
    // context is shared across threads.
    #[cfg_attr(target_arch = "wasm32", allow(clippy::arc_with_non_send_sync))]
    fn build(
        device: wgpu::Device,
        queue: wgpu::Queue,
        adapter: AdapterSummary,
        gemm: Option<GemmTuning>,
        stepwise_rows: Option<usize>,
        subgroup_recurrence: Option<bool>,
        tuning_dir: Option<&std::path::Path>,
    ) -> Result<Self> {
        // Every kernel runs 64 invocations in x (gemm: up to 64 in all).
        let l = device.limits();
        for (what, limit, value, asked) in [
            (
                "the kernels' workgroups",
                "max_compute_invocations_per_workgroup",
                l.max_compute_invocations_per_workgroup,
                64,
            ),
            (
                "the kernels' workgroups",
                "max_compute_workgroup_size_x",
                l.max_compute_workgroup_size_x,
                64,
            ),
            (
                "the kernels' storage bindings",
                "max_storage_buffers_per_shader_stage",
                l.max_storage_buffers_per_shader_stage,
                kernels::MAX_STORAGE_BINDINGS,
            ),
        ] {
            if value < asked {
                return Err(Error::DeviceLimit {
                    what: what.into(),
                    limit,
                    value: value as u64,
                    asked: asked as u64,
                    advice: "this device cannot run wgpu-rnn's kernels; use another adapter",
                });
            }
        }
        let choice = tuning::resolve(gemm, stepwise_rows, tuning_dir, &adapter, &l)?;
        let mut kernels = Kernels::new(&device, choice.gemm, choice.stepwise_rows);
        // On CPU adapters (lavapipe) the plain kernel was measured faster (BENCHMARKS.md).
        kernels.subgroup_recurrence = device.features().contains(wgpu::Features::SUBGROUP)
            && subgroup_recurrence
                .or_else(|| env_switch("WGPU_RNN_SUBGROUP_RECURRENCE"))
                .unwrap_or(adapter.device_type != wgpu::DeviceType::Cpu);
        Ok(Gpu {
            inner: Arc::new(Inner {
                device,
                queue,
                adapter,
                kernels,
                gemm_source: choice.source,
                memory: Default::default(),
                health: Default::default(),
            }),
        })
    }

    pub fn device(&self) -> &wgpu::Device {
        &self.inner.device
    }

    pub fn queue(&self) -> &wgpu::Queue {
        &self.inner.queue
    }

    /// The adapter this context runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.inner.adapter
    }

    /// The device's limits (what was granted, not only what the adapter offers).
    pub fn limits(&self) -> wgpu::Limits {
        self.inner.device.limits()
    }

    pub(crate) fn kernels(&self) -> &Kernels {
        &self.inner.kernels
    }

    /// The matrix-product kernel this context runs.
    pub fn gemm(&self) -> GemmTuning {
        self.inner.kernels.gemm
    }

    /// Whether kernels use subgroup operations here (the adapter offers
    /// `Features::SUBGROUP` and they were not turned off).
    pub fn subgroups(&self) -> bool {
        self.inner.kernels.has(&kernels::SUM_SQUARES_SUBGROUP)
    }

    /// Whether the forward recurrence runs its subgroup kernel: where the adapter offers
    /// `Features::SUBGROUP`, on GPUs unless turned off, on CPU adapters only when asked
    /// ([`GpuOptions::subgroup_recurrence`]).
    pub fn subgroup_recurrence(&self) -> bool {
        self.inner.kernels.subgroup_recurrence
    }

    /// Batch rows per workgroup of the stepwise recurrence: 16 on CPU adapters (each
    /// invocation 4 rows, reusing each weight load), 4 on GPUs (one row each, 4x the
    /// workgroups, to fill a GPU at small batch), unless an option, `WGPU_RNN_STEPWISE_ROWS`
    /// or the tuning file says otherwise.
    pub fn stepwise_rows(&self) -> usize {
        self.inner.kernels.stepwise_rows
    }

    /// Whether the stepwise recurrence passes its step as an immediate (the adapter
    /// offers `Features::IMMEDIATES` and they were not turned off).
    pub fn immediates(&self) -> bool {
        self.device()
            .features()
            .contains(wgpu::Features::IMMEDIATES)
    }

    /// Where [`Gpu::gemm`]'s choice came from.
    pub fn gemm_source(&self) -> &TuningSource {
        &self.inner.gemm_source
    }

    /// Device memory in buffers this context's models, trainers and tensors hold.
    pub fn memory(&self) -> MemoryUse {
        self.inner.memory.get()
    }

    /// Starts a new peak: [`MemoryUse::peak_bytes`] becomes the live bytes now.
    pub fn reset_peak_memory(&self) {
        self.inner.memory.reset_peak()
    }

    /// Creates a buffer (inside error scopes) and counts its bytes while the ticket lives.
    pub(crate) fn buffer(
        &self,
        label: &'static str,
        size: u64,
        usage: wgpu::BufferUsages,
    ) -> Result<(wgpu::Buffer, MemTicket)> {
        let buffer = self.scoped("allocating a buffer", || {
            self.inner.device.create_buffer(&wgpu::BufferDescriptor {
                label: Some(label),
                size,
                usage,
                mapped_at_creation: false,
            })
        })?;
        Ok((buffer, self.count_memory(size)))
    }

    /// Counts `bytes` of a buffer made some other way while the ticket lives.
    pub(crate) fn count_memory(&self, bytes: u64) -> MemTicket {
        self.inner.memory.take(bytes)
    }

    /// Whether `other` is this context or a clone of it. (wgpu's own `Device` equality
    /// compares ids that repeat across instances, so it cannot tell two devices apart.)
    pub(crate) fn same_device(&self, other: &Gpu) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// Runs `f` inside validation and out-of-memory error scopes and turns anything wgpu
    /// reported into an [`Error::Gpu`]. Natively it blocks until the scopes answer. In the
    /// browser nothing may block: `f` runs without scopes of its own, and what it does
    /// wrong reaches the device's uncaptured-error handler, or the scopes of an enclosing
    /// [`Gpu::scoped_async`], and fails the next call ([`Gpu::check_health`]).
    pub(crate) fn scoped<R>(&self, during: &'static str, f: impl FnOnce() -> R) -> Result<R> {
        #[cfg(not(target_arch = "wasm32"))]
        return pollster::block_on(self.scoped_async(during, f));
        #[cfg(target_arch = "wasm32")]
        {
            let _ = during;
            self.check_health()?;
            Ok(f())
        }
    }

    /// Async form of [`Gpu::scoped`]: the scopes' answers are awaited (the browser's way).
    pub async fn scoped_async<R>(&self, during: &'static str, f: impl FnOnce() -> R) -> Result<R> {
        self.check_health()?;
        let device = &self.inner.device;
        let oom = device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let validation = device.push_error_scope(wgpu::ErrorFilter::Validation);
        let internal = device.push_error_scope(wgpu::ErrorFilter::Internal);
        let r = f();
        // Every scope closes now, and only then are the answers awaited: no scope stays
        // open across an await, where other work could land in it.
        let (internal, validation, oom) = (internal.pop(), validation.pop(), oom.pop());
        let errors = [internal.await, validation.await, oom.await];
        match errors.into_iter().flatten().next() {
            Some(e) => Err(Error::from_wgpu(during, e)),
            None => self.check_health().map(|()| r),
        }
    }

    /// Submits one command buffer, checking for GPU errors.
    pub(crate) fn submit(&self, during: &'static str, encoder: wgpu::CommandEncoder) -> Result<()> {
        self.scoped(during, || {
            self.inner.queue.submit([encoder.finish()]);
        })
    }

    /// Fails if the device was lost, or returns (once) an error wgpu reported outside
    /// any call's error scopes.
    pub fn check_health(&self) -> Result<()> {
        let mut h = self.inner.health.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &h.lost {
            return Err(Error::DeviceLost(reason.clone()));
        }
        match h.uncaptured.take() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Blocks until all submitted work has finished (native only; the browser awaits a
    /// readback instead).
    #[cfg(not(target_arch = "wasm32"))]
    pub fn wait(&self) -> Result<()> {
        self.check_health()?;
        self.inner
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| Error::Readback(e.to_string()))
    }

    /// Maps a MAP_READ buffer once the submitted work is done, copies out its values and
    /// unmaps it. The answer comes through a futures-intrusive oneshot fed by `map_async`;
    /// native backends only answer when polled, which this does (blocking) first; the
    /// browser answers from its event loop, which awaiting lets run.
    pub(crate) async fn read_mapped(&self, buffer: &wgpu::Buffer) -> Result<Vec<f32>> {
        let bytes = self.read_mapped_bytes(buffer).await?;
        Ok(bytemuck::pod_collect_to_vec(&bytes))
    }

    /// [`Gpu::read_mapped`] as raw bytes.
    pub(crate) async fn read_mapped_bytes(&self, buffer: &wgpu::Buffer) -> Result<Vec<u8>> {
        // Checked before the map: no error may leave the buffer mapped (the trainer reads
        // its stats through the same buffer every step).
        self.check_health()?;
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        buffer.map_async(wgpu::MapMode::Read, .., move |r| {
            sender.send(r).ok();
        });
        #[cfg(not(target_arch = "wasm32"))]
        if let Err(e) = self.inner.device.poll(wgpu::PollType::wait_indefinitely()) {
            buffer.unmap(); // cancels the pending map
            return Err(Error::Readback(e.to_string()));
        }
        match receiver.receive().await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                self.check_health()?;
                return Err(Error::Readback(e.to_string()));
            }
            None => return Err(Error::Readback("the map request was dropped".into())),
        }
        let data = buffer.get_mapped_range(..).map(|r| r.to_vec());
        buffer.unmap();
        let data = data.map_err(|e| Error::Readback(e.to_string()))?;
        // Work the browser reported outside any awaited scope fails the readback.
        self.check_health()?;
        Ok(data)
    }

    /// Uploads `data` as a tensor of `shape`.
    pub fn tensor(&self, shape: &[usize], data: &[f32]) -> Result<GpuTensor> {
        GpuTensor::from_slice(self, shape, data)
    }

    /// A zero-filled tensor of `shape`.
    pub fn zeros(&self, shape: &[usize]) -> Result<GpuTensor> {
        GpuTensor::zeros(self, shape)
    }
}
