//! Recording a forward pass: a `Tape` remembers, per dispatch slot, the kernel and the bind
//! group, so that replaying the same sequence of ops (every decode step, every prefill chunk)
//! creates no bind group and no buffer. Parameters of all slots live in one uniform buffer,
//! 256 bytes per slot, written with a single `write_buffer` per run and only when they change.
//!
//! Ops call `Recorder::dispatch` in order; `Recorder::encode` then records one compute pass
//! with every dispatch into the caller's encoder (one encoder and one submit per step).

use std::sync::Arc;

use bytemuck::Pod;

use crate::error::{Error, Result};
use crate::gpu::kernels::KernelSpec;
use crate::gpu::GpuContext;

/// Bytes reserved per slot: WebGPU's largest `minUniformBufferOffsetAlignment`.
const SLOT_BYTES: usize = 256;

struct Slot {
    kernel: KernelSpec,
    pipeline: Arc<wgpu::ComputePipeline>,
    bind_group: wgpu::BindGroup,
}

pub struct Tape {
    label: String,
    slots: Vec<Slot>,
    params_buffer: wgpu::Buffer,
    max_slots: usize,
    /// Parameter bytes last uploaded; a run with identical bytes skips the upload.
    uploaded: Vec<u8>,
    /// Non-empty dispatches of the last encoded run.
    dispatched: usize,
}

impl Tape {
    pub fn new(ctx: &GpuContext, label: &str, max_slots: usize) -> Self {
        let params_buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (max_slots.max(1) * SLOT_BYTES) as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        Tape { label: label.to_string(), slots: Vec::new(), params_buffer, max_slots, uploaded: Vec::new(), dispatched: 0 }
    }

    /// Starts a run over this tape.
    pub fn record<'a>(&'a mut self, ctx: &'a GpuContext) -> Recorder<'a> {
        Recorder { ctx, tape: self, params: Vec::new(), dispatches: Vec::new() }
    }

    /// Bind groups built so far (each slot holds one).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Dispatches the last encoded run issued (empty ones skipped).
    pub fn dispatches(&self) -> usize {
        self.dispatched
    }

    /// The (shader file, entry point) of each slot, in the order first recorded.
    pub fn kernels(&self) -> Vec<(&'static str, &'static str)> {
        self.slots.iter().map(|s| (s.kernel.file, s.kernel.entry)).collect()
    }
}

pub struct Recorder<'a> {
    ctx: &'a GpuContext,
    tape: &'a mut Tape,
    params: Vec<u8>,
    /// (slot, workgroups) in dispatch order
    dispatches: Vec<(usize, [u32; 3])>,
}

impl Recorder<'_> {
    pub fn ctx(&self) -> &GpuContext {
        self.ctx
    }

    /// Queues one dispatch of `kernel` with `params` at binding 0 and `buffers` at bindings
    /// 1.. in order. Empty dispatches (a zero workgroup count) are skipped.
    pub fn dispatch<P: Pod>(&mut self, kernel: impl Into<KernelSpec>, params: &P, buffers: &[&wgpu::Buffer], workgroups: [u32; 3]) -> Result<()> {
        let numbered: Vec<(u32, &wgpu::Buffer)> = buffers.iter().enumerate().map(|(i, b)| (i as u32 + 1, *b)).collect();
        self.dispatch_bindings(kernel, params, &numbered, workgroups)
    }

    /// Like `dispatch`, with explicit binding numbers: for an entry point that uses only some
    /// of its file's bindings (its automatic layout holds just those).
    pub fn dispatch_bindings<P: Pod>(
        &mut self,
        kernel: impl Into<KernelSpec>,
        params: &P,
        buffers: &[(u32, &wgpu::Buffer)],
        workgroups: [u32; 3],
    ) -> Result<()> {
        let kernel = kernel.into();
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        if workgroups.iter().any(|&w| w > max) {
            return Err(Error::Limit(format!(
                "{} ({}) needs {workgroups:?} workgroups, the device allows {max} per dimension",
                kernel.file, kernel.entry
            )));
        }
        let slot = self.dispatches.len();
        if slot >= self.tape.max_slots {
            return Err(Error::Gpu(format!("tape `{}` holds {} dispatches; the forward pass needs more", self.tape.label, self.tape.max_slots)));
        }
        let bytes = bytemuck::bytes_of(params);
        self.params.extend_from_slice(bytes);
        self.params.resize((slot + 1) * SLOT_BYTES, 0);
        if slot == self.tape.slots.len() {
            let s = self.new_slot(kernel, slot, bytes.len(), buffers);
            self.tape.slots.push(s);
        } else if self.tape.slots[slot].kernel.key() != kernel.key() {
            // The ops of a tape are a fixed sequence; anything else is a bug in the caller.
            let expected = &self.tape.slots[slot].kernel;
            return Err(Error::Gpu(format!(
                "tape `{}` slot {slot}: expected {} ({}), got {} ({})",
                self.tape.label, expected.file, expected.entry, kernel.file, kernel.entry
            )));
        }
        if workgroups.iter().all(|&w| w > 0) {
            self.dispatches.push((slot, workgroups));
        } else {
            self.dispatches.push((slot, [0, 0, 0]));
        }
        Ok(())
    }

    fn new_slot(&self, kernel: KernelSpec, slot: usize, params_len: usize, buffers: &[(u32, &wgpu::Buffer)]) -> Slot {
        let pipeline = self.ctx.kernels.pipeline(&self.ctx.device, &kernel);
        let mut entries = vec![wgpu::BindGroupEntry {
            binding: 0,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &self.tape.params_buffer,
                offset: (slot * SLOT_BYTES) as u64,
                size: wgpu::BufferSize::new(params_len.div_ceil(16) as u64 * 16),
            }),
        }];
        for (binding, buffer) in buffers {
            entries.push(wgpu::BindGroupEntry { binding: *binding, resource: buffer.as_entire_binding() });
        }
        let bind_group = self.ctx.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(&self.tape.label),
            layout: &pipeline.get_bind_group_layout(0),
            entries: &entries,
        });
        Slot { kernel, pipeline, bind_group }
    }

    /// Uploads the parameters (if they changed) and records every dispatch in one compute pass.
    pub fn encode(self, encoder: &mut wgpu::CommandEncoder) {
        if self.params != self.tape.uploaded {
            self.ctx.queue.write_buffer(&self.tape.params_buffer, 0, &self.params);
            self.tape.uploaded = self.params;
        }
        self.tape.dispatched = self.dispatches.iter().filter(|(_, [x, _, _])| *x > 0).count();
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some(&self.tape.label), timestamp_writes: None });
        for (slot, [x, y, z]) in self.dispatches {
            if x == 0 {
                continue;
            }
            let s = &self.tape.slots[slot];
            pass.set_pipeline(&s.pipeline);
            pass.set_bind_group(0, &s.bind_group, &[]);
            pass.dispatch_workgroups(x, y, z);
        }
    }
}
