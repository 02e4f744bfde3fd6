//! The event log format and its scanner.
//!
//! One line per event:
//!
//! ```text
//! {"seq":7,"last":8,"crc":"1c291ca3","event":{"type":"item-started",...}}
//! ```
//!
//! `seq` is the event's version (line number), `last` the version of the last event of the
//! append it belongs to (an append of several events is one *batch*: all of it counts or none),
//! and `crc` the CRC-32 (see [`super::crc`]) of the bytes `"{seq}:{last}:"` followed by the
//! event's JSON exactly as written, in 8 lowercase hex digits. Every line is valid JSON for
//! other tools; this reader parses the fixed prefix by hand so that it checksums the exact
//! bytes.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Seek, SeekFrom};
use std::path::Path;

use milestone_core::Event;

use super::crc::Crc32;
use super::fsutil::IoContext;
use crate::error::StoreError;

/// Appends the line for one event (already serialized) to `out`.
pub(crate) fn encode(out: &mut Vec<u8>, seq: u64, last: u64, event_json: &[u8]) {
    let crc = Crc32::new()
        .update(format!("{seq}:{last}:").as_bytes())
        .update(event_json)
        .finish();
    out.extend_from_slice(
        format!("{{\"seq\":{seq},\"last\":{last},\"crc\":\"{crc:08x}\",\"event\":").as_bytes(),
    );
    out.extend_from_slice(event_json);
    out.extend_from_slice(b"}\n");
}

/// Bytes a line adds around the event's JSON, at most.
pub(crate) const LINE_OVERHEAD: usize = 80;

fn take<'a>(s: &'a [u8], prefix: &[u8]) -> Result<&'a [u8], String> {
    s.strip_prefix(prefix)
        .ok_or_else(|| format!("expected {:?}", String::from_utf8_lossy(prefix)))
}

fn number(s: &[u8]) -> Result<(u64, &[u8]), String> {
    let digits = s.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 19 {
        return Err("expected a sequence number".into());
    }
    let mut n: u64 = 0;
    for &d in &s[..digits] {
        n = n * 10 + u64::from(d - b'0');
    }
    Ok((n, &s[digits..]))
}

/// Splits a line (without its newline) into seq, last and the event's JSON, checking the
/// checksum.
pub(crate) fn decode(line: &[u8]) -> Result<(u64, u64, &[u8]), String> {
    let s = take(line, b"{\"seq\":")?;
    let (seq, s) = number(s)?;
    let s = take(s, b",\"last\":")?;
    let (last, s) = number(s)?;
    let s = take(s, b",\"crc\":\"")?;
    if s.len() < 8 {
        return Err("truncated checksum".into());
    }
    let mut crc = 0u32;
    for &h in &s[..8] {
        let digit = match h {
            b'0'..=b'9' => h - b'0',
            b'a'..=b'f' => h - b'a' + 10,
            _ => return Err("checksum is not 8 lowercase hex digits".into()),
        };
        crc = (crc << 4) | u32::from(digit);
    }
    let s = take(&s[8..], b"\",\"event\":")?;
    let event = s
        .strip_suffix(b"}")
        .ok_or_else(|| "line does not end with '}'".to_string())?;
    let actual = Crc32::new()
        .update(format!("{seq}:{last}:").as_bytes())
        .update(event)
        .finish();
    if actual != crc {
        return Err(format!(
            "checksum mismatch (stored {crc:08x}, computed {actual:08x})"
        ));
    }
    if last < seq {
        return Err(format!("batch end {last} is before sequence number {seq}"));
    }
    Ok((seq, last, event))
}

enum LineRead {
    /// A full line of this many bytes (newline included) is in the buffer.
    Line(usize),
    /// End of file after bytes without a newline.
    Partial,
    /// The line is longer than the limit.
    TooLong,
    Eof,
}

fn read_line_bounded<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let available = match r.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Partial
            });
        }
        if let Some(i) = available.iter().position(|&b| b == b'\n') {
            buf.extend_from_slice(&available[..=i]);
            r.consume(i + 1);
            return Ok(if buf.len() > max + 1 {
                LineRead::TooLong
            } else {
                LineRead::Line(buf.len())
            });
        }
        let n = available.len();
        buf.extend_from_slice(available);
        r.consume(n);
        if buf.len() > max + 1 {
            return Ok(LineRead::TooLong);
        }
    }
}

/// What a scan found after the last complete batch.
#[derive(Debug)]
pub(crate) struct Torn {
    /// Where the incomplete part starts (the file should end here).
    pub(crate) offset: u64,
    /// Why it is not part of the log.
    pub(crate) reason: String,
}

/// The outcome of a scan.
#[derive(Debug)]
pub(crate) struct Scan {
    /// Offset just after the last complete batch delivered.
    pub(crate) end_offset: u64,
    /// Version of the last event delivered (the start version when none was).
    pub(crate) version: u64,
    /// A torn tail after `end_offset`, if any (only when the scan ran to the end).
    pub(crate) torn: Option<Torn>,
}

/// What the scan callback tells it.
pub(crate) enum Next {
    Continue,
    Stop,
}

/// Reads the log from `offset`, where the event after `version` starts, and hands each event of
/// every complete batch to `visit` in order (`visit` returning `Err(reason)` makes the event's
/// line corrupt). Damage in a line followed by more lines is [`StoreError::Corrupt`] naming the
/// line; damage in the last line, and any incomplete batch before it, is reported as
/// [`Torn`] for the caller to cut.
pub(crate) fn scan(
    file: &File,
    path: &Path,
    offset: u64,
    version: u64,
    max_line: usize,
    mut visit: impl FnMut(u64, Event) -> Result<Next, String>,
) -> Result<Scan, StoreError> {
    let mut f = file;
    f.seek(SeekFrom::Start(offset)).at(path)?;
    let mut reader = BufReader::with_capacity(256 << 10, f);
    let corrupt = |line: u64, reason: String| StoreError::Corrupt {
        file: path.to_path_buf(),
        position: format!("line {line}"),
        reason,
    };
    let mut buf = Vec::new();
    let mut pos = offset;
    let mut expected = version + 1;
    let mut batch: Vec<Event> = Vec::new();
    let mut batch_last = 0u64;
    let mut batch_start = offset;
    let mut done = Scan {
        end_offset: offset,
        version,
        torn: None,
    };
    loop {
        let line_start = pos;
        let read = read_line_bounded(&mut reader, &mut buf, max_line).at(path)?;
        let n = match read {
            LineRead::Eof => break,
            LineRead::TooLong => {
                return Err(corrupt(
                    expected,
                    format!("line is longer than the limit of {max_line} bytes"),
                ));
            }
            LineRead::Partial => {
                let start = if batch.is_empty() {
                    line_start
                } else {
                    batch_start
                };
                done.torn = Some(Torn {
                    offset: start,
                    reason: "the last line has no newline (torn write)".into(),
                });
                return Ok(done);
            }
            LineRead::Line(n) => n,
        };
        pos += n as u64;
        let line = &buf[..n - 1];
        let parsed = decode(line).and_then(|(seq, last, json)| {
            if seq != expected {
                return Err(format!("sequence number {seq}, expected {expected}"));
            }
            if !batch.is_empty() && last != batch_last {
                return Err(format!(
                    "batch end {last} differs from the batch's {batch_last}"
                ));
            }
            let event: Event =
                serde_json::from_slice(json).map_err(|e| format!("event does not parse: {e}"))?;
            Ok((seq, last, event))
        });
        let (seq, last, event) = match parsed {
            Ok(p) => p,
            Err(reason) => {
                let at_end = reader.fill_buf().at(path)?.is_empty();
                if at_end {
                    let start = if batch.is_empty() {
                        line_start
                    } else {
                        batch_start
                    };
                    done.torn = Some(Torn {
                        offset: start,
                        reason: format!("the last line is damaged (torn write): {reason}"),
                    });
                    return Ok(done);
                }
                return Err(corrupt(expected, reason));
            }
        };
        if batch.is_empty() {
            batch_start = line_start;
            batch_last = last;
        }
        batch.push(event);
        expected += 1;
        if seq == last {
            let first = seq + 1 - batch.len() as u64;
            for (i, event) in batch.drain(..).enumerate() {
                let s = first + i as u64;
                match visit(s, event) {
                    Ok(Next::Continue) => {}
                    Ok(Next::Stop) => {
                        done.version = s;
                        done.end_offset = pos;
                        return Ok(done);
                    }
                    Err(reason) => return Err(corrupt(s, reason)),
                }
            }
            done.version = seq;
            done.end_offset = pos;
        }
    }
    if !batch.is_empty() {
        done.torn = Some(Torn {
            offset: batch_start,
            reason: format!(
                "the last append (events {}..={batch_last}) is incomplete",
                batch_start_seq(&done)
            ),
        });
    }
    Ok(done)
}

fn batch_start_seq(done: &Scan) -> u64 {
    done.version + 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encode_then_decode() {
        let mut out = Vec::new();
        encode(&mut out, 12, 14, br#"{"type":"execution-started","at":3}"#);
        assert_eq!(out.last(), Some(&b'\n'));
        let line = &out[..out.len() - 1];
        let (seq, last, json) = decode(line).unwrap();
        assert_eq!((seq, last), (12, 14));
        assert_eq!(json, br#"{"type":"execution-started","at":3}"#);
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        assert_eq!(v["seq"], 12);
    }

    #[test]
    fn every_single_bit_flip_is_caught() {
        let mut out = Vec::new();
        encode(&mut out, 3, 3, br#"{"type":"execution-started","at":3}"#);
        let line = out[..out.len() - 1].to_vec();
        for i in 0..line.len() {
            for bit in 0..8 {
                let mut l = line.clone();
                l[i] ^= 1 << bit;
                assert!(
                    decode(&l).is_err(),
                    "flip at byte {i} bit {bit} went unnoticed"
                );
            }
        }
    }
}
