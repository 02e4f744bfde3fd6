//! Snapshot files: `snapshots/<version, 20 digits>.snap`.
//!
//! A snapshot is one header line of JSON — `schema_version`, the `version` it covers, the
//! `log_offset` where the next event starts, the byte length and CRC-32 of the state, and the
//! checkpoints up to that version — followed by the state's JSON (the same document as
//! `state.json`, readable with `MilestoneState::from_json`).

use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use milestone_core::MilestoneState;
use serde::{Deserialize, Serialize};

use super::crc::Crc32;
use super::fsutil::{IoContext, no_symlink};
use crate::error::StoreError;
use crate::store::Checkpoint;

/// The version of the on-disk layout this library writes and reads.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    pub(crate) schema_version: u32,
    pub(crate) version: u64,
    pub(crate) log_offset: u64,
    pub(crate) state_len: u64,
    pub(crate) crc: String,
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// A snapshot read back.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) version: u64,
    pub(crate) log_offset: u64,
    pub(crate) state: MilestoneState,
    pub(crate) checkpoints: Vec<Checkpoint>,
}

/// The checksum covers the version and log offset as well as the state, so that a damaged
/// header cannot point the replay at the wrong place.
fn body_crc(version: u64, log_offset: u64, state_json: &[u8]) -> u32 {
    Crc32::new()
        .update(format!("{version}:{log_offset}:").as_bytes())
        .update(state_json)
        .finish()
}

pub(crate) fn file_name(version: u64) -> String {
    format!("{version:020}.snap")
}

/// The versions of the snapshot files in `dir`, newest first (names that are not snapshots are
/// ignored).
pub(crate) fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).at(dir)? {
        let entry = entry.at(dir)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".snap")
            && stem.len() == 20
            && let Ok(v) = stem.parse::<u64>()
        {
            out.push((v, entry.path()));
        }
    }
    out.sort_by_key(|s| std::cmp::Reverse(s.0));
    Ok(out)
}

/// The bytes of a snapshot of `state`, given its JSON.
pub(crate) fn encode(
    version: u64,
    log_offset: u64,
    state_json: &[u8],
    checkpoints: &[Checkpoint],
) -> Result<Vec<u8>, StoreError> {
    let header = Header {
        schema_version: FORMAT_VERSION,
        version,
        log_offset,
        state_len: state_json.len() as u64,
        crc: format!("{:08x}", body_crc(version, log_offset, state_json)),
        checkpoints: checkpoints
            .iter()
            .filter(|c| c.version <= version)
            .cloned()
            .collect(),
    };
    let mut out = serde_json::to_vec(&header)
        .map_err(|e| StoreError::invalid(format!("cannot serialize a snapshot header: {e}")))?;
    out.push(b'\n');
    out.extend_from_slice(state_json);
    Ok(out)
}

/// Parses the state of a snapshot. The store writes it itself with `schema_version` as the
/// first field, so the version is read from that prefix and the document parsed once (the
/// general `MilestoneState::from_json` probes the whole document for the version first, which
/// doubles the cost of a large state); anything else falls back to `from_json`.
fn parse_state(path: &Path, body: &[u8]) -> Result<MilestoneState, StoreError> {
    let corrupt = |reason: String| StoreError::Corrupt {
        file: path.to_path_buf(),
        position: "line 2".into(),
        reason,
    };
    let supported = milestone_core::state::SCHEMA_VERSION;
    let prefix = format!("{{\"schema_version\":{supported},");
    if body.len() > milestone_core::state::MAX_STATE_JSON {
        return Err(corrupt(format!(
            "the state is {} bytes, over the limit of {}",
            body.len(),
            milestone_core::state::MAX_STATE_JSON
        )));
    }
    // The UTF-8 is checked once for the whole body, so that the parser need not check each
    // string (it showed when loading a state of 100,000 tasks).
    let text = std::str::from_utf8(body).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;
    if body.starts_with(prefix.as_bytes()) {
        return serde_json::from_str(text).map_err(|e| corrupt(e.to_string()));
    }
    MilestoneState::from_json(text).map_err(|e| match e {
        milestone_core::LoadError::UnsupportedSchema {
            found, supported, ..
        } => StoreError::UnsupportedSchema {
            file: path.to_path_buf(),
            found,
            supported,
        },
        other => corrupt(other.to_string()),
    })
}

/// From this size on, a snapshot's checksum is computed on a second thread while its state is
/// parsed: both are linear in the size and independent, and the checksum alone took about a tenth
/// of loading a state of 100,000 tasks. Below it a thread costs more than it saves.
const PARALLEL_CHECK_BYTES: usize = 1 << 20;

/// The body's checksum and its parsed state. The parse result is used only once the checksum
/// matched, so a damaged body is still reported as a checksum mismatch first.
fn check_and_parse(
    path: &Path,
    version: u64,
    log_offset: u64,
    body: &[u8],
) -> (u32, Result<MilestoneState, StoreError>) {
    if body.len() < PARALLEL_CHECK_BYTES {
        return (body_crc(version, log_offset, body), parse_state(path, body));
    }
    std::thread::scope(|scope| {
        let spawned = std::thread::Builder::new()
            .name("milestone-snapshot-crc".into())
            .spawn_scoped(scope, || body_crc(version, log_offset, body));
        let parsed = parse_state(path, body);
        // A thread that could not start (or, impossibly, panicked) leaves the work to this one.
        let computed = spawned
            .ok()
            .and_then(|h| h.join().ok())
            .unwrap_or_else(|| body_crc(version, log_offset, body));
        (computed, parsed)
    })
}

/// Reads and checks a snapshot. Every failure is `Corrupt` except a newer format
/// (`UnsupportedSchema`) and I/O.
pub(crate) fn read(path: &Path, max_bytes: u64) -> Result<Snapshot, StoreError> {
    let corrupt = |position: &str, reason: String| StoreError::Corrupt {
        file: path.to_path_buf(),
        position: position.into(),
        reason,
    };
    match no_symlink(path)? {
        Some(m) if m.is_file() => {
            if m.len() > max_bytes {
                return Err(corrupt(
                    "whole file",
                    format!("{} bytes, over the limit of {max_bytes}", m.len()),
                ));
            }
        }
        _ => return Err(corrupt("whole file", "not a regular file".into())),
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(max_bytes).read_to_end(&mut bytes))
        .at(path)?;
    let Some(nl) = bytes.iter().position(|&b| b == b'\n') else {
        return Err(corrupt("byte 0", "no header line".into()));
    };
    let header_text = std::str::from_utf8(&bytes[..nl])
        .map_err(|e| corrupt("line 1", format!("header is not UTF-8: {e}")))?;
    match milestone_core::load::check_schema_version("snapshot", header_text, FORMAT_VERSION) {
        Ok(_) => {}
        Err(milestone_core::LoadError::UnsupportedSchema {
            found, supported, ..
        }) => {
            return Err(StoreError::UnsupportedSchema {
                file: path.to_path_buf(),
                found,
                supported,
            });
        }
        Err(e) => return Err(corrupt("line 1", e.to_string())),
    }
    let header: Header = serde_json::from_str(header_text)
        .map_err(|e| corrupt("line 1", format!("header does not parse: {e}")))?;
    let body = &bytes[nl + 1..];
    if body.len() as u64 != header.state_len {
        return Err(corrupt(
            "whole file",
            format!(
                "state is {} bytes, the header says {}",
                body.len(),
                header.state_len
            ),
        ));
    }
    let (computed, parsed) = check_and_parse(path, header.version, header.log_offset, body);
    let crc = format!("{computed:08x}");
    if crc != header.crc {
        return Err(corrupt(
            "whole file",
            format!("checksum mismatch (stored {}, computed {crc})", header.crc),
        ));
    }
    let state = parsed?;
    if state.events_applied() != header.version {
        return Err(corrupt(
            "line 2",
            format!(
                "state has {} events applied, the header says version {}",
                state.events_applied(),
                header.version
            ),
        ));
    }
    Ok(Snapshot {
        version: header.version,
        log_offset: header.log_offset,
        state,
        checkpoints: header.checkpoints,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use milestone_core::{Event, MilestoneId, TaskId, TaskSpec, Timestamp, Workflow};

    /// A state whose JSON is over `PARALLEL_CHECK_BYTES`, so that `read` takes the two-thread
    /// path.
    fn large_state() -> MilestoneState {
        let tasks = (0..4_000)
            .map(|i| TaskSpec::new(TaskId::new(format!("t{i}")).unwrap(), "x".repeat(300)))
            .collect();
        let events = [
            Event::Created {
                at: Timestamp(1),
                id: MilestoneId::new("large").unwrap(),
                title: "Large".into(),
                context: String::new(),
                workflow: Workflow::kiro(),
                seed: 1,
            },
            Event::ExecutionStarted { at: Timestamp(2) },
            Event::TasksAdded {
                at: Timestamp(3),
                tasks,
            },
        ];
        MilestoneState::from_events(&events).unwrap()
    }

    /// `read` of a snapshot file holding `bytes`: the state's task count, or the corruption's
    /// reason.
    fn read_back(dir: &Path, bytes: &[u8]) -> Result<usize, String> {
        let path = dir.join(file_name(3));
        fs::write(&path, bytes).unwrap();
        match read(&path, u64::MAX) {
            Ok(s) => Ok(s.state.tasks().len()),
            Err(StoreError::Corrupt {
                position, reason, ..
            }) => Err(format!("{position}: {reason}")),
            Err(other) => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_large_snapshot_is_checked_and_parsed_with_the_usual_verdicts() {
        let state = large_state();
        let json = serde_json::to_vec(&state).unwrap();
        assert!(json.len() > PARALLEL_CHECK_BYTES, "{}", json.len());
        let dir = tempfile::tempdir().unwrap();
        let bytes = encode(3, 77, &json, &[]).unwrap();
        let path = dir.path().join(file_name(3));
        fs::write(&path, &bytes).unwrap();
        let snap = read(&path, u64::MAX).unwrap();
        assert_eq!((snap.version, snap.log_offset), (3, 77));
        assert_eq!(snap.state, state);
        // Damage in a title, in the JSON's structure, and at the end: a checksum mismatch first,
        // even where the damaged JSON would not parse either.
        let body_start = bytes.len() - json.len();
        let in_title = body_start + json.len() / 2;
        let structure = body_start + json.iter().position(|&b| b == b'{').unwrap();
        for at in [in_title, structure, bytes.len() - 1] {
            let mut damaged = bytes.clone();
            damaged[at] ^= 1;
            let got = read_back(dir.path(), &damaged).unwrap_err();
            assert!(
                got.starts_with("whole file: checksum mismatch"),
                "{at}: {got}"
            );
        }
        // A body whose checksum matches but that is not UTF-8, or not a state, is corrupt at
        // line 2, saying why.
        let mut not_utf8 = json.clone();
        not_utf8[json.len() / 2] = 0xFF;
        let got = read_back(dir.path(), &encode(3, 77, &not_utf8, &[]).unwrap()).unwrap_err();
        assert!(got.starts_with("line 2: not UTF-8"), "{got}");
        let mut truncated = json.clone();
        truncated.truncate(json.len() - 1);
        let got = read_back(dir.path(), &encode(3, 77, &truncated, &[]).unwrap()).unwrap_err();
        assert!(got.starts_with("line 2: EOF while parsing"), "{got}");
        // Intact again: it loads.
        assert_eq!(read_back(dir.path(), &bytes), Ok(4_000));
    }
}
