//! The time column's settings as Python passes them.

use pcapdump_core::clock::{Clock, Zone};

/// `tz`: a `TZ` value (`None`: `TZ` unset, the system's zone), read in the caller's terms, not this
/// process's; `utc` overrides it; `date` puts the calendar date first.
pub fn clock(tz: Option<&str>, utc: bool, date: bool) -> Clock {
    let zone = if utc { Zone::Utc } else { Zone::from_tz(tz) };
    Clock::new(zone, date)
}
