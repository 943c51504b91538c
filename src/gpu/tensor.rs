//! GPU buffers: plain f32 activations and weight matrices that may be f16 and split by rows.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;

/// How big matrices are stored on the GPU. Activations and small vectors are always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightDtype {
    F32,
    /// IEEE half, two per u32 word, read with unpack2x16float (no shader-f16 needed).
    F16,
}

impl WeightDtype {
    pub fn bytes_per_element(self) -> u64 {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 => 2,
        }
    }

    pub fn is_f16(self) -> bool {
        self == WeightDtype::F16
    }

    /// Elements in one 16-byte unit, the load width of the matrix kernels.
    pub fn elements_per_unit(self) -> usize {
        16 / self.bytes_per_element() as usize
    }
}

/// How a matrix's elements are ordered in its buffers. Both pad each row to whole 16-byte
/// units (4 f32 or 8 f16; zeros past the last column) so kernels load a unit at a time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WeightLayout {
    /// Row after row: unit j of row n at n * units + j. For GPUs, where neighbouring
    /// invocations load neighbouring units of one row (coalesced).
    RowMajor,
    /// Blocks of 64 rows, each stored unit-column by unit-column: unit j of row b * 64 + i at
    /// b * 64 * units + j * size + i, size = 64 except in a part's last block. For CPU devices,
    /// whose SIMD lanes each own rows: the units the 8 lanes of a block load together are
    /// contiguous (shaders/matvec.wgsl, main_blocks).
    RowBlocks,
}

/// Rows of one block of WeightLayout::RowBlocks (BLOCK_ROWS in shaders/matvec.wgsl).
pub const BLOCK_ROWS: usize = 64;

/// Rows [first_row, first_row + rows) of a matrix, in one buffer.
pub struct WeightPart {
    pub buffer: wgpu::Buffer,
    pub first_row: u32,
    pub rows: u32,
}

/// A (rows, cols) matrix on the GPU. A matrix larger than one storage binding (mamba-130m's
/// f32 embedding is 154 MB, WebGPU guarantees 128 MiB) is split by rows into several parts.
pub struct GpuWeight {
    pub dtype: WeightDtype,
    pub layout: WeightLayout,
    pub rows: u32,
    pub cols: u32,
    pub parts: Vec<WeightPart>,
}

impl GpuWeight {
    /// Uploads row-major values given either as f32 or as half bits, in the layout the
    /// context's kernels read, splitting so that no part exceeds the context's binding size.
    pub fn upload(ctx: &GpuContext, name: &str, rows: usize, cols: usize, data: WeightData<'_>) -> Result<Self> {
        let dtype = match data {
            WeightData::F32(_) => WeightDtype::F32,
            WeightData::F16(_) => WeightDtype::F16,
        };
        let layout = if ctx.gpu_kernels { WeightLayout::RowMajor } else { WeightLayout::RowBlocks };
        let units = cols.div_ceil(dtype.elements_per_unit());
        let row_bytes = units as u64 * 16;
        let rows_per_part = (ctx.max_binding_bytes / row_bytes.max(1)) as usize;
        if rows_per_part == 0 {
            return Err(Error::Limit(format!(
                "tensor `{name}`: one row of {row_bytes} bytes exceeds the storage binding size {}",
                ctx.max_binding_bytes
            )));
        }
        let mut parts = Vec::new();
        let mut first = 0;
        while first < rows {
            let n = rows_per_part.min(rows - first);
            let mut words = Vec::with_capacity(n * units * 4);
            for row in first..first + n {
                let values = row * cols..(row + 1) * cols;
                match data {
                    WeightData::F32(v) => words.extend(v[values].iter().map(|x| x.to_bits())),
                    WeightData::F16(h) => words.extend(h[values].chunks(2).map(|pair| pair[0] as u32 | (*pair.get(1).unwrap_or(&0) as u32) << 16)),
                }
                words.resize((row - first + 1) * units * 4, 0);
            }
            if layout == WeightLayout::RowBlocks {
                words = row_blocks(&words, n, units);
            }
            let buffer = upload_words(ctx, name, &words);
            parts.push(WeightPart { buffer, first_row: first as u32, rows: n as u32 });
            first += n;
        }
        Ok(GpuWeight { dtype, layout, rows: rows as u32, cols: cols as u32, parts })
    }

    pub fn size_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

/// Reorders the row-major units (4 words each) of `rows` rows into WeightLayout::RowBlocks.
fn row_blocks(words: &[u32], rows: usize, units: usize) -> Vec<u32> {
    let mut out = Vec::with_capacity(words.len());
    for first in (0..rows).step_by(BLOCK_ROWS) {
        let size = BLOCK_ROWS.min(rows - first);
        for j in 0..units {
            for row in first..first + size {
                let unit = (row * units + j) * 4;
                out.extend_from_slice(&words[unit..unit + 4]);
            }
        }
    }
    out
}

pub enum WeightData<'a> {
    F32(&'a [f32]),
    /// IEEE half bits
    F16(&'a [u16]),
}

/// Buffers are padded to whole 16-byte words so kernels may bind them as arrays of vec4.
fn padded<T: Copy + Default>(values: &[T], multiple: usize) -> std::borrow::Cow<'_, [T]> {
    if !values.is_empty() && values.len().is_multiple_of(multiple) {
        return std::borrow::Cow::Borrowed(values);
    }
    let mut v = values.to_vec();
    v.resize(values.len().max(1).div_ceil(multiple) * multiple, T::default());
    std::borrow::Cow::Owned(v)
}

/// Weight buffers are padded to whole 32-byte elements: shaders/weight_pairs_int64.wgsl binds
/// them as arrays of two units.
fn upload_words(ctx: &GpuContext, label: &str, words: &[u32]) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::cast_slice(&padded(words, 8)),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST,
    })
}

/// A storage buffer initialised with f32 values (small weights, test inputs).
pub fn upload_f32(ctx: &GpuContext, label: &str, values: &[f32]) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::cast_slice(&padded(values, 4)),
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
    })
}

/// A zeroed storage buffer of `elements` 4-byte values that can be copied in and out.
pub fn storage(ctx: &GpuContext, label: &str, elements: usize) -> wgpu::Buffer {
    storage_with(&ctx.device, label, elements)
}

pub(crate) fn storage_with(device: &wgpu::Device, label: &str, elements: usize) -> wgpu::Buffer {
    device.create_buffer(&wgpu::BufferDescriptor {
        label: Some(label),
        size: (elements.max(1).div_ceil(4) * 16) as u64,
        usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    })
}
