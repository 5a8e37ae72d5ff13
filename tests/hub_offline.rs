//! The hub code path without network: a hub-cache layout under `HF_HOME` with
//! `HF_HUB_OFFLINE=1`. Kept in its own test binary because it sets process-wide variables.

mod common;

use candle_core::{DType, Device};
use common::fixture;
use segany::{CheckpointSource, Error, Sam};

#[test]
fn offline_hub_ids_resolve_from_the_cache() {
    let home = std::env::temp_dir().join(format!("segany-hf-home-{}", std::process::id()));
    let repo = home.join("hub").join("models--segany-tests--sam-tiny");
    let commit = "0123456789abcdef0123456789abcdef01234567";
    let snap = repo.join("snapshots").join(commit);
    std::fs::create_dir_all(&snap).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), commit).unwrap();
    for f in ["model.safetensors", "config.json"] {
        std::fs::copy(fixture("sam/sam_tiny_hf").join(f), snap.join(f)).unwrap();
    }
    std::env::set_var("HF_HOME", &home);
    std::env::set_var("HF_HUB_OFFLINE", "1");

    let src = CheckpointSource::parse("segany-tests/sam-tiny").unwrap();
    let resolved = src.resolve(&["model.safetensors"]).unwrap();
    assert_eq!(resolved.weights, snap.join("model.safetensors"));
    assert_eq!(resolved.config, Some(snap.join("config.json")));
    let sam = Sam::load("segany-tests/sam-tiny", &Device::Cpu, DType::F32).unwrap();
    assert_eq!(sam.image_size(), 160);

    // A revision absent from the cache is a Hub error naming repo, revision and file.
    match Sam::load("segany-tests/sam-tiny@v2", &Device::Cpu, DType::F32) {
        Err(Error::Hub { repo, revision, .. }) => assert_eq!(
            (repo.as_str(), revision.as_str()),
            ("segany-tests/sam-tiny", "v2")
        ),
        other => panic!("expected a Hub error, got {other:?}"),
    }
    // Neither a path nor a repo id.
    assert!(matches!(
        CheckpointSource::parse("not a repo"),
        Err(Error::InvalidArgument(_))
    ));
}
