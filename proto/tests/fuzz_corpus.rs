//! Replays the fuzz corpora and the fuzz crash regressions through the fuzz targets' own
//! checks, under plain `cargo test` (stable, no libFuzzer):
//! - `proto/fuzz/corpus/<target>/*`: the committed seed corpora (see docs/FUZZING.md);
//! - `tests/data/fuzz-regressions/<target>-<what>`: inputs that once failed a target, kept
//!   after the fix (see the README there).
//!
//! The checks are `proto/fuzz/src/checks.rs`, included here by path with the modules it uses,
//! so a regression runs exactly the code path of the target that found it.

use std::fs;
use std::path::{Path, PathBuf};

#[allow(dead_code)]
#[path = "../fuzz/src/checks.rs"]
mod checks;
#[allow(dead_code)]
#[path = "../fuzz/src/formats.rs"]
mod formats;
#[allow(dead_code)]
#[path = "../fuzz/src/session.rs"]
mod session;
#[allow(dead_code)]
#[path = "../fuzz/src/wire.rs"]
mod wire;

/// A target's check.
type Check = fn(&[u8]);

/// Every fuzz target and its check.
const TARGETS: [(&str, Check); 13] = [
    ("rtmp_handshake", checks::rtmp_handshake),
    ("rtmp_session", checks::rtmp_session),
    ("amf0", checks::amf0),
    ("flv_video", checks::flv_video),
    ("flv_audio", checks::flv_audio),
    ("avc_config", checks::avc_config),
    ("sps", checks::sps),
    ("h264_frames", checks::h264_frames),
    ("aac_config", checks::aac_config),
    ("hls_query", checks::hls_query),
    ("peer_wire", checks::peer_wire),
    ("cmcd", checks::cmcd),
    ("beacon", checks::beacon),
];

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = match fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.expect("dir entry").path())
            .filter(|p| p.is_file())
            .collect(),
        Err(_) => Vec::new(),
    };
    files.sort();
    files
}

fn run(check: Check, path: &Path) {
    let data = fs::read(path).expect("read input");
    // A panic names the input.
    let result = std::panic::catch_unwind(|| check(&data));
    assert!(
        result.is_ok(),
        "{} fails its target's checks",
        path.display()
    );
}

#[test]
fn seed_corpora_pass_the_fuzz_checks() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, check) in TARGETS {
        let inputs = files(&root.join(target));
        assert!(!inputs.is_empty(), "no seed corpus for {target}");
        for input in inputs {
            run(check, &input);
        }
    }
}

#[test]
fn fuzz_regressions_stay_fixed() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz-regressions");
    let inputs: Vec<PathBuf> = files(&dir)
        .into_iter()
        .filter(|p| p.extension().is_none_or(|e| e != "md"))
        .collect();
    assert!(
        !inputs.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for input in inputs {
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let target = name.split('-').next().unwrap_or_default();
        let (_, check) = TARGETS
            .iter()
            .find(|(t, _)| *t == target)
            .unwrap_or_else(|| panic!("{name}: no fuzz target named {target:?}"));
        run(*check, &input);
    }
}
