//! GPU buffers: plain f32 activations, and weight matrices that may be f16 or GGUF blocks and
//! are split by rows.

use wgpu::util::DeviceExt;

use crate::error::{Error, Result};
use crate::gpu::GpuContext;
use crate::quant::BlockFormat;

/// How big matrices are stored on the GPU. Activations and small vectors are always f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WeightDtype {
    F32,
    /// IEEE half, two per u32 word, read with unpack2x16float (no shader-f16 needed).
    F16,
    /// GGUF blocks (Q8_0, Q4_0, Q4_K, Q5_K, Q6_K), dequantized by the kernels as they load them.
    Block(BlockFormat),
}

impl WeightDtype {
    pub fn is_f16(self) -> bool {
        self == WeightDtype::F16
    }

    /// Whether the scan kernels that read x_proj and dt_proj themselves (the fused decode
    /// steps) take this storage: f32 and f16 only.
    pub fn is_float(self) -> bool {
        matches!(self, WeightDtype::F32 | WeightDtype::F16)
    }

    /// Elements in one unit, the load width of the matrix kernels: 16 bytes of f32 or f16, 8
    /// values of a block format.
    pub fn elements_per_unit(self) -> usize {
        match self {
            WeightDtype::F32 => 4,
            WeightDtype::F16 | WeightDtype::Block(_) => 8,
        }
    }

    /// Bytes per value on average (a block's bytes over its values for a block format).
    pub fn bytes_per_value(self) -> f64 {
        match self {
            WeightDtype::F32 => 4.0,
            WeightDtype::F16 => 2.0,
            WeightDtype::Block(f) => f.block_bytes() as f64 / f.block_elements() as f64,
        }
    }

    /// The FORMAT override constant of the kernels that read weights.
    pub fn shader_format(self) -> u8 {
        match self {
            WeightDtype::F32 => 0,
            WeightDtype::F16 => 1,
            WeightDtype::Block(f) => f.shader_format() as u8,
        }
    }

    /// "f32", "f16", or the block format's name ("q4_k").
    pub fn name(self) -> &'static str {
        match self {
            WeightDtype::F32 => "f32",
            WeightDtype::F16 => "f16",
            WeightDtype::Block(f) => f.name(),
        }
    }

    /// `name`'s inverse.
    pub fn from_name(name: &str) -> Option<Self> {
        match name.to_ascii_lowercase().as_str() {
            "f32" => Some(WeightDtype::F32),
            "f16" => Some(WeightDtype::F16),
            other => BlockFormat::from_name(other).map(WeightDtype::Block),
        }
    }
}

impl std::fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

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
    pub rows: u32,
    pub cols: u32,
    pub parts: Vec<WeightPart>,
}

impl GpuWeight {
    /// Uploads a row-major matrix: f32 values or half bits, each row padded to whole 16-byte
    /// units, or GGUF blocks, each block rearranged to whole words (BlockFormat::gpu_block);
    /// split so that no part exceeds the context's binding size.
    pub fn upload(ctx: &GpuContext, name: &str, rows: usize, cols: usize, data: WeightData<'_>) -> Result<Self> {
        let (dtype, row_words) = match data {
            WeightData::F32(_) => (WeightDtype::F32, cols.div_ceil(4) * 4),
            WeightData::F16(_) => (WeightDtype::F16, cols.div_ceil(8) * 4),
            WeightData::Blocks(format, bytes) => {
                let expected = format.matrix_bytes(name, rows, cols)?;
                if bytes.len() != expected {
                    return Err(Error::tensor(name, format!("holds {} bytes, ({rows}, {cols}) in {format} takes {expected}", bytes.len())));
                }
                (WeightDtype::Block(format), cols / format.block_elements() * format.gpu_block_words())
            }
        };
        let row_bytes = row_words as u64 * 4;
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
            let mut words = Vec::with_capacity(n * row_words);
            for row in first..first + n {
                let values = row * cols..(row + 1) * cols;
                match data {
                    WeightData::F32(v) => words.extend(v[values].iter().map(|x| x.to_bits())),
                    WeightData::F16(h) => words.extend(h[values].chunks(2).map(|pair| pair[0] as u32 | (*pair.get(1).unwrap_or(&0) as u32) << 16)),
                    WeightData::Blocks(format, bytes) => {
                        let row_bytes = cols / format.block_elements() * format.block_bytes();
                        for block in bytes[row * row_bytes..(row + 1) * row_bytes].chunks_exact(format.block_bytes()) {
                            format.gpu_block(block, &mut words);
                        }
                    }
                }
                words.resize((row - first + 1) * row_words, 0);
            }
            let buffer = upload_words(ctx, name, &words);
            parts.push(WeightPart { buffer, first_row: first as u32, rows: n as u32 });
            first += n;
        }
        Ok(GpuWeight { dtype, rows: rows as u32, cols: cols as u32, parts })
    }

    pub fn size_bytes(&self) -> u64 {
        self.parts.iter().map(|p| p.buffer.size()).sum()
    }
}

pub enum WeightData<'a> {
    F32(&'a [f32]),
    /// IEEE half bits
    F16(&'a [u16]),
    /// GGUF blocks, rows one after the other (a row is a whole number of blocks)
    Blocks(BlockFormat, &'a [u8]),
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

/// Weight buffers are whole 16-byte units: the matrix kernels bind them as arrays of vec4.
fn upload_words(ctx: &GpuContext, label: &str, words: &[u32]) -> wgpu::Buffer {
    ctx.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
        label: Some(label),
        contents: bytemuck::cast_slice(&padded(words, 4)),
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

/// Element type of an activation buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElementType {
    F32,
    U32,
}

/// A typed view of a storage buffer as a (rows, cols) matrix: element [r, c] is element
/// `offset + r * row_stride + c` of the buffer. Ops take views and check each one's element
/// type, shape and extent against their other operands and the buffer's size; a column slice
/// of a wider matrix (z, the second half of in_proj's output) is a view with a larger stride.
#[derive(Clone, Copy, Debug)]
pub struct TensorView<'a> {
    pub buffer: &'a wgpu::Buffer,
    pub dtype: ElementType,
    pub offset: u32,
    pub rows: u32,
    pub cols: u32,
    pub row_stride: u32,
}

impl<'a> TensorView<'a> {
    /// A dense (rows, cols) f32 matrix at the start of `buffer`.
    pub fn f32(buffer: &'a wgpu::Buffer, rows: u32, cols: u32) -> Self {
        TensorView { buffer, dtype: ElementType::F32, offset: 0, rows, cols, row_stride: cols }
    }

    /// A dense (rows, cols) u32 matrix at the start of `buffer` (token ids).
    pub fn u32(buffer: &'a wgpu::Buffer, rows: u32, cols: u32) -> Self {
        TensorView { dtype: ElementType::U32, ..Self::f32(buffer, rows, cols) }
    }

    /// A vector of `len` f32 values, as one row.
    pub fn vector(buffer: &'a wgpu::Buffer, len: u32) -> Self {
        Self::f32(buffer, 1, len)
    }

    /// Columns [start, start + len) of every row.
    pub fn columns(self, start: u32, len: u32) -> Self {
        TensorView { offset: self.offset + start, cols: len, ..self }
    }

    /// Elements the view spans from the buffer's start, up to its last element.
    fn extent(&self) -> u64 {
        if self.rows == 0 || self.cols == 0 {
            return 0;
        }
        self.offset as u64 + (self.rows as u64 - 1) * self.row_stride as u64 + self.cols as u64
    }

    /// Fails unless the view is of `dtype` and shape (rows, cols), its rows do not overlap,
    /// and the buffer holds it; `op` and `what` name the operand in the error.
    pub(crate) fn expect(&self, op: &str, what: &str, dtype: ElementType, rows: u32, cols: u32) -> Result<()> {
        let name = || format!("{op}.{what}");
        if self.dtype != dtype {
            return Err(Error::invalid(name(), format!("is {:?}, the kernel reads {dtype:?}", self.dtype)));
        }
        if (self.rows, self.cols) != (rows, cols) {
            return Err(Error::invalid(name(), format!("has shape ({}, {}), the op needs ({rows}, {cols})", self.rows, self.cols)));
        }
        // Each row lies within its own stride: a column slice may not run into the next row.
        if self.rows > 1 && self.offset % self.row_stride.max(1) + self.cols > self.row_stride {
            return Err(Error::invalid(
                name(),
                format!("{} columns from column {} do not fit rows of stride {}", self.cols, self.offset % self.row_stride.max(1), self.row_stride),
            ));
        }
        let needed = self.extent() * 4;
        if self.buffer.size() < needed {
            return Err(Error::invalid(name(), format!("buffer holds {} bytes, the view needs {needed}", self.buffer.size())));
        }
        Ok(())
    }

    /// `expect`, and the view must also be dense from the buffer's start (the kernel indexes
    /// the buffer as that matrix).
    pub(crate) fn expect_dense(&self, op: &str, what: &str, dtype: ElementType, rows: u32, cols: u32) -> Result<()> {
        self.expect(op, what, dtype, rows, cols)?;
        if self.offset != 0 || (self.row_stride != self.cols && self.rows > 1) {
            return Err(Error::invalid(
                format!("{op}.{what}"),
                format!("must be dense from the buffer's start (offset {}, stride {} for {} columns)", self.offset, self.row_stride, self.cols),
            ));
        }
        Ok(())
    }
}
