//! Where a checkpoint comes from: a Hugging Face hub repository, a local directory or a file.

use crate::{Error, Result};
use std::path::{Path, PathBuf};

/// A checkpoint location.
///
/// ```
/// use segany_core::CheckpointSource;
/// let s = CheckpointSource::parse("facebook/sam-vit-base").unwrap();
/// assert_eq!(s, CheckpointSource::Hub { repo: "facebook/sam-vit-base".into(), revision: "main".into() });
/// let s = CheckpointSource::parse("facebook/sam-vit-base@refs/pr/3").unwrap();
/// assert!(matches!(s, CheckpointSource::Hub { ref revision, .. } if revision == "refs/pr/3"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckpointSource {
    /// A repository on the Hugging Face hub. Downloads go to the hub cache (`HF_HOME`); with
    /// `HF_HUB_OFFLINE=1` only the cache is consulted.
    Hub {
        /// Repository id, `owner/name`.
        repo: String,
        /// Branch, tag, commit or `refs/pr/N`.
        revision: String,
    },
    /// A local directory holding the weights (and usually `config.json`).
    Dir(PathBuf),
    /// A single local `.safetensors` file.
    File(PathBuf),
}

/// The files of a checkpoint once located on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedCheckpoint {
    /// The safetensors file holding the weights.
    pub weights: PathBuf,
    /// The `config.json` next to it, if there is one.
    pub config: Option<PathBuf>,
}

fn looks_like_path(s: &str) -> bool {
    s.starts_with('.')
        || s.starts_with('/')
        || s.starts_with('~')
        || s.ends_with(".safetensors")
        || s.contains('\\')
        || s.matches('/').count() > 1 && !s.contains('@')
}

impl CheckpointSource {
    /// Interprets a user string: an existing file or directory is local; otherwise
    /// `owner/name[@revision]` is a hub repository.
    pub fn parse(s: &str) -> Result<Self> {
        let p = Path::new(s);
        if p.is_file() {
            return Ok(Self::File(p.to_path_buf()));
        }
        if p.is_dir() {
            return Ok(Self::Dir(p.to_path_buf()));
        }
        if looks_like_path(s) {
            return Err(Error::io(
                p,
                std::io::Error::new(std::io::ErrorKind::NotFound, "no such file or directory"),
            ));
        }
        let (repo, revision) = match s.split_once('@') {
            Some((r, rev)) => (r, rev),
            None => (s, "main"),
        };
        let valid = repo.split('/').count() == 2
            && repo.split('/').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
            });
        if !valid || revision.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{s:?} is neither an existing path nor a hub repo id like owner/name[@revision]"
            )));
        }
        Ok(Self::Hub {
            repo: repo.to_string(),
            revision: revision.to_string(),
        })
    }

    /// Locates the weights (the first of `weight_names` that exists; in a directory with none of
    /// them, its only `.safetensors` file) and `config.json`, downloading from the hub if needed.
    pub fn resolve(&self, weight_names: &[&str]) -> Result<ResolvedCheckpoint> {
        match self {
            Self::File(path) => {
                let sibling = path.parent().map(|d| d.join("config.json"));
                let named_model = path.file_name().is_some_and(|n| n == "model.safetensors");
                let config = sibling.filter(|c| named_model && c.is_file());
                Ok(ResolvedCheckpoint {
                    weights: path.clone(),
                    config,
                })
            }
            Self::Dir(dir) => {
                let config = Some(dir.join("config.json")).filter(|c| c.is_file());
                if let Some(w) = weight_names
                    .iter()
                    .map(|n| dir.join(n))
                    .find(|p| p.is_file())
                {
                    return Ok(ResolvedCheckpoint { weights: w, config });
                }
                let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
                let mut found: Vec<PathBuf> = entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                    .collect();
                found.sort();
                match found.len() {
                    1 => Ok(ResolvedCheckpoint { weights: found.remove(0), config }),
                    0 => Err(Error::io(
                        dir,
                        std::io::Error::new(std::io::ErrorKind::NotFound, "no .safetensors file in directory"),
                    )),
                    _ => Err(Error::InvalidArgument(format!(
                        "{} holds several .safetensors files and none is named {}: pass the file itself",
                        dir.display(),
                        weight_names.join(" or ")
                    ))),
                }
            }
            Self::Hub { repo, revision } => hub::resolve(repo, revision, weight_names),
        }
    }

    /// Fetches an optional companion file (`tokenizer.json`, `open_clip_config.json`, ...):
    /// downloads it from a hub repository, or finds it in a directory or next to a file.
    /// `None` when it does not exist.
    pub fn fetch_optional(&self, name: &str) -> Option<PathBuf> {
        match self {
            Self::Hub { repo, revision } => hub::fetch(repo, revision, name).ok(),
            Self::Dir(dir) => Some(dir.join(name)).filter(|p| p.is_file()),
            Self::File(path) => path.parent().map(|d| d.join(name)).filter(|p| p.is_file()),
        }
    }
}

mod hub {
    use super::ResolvedCheckpoint;
    use crate::{Error, Result};
    use hf_hub::{Repo, RepoType};
    use std::path::PathBuf;

    fn offline() -> bool {
        std::env::var("HF_HUB_OFFLINE")
            .is_ok_and(|v| !v.is_empty() && v != "0" && !v.eq_ignore_ascii_case("false"))
    }

    pub(super) fn fetch(repo: &str, revision: &str, file: &str) -> Result<PathBuf> {
        let r = Repo::with_revision(repo.to_string(), RepoType::Model, revision.to_string());
        let err = |reason: String| Error::Hub {
            repo: repo.to_string(),
            revision: revision.to_string(),
            file: file.to_string(),
            reason,
        };
        if offline() {
            return hf_hub::Cache::from_env()
                .repo(r)
                .get(file)
                .ok_or_else(|| err("not in the local hub cache and HF_HUB_OFFLINE is set".into()));
        }
        let api = hf_hub::api::sync::ApiBuilder::from_env()
            .with_progress(true)
            .build()
            .map_err(|e| err(e.to_string()))?;
        api.repo(r).get(file).map_err(|e| err(e.to_string()))
    }

    pub(super) fn resolve(
        repo: &str,
        revision: &str,
        weight_names: &[&str],
    ) -> Result<ResolvedCheckpoint> {
        let mut last = None;
        for name in weight_names {
            match fetch(repo, revision, name) {
                Ok(weights) => {
                    let config = fetch(repo, revision, "config.json").ok();
                    return Ok(ResolvedCheckpoint { weights, config });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::InvalidArgument("no weight file names given".into())))
    }
}
