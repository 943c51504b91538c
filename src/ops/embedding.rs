//! out (rows, d_model) = table[ids]: shaders/embedding.wgsl, once per part of the table.

use super::groups;
use crate::error::Result;
use crate::gpu::kernels::WG_256;
use crate::gpu::params::EmbeddingParams;
use crate::gpu::tensor::{ElementType, TensorView};
use crate::gpu::{GpuWeight, Kernel, Recorder};

/// `ids` (rows, 1) u32, `out` (rows, d_model) f32, both dense; `table` (vocab, d_model).
pub fn embedding(rec: &mut Recorder, table: &GpuWeight, ids: TensorView, out: TensorView) -> Result<()> {
    let (rows, d) = (ids.rows, table.cols);
    ids.expect_dense("embedding", "ids", ElementType::U32, rows, 1)?;
    out.expect_dense("embedding", "out", ElementType::F32, rows, d)?;
    for part in &table.parts {
        let params = EmbeddingParams { rows, d_model: d, first_row: part.first_row, part_rows: part.rows, _pad: [0; 4] };
        let kernel = Kernel::Embedding { format: table.dtype.shader_format() };
        rec.dispatch(kernel, &params, &[ids.buffer, &part.buffer, out.buffer], [groups(d, WG_256), rows, 1])?;
    }
    Ok(())
}
