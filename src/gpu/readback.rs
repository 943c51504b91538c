//! Reading GPU buffers back to the host without blocking the browser's thread: `map_async`
//! wakes a future; natively we also poll the device so the callback fires.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// A MAP_READ buffer reused for every readback of a session.
pub struct Staging {
    pub buffer: wgpu::Buffer,
}

impl Staging {
    pub fn new(ctx: &GpuContext, label: &str, bytes: u64) -> Self {
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(4),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Staging { buffer }
    }

    /// Maps the first `bytes` (already copied in by a submitted command) and returns them.
    pub async fn read(&self, ctx: &GpuContext, bytes: u64) -> Result<Vec<u8>> {
        // A device error reported since the last readback (out of memory, a lost device) means
        // the work just submitted did not run as recorded: report it, not its garbage.
        ctx.check_device()?;
        let slice = self.buffer.slice(..bytes);
        let shared = Arc::new(Mutex::new(MapState::default()));
        let callback_state = shared.clone();
        slice.map_async(wgpu::MapMode::Read, move |result| {
            let mut state = callback_state.lock().unwrap_or_else(|e| e.into_inner());
            state.result = Some(result.map_err(|e| Error::Gpu(format!("mapping a readback buffer failed: {e}"))));
            if let Some(waker) = state.waker.take() {
                waker.wake();
            }
        });
        #[cfg(not(target_arch = "wasm32"))]
        ctx.device.poll(wgpu::PollType::wait_indefinitely()).map_err(|e| Error::Gpu(format!("waiting for the device failed: {e}")))?;
        let mapped = MapFuture { shared }.await;
        ctx.check_device()?;
        mapped?;
        let data = slice.get_mapped_range().map_err(|e| Error::Gpu(format!("reading a mapped buffer failed: {e:?}")))?.to_vec();
        self.buffer.unmap();
        Ok(data)
    }
}

#[derive(Default)]
struct MapState {
    result: Option<Result<()>>,
    waker: Option<Waker>,
}

struct MapFuture {
    shared: Arc<Mutex<MapState>>,
}

impl Future for MapFuture {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut state = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Reads several whole buffers with one copy each into one staging buffer, one submit and one
/// mapping (a session's state is two buffers per layer).
pub async fn read_buffers(ctx: &GpuContext, sources: &[&wgpu::Buffer]) -> Result<Vec<Vec<u8>>> {
    let total: u64 = sources.iter().map(|b| b.size()).sum();
    let staging = Staging::new(ctx, "readback", total);
    let mut encoder = ctx.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("readback") });
    let mut offset = 0;
    for source in sources {
        encoder.copy_buffer_to_buffer(source, 0, &staging.buffer, offset, source.size());
        offset += source.size();
    }
    ctx.queue.submit([encoder.finish()]);
    let bytes = staging.read(ctx, total.max(4)).await?;
    let mut out = Vec::with_capacity(sources.len());
    let mut start = 0;
    for source in sources {
        let end = start + source.size() as usize;
        out.push(bytes[start..end].to_vec());
        start = end;
    }
    Ok(out)
}

/// The first `elements` f32 values of `source` (tests and one-off reads; the per-token path
/// uses a session's own staging buffer).
pub async fn read_f32(ctx: &GpuContext, source: &wgpu::Buffer, elements: usize) -> Result<Vec<f32>> {
    let bytes = read_buffers(ctx, &[source]).await?.remove(0);
    Ok(bytemuck::pod_collect_to_vec::<u8, f32>(&bytes).into_iter().take(elements).collect())
}
