//! Share identity: [`ShareId`] (`canvasl://ORIGIN/NAME`) and the checks on share names.

use std::fmt;
use std::str::FromStr;

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

use crate::federation::protocol::is_peer_id;
use crate::merge::DocKind;

/// The URL scheme of a share.
pub const SHARE_SCHEME: &str = "canvasl://";

/// File-name suffix of a share's merge state (`NAME.automerge`).
pub const STATE_SUFFIX: &str = ".automerge";

/// Longest share name, in bytes.
///
/// File names are limited to 255 bytes on common file systems, and a share's name is used inside
/// two longer names: its merge state `NAME.automerge` (10 more bytes) and the temporary file of
/// an atomic write, `.NAME.automerge.<16 hex>.tmp` (22 more). 255 − 10 − 22 = 223.
pub const MAX_NAME_BYTES: usize = 255 - STATE_SUFFIX.len() - 22;

/// Suffixes of CanvasL shares (JSON entries merge field by field, [`DocKind::Canvas`]).
pub const CANVAS_SUFFIXES: [&str; 2] = [".canvasl", ".jsonl"];

/// Suffixes of plain line-oriented text shares (every line merges whole, [`DocKind::Text`]):
/// Org (the blackboard), Markdown and plain text.
pub const TEXT_SUFFIXES: [&str; 3] = [".org", ".md", ".txt"];

/// Suffixes a share name may end with: [`CANVAS_SUFFIXES`] and [`TEXT_SUFFIXES`].
pub const NAME_SUFFIXES: [&str; 5] = [".canvasl", ".jsonl", ".org", ".md", ".txt"];

/// The share name of a peer's Org blackboard: its blackboard is `canvasl://PEER/blackboard.org`
/// whatever the local file is called, so any peer can name (and ask for) another's blackboard.
pub const BLACKBOARD_NAME: &str = "blackboard.org";

/// The kind of document a share named `name` is, from its suffix (the one place that decides
/// it; names are checked first, so an unknown suffix never reaches here and counts as a canvas).
pub fn kind_of_name(name: &str) -> DocKind {
    if TEXT_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
    {
        DocKind::Text
    } else {
        DocKind::Canvas
    }
}

/// Why a share name was refused. [`NameError::reason`] is a stable short string (for counters);
/// the `Display` text says what to change.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The name is empty.
    #[error("the share name is empty")]
    Empty,
    /// The name is longer than [`MAX_NAME_BYTES`].
    #[error("the share name is {0} bytes long; at most {MAX_NAME_BYTES} are allowed")]
    TooLong(usize),
    /// The name contains a control character.
    #[error("the share name contains a control character (U+{0:04X})")]
    Control(u32),
    /// The name is an absolute path.
    #[error("the share name is an absolute path; give a plain file name")]
    Absolute,
    /// The name contains `/` or `\`.
    #[error("the share name contains a path separator ('/' or '\\'); give a plain file name")]
    Separator,
    /// The name starts with `.` or contains `..`.
    #[error("the share name starts with '.' or contains '..'")]
    Dots,
    /// The name does not end with one of [`NAME_SUFFIXES`].
    #[error("the share name must end with .canvasl or .jsonl (or .org, .md, .txt for text)")]
    Extension,
    /// The name contains an invisible format character or a line or
    /// paragraph separator (display spoofing).
    #[error("the share name contains an invisible format character or separator (U+{0:04X})")]
    Format(u32),
}

impl NameError {
    /// A stable short string, used as the refusal reason.
    pub fn reason(&self) -> &'static str {
        match self {
            NameError::Empty => "name-empty",
            NameError::TooLong(_) => "name-too-long",
            NameError::Control(_) => "name-control",
            NameError::Absolute => "name-absolute",
            NameError::Separator => "name-separator",
            NameError::Dots => "name-dots",
            NameError::Extension => "name-extension",
            NameError::Format(_) => "name-format",
        }
    }
}

/// Checks a share name: one plain path component, non-empty, at most [`MAX_NAME_BYTES`] bytes,
/// ending with one of [`NAME_SUFFIXES`], without `/`, `\`, control or format characters, a leading `.` or
/// `..`, and not absolute (a Windows drive prefix such as `C:` counts as absolute). Every name
/// from the network goes through this before it is used in a path.
pub fn check_share_name(name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty);
    }
    if name.len() > MAX_NAME_BYTES {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(NameError::Control(u32::from(c)));
    }
    if let Some(c) = name.chars().find(|c| {
        matches!(
            c.general_category(),
            GeneralCategory::Format
                | GeneralCategory::LineSeparator
                | GeneralCategory::ParagraphSeparator
        )
    }) {
        return Err(NameError::Format(u32::from(c)));
    }
    let b = name.as_bytes();
    let drive = b.len() >= 2 && b[0].is_ascii_alphabetic() && b[1] == b':';
    if name.starts_with('/') || name.starts_with('\\') || drive {
        return Err(NameError::Absolute);
    }
    if name.contains('/') || name.contains('\\') {
        return Err(NameError::Separator);
    }
    if name.starts_with('.') || name.contains("..") {
        return Err(NameError::Dots);
    }
    if !NAME_SUFFIXES
        .iter()
        .any(|s| name.len() > s.len() && name.ends_with(s))
    {
        return Err(NameError::Extension);
    }
    Ok(())
}

/// The form in which two share names of one origin must differ: NFC, then
/// lower case. Names equal in this form would be one file on a case- or
/// normalisation-insensitive file system (macOS, Windows), so the second
/// one is refused.
pub fn folded_name(name: &str) -> String {
    let nfc: String = name.nfc().collect();
    nfc.to_lowercase().nfc().collect()
}

/// Why a share URL could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShareIdError {
    /// Not of the form `canvasl://ORIGIN/NAME`.
    #[error("a share is written canvasl://ORIGIN/NAME (ORIGIN: 64 lowercase hex characters)")]
    Syntax,
    /// ORIGIN is not a peer id.
    #[error("the origin of a share must be a peer id (64 lowercase hex characters)")]
    Origin,
    /// NAME is refused.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl ShareIdError {
    /// A stable short string, used as the refusal reason.
    pub fn reason(&self) -> &'static str {
        match self {
            ShareIdError::Syntax => "bad-share",
            ShareIdError::Origin => "bad-origin",
            ShareIdError::Name(n) => n.reason(),
        }
    }
}

/// One shared file: the peer that shared it first (its origin) and its name. Two shares with the
/// same name from different origins are different shares. Printed and parsed as
/// `canvasl://ORIGIN/NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShareId {
    origin: String,
    name: String,
}

impl ShareId {
    /// A share id, checked (origin: 64 lowercase hex; name: [`check_share_name`]).
    pub fn new(origin: &str, name: &str) -> Result<ShareId, ShareIdError> {
        if !is_peer_id(origin) {
            return Err(ShareIdError::Origin);
        }
        check_share_name(name)?;
        Ok(ShareId {
            origin: origin.to_string(),
            name: name.to_string(),
        })
    }

    /// Parses `canvasl://ORIGIN/NAME`.
    pub fn parse(url: &str) -> Result<ShareId, ShareIdError> {
        let rest = url.strip_prefix(SHARE_SCHEME).ok_or(ShareIdError::Syntax)?;
        let (origin, name) = rest.split_once('/').ok_or(ShareIdError::Syntax)?;
        ShareId::new(origin, name)
    }

    /// The peer id of the peer that shared the file first.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The share's name (a checked file name).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `canvasl://ORIGIN/NAME`.
    pub fn url(&self) -> String {
        self.to_string()
    }

    /// How the share's lines merge, from its name ([`kind_of_name`]).
    pub fn kind(&self) -> DocKind {
        kind_of_name(&self.name)
    }

    /// The blackboard of `origin`: `canvasl://ORIGIN/blackboard.org` ([`BLACKBOARD_NAME`]).
    pub fn blackboard(origin: &str) -> Result<ShareId, ShareIdError> {
        ShareId::new(origin, BLACKBOARD_NAME)
    }
}

impl fmt::Display for ShareId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SHARE_SCHEME}{}/{}", self.origin, self.name)
    }
}

impl FromStr for ShareId {
    type Err = ShareIdError;

    fn from_str(s: &str) -> Result<ShareId, ShareIdError> {
        ShareId::parse(s)
    }
}
