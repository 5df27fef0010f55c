//! Reading one policy file: the typed model from serde_yaml, and the line and
//! column of every node from a separate event pass (serde_yaml only knows
//! positions while it fails), so later checks can point at the exact node.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use super::error::{PolicyError, Problem, SourceLocation};
use super::model::PolicyFile;

/// A path from the document root to a node: mapping keys and sequence
/// indexes as strings, e.g. `["columns", "public.t.c", "rules", "0", "mask"]`.
pub type NodePath = Vec<String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    line: usize,
    column: usize,
}

#[derive(Debug, Clone, Copy)]
struct NodePositions {
    /// Where the mapping key naming this node starts, if it has one.
    key: Option<Position>,
    /// Where the node's value starts.
    value: Position,
}

/// A parsed policy file with the positions of its nodes.
#[derive(Debug)]
pub struct SourceFile {
    pub path: PathBuf,
    pub policy: PolicyFile,
    positions: HashMap<NodePath, NodePositions>,
    /// SHA-256 of the file's text, for `pgveil_policy_info`.
    pub sha256: [u8; 32],
}

impl SourceFile {
    /// Reads and parses one file. Syntax errors and schema errors (unknown
    /// fields, wrong types) come back with their location.
    pub fn read(path: &Path) -> Result<SourceFile, Box<PolicyError>> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Box::new(PolicyError::new(
                SourceLocation {
                    file: path.to_path_buf(),
                    line: 1,
                    column: 1,
                },
                Problem::Unreadable(e.to_string()),
            ))
        })?;
        Self::parse(path, &text)
    }

    /// Parses the text of one file; `path` is only used in messages.
    pub fn parse(path: &Path, text: &str) -> Result<SourceFile, Box<PolicyError>> {
        let mut recorder = PositionRecorder::default();
        let mut parser = Parser::new_from_str(text);
        if let Err(e) = parser.load(&mut recorder, false) {
            let mark = e.marker();
            return Err(Box::new(PolicyError::new(
                SourceLocation {
                    file: path.to_path_buf(),
                    line: mark.line(),
                    column: mark.col() + 1,
                },
                Problem::Syntax(e.info().to_string()),
            )));
        }
        // An empty file is a valid, empty policy rather than a type error.
        let policy = if recorder.positions.is_empty() {
            PolicyFile {
                version: 1,
                ..Default::default()
            }
        } else {
            serde_yaml::from_str::<PolicyFile>(text)
                .map_err(|e| Box::new(schema_error(path, &e, &recorder.positions)))?
        };
        Ok(SourceFile {
            path: path.to_path_buf(),
            policy,
            positions: recorder.positions,
            sha256: sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(text))
                .into(),
        })
    }

    /// Where the value at `path` starts (or its closest recorded ancestor).
    pub fn value_at(&self, path: &[&str]) -> SourceLocation {
        self.locate(path, false)
    }

    /// Where the key naming the node at `path` starts (falls back to the
    /// value for sequence items).
    pub fn key_at(&self, path: &[&str]) -> SourceLocation {
        self.locate(path, true)
    }

    fn locate(&self, path: &[&str], prefer_key: bool) -> SourceLocation {
        let mut owned: NodePath = path.iter().map(|s| s.to_string()).collect();
        loop {
            if let Some(found) = self.positions.get(&owned) {
                let position = if prefer_key {
                    found.key.unwrap_or(found.value)
                } else {
                    found.value
                };
                return self.location(position);
            }
            if owned.pop().is_none() {
                return self.location(Position { line: 1, column: 1 });
            }
        }
    }

    fn location(&self, position: Position) -> SourceLocation {
        SourceLocation {
            file: self.path.clone(),
            line: position.line,
            column: position.column,
        }
    }
}

fn schema_error(
    path: &Path,
    error: &serde_yaml::Error,
    positions: &HashMap<NodePath, NodePositions>,
) -> PolicyError {
    let (line, column) = match error.location() {
        Some(l) => (l.line(), l.column()),
        None => positions
            .get(&Vec::new())
            .map(|p| (p.value.line, p.value.column))
            .unwrap_or((1, 1)),
    };
    let message = error.to_string();
    // serde_yaml appends " at line L column C"; the location is shown already.
    let message = match message.rfind(" at line ") {
        Some(i) => message[..i].to_string(),
        None => message,
    };
    let suggestion = closest_expected_name(&message);
    PolicyError::new(
        SourceLocation {
            file: path.to_path_buf(),
            line,
            column,
        },
        Problem::Invalid {
            message,
            suggestion,
        },
    )
}

/// For serde's "unknown field `x`, expected one of `a`, `b`" (and the same
/// for variants), the expected name closest to `x`.
fn closest_expected_name(message: &str) -> Option<String> {
    let rest = message
        .split_once("unknown field ")
        .or_else(|| message.split_once("unknown variant "))?
        .1;
    let mut quoted = rest.split('`').skip(1).step_by(2);
    let given = quoted.next()?;
    closest(given, quoted)
}

/// The candidate most similar to `given`, if any is similar enough to be a
/// plausible misspelling.
pub fn closest<'a>(given: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    candidates
        .into_iter()
        .map(|c| (strsim::jaro_winkler(given, c), c))
        .filter(|(score, _)| *score >= 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_string())
}

enum Frame {
    Mapping {
        path: NodePath,
        pending_key: Option<(String, Position)>,
        /// A complex (non-scalar) key is being read.
        is_key: bool,
    },
    Sequence {
        path: NodePath,
        next_index: usize,
    },
}

#[derive(Default)]
struct PositionRecorder {
    stack: Vec<Frame>,
    positions: HashMap<NodePath, NodePositions>,
}

impl PositionRecorder {
    /// Works out where a node that starts now sits. `None` when the node is
    /// a mapping key (its position is kept as the pending key).
    fn place(&mut self, scalar_key: Option<&str>, at: Position) -> Option<NodePath> {
        match self.stack.last_mut() {
            None => {
                self.positions.insert(
                    Vec::new(),
                    NodePositions {
                        key: None,
                        value: at,
                    },
                );
                Some(Vec::new())
            }
            Some(Frame::Sequence { path, next_index }) => {
                let mut child = path.clone();
                child.push(next_index.to_string());
                *next_index += 1;
                self.positions.insert(
                    child.clone(),
                    NodePositions {
                        key: None,
                        value: at,
                    },
                );
                Some(child)
            }
            Some(Frame::Mapping {
                path, pending_key, ..
            }) => match pending_key.take() {
                Some((key, key_at)) => {
                    let mut child = path.clone();
                    child.push(key);
                    self.positions.insert(
                        child.clone(),
                        NodePositions {
                            key: Some(key_at),
                            value: at,
                        },
                    );
                    Some(child)
                }
                None => {
                    *pending_key = Some((scalar_key.unwrap_or("<complex key>").to_string(), at));
                    // The parser marks a block mapping's start after its
                    // first key; point at the first key instead.
                    if let Some(mapping) = self.positions.get_mut(path) {
                        if (at.line, at.column) < (mapping.value.line, mapping.value.column) {
                            mapping.value = at;
                        }
                    }
                    None
                }
            },
        }
    }

    fn end_collection(&mut self, at: Position) {
        if let Some(Frame::Mapping { is_key: true, .. }) = self.stack.pop() {
            if let Some(Frame::Mapping { pending_key, .. }) = self.stack.last_mut() {
                *pending_key = Some(("<complex key>".to_string(), at));
            }
        }
    }

    fn start_collection(&mut self, at: Position, mapping: bool) {
        let (path, is_key) = match self.place(None, at) {
            Some(path) => (path, false),
            None => {
                // The collection is itself a key: undo the pending key, the
                // key is complete only when the collection ends.
                if let Some(Frame::Mapping { pending_key, .. }) = self.stack.last_mut() {
                    *pending_key = None;
                }
                (vec!["<complex key>".to_string()], true)
            }
        };
        self.stack.push(if mapping {
            Frame::Mapping {
                path,
                pending_key: None,
                is_key,
            }
        } else {
            Frame::Sequence {
                path,
                next_index: 0,
            }
        });
    }
}

impl MarkedEventReceiver for PositionRecorder {
    fn on_event(&mut self, event: Event, mark: Marker) {
        let at = Position {
            line: mark.line(),
            column: mark.col() + 1,
        };
        match event {
            Event::Scalar(value, ..) => {
                self.place(Some(&value), at);
            }
            Event::Alias(_) => {
                self.place(Some("<alias>"), at);
            }
            Event::MappingStart(..) => self.start_collection(at, true),
            Event::SequenceStart(..) => self.start_collection(at, false),
            Event::MappingEnd | Event::SequenceEnd => self.end_collection(at),
            _ => {}
        }
    }
}
