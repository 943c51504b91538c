//! `--save-state` / `--load-state` files (the format: mamba_wgpu::state_file).
//!
//! Saving never destroys a user's file by accident: the destination is checked before the
//! run (its folder exists and takes a new file; it is not a symbolic link, a folder, or any
//! input of the run: a model file, the tokenizer, the prompt file, the loaded state), and the
//! file is written next to it and renamed over it, so an interrupted save leaves no torn file.
//! An existing state file that is none of those is replaced.

use std::io::BufReader;
use std::path::{Path, PathBuf};

use mamba_wgpu::state_file::{decode, encode, SavedState};
use mamba_wgpu::{Error, Model, Result, Session};

/// Fails unless `path` can take the state file of a run whose inputs are `inputs`.
pub fn check_destination(path: &Path, inputs: &[PathBuf]) -> Result<()> {
    let name = format!("--save-state {}", path.display());
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if meta.file_type().is_symlink() {
            return Err(Error::io(name, "is a symbolic link; state files are not written through links: give the path of a regular file"));
        }
        if meta.is_dir() {
            return Err(Error::io(name, "is a folder; give a file name"));
        }
        if let Some(input) = inputs.iter().find(|input| same_file(path, input)) {
            return Err(Error::io(name, format!("is {}, an input of this run; it would be overwritten: choose another file", input.display())));
        }
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if !dir.is_dir() {
        return Err(Error::io(name, format!("its folder {} does not exist", dir.display())));
    }
    // Take the temporary file now, so a folder that refuses new files fails before the run.
    let tmp = temp_path(path);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)
        .map_err(|e| Error::io(&name, format!("cannot create a file in {}: {e}", dir.display())))?;
    let _ = std::fs::remove_file(&tmp);
    Ok(())
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "state".into());
    path.with_file_name(format!(".{name}.tmp{}", std::process::id()))
}

/// Whether `a` and `b` name the same existing file (through links and relative paths).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Writes next to the target and renames, so an interrupted save never leaves a torn file
/// under the real name. Errors name the user's path.
pub fn save(path: &Path, state: &SavedState) -> Result<()> {
    let tmp = temp_path(path);
    let name = format!("--save-state {}", path.display());
    std::fs::write(&tmp, encode(state)).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&name, e)
    })?;
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(&name, e)
    })
}

/// Reads a state file for `session` (bounded: see mamba_wgpu::state_file).
pub fn load(path: &Path, model: &Model, session: &Session) -> Result<SavedState> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| Error::io(&name, e))?;
    if meta.is_dir() {
        return Err(Error::io(&name, "is a folder, not a state file"));
    }
    let file = std::fs::File::open(path).map_err(|e| Error::io(&name, e))?;
    decode(BufReader::new(file), &name, model.fingerprint, session.snapshot_len())
}
