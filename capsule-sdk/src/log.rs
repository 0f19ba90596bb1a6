//! Logging from capsules: `error!`, `warn!`, `info!`, `debug!`, `trace!` format into a
//! 256-byte stack buffer (longer lines are cut, never allocated) and call the host's `log`.
//! The node attributes lines to the capsule type and rate-limits them.

use core::fmt::{self, Write};

use ants_wire::abi::LogLevel;

use crate::sys;

/// Longest line formatted by the macros.
pub const LINE_CAP: usize = 256;

struct Line {
    buf: [u8; LINE_CAP],
    len: usize,
}

impl Write for Line {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = LINE_CAP - self.len;
        let mut n = s.len().min(room);
        // Cut on a character boundary so the line stays valid UTF-8.
        while !s.is_char_boundary(n) {
            n -= 1;
        }
        self.buf[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
        self.len += n;
        Ok(())
    }
}

/// Log a preformatted message; used by the macros.
pub fn log_str(level: LogLevel, msg: &str) {
    let _ = sys::log(level as i32, msg.as_bytes());
}

/// Format and log; used by the macros.
pub fn log_fmt(level: LogLevel, args: fmt::Arguments<'_>) {
    let mut line = Line {
        buf: [0; LINE_CAP],
        len: 0,
    };
    let _ = line.write_fmt(args);
    let _ = sys::log(level as i32, &line.buf[..line.len]);
}

/// Log at error level: `error!("bad header: {} bytes", n)`.
#[macro_export]
macro_rules! error { ($($t:tt)*) => { $crate::log::log_fmt($crate::LogLevel::Error, format_args!($($t)*)) } }
/// Log at warn level.
#[macro_export]
macro_rules! warn { ($($t:tt)*) => { $crate::log::log_fmt($crate::LogLevel::Warn, format_args!($($t)*)) } }
/// Log at info level.
#[macro_export]
macro_rules! info { ($($t:tt)*) => { $crate::log::log_fmt($crate::LogLevel::Info, format_args!($($t)*)) } }
/// Log at debug level.
#[macro_export]
macro_rules! debug { ($($t:tt)*) => { $crate::log::log_fmt($crate::LogLevel::Debug, format_args!($($t)*)) } }
/// Log at trace level.
#[macro_export]
macro_rules! trace { ($($t:tt)*) => { $crate::log::log_fmt($crate::LogLevel::Trace, format_args!($($t)*)) } }
