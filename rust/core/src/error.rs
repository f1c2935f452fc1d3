//! The engine's one error type. Each module keeps its own detailed error (what a filter word expected,
//! where a file was cut); `Error` gathers them, and `ErrorKind` names each failure the way the edges
//! need it: the Python bindings raise one exception class per kind, the agent's replies carry the kind,
//! and nobody decides anything by reading a message (docs/architecture.md#errors).

use std::io;

use crate::capture::CaptureError;
use crate::filter::FilterError;
use crate::offline::OfflineError;
use crate::pcap::ReadError;

/// A failure's stable, machine-readable name. The strings are part of the agent protocol and of the
/// Python exception classes' `kind`: never rename one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A filter word or value is wrong.
    Filter,
    /// A capture file cannot be read or written.
    CaptureFile,
    /// A live capture failed for another reason (the kernel refused a step, a ring setting is invalid).
    Capture,
    NoSuchInterface,
    /// Capturing needs root or CAP_NET_RAW.
    Privilege,
    /// Live capture does not exist on this system.
    Unsupported,
    /// The reader of our output went away (`| head`): the edges end quietly.
    OutputClosed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 7] = [
        ErrorKind::Filter,
        ErrorKind::CaptureFile,
        ErrorKind::Capture,
        ErrorKind::NoSuchInterface,
        ErrorKind::Privilege,
        ErrorKind::Unsupported,
        ErrorKind::OutputClosed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Filter => "filter",
            ErrorKind::CaptureFile => "capture_file",
            ErrorKind::Capture => "capture",
            ErrorKind::NoSuchInterface => "no_such_interface",
            ErrorKind::Privilege => "privilege",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::OutputClosed => "output_closed",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Filter(#[from] FilterError),
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Offline(#[from] OfflineError),
    #[error("'{path}': cannot write: {source}")]
    Write { path: String, source: io::Error },
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::Filter(_) => ErrorKind::Filter,
            Error::Capture(e) => e.kind(),
            Error::Read(_) | Error::Write { .. } => ErrorKind::CaptureFile,
            Error::Offline(OfflineError::OutputClosed) => ErrorKind::OutputClosed,
            Error::Offline(_) => ErrorKind::CaptureFile,
        }
    }

    /// The token a filter error blames, as typed.
    pub fn token(&self) -> Option<&str> {
        match self {
            Error::Filter(e) => Some(&e.token),
            _ => None,
        }
    }

    /// The interface a capture error is about.
    pub fn iface(&self) -> Option<&str> {
        match self {
            Error::Capture(e) => e.iface(),
            _ => None,
        }
    }

    /// A write to `path` failed.
    pub fn write(path: &std::path::Path, source: io::Error) -> Error {
        Error::Write {
            path: path.display().to_string(),
            source,
        }
    }
}

impl CaptureError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            CaptureError::NoSuchInterface(_) => ErrorKind::NoSuchInterface,
            CaptureError::NoPrivilege(_) => ErrorKind::Privilege,
            CaptureError::Unsupported(_) => ErrorKind::Unsupported,
            CaptureError::FilterNeedsKnownLink { .. }
            | CaptureError::NothingCaptured(_)
            | CaptureError::LinkChanged { .. }
            | CaptureError::Program(_)
            | CaptureError::Ring(_)
            | CaptureError::Buffer { .. }
            | CaptureError::ListInterfaces(_)
            | CaptureError::Os { .. } => ErrorKind::Capture,
        }
    }

    pub fn iface(&self) -> Option<&str> {
        match self {
            CaptureError::NoSuchInterface(iface)
            | CaptureError::NoPrivilege(iface)
            | CaptureError::NothingCaptured(iface)
            | CaptureError::FilterNeedsKnownLink { iface, .. }
            | CaptureError::LinkChanged { iface, .. }
            | CaptureError::Os { iface, .. } => Some(iface),
            CaptureError::Unsupported(_)
            | CaptureError::Program(_)
            | CaptureError::Ring(_)
            | CaptureError::Buffer { .. }
            | CaptureError::ListInterfaces(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_names_are_unique_and_snake_case() {
        let names: std::collections::HashSet<_> =
            ErrorKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), ErrorKind::ALL.len());
        for n in names {
            assert!(n.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{n}");
        }
    }

    #[test]
    fn capture_errors_keep_their_interface() {
        let e = Error::from(CaptureError::NoSuchInterface("nosuch0".into()));
        assert_eq!(e.kind(), ErrorKind::NoSuchInterface);
        assert_eq!(e.iface(), Some("nosuch0"));
        let e = Error::from(CaptureError::NoPrivilege("int".into()));
        assert_eq!(e.kind(), ErrorKind::Privilege);
    }

    #[test]
    fn a_closed_output_is_its_own_kind() {
        assert_eq!(
            Error::from(OfflineError::OutputClosed).kind(),
            ErrorKind::OutputClosed
        );
    }
}
