//! Time, injectable so that status and tests are deterministic.

use std::fmt::Debug;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;

/// A source of the current time.
pub trait Clock: Debug + Send + Sync {
    /// Now, with second precision as conditions store it.
    fn now(&self) -> Time;
}

/// The system clock.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Time {
        let now = Timestamp::now();
        Time(Timestamp::from_second(now.as_second()).unwrap_or(now))
    }
}

/// A clock that always answers the same instant, for tests.
#[derive(Clone, Copy, Debug)]
pub struct FixedClock(pub Timestamp);

impl Clock for FixedClock {
    fn now(&self) -> Time {
        Time(self.0)
    }
}
