//! The `mamba-wgpu` command line (binary only; the library knows nothing of it).

pub mod args;
pub mod bench_cmd;
pub mod chat;
pub mod generate_cmd;
pub mod info;
pub mod interrupt;
pub mod load;
pub mod model_path;
pub mod state_file;
