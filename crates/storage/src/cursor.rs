//! Keyset pagination: pages are newest first by id (`pay_`/`cb_`/`evt_` + UUIDv7, so ids sort
//! by time), and a cursor is the last id of a page, opaque to callers. No OFFSET: every page is
//! an index range scan however deep it is.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::Result;
use crate::error::StorageError;
use crate::model::{Page, PageRequest};

pub(crate) const MAX_PAGE: u32 = 500;

/// Cursors carry a version so their form can change without breaking old links.
const CURSOR_PREFIX: &str = "k1:";

pub(crate) fn encode(last_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{last_id}"))
}

pub(crate) fn decode(cursor: &str) -> Result<String> {
    let invalid = || StorageError::InvalidInput("invalid page cursor".into());
    let bytes = URL_SAFE_NO_PAD
        .decode(cursor.trim())
        .map_err(|_| invalid())?;
    let text = String::from_utf8(bytes).map_err(|_| invalid())?;
    let id = text.strip_prefix(CURSOR_PREFIX).ok_or_else(invalid)?;
    if id.is_empty() || id.len() > 255 {
        return Err(invalid());
    }
    Ok(id.to_owned())
}

/// A page request made concrete: how many rows to show, and the id to continue below.
pub(crate) struct Keyset {
    pub(crate) limit: u32,
    pub(crate) before_id: Option<String>,
}

impl Keyset {
    pub(crate) fn new(page: &PageRequest) -> Result<Self> {
        Ok(Keyset {
            limit: page.limit.clamp(1, MAX_PAGE),
            before_id: page.cursor.as_deref().map(decode).transpose()?,
        })
    }

    /// One row more than the page holds, to learn whether another page follows.
    pub(crate) fn fetch_limit(&self) -> u32 {
        self.limit + 1
    }

    pub(crate) fn page<T>(&self, mut items: Vec<T>, id: impl Fn(&T) -> &str) -> Page<T> {
        let more = items.len() > self.limit as usize;
        items.truncate(self.limit as usize);
        let next_cursor = if more {
            items.last().map(|last| encode(id(last)))
        } else {
            None
        };
        Page { items, next_cursor }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_others() {
        let c = encode("pay_0190a1b2c3d4e5f6");
        assert!(!c.contains("pay_"), "opaque");
        assert_eq!(decode(&c).unwrap(), "pay_0190a1b2c3d4e5f6");
        for bad in [
            "",
            "not base64!",
            &URL_SAFE_NO_PAD.encode("pay_x"),
            &URL_SAFE_NO_PAD.encode("k1:"),
        ] {
            assert!(
                matches!(decode(bad), Err(StorageError::InvalidInput(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn limits_are_clamped() {
        let k = Keyset::new(&PageRequest {
            limit: 0,
            cursor: None,
        })
        .unwrap();
        assert_eq!(k.limit, 1);
        let k = Keyset::new(&PageRequest {
            limit: 10_000,
            cursor: None,
        })
        .unwrap();
        assert_eq!(k.limit, MAX_PAGE);
    }
}
