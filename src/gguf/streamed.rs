//! A GGUF file loaded tensor by tensor as its bytes arrive, never whole in memory: the browser
//! parses the header from the file's first bytes, then reads each tensor's slice of the File
//! and hands it over. Matrices go to the GPU at once; the small vectors wait in memory until
//! every tensor has come, then the model loads as from any other source
//! (`Model::load_uploaded`, the same names, shapes and checks).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use super::config::config_from_header;
use super::header::{gguf_error, GgufHeader};
use crate::error::{Error, Result};
use crate::gpu::{GpuContext, GpuWeight};
use crate::model::checkpoint::{TensorBytes, TensorSource};
use crate::model::config::MambaConfig;
use crate::model::gpu_weights::{stored_storage, upload_matrix_as};
use crate::model::weight_mix::MatrixRole;
use crate::model::weights::{load_weights, TensorSink};
use crate::model::{LoadOptions, Model};

pub struct StreamedGguf {
    pub config: MambaConfig,
    pub header: GgufHeader,
    source: String,
    /// Names the loader takes as matrices (uploaded as they come).
    matrices: HashSet<String>,
    uploaded: HashMap<String, GpuWeight>,
    vectors: HashMap<String, Vec<u8>>,
}

/// One tensor's place in the file.
pub struct TensorSlice {
    pub name: String,
    /// File offset and length of its bytes.
    pub offset: u64,
    pub len: u64,
}

/// Records which tensors the loader asks for as matrices (a dry run over empty bytes).
struct MatrixNames(HashSet<String>);

impl TensorSink for MatrixNames {
    type Matrix = ();
    type Vector = ();
    fn matrix(&mut self, t: TensorBytes<'_>, _: MatrixRole) -> Result<()> {
        self.0.insert(t.name.to_string());
        Ok(())
    }
    fn vector_mapped(&mut self, _: TensorBytes<'_>, _: fn(f32) -> f32) -> Result<()> {
        Ok(())
    }
}

impl StreamedGguf {
    /// The model a header describes (`name` names the file in errors); every tensor is
    /// checked against the config's shapes here, before any byte of data is read.
    pub fn new(header: GgufHeader, name: &str) -> Result<Self> {
        let config = config_from_header(&header, name)?;
        let mut s =
            StreamedGguf { config, header, source: name.to_string(), matrices: HashSet::new(), uploaded: HashMap::new(), vectors: HashMap::new() };
        let mut names = MatrixNames(HashSet::new());
        load_weights(&s, &mut names)?;
        s.matrices = names.0;
        Ok(s)
    }

    /// Every tensor's slice of the file, in file order.
    pub fn slices(&self) -> Vec<TensorSlice> {
        self.header
            .tensors()
            .iter()
            .map(|t| {
                let (start, end) = self.header.file_range(t);
                TensorSlice { name: t.name.clone(), offset: start, len: end - start }
            })
            .collect()
    }

    /// Tensor `name`'s bytes: a matrix is uploaded now (in its stored type; bf16 as f16), a
    /// vector kept until `finish`.
    pub fn add(&mut self, ctx: &GpuContext, name: &str, bytes: Vec<u8>) -> Result<()> {
        let info = self.header.tensor(name).ok_or_else(|| Error::tensor(name, format!("not in {}", self.source)))?;
        if bytes.len() as u64 != info.byte_len {
            return Err(gguf_error(&self.source, format!("tensor `{name}`: {} bytes given, it has {}", bytes.len(), info.byte_len)));
        }
        if self.matrices.contains(name) {
            let t = TensorBytes { name, dtype: info.dtype, shape: info.shape(), bytes: Cow::Borrowed(&bytes) };
            let weight = upload_matrix_as(ctx, &t, stored_storage(info.dtype))?;
            self.uploaded.insert(name.to_string(), weight);
        } else {
            self.vectors.insert(name.to_string(), bytes);
        }
        Ok(())
    }

    /// The model, once every tensor has been added.
    pub fn finish(mut self, ctx: Arc<GpuContext>, progress: &mut dyn FnMut(u64)) -> Result<Model> {
        if let Some(missing) = self.header.tensors().iter().find(|t| !self.uploaded.contains_key(&t.name) && !self.vectors.contains_key(&t.name)) {
            return Err(gguf_error(&self.source, format!("tensor `{}` was not given", missing.name)));
        }
        let uploaded = std::mem::take(&mut self.uploaded);
        Model::load_uploaded(ctx, &self, LoadOptions::default(), uploaded, progress)
    }
}

impl TensorSource for StreamedGguf {
    fn config(&self) -> &MambaConfig {
        &self.config
    }

    fn source_name(&self) -> &str {
        &self.source
    }

    fn contains(&self, name: &str) -> bool {
        self.header.tensor(name).is_some()
    }

    fn names(&self) -> Option<Vec<String>> {
        Some(self.header.tensors().iter().map(|t| t.name.clone()).collect())
    }

    /// A vector's bytes; a matrix's are empty (it is on the GPU already, or, in `new`'s dry
    /// run, not read at all).
    fn tensor<'a>(&'a self, name: &'a str, shape: &[usize]) -> Result<TensorBytes<'a>> {
        let info = self.header.tensor_of_shape(name, shape, &self.source)?;
        let bytes = self.vectors.get(name).map_or(&[][..], |v| v.as_slice());
        Ok(TensorBytes { name, dtype: info.dtype, shape: info.shape(), bytes: Cow::Borrowed(bytes) })
    }
}
