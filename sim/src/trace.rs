//! The event trace: one JSON object per line, hashed with SHA-256 as it is produced (no
//! file needed for the hash), optionally written to a file too.
//!
//! Every line has `t` (virtual ns) and `ev`; the other fields depend on the event — see
//! [`Record`] and docs/simulation.md. Types are shown by their first 6 bytes (12 hex
//! digits). The same scenario and seed give the same bytes, hence the same hash.

use std::io::Write;

use ants_wire::CapsuleType;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// A capsule type as its short hex form in the trace.
#[derive(Debug, Clone, Copy)]
pub struct Ty(pub CapsuleType);

impl Serialize for Ty {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&self.0.short())
    }
}

/// One traced event.
#[derive(Debug, Serialize)]
#[serde(tag = "ev", rename_all = "kebab-case")]
pub enum Record<'a> {
    /// A datagram put on a link.
    Send {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// `capsule`, `code-request`, `code-chunk`, `code-nack` or `malformed`.
        kind: &'static str,
        /// The type it concerns.
        #[serde(skip_serializing_if = "Option::is_none")]
        ty: Option<Ty>,
        /// Bytes.
        len: usize,
    },
    /// A datagram handed to the receiving node.
    Recv {
        /// Receiver.
        node: u32,
        /// Sender.
        from: u32,
        /// As in `send`.
        kind: &'static str,
        /// Bytes.
        len: usize,
    },
    /// A datagram lost by the network.
    Drop {
        /// Sender.
        from: u32,
        /// Receiver.
        to: u32,
        /// `loss`, `queue`, `partition`, `node-down` or `no-link`.
        reason: &'static str,
    },
    /// A capsule delivered to a local app.
    Deliver {
        /// Node.
        node: u32,
        /// App id.
        app: u32,
        /// Protocol.
        ty: Ty,
        /// Payload bytes.
        len: usize,
    },
    /// An app injected a capsule (or tried to).
    Inject {
        /// Node.
        node: u32,
        /// App id.
        app: u32,
        /// Protocol.
        ty: Ty,
        /// Why the node refused it.
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A node asked for a module to be compiled.
    Compile {
        /// Node.
        node: u32,
        /// Protocol.
        ty: Ty,
        /// Whether it compiled (the shared executor compiles each type once).
        ok: bool,
    },
    /// The module is installed on the node (after the compile delay).
    Installed {
        /// Node.
        node: u32,
        /// Protocol.
        ty: Ty,
    },
    /// Loading a type failed on a node.
    CodeFailed {
        /// Node.
        node: u32,
        /// Protocol.
        ty: Ty,
        /// Why.
        reason: &'a str,
        /// Capsules dropped.
        dropped: usize,
    },
    /// A capsule trapped.
    Trap {
        /// Node.
        node: u32,
        /// Protocol.
        ty: Ty,
        /// Why.
        reason: String,
    },
    /// A capsule logged a line.
    Log {
        /// Node.
        node: u32,
        /// Protocol.
        ty: Ty,
        /// Level name.
        level: &'static str,
        /// Text.
        text: &'a str,
    },
    /// A node crashed.
    Crash {
        /// Node.
        node: u32,
    },
    /// A node restarted.
    Restart {
        /// Node.
        node: u32,
        /// Modules it kept (persisted code).
        kept: usize,
    },
    /// A link went down.
    Partition {
        /// One end.
        a: u32,
        /// The other end.
        b: u32,
    },
    /// A link came back.
    Repair {
        /// One end.
        a: u32,
        /// The other end.
        b: u32,
    },
}

/// Trace lines a watchpoint's report shows.
pub const TAIL_LINES: usize = 20;

/// Trace lines kept in memory by one partition of a parallel run, each under the
/// `(time, tie)` key of the event that produced it, for the merge into the run's trace.
#[derive(Debug, Default)]
pub(crate) struct Lines {
    /// The lines, newline-terminated, back to back.
    pub(crate) data: Vec<u8>,
    /// Per line: its event's time and tie-breaker and where the line ends in `data`.
    pub(crate) index: Vec<(u64, u64, usize)>,
}

/// The trace sink: off, hash only, or hash and file (or, in a partition of a parallel run,
/// lines kept for the merge).
pub struct Trace {
    on: bool,
    /// The key of the event being processed (set by the simulator before each one).
    key: (u64, u64),
    /// Kept lines instead of hashing them (a partition of a parallel run).
    buffer: Option<Lines>,
    /// The last [`TAIL_LINES`] lines, kept for watchpoints (also when the trace is off).
    tail: Option<std::collections::VecDeque<String>>,
    hasher: Sha256,
    out: Option<Box<dyn Write + Send>>,
    line: Vec<u8>,
    lines: u64,
    write_error: Option<String>,
}

impl std::fmt::Debug for Trace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trace")
            .field("on", &self.on)
            .field("lines", &self.lines)
            .field("file", &self.out.is_some())
            .finish_non_exhaustive()
    }
}

impl Trace {
    /// No trace (fastest; no hash).
    pub fn off() -> Trace {
        Trace {
            on: false,
            key: (0, 0),
            buffer: None,
            tail: None,
            hasher: Sha256::new(),
            out: None,
            line: Vec::new(),
            lines: 0,
            write_error: None,
        }
    }

    /// Hash every line.
    pub fn hashed() -> Trace {
        Trace {
            on: true,
            ..Trace::off()
        }
    }

    /// Hash every line and write it to `out`.
    pub fn to_writer(out: Box<dyn Write + Send>) -> Trace {
        Trace {
            on: true,
            out: Some(out),
            ..Trace::off()
        }
    }

    /// Keep every line with its event's key, neither hashed nor written ([`Trace::swap_lines`]).
    pub(crate) fn buffered() -> Trace {
        Trace {
            on: true,
            buffer: Some(Lines::default()),
            ..Trace::off()
        }
    }

    /// Hand over the lines kept since the last call in exchange for `empty` (a merged,
    /// cleared buffer whose capacity the next window reuses); buffered traces only.
    pub(crate) fn swap_lines(&mut self, empty: &mut Lines) {
        if let Some(b) = self.buffer.as_mut() {
            std::mem::swap(b, empty);
        }
    }

    /// The event being processed: the lines recorded from now on are its.
    pub(crate) fn set_key(&mut self, at: u64, tie: u64) {
        self.key = (at, tie);
    }

    /// Hash, count and write one finished line (newline included), as [`Trace::record`]
    /// does with the lines it builds.
    pub(crate) fn append_line(&mut self, line: &[u8]) {
        if !self.on {
            return;
        }
        self.hasher.update(line);
        self.lines += 1;
        if let Some(out) = &mut self.out
            && let Err(e) = out.write_all(line)
        {
            self.write_error.get_or_insert_with(|| e.to_string());
            self.out = None;
        }
    }

    /// Whether lines are produced at all (callers skip building records when not).
    pub fn is_on(&self) -> bool {
        self.on || self.tail.is_some()
    }

    /// Keep the last [`TAIL_LINES`] lines (for a watchpoint's report), also when the trace
    /// is otherwise off (then they are neither hashed nor counted).
    pub fn keep_tail(&mut self) {
        self.tail
            .get_or_insert_with(|| std::collections::VecDeque::with_capacity(TAIL_LINES));
    }

    /// The last lines kept by [`keep_tail`](Self::keep_tail), oldest first.
    pub fn tail(&self) -> Vec<String> {
        self.tail
            .as_ref()
            .map(|t| t.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Append one event at virtual time `t` (ns).
    pub fn record(&mut self, t: u64, record: &Record<'_>) {
        if !self.is_on() {
            return;
        }
        // `{"t":…,` then the record's own object without its `{` (cheaper than
        // `#[serde(flatten)]`, which goes through a map serializer).
        self.line.clear();
        self.line.extend_from_slice(b"{\"t\":");
        let _ = write!(self.line, "{t},");
        let at = self.line.len();
        // Serialising plain structs into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.line, record);
        if self.line.get(at) == Some(&b'{') {
            self.line.remove(at);
        }
        if let Some(tail) = &mut self.tail {
            if tail.len() == TAIL_LINES {
                tail.pop_front();
            }
            tail.push_back(String::from_utf8_lossy(&self.line).into_owned());
        }
        if !self.on {
            return;
        }
        self.line.push(b'\n');
        if let Some(b) = &mut self.buffer {
            b.data.extend_from_slice(&self.line);
            b.index.push((self.key.0, self.key.1, b.data.len()));
            return;
        }
        let line = std::mem::take(&mut self.line);
        self.append_line(&line);
        self.line = line;
    }

    /// Lines so far.
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// SHA-256 of the lines so far, as hex (`None` when tracing is off).
    pub fn hash_hex(&self) -> Option<String> {
        self.on.then(|| {
            self.hasher
                .clone()
                .finalize()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect()
        })
    }

    /// Flush the file; the first write error, if any happened.
    pub fn finish(&mut self) -> Result<(), String> {
        if let Some(out) = &mut self.out
            && let Err(e) = out.flush()
        {
            self.write_error.get_or_insert_with(|| e.to_string());
        }
        match &self.write_error {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_json_and_the_hash_covers_exactly_the_written_bytes() {
        let buf = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        struct Shared(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
        impl Write for Shared {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut t = Trace::to_writer(Box::new(Shared(buf.clone())));
        let mut h = Trace::hashed();
        for tr in [&mut t, &mut h] {
            tr.record(5, &Record::Crash { node: 3 });
            tr.record(
                7,
                &Record::Drop {
                    from: 1,
                    to: 2,
                    reason: "loss",
                },
            );
        }
        t.finish().unwrap();
        let text = String::from_utf8(buf.lock().unwrap().clone()).unwrap();
        assert_eq!(
            text,
            "{\"t\":5,\"ev\":\"crash\",\"node\":3}\n{\"t\":7,\"ev\":\"drop\",\"from\":1,\"to\":2,\"reason\":\"loss\"}\n"
        );
        let want: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(t.hash_hex(), Some(want.clone()));
        assert_eq!(h.hash_hex(), Some(want), "hash without a file is the same");
        assert_eq!(Trace::off().hash_hex(), None);
    }
}
