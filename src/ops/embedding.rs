//! out (rows, d_model) = table[ids]: shaders/embedding.wgsl, once per part of the table.

use super::{check_len, groups};
use crate::error::Result;
use crate::gpu::kernels::WG_256;
use crate::gpu::params::EmbeddingParams;
use crate::gpu::tensor::WeightLayout;
use crate::gpu::{GpuWeight, Kernel, Recorder};

pub fn embedding(rec: &mut Recorder, table: &GpuWeight, ids: &wgpu::Buffer, rows: u32, out: &wgpu::Buffer) -> Result<()> {
    let d = table.cols;
    check_len("embedding", "ids", ids, rows as u64)?;
    check_len("embedding", "out", out, rows as u64 * d as u64)?;
    for part in &table.parts {
        let blocks = (table.layout == WeightLayout::RowBlocks) as u32;
        let params = EmbeddingParams { rows, d_model: d, first_row: part.first_row, part_rows: part.rows, blocks, _pad: [0; 3] };
        let kernel = Kernel::Embedding { f16: table.dtype.is_f16() };
        rec.dispatch(kernel, &params, &[ids, &part.buffer, out], [groups(d, WG_256), rows, 1])?;
    }
    Ok(())
}
