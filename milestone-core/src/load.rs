//! Loading values from JSON through validating constructors.
//!
//! Every loader checks the size first, parses into an unchecked "raw" serde type (unknown fields
//! refused), checks the schema version where there is one, and converts with `try_from`, so that
//! no invalid value exists in memory.

use serde::de::DeserializeOwned;

use crate::error::LoadError;

/// Parses `json` as `T` after checking it is at most `limit` bytes.
///
/// # Errors
/// [`LoadError::TooLarge`] or [`LoadError::Malformed`] with line and column.
pub fn from_json_limited<T: DeserializeOwned>(
    what: &'static str,
    json: &str,
    limit: usize,
) -> Result<T, LoadError> {
    if json.len() > limit {
        return Err(LoadError::TooLarge {
            what,
            size: json.len(),
            limit,
        });
    }
    serde_json::from_str(json).map_err(|e| malformed(what, &e))
}

/// Reads the `schema_version` field of a JSON object without parsing the rest, so that a
/// document from a newer version is refused with [`LoadError::UnsupportedSchema`] rather than an
/// unknown-field error.
///
/// # Errors
/// [`LoadError::UnsupportedSchema`] when the version is newer than `supported`;
/// [`LoadError::Malformed`] when the document is not a JSON object or has no version.
pub fn check_schema_version(
    what: &'static str,
    json: &str,
    supported: u32,
) -> Result<u32, LoadError> {
    #[derive(serde::Deserialize)]
    struct Probe {
        schema_version: Option<u64>,
    }
    let probe: Probe = serde_json::from_str(json).map_err(|e| malformed(what, &e))?;
    let Some(found) = probe.schema_version else {
        return Err(LoadError::Malformed {
            what,
            line: 1,
            column: 1,
            reason: "missing field `schema_version`".into(),
        });
    };
    let found32 = u32::try_from(found).unwrap_or(u32::MAX);
    if found32 > supported || found == 0 {
        return Err(LoadError::UnsupportedSchema {
            what,
            found: found32,
            supported,
        });
    }
    Ok(found32)
}

pub(crate) fn malformed(what: &'static str, e: &serde_json::Error) -> LoadError {
    LoadError::Malformed {
        what,
        line: e.line(),
        column: e.column(),
        reason: e.to_string(),
    }
}
