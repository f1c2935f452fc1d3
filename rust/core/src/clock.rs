//! The time column of brief lines: a timestamp as wall-clock time in a chosen time zone, optionally with
//! the date (`2026-11-27 08:22:47.955144`, as tcpdump's `-tttt`).
//!
//! The zone is a value, not the process's `TZ`: the agent formats `show` and `-o` lines for a client
//! whose zone may differ from its own, so each request names its zone and the agent never touches its
//! environment (setting `TZ` in a threaded process is unsound).

use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::{Arc, Mutex};

use crate::textfmt::push_padded;

/// Where the C library looks for zone files named by `TZ`.
const ZONEINFO: [&str; 3] = ["/usr/share/zoneinfo", "/share/zoneinfo", "/etc/zoneinfo"];
/// The system's zone when `TZ` is not set.
const SYSTEM_ZONE: &str = "/etc/localtime";
/// No zone file is larger (the biggest are about 4 KB); more is not a zone file.
const MAX_ZONE_FILE: u64 = 1 << 20;

/// A time zone: UTC, or the rules of a zone file or of a POSIX `TZ` rule such as `CET-1CEST,M3.5.0,M10.5.0/3`.
#[derive(Clone, Debug)]
pub enum Zone {
    Utc,
    Rules(Arc<tz::TimeZone>),
}

impl Zone {
    /// The zone a `TZ` value means, read as the C library reads it: unset → the system's zone
    /// (`/etc/localtime`); empty → UTC; `:name`, `name` or `/path` → that zone file; otherwise a POSIX
    /// rule. What cannot be read or parsed is UTC, as the C library does, so `read` and `show` agree
    /// with `date` run in the same environment.
    pub fn from_tz(tz: Option<&str>) -> Zone {
        let rules = match tz {
            None => read_zone_file(SYSTEM_ZONE),
            Some(value) => {
                let name = value.strip_prefix(':').unwrap_or(value);
                match zone_file_path(name) {
                    Some(path) => read_zone_file(&path),
                    // A rule never names a file; only now may the parser look at it (it opens files
                    // itself, which `zone_file_path` kept away from paths it has not vetted).
                    None if !name.is_empty() && !name.contains('/') && !value.starts_with(':') => {
                        tz::TimeZone::from_posix_tz(name).ok()
                    }
                    None => None,
                }
            }
        };
        rules.map_or(Zone::Utc, |r| Zone::Rules(Arc::new(r)))
    }

    /// The zone of this process's environment (`TZ`). Read once per `TZ` value, as the C library
    /// does: a `Packet.brief()` per packet must not read a zone file each time.
    pub fn from_env() -> Zone {
        static READ: Mutex<Option<(Option<String>, Zone)>> = Mutex::new(None);
        let tz = std::env::var("TZ").ok();
        let mut read = READ.lock().unwrap_or_else(|e| e.into_inner());
        match &*read {
            Some((for_tz, zone)) if *for_tz == tz => zone.clone(),
            _ => {
                let zone = Zone::from_tz(tz.as_deref());
                *read = Some((tz, zone.clone()));
                zone
            }
        }
    }

    /// Seconds east of UTC at `secs` (Unix time).
    pub fn offset_at(&self, secs: i64) -> i64 {
        match self {
            Zone::Utc => 0,
            Zone::Rules(rules) => rules
                .find_local_time_type(secs)
                .map_or(0, |t| t.ut_offset() as i64),
        }
    }
}

/// The zone file a `TZ` name refers to, if one exists: a name under a zoneinfo folder, or an absolute
/// path inside one (or the system's zone). Names that climb out (`..`) and other paths (`/proc/kmsg`,
/// whose reading would take lines from the kernel's log) are not zone files: the agent reads them as
/// root on a caller's behalf.
fn zone_file_path(name: &str) -> Option<String> {
    if name.is_empty() || name.split('/').any(|part| part == "..") {
        return None;
    }
    if name.starts_with('/') {
        let inside = |dir: &str| {
            name.strip_prefix(dir)
                .is_some_and(|rest| rest.starts_with('/'))
        };
        return (name == SYSTEM_ZONE || ZONEINFO.iter().any(|dir| inside(dir)))
            .then(|| name.to_owned());
    }
    ZONEINFO
        .iter()
        .map(|dir| format!("{dir}/{name}"))
        .find(|path| std::path::Path::new(path).is_file())
}

/// A zone file's rules: a regular file (a named pipe or device there would block, never end, or act on
/// being opened, as a tape drive rewinds), of a zone file's size, that parses. Looked at before it is
/// opened, and again once open.
fn read_zone_file(path: &str) -> Option<tz::TimeZone> {
    if !std::fs::metadata(path).ok()?.is_file() {
        return None;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .ok()?;
    let meta = file.metadata().ok()?;
    if !meta.is_file() || meta.len() > MAX_ZONE_FILE {
        return None;
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_ZONE_FILE).read_to_end(&mut bytes).ok()?;
    tz::TimeZone::from_tz_data(&bytes).ok()
}

/// Writes the time column. Everything down to the second is formatted once per second of timestamps
/// (the zone's offset looked up then), so a packet costs only its microseconds.
#[derive(Clone, Debug)]
pub struct Clock {
    zone: Zone,
    date: bool,
    /// The second (Unix time) `prefix` shows.
    cached_second: Option<i64>,
    /// `YYYY-MM-DD HH:MM:SS.` (the date only with `date`) of that second.
    prefix: Vec<u8>,
}

impl Default for Clock {
    /// This process's zone, time of day only.
    fn default() -> Self {
        Clock::new(Zone::from_env(), false)
    }
}

impl Clock {
    /// `date`: start with the calendar date, `YYYY-MM-DD `.
    pub fn new(zone: Zone, date: bool) -> Clock {
        Clock {
            zone,
            date,
            cached_second: None,
            prefix: Vec::with_capacity(32),
        }
    }

    pub fn push_time(&mut self, out: &mut Vec<u8>, ts_ns: u64) {
        let secs = (ts_ns / 1_000_000_000) as i64;
        if self.cached_second != Some(secs) {
            self.cached_second = Some(secs);
            self.prefix.clear();
            self.push_second(secs);
        }
        out.extend_from_slice(&self.prefix);
        push_padded(out, ((ts_ns % 1_000_000_000) / 1_000) as u32, 6);
    }

    /// The time of `secs` down to the second, then the decimal point, into `prefix`. The zone's offset
    /// is looked up for that very second: zones change at any second of an hour (Adelaide's summer
    /// time ends at 16:30 UTC).
    fn push_second(&mut self, secs: i64) {
        let out = &mut self.prefix;
        let local = secs + self.zone.offset_at(secs);
        if self.date {
            let (y, m, d) = civil_date(local.div_euclid(86_400));
            push_padded(out, y as u32, 4);
            out.push(b'-');
            push_padded(out, m, 2);
            out.push(b'-');
            push_padded(out, d, 2);
            out.push(b' ');
        }
        let day_secs = local.rem_euclid(86_400) as u32;
        push_padded(out, day_secs / 3600, 2);
        out.push(b':');
        push_padded(out, day_secs / 60 % 60, 2);
        out.push(b':');
        push_padded(out, day_secs % 60, 2);
        out.push(b'.');
    }
}

/// The proleptic Gregorian date of a day counted from 1970-01-01: the days are shifted to start on
/// 0000-03-01, so that the leap day ends each 400-year era's years, and split into eras, years and days.
fn civil_date(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_from_march + 2) / 5 + 1) as u32;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shown(zone: Zone, date: bool, ts_ns: u64) -> String {
        let mut out = Vec::new();
        Clock::new(zone, date).push_time(&mut out, ts_ns);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn civil_dates_across_leap_years_and_centuries() {
        assert_eq!(civil_date(0), (1970, 1, 1));
        assert_eq!(civil_date(-1), (1969, 12, 31));
        assert_eq!(civil_date(11_016), (2000, 2, 29));
        assert_eq!(civil_date(11_017), (2000, 3, 1));
        assert_eq!(civil_date(47_541), (2100, 3, 1)); // 2100 is not a leap year
        assert_eq!(civil_date(20_784), (2026, 11, 27));
    }

    #[test]
    fn utc_zone_files_and_posix_rules() {
        let t = 1_795_767_767_955_144_000; // 2026-11-27 08:22:47.955144 UTC
        assert_eq!(shown(Zone::Utc, true, t), "2026-11-27 08:22:47.955144");
        assert_eq!(shown(Zone::Utc, false, t), "08:22:47.955144");
        let rule = Zone::from_tz(Some("EST5EDT,M3.2.0,M11.1.0"));
        assert_eq!(shown(rule, true, t), "2026-11-27 03:22:47.955144");
        let summer = 1_783_239_767_000_000_000; // 2026-07-05 08:22:47 UTC
        let rule = Zone::from_tz(Some("EST5EDT,M3.2.0,M11.1.0"));
        assert_eq!(shown(rule, false, summer), "04:22:47.000000");
        // Across midnight, the date is the zone's.
        assert_eq!(
            shown(
                Zone::from_tz(Some("JST-9")),
                true,
                t + 16 * 3_600_000_000_000
            ),
            "2026-11-28 09:22:47.955144"
        );
        if std::path::Path::new("/usr/share/zoneinfo/Asia/Kolkata").is_file() {
            assert_eq!(
                shown(Zone::from_tz(Some("Asia/Kolkata")), false, t),
                "13:52:47.955144"
            );
        }
    }

    #[test]
    fn a_zone_change_inside_an_hour_is_seen_at_its_second() {
        // Adelaide (+10:30 in summer, +9:30 in winter) leaves summer time on 2026-04-05 at 03:00 local,
        // 16:30 UTC: one clock sees both sides within one hour of UTC.
        if !std::path::Path::new("/usr/share/zoneinfo/Australia/Adelaide").is_file() {
            return;
        }
        let mut clock = Clock::new(Zone::from_tz(Some("Australia/Adelaide")), false);
        let change = 1_775_320_200; // 2026-04-04 16:30:00 UTC
        let mut out = Vec::new();
        for secs in [change - 1800, change - 1, change, change + 1800] {
            clock.push_time(&mut out, secs as u64 * 1_000_000_000 + 5_000);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "02:30:00.000005 02:59:59.000005 02:00:00.000005 02:30:00.000005 "
        );
    }

    #[test]
    fn what_the_c_library_would_not_read_is_utc() {
        for tz in [
            "",
            ":",
            "Nowhere/Atlantis",
            "../../etc/passwd",
            "/dev/zero",
            "/proc/kmsg",
            "/etc/passwd",
            "/usr/share/zoneinfo/../../../proc/kmsg",
            "/etc",
            "5",
        ] {
            assert!(
                matches!(Zone::from_tz(Some(tz)), Zone::Utc),
                "{tz:?} should be UTC"
            );
        }
    }
}
