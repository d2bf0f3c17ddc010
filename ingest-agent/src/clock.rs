//! Time as the kernel programs stamp it (CLOCK_MONOTONIC nanoseconds, `bpf_ktime_get_ns`) and
//! its conversion to wall time for exported records, measured once at start so every record of
//! a run converts the same way. The [`Clock`] trait is the seam that lets time-dependent logic
//! be tested without sleeping.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub trait Clock {
    /// Now, on the kernel programs' clock.
    fn monotonic_ns(&self) -> u64;
    /// The wall time of a kernel timestamp.
    fn wall_time(&self, monotonic_ns: u64) -> SystemTime;

    /// The wall time of a kernel timestamp in ns since the Unix epoch, as exported records carry
    /// it; 0 before the epoch.
    fn unix_ns(&self, monotonic_ns: u64) -> u64 {
        self.wall_time(monotonic_ns)
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_nanos()).unwrap_or(u64::MAX)
            })
    }
}

/// The host's clocks.
#[derive(Clone, Copy, Debug)]
pub struct SystemClock {
    /// Wall time at monotonic zero, in ns since the Unix epoch.
    boot_wall_ns: i128,
}

impl SystemClock {
    pub fn new() -> SystemClock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i128;
        SystemClock {
            boot_wall_ns: wall - i128::from(monotonic_now_ns()),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        SystemClock::new()
    }
}

/// Now on CLOCK_MONOTONIC, the kernel programs' clock.
pub fn monotonic_now_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out-pointer; CLOCK_MONOTONIC cannot fail.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

impl Clock for SystemClock {
    fn monotonic_ns(&self) -> u64 {
        monotonic_now_ns()
    }

    fn wall_time(&self, monotonic_ns: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_nanos(self.unix_ns(monotonic_ns))
    }

    /// Without the round trip through `SystemTime`: every HTTP exchange is stamped.
    fn unix_ns(&self, monotonic_ns: u64) -> u64 {
        let wall = self.boot_wall_ns + i128::from(monotonic_ns);
        u64::try_from(wall.max(0)).unwrap_or(u64::MAX)
    }
}

/// A clock that moves only when told, for tests.
#[derive(Clone, Copy, Debug, Default)]
pub struct ManualClock {
    pub monotonic_ns: u64,
    /// Wall time at monotonic zero.
    pub boot: Duration,
}

impl Clock for ManualClock {
    fn monotonic_ns(&self) -> u64 {
        self.monotonic_ns
    }

    fn wall_time(&self, monotonic_ns: u64) -> SystemTime {
        UNIX_EPOCH + self.boot + Duration::from_nanos(monotonic_ns)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_timestamps_convert_to_the_wall_time_they_happened_at() {
        let clock = SystemClock::new();
        let now_mono = clock.monotonic_ns();
        let converted = clock.wall_time(now_mono);
        let wall = SystemTime::now();
        let skew = wall
            .duration_since(converted)
            .unwrap_or_else(|err| err.duration());
        assert!(skew < Duration::from_millis(50), "{skew:?}");
        let later = clock.wall_time(now_mono + 1_000_000_000);
        assert_eq!(
            later.duration_since(converted).unwrap(),
            Duration::from_secs(1)
        );
        let since_epoch = |time: SystemTime| time.duration_since(UNIX_EPOCH).unwrap().as_nanos();
        assert_eq!(u128::from(clock.unix_ns(now_mono)), since_epoch(converted));
        assert_eq!(
            u128::from(clock.unix_ns(now_mono + 1_000_000_000)),
            since_epoch(later)
        );
    }

    #[test]
    fn manual_clock_moves_only_when_told() {
        let mut clock = ManualClock {
            monotonic_ns: 5,
            boot: Duration::from_secs(1_700_000_000),
        };
        assert_eq!(clock.monotonic_ns(), 5);
        clock.monotonic_ns += 10;
        assert_eq!(clock.monotonic_ns(), 15);
        assert_eq!(
            clock.wall_time(2_000_000_000),
            UNIX_EPOCH + Duration::from_secs(1_700_000_002)
        );
        assert_eq!(clock.unix_ns(2_000_000_000), 1_700_000_002_000_000_000);
    }
}
