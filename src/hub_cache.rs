//! Models in the local Hugging Face cache: where the cache is, what a repo id looks like, and
//! which snapshot folder of a cached repo holds a usable model. Nothing here downloads.
//!
//! ```no_run
//! let dir = mamba_wgpu::hub_cache::resolve_local("state-spaces/mamba-130m-hf")?;
//! # Ok::<(), mamba_wgpu::Error>(())
//! ```

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Where `huggingface_hub` keeps downloads: $HF_HUB_CACHE, else $HF_HOME/hub, else
/// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub.
pub fn cache_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = var("HF_HUB_CACHE") {
        return dir;
    }
    if let Some(home) = var("HF_HOME") {
        return home.join("hub");
    }
    let cache = var("XDG_CACHE_HOME").or_else(|| var("HOME").map(|h| h.join(".cache"))).unwrap_or_else(|| PathBuf::from(".cache"));
    cache.join("huggingface").join("hub")
}

/// `owner/name` as the Hub spells repo ids: one slash, letters, digits, `-`, `_`, `.`.
pub fn is_repo_id(s: &str) -> bool {
    let ok_part = |p: &str| !p.is_empty() && !p.starts_with('.') && p.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    matches!(s.split_once('/'), Some((owner, name)) if ok_part(owner) && ok_part(name) && !name.contains('/'))
}

/// The snapshot folder of `repo` in `cache`, if it holds a usable model: the commit named by
/// refs/main (or the only snapshot when there is no ref), with config.json and weights.
/// Files there may be symlinks into blobs/, which opening follows.
pub fn cached_snapshot(cache: &Path, repo: &str) -> Option<PathBuf> {
    let repo_dir = cache.join(format!("models--{}", repo.replace('/', "--")));
    let snapshots = repo_dir.join("snapshots");
    let dir = match std::fs::read_to_string(repo_dir.join("refs").join("main")) {
        Ok(hash) => snapshots.join(hash.trim()),
        Err(_) => {
            let mut dirs: Vec<PathBuf> = std::fs::read_dir(&snapshots).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
            if dirs.len() != 1 {
                return None;
            }
            dirs.pop()?
        }
    };
    let has_weights = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"].iter().any(|f| dir.join(f).is_file());
    (dir.join("config.json").is_file() && has_weights).then_some(dir)
}

/// The model folder `name` stands for: a folder as it is, or a repo id (`owner/name`) found in
/// the local Hugging Face cache. Errors name `name` (and the cache searched).
pub fn resolve_local(name: &str) -> Result<PathBuf> {
    let path = Path::new(name);
    if path.is_dir() {
        return Ok(path.to_path_buf());
    }
    if path.exists() {
        return Err(Error::io(name, "is a file; a model is a folder with config.json and model.safetensors (or pytorch_model.bin)"));
    }
    if !is_repo_id(name) {
        return Err(Error::io(name, "model folder not found"));
    }
    let cache = cache_dir();
    cached_snapshot(&cache, name)
        .ok_or_else(|| Error::io(name, format!("no such folder, and model `{name}` is not in the Hugging Face cache ({})", cache.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_ids_are_told_apart_from_paths() {
        assert!(is_repo_id("state-spaces/mamba-130m-hf"));
        assert!(is_repo_id("tiiuae/falcon-mamba-7b"));
        assert!(!is_repo_id("models/shakespeare/x"));
        assert!(!is_repo_id("../fixtures"));
        assert!(!is_repo_id("/abs"));
        assert!(!is_repo_id("plain"));
        assert!(!is_repo_id("a/"));
    }

    #[test]
    fn a_cached_snapshot_is_found_through_refs_main() {
        let cache = std::env::temp_dir().join(format!("mamba-wgpu-hub-cache-{}", std::process::id()));
        let snapshot = cache.join("models--owner--name/snapshots/abc123");
        std::fs::create_dir_all(&snapshot).expect("temp dir is writable");
        std::fs::create_dir_all(cache.join("models--owner--name/refs")).expect("temp dir is writable");
        std::fs::write(cache.join("models--owner--name/refs/main"), "abc123\n").expect("temp dir is writable");
        assert_eq!(cached_snapshot(&cache, "owner/name"), None, "no config.json or weights yet");
        std::fs::write(snapshot.join("config.json"), "{}").expect("temp dir is writable");
        std::fs::write(snapshot.join("model.safetensors"), "").expect("temp dir is writable");
        assert_eq!(cached_snapshot(&cache, "owner/name"), Some(snapshot));
        assert_eq!(cached_snapshot(&cache, "owner/other"), None);
        let _ = std::fs::remove_dir_all(&cache);
    }
}
