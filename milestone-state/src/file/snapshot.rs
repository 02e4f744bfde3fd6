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
    if body.starts_with(prefix.as_bytes()) {
        return serde_json::from_slice(body).map_err(|e| corrupt(e.to_string()));
    }
    let text = std::str::from_utf8(body).map_err(|e| corrupt(format!("not UTF-8: {e}")))?;
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
    let crc = format!("{:08x}", body_crc(header.version, header.log_offset, body));
    if crc != header.crc {
        return Err(corrupt(
            "whole file",
            format!("checksum mismatch (stored {}, computed {crc})", header.crc),
        ));
    }
    let state = parse_state(path, body)?;
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
