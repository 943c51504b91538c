//! ids (rows) = argmax over each row of logits (rows, n): shaders/argmax.wgsl.

use super::check_len;
use crate::error::Result;
use crate::gpu::params::ArgmaxParams;
use crate::gpu::{Kernel, Recorder};

pub fn argmax(rec: &mut Recorder, logits: &wgpu::Buffer, rows: u32, n: u32, ids: &wgpu::Buffer) -> Result<()> {
    check_len("argmax", "logits", logits, rows as u64 * n as u64)?;
    check_len("argmax", "ids", ids, rows as u64)?;
    rec.dispatch(Kernel::Argmax, &ArgmaxParams { rows, n, _pad: [0; 2] }, &[logits, ids], [rows, 1, 1])
}
