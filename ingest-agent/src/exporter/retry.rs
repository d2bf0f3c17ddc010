//! Which failed exports are worth another attempt, and when. The retryable codes are those of
//! the OTLP specification ("Failures" under OTLP/gRPC), plus `RESOURCE_EXHAUSTED` always: the
//! store sends it for limits that clear (a WAL behind, a tenant over its rate). A server's
//! `google.rpc.RetryInfo` delay, when present, replaces the backoff step.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use prost::Message;
use tonic::{Code, Status};

/// What to do after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Try again, after the server's delay if it gave one.
    Retry { after: Option<Duration> },
    /// The request can never succeed as it is: drop it.
    Refuse,
}

pub(crate) fn verdict(status: &Status) -> Verdict {
    match status.code() {
        Code::Cancelled
        | Code::DeadlineExceeded
        | Code::Aborted
        | Code::OutOfRange
        | Code::Unavailable
        | Code::DataLoss => Verdict::Retry { after: None },
        Code::ResourceExhausted => Verdict::Retry {
            after: retry_delay(status),
        },
        // tonic reports a transport failure it cannot classify as UNKNOWN with the local error
        // as its source; an UNKNOWN sent by the server has none.
        Code::Unknown if std::error::Error::source(status).is_some() => {
            Verdict::Retry { after: None }
        }
        _ => Verdict::Refuse,
    }
}

/// Exponential backoff: each step doubles up to `max`; each wait is its step scaled by a
/// random factor in [0.5, 1.5), so agents that failed together do not retry together.
#[derive(Clone, Debug)]
pub(crate) struct Backoff {
    step: Duration,
    max: Duration,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff { step: initial, max }
    }

    /// The next wait, for `unit` drawn uniformly from [0, 1).
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        debug_assert!((0.0..1.0).contains(&unit));
        let delay = self.step.mul_f64(0.5 + unit).min(self.max);
        self.step = self.step.saturating_mul(2).min(self.max);
        delay
    }
}

/// A uniform draw from [0, 1); `RandomState` is seeded afresh from the OS per process and
/// varies per instance, which is all jitter needs.
pub(crate) fn random_unit() -> f64 {
    let bits = RandomState::new().build_hasher().finish() >> 11;
    bits as f64 / (1u64 << 53) as f64
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// `google.rpc.Status`, which gRPC servers put in `grpc-status-details-bin`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub code: i32,
    #[prost(string, tag = "2")]
    pub message: String,
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

/// The delay of a `RetryInfo` in the status details, if the server sent a valid one.
fn retry_delay(status: &Status) -> Option<Duration> {
    let details = RpcStatus::decode(status.details()).ok()?;
    let info = details
        .details
        .iter()
        .find(|any| any.type_url == RETRY_INFO_TYPE)?;
    let delay = RetryInfo::decode(info.value.as_slice()).ok()?.retry_delay?;
    let seconds = u64::try_from(delay.seconds).ok()?;
    let nanos = u32::try_from(delay.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)?;
    Some(Duration::new(seconds, nanos))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Status details carrying a `RetryInfo` of `delay`, as a server would send them.
    fn retry_info_details(code: Code, message: &str, delay: Duration) -> Vec<u8> {
        let info = RetryInfo {
            retry_delay: Some(ProtoDuration {
                seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
                nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
            }),
        };
        RpcStatus {
            code: code as i32,
            message: message.to_owned(),
            details: vec![ProtoAny {
                type_url: RETRY_INFO_TYPE.to_owned(),
                value: info.encode_to_vec(),
            }],
        }
        .encode_to_vec()
    }

    #[test]
    fn transient_codes_are_retried_and_permanent_ones_refused() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Aborted,
            Code::Cancelled,
            Code::ResourceExhausted,
        ] {
            assert_eq!(
                verdict(&Status::new(code, "x")),
                Verdict::Retry { after: None },
                "{code:?}"
            );
        }
        for code in [
            Code::InvalidArgument,
            Code::Unauthenticated,
            Code::PermissionDenied,
            Code::Unimplemented,
            Code::Unknown,
        ] {
            assert_eq!(
                verdict(&Status::new(code, "x")),
                Verdict::Refuse,
                "{code:?}"
            );
        }
    }

    #[test]
    fn a_local_transport_failure_is_retried() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let status = Status::from_error(Box::new(io));
        assert_eq!(status.code(), Code::Unknown);
        assert_eq!(verdict(&status), Verdict::Retry { after: None });
    }

    #[test]
    fn resource_exhausted_honours_retry_info() {
        let delay = Duration::from_millis(1_500);
        let details = retry_info_details(Code::ResourceExhausted, "slow down", delay);
        let status = Status::with_details(Code::ResourceExhausted, "slow down", details.into());
        assert_eq!(verdict(&status), Verdict::Retry { after: Some(delay) });

        let garbage = Status::with_details(Code::ResourceExhausted, "x", vec![0xff, 0xff].into());
        assert_eq!(verdict(&garbage), Verdict::Retry { after: None });
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        assert_eq!(backoff.next_delay(0.0), Duration::from_millis(50));
        assert_eq!(backoff.next_delay(0.5), Duration::from_millis(200));
        assert_eq!(backoff.next_delay(0.25), Duration::from_micros(262_500));
        assert_eq!(backoff.next_delay(0.99), Duration::from_millis(350));
    }

    #[test]
    fn random_units_are_in_range_and_vary() {
        let draws: Vec<f64> = (0..64).map(|_| random_unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.windows(2).any(|pair| pair[0] != pair[1]));
    }
}
