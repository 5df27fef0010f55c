//! `pgveil audit verify`: checks the hash chain of audit files, across
//! rotated files given in any order, and names the first record that was
//! edited, inserted or removed.

use std::fmt;
use std::path::{Path, PathBuf};

use super::audit::{line_hash, Record, GENESIS};

/// One line of one file.
struct Line<'a> {
    file: &'a Path,
    number: usize,
    bytes: &'a [u8],
    record: Option<Record>,
}

impl fmt::Display for Line<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some(r) => write!(
                f,
                "record {} ({} line {})",
                r.seq,
                self.file.display(),
                self.number
            ),
            None => write!(f, "{} line {}", self.file.display(), self.number),
        }
    }
}

/// A chain that checked out.
#[derive(Debug, PartialEq, Eq)]
pub struct Verified {
    pub records: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub last_hash: String,
    /// The first record's predecessor is in a file not given.
    pub starts_mid_chain: bool,
}

/// Where the chain breaks, in words a person acts on.
#[derive(Debug, PartialEq, Eq)]
pub struct Broken(pub String);

impl fmt::Display for Broken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Reads and checks `files`. Files are put in chain order by the seq of
/// their first record, so `audit.log*` can be passed as the shell expands it.
pub fn verify_files(files: &[PathBuf]) -> Result<Verified, Broken> {
    let mut contents = Vec::new();
    for path in files {
        let bytes = std::fs::read(path)
            .map_err(|e| Broken(format!("cannot read {}: {e}", path.display())))?;
        contents.push((path.as_path(), bytes));
    }
    let mut files: Vec<(u64, Vec<Line<'_>>)> = Vec::new();
    for (path, bytes) in &contents {
        let mut lines = Vec::new();
        let mut rest: &[u8] = bytes;
        let mut number = 0;
        while !rest.is_empty() {
            number += 1;
            let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
            let (line, tail) = rest.split_at(end);
            rest = tail.get(1..).unwrap_or_default();
            lines.push(Line {
                file: path,
                number,
                bytes: line,
                record: serde_json::from_slice(line).ok(),
            });
        }
        // Empty files (a fresh file right after rotation) sort last.
        let first = lines
            .iter()
            .find_map(|l| l.record.as_ref().map(|r| r.seq))
            .unwrap_or(u64::MAX);
        files.push((first, lines));
    }
    files.sort_by_key(|(first, _)| *first);
    let lines: Vec<Line<'_>> = files.into_iter().flat_map(|(_, l)| l).collect();
    check(&lines)
}

fn check(lines: &[Line<'_>]) -> Result<Verified, Broken> {
    let Some(first) = lines.first() else {
        return Err(Broken("no audit records in the files given".into()));
    };
    let Some(record) = &first.record else {
        return Err(Broken(format!(
            "{first} is not an audit record: it was edited or damaged"
        )));
    };
    let starts_mid_chain = record.seq != 1;
    if record.seq == 1 && record.prev != GENESIS {
        return Err(Broken(format!(
            "{first} is the first record but does not start the chain: it was edited or inserted"
        )));
    }
    for (i, line) in lines.iter().enumerate().skip(1) {
        let prev = &lines[i - 1];
        let Some(r) = &line.record else {
            return Err(Broken(format!(
                "{line} is not an audit record: it was edited or damaged"
            )));
        };
        let prev_seq = prev.record.as_ref().map(|p| p.seq).unwrap_or(0);
        let chains = r.prev == line_hash(prev.bytes);
        if chains && r.seq == prev_seq + 1 {
            continue;
        }
        // It skips the line before it: that line was inserted.
        let skips_prev = i >= 2 && r.prev == line_hash(lines[i - 2].bytes);
        if skips_prev {
            return Err(Broken(format!(
                "{prev} was inserted: {line} chains to the record before it"
            )));
        }
        let boundary = prev.file != line.file;
        let why = if r.seq > prev_seq + 1 {
            let missing = if r.seq == prev_seq + 2 {
                format!("record {} is missing", prev_seq + 1)
            } else {
                format!("records {}-{} are missing", prev_seq + 1, r.seq - 1)
            };
            if boundary {
                format!(
                    "{missing} between {} and {}: removed (or a rotated file is not among the files given)",
                    prev.file.display(),
                    line.file.display()
                )
            } else {
                format!("{missing} before {line}: removed")
            }
        } else if r.seq <= prev_seq {
            format!("{line} is out of sequence after {prev}: it was inserted")
        } else if boundary {
            format!(
                "{line} does not chain to the last record of {}: {prev} was edited, or the last records of {} were removed",
                prev.file.display(),
                prev.file.display()
            )
        } else {
            format!("{prev} was edited: its SHA-256 does not match the one {line} carries")
        };
        return Err(Broken(why));
    }
    let last = &lines[lines.len() - 1];
    Ok(Verified {
        records: lines.len() as u64,
        first_seq: record.seq,
        last_seq: last.record.as_ref().map(|r| r.seq).unwrap_or(0),
        last_hash: line_hash(last.bytes),
        starts_mid_chain,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::observe::audit::{Entry, Event, SessionIdentity};

    /// A chain of `n` records as the writer would write it.
    fn chain(n: u64, start_seq: u64, start_prev: &str) -> Vec<String> {
        let who = std::sync::Arc::new(SessionIdentity {
            session: "s-1".into(),
            client: "127.0.0.1:5000".into(),
            role: "alice".into(),
            policy_roles: vec!["analyst".into()],
            database: "bank".into(),
            application: "psql".into(),
        });
        let mut prev = start_prev.to_string();
        (0..n)
            .map(|i| {
                let mut r = Entry::new(Event::Statement, &who).to_record(0, "");
                r.seq = start_seq + i;
                r.rows = Some(i);
                r.prev = prev.clone();
                let line = serde_json::to_string(&r).unwrap();
                prev = line_hash(line.as_bytes());
                line
            })
            .collect()
    }

    fn write(dir: &Path, name: &str, lines: &[String]) -> PathBuf {
        let path = dir.join(name);
        let mut text = lines.join("\n");
        text.push('\n');
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn intact_chain_across_files_in_any_order() {
        let dir = tempfile::tempdir().unwrap();
        let all = chain(10, 1, GENESIS);
        let a = write(dir.path(), "audit.log.000000000006", &all[..6]);
        let b = write(dir.path(), "audit.log", &all[6..]);
        let v = verify_files(&[b, a]).unwrap();
        assert_eq!((v.records, v.first_seq, v.last_seq), (10, 1, 10));
        assert!(!v.starts_mid_chain);
    }

    #[test]
    fn each_tampering_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let all = chain(8, 1, GENESIS);
        let run = |lines: Vec<String>| {
            let p = write(dir.path(), "t.log", &lines);
            verify_files(&[p]).unwrap_err().0
        };
        let mut edited = all.clone();
        edited[3] = edited[3].replace("\"rows\":3", "\"rows\":4");
        let e = run(edited);
        assert!(e.contains("record 4") && e.contains("edited"), "{e}");

        let mut removed = all.clone();
        removed.remove(4);
        let e = run(removed);
        assert!(
            e.contains("record 5 is missing") && e.contains("removed"),
            "{e}"
        );

        let mut inserted = all.clone();
        inserted.insert(5, all[2].clone());
        let e = run(inserted);
        assert!(
            e.contains("record 3") && e.contains("line 6") && e.contains("inserted"),
            "{e}"
        );

        // A forged record with the right seq and prev still shows.
        let forged = chain(1, 6, &line_hash(all[4].as_bytes())).remove(0);
        let mut inserted = all.clone();
        inserted.insert(5, forged);
        let e = run(inserted);
        assert!(
            e.contains("record 6") && e.contains("line 6") && e.contains("inserted"),
            "{e}"
        );

        let mut garbage = all.clone();
        garbage[2] = "{not json".into();
        let e = run(garbage);
        assert!(
            e.contains("line 3") && e.contains("not an audit record"),
            "{e}"
        );
    }

    #[test]
    fn removal_at_a_rotation_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let all = chain(10, 1, GENESIS);
        let a = write(dir.path(), "a.000000000005", &all[..5]);
        let b = write(dir.path(), "a", &all[6..]);
        let e = verify_files(&[a.clone(), b]).unwrap_err().0;
        assert!(e.contains("record 6 is missing between"), "{e}");
        // A missing rotated file in the middle.
        let c = write(dir.path(), "a.000000000008", &all[5..8]);
        let d = write(dir.path(), "a", &all[8..]);
        assert!(verify_files(&[a.clone(), c, d.clone()]).is_ok());
        let e = verify_files(&[a, d]).unwrap_err().0;
        assert!(e.contains("records 6-8 are missing"), "{e}");
    }

    #[test]
    fn later_files_alone_verify_as_a_partial_chain() {
        let dir = tempfile::tempdir().unwrap();
        let all = chain(10, 1, GENESIS);
        let b = write(dir.path(), "audit.log", &all[6..]);
        let v = verify_files(&[b]).unwrap();
        assert!(v.starts_mid_chain);
        assert_eq!(v.first_seq, 7);
    }
}
