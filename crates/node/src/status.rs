//! The one mapping from domain failures to gRPC status codes.
//!
//! Every refusal names the rule it applies. Unexpected failures (storage,
//! corruption) are logged here and returned as an opaque INTERNAL, so no
//! internal detail leaks to a caller.

use qtrace_ledger::event::EventError;
use qtrace_ledger::registry::RefusalClass;
use qtrace_ledger::signing::SignatureError;
use qtrace_ledger::trace::TraceError;
use qtrace_ledger::verdict::VerdictError;
use qtrace_store::StoreError;
use tonic::Status;

use crate::appender::AppendError;
use crate::federation::CosignatureError;

#[derive(Debug)]
pub enum Failure {
    /// The event bytes broke a format rule.
    Event(EventError),
    /// The signature or the signer key is bad.
    Signature(SignatureError),
    /// A request field is malformed.
    Invalid(String),
    NotFound(String),
    /// The state of the log does not allow the request yet.
    FailedPrecondition(String),
    /// The writer refused or could not append.
    Append(AppendError),
    Store(StoreError),
    Verdict(VerdictError),
    Trace(TraceError),
    /// A witness's cosignature was not taken.
    Cosignature(CosignatureError),
    Internal(String),
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Failure::Store(e)
    }
}

pub fn to_status(failure: Failure) -> Status {
    match failure {
        Failure::Event(e) => Status::invalid_argument(format!("event.{e}")),
        Failure::Signature(e) => match e {
            SignatureError::Invalid => {
                Status::unauthenticated("signature does not verify for this event and signer key (签名无效)")
            }
            SignatureError::SignatureLength(_)
            | SignatureError::PublicKeyLength(_)
            | SignatureError::PublicKeyInvalid
            | SignatureError::WeakPublicKey => Status::unauthenticated(format!("signer/signature: {e}")),
            SignatureError::KeyFile(_) | SignatureError::Randomness(_) => internal(e.to_string()),
            _ => internal(e.to_string()),
        },
        Failure::Invalid(message) => Status::invalid_argument(message),
        Failure::NotFound(message) => Status::not_found(message),
        Failure::FailedPrecondition(message) => Status::failed_precondition(message),
        Failure::Append(e) => match e {
            AppendError::Auth(auth) => {
                let message = auth.to_string();
                match auth.class() {
                    RefusalClass::InvalidArgument => Status::invalid_argument(message),
                    RefusalClass::PermissionDenied => Status::permission_denied(message),
                    RefusalClass::FailedPrecondition => Status::failed_precondition(message),
                    RefusalClass::NotFound => Status::not_found(message),
                    RefusalClass::AlreadyExists => Status::already_exists(message),
                    RefusalClass::Internal => internal(message),
                }
            }
            AppendError::Time(message) => Status::invalid_argument(message),
            AppendError::QueueFull(_) | AppendError::IndexBehind(_) => Status::resource_exhausted(e.to_string()),
            AppendError::ShuttingDown => Status::unavailable(e.to_string()),
            AppendError::Storage(message) => internal(message),
        },
        Failure::Store(e @ StoreError::BeyondLog { .. }) => Status::invalid_argument(format!("tree_size: {e}")),
        // The follower has not indexed what the read must cover within the
        // wait bound: the same read succeeds once it has.
        Failure::Store(e @ StoreError::IndexLag { .. }) => Status::unavailable(e.to_string()),
        Failure::Store(e @ StoreError::IndexBehind { .. }) => Status::resource_exhausted(e.to_string()),
        Failure::Store(e) => internal(e.to_string()),
        Failure::Verdict(VerdictError::Trace(e)) | Failure::Trace(e) => match e {
            TraceError::TooDeep { .. } | TraceError::TooLarge { .. } => Status::resource_exhausted(e.to_string()),
            TraceError::NotFound(_) => Status::not_found(e.to_string()),
            TraceError::View(v) => internal(v.to_string()),
            _ => internal(e.to_string()),
        },
        Failure::Verdict(VerdictError::View(e)) => internal(e.to_string()),
        Failure::Verdict(e) => internal(e.to_string()),
        Failure::Cosignature(CosignatureError::Storage(e)) => internal(e.to_string()),
        Failure::Cosignature(
            e @ (CosignatureError::NoCheckpoint(_)
            | CosignatureError::Malformed(_)
            | CosignatureError::DoesNotVerify(_)
            | CosignatureError::UnknownWitness(_)),
        ) => Status::invalid_argument(e.to_string()),
        Failure::Internal(message) => internal(message),
    }
}

/// [`to_status`] for a refused submission: also counted in the refusal
/// metric by code.
pub fn refusal(failure: Failure) -> Status {
    refused(to_status(failure))
}

/// Counts a refusal already expressed as a status.
pub fn refused(status: Status) -> Status {
    crate::metrics::get().refused(status.code());
    status
}

fn internal(detail: String) -> Status {
    tracing::error!(%detail, "internal error");
    Status::internal("internal error; the node's log has the details")
}

#[cfg(test)]
mod tests {
    use qtrace_ledger::hash::LogId;
    use qtrace_ledger::registry::{AuthError, RecordsError};
    use tonic::Code;

    use super::*;

    #[test]
    fn a_storage_failure_is_never_a_refusal_of_the_input() {
        let unreadable = || RecordsError { log: LogId([7; 32]), seq: 3, detail: "disk read failed".into() };
        let cases: Vec<(&str, Failure, Code)> = vec![
            (
                "a record the writer could not read",
                Failure::Append(AppendError::Auth(AuthError::Unreadable(unreadable()))),
                Code::Internal,
            ),
            (
                "the writer's storage failure",
                Failure::Append(AppendError::Storage("flush failed".into())),
                Code::Internal,
            ),
            (
                "a cosignature the store could not keep",
                Failure::Cosignature(CosignatureError::Storage(StoreError::Corrupt("disk write failed".into()))),
                Code::Internal,
            ),
            (
                "a cosignature from an unknown witness",
                Failure::Cosignature(CosignatureError::UnknownWitness("someone".into())),
                Code::InvalidArgument,
            ),
            (
                "a record that does not exist",
                Failure::Append(AppendError::Auth(AuthError::UnknownRecord {
                    field: "parents",
                    log: "ab".into(),
                    seq: 3,
                })),
                Code::NotFound,
            ),
        ];
        for (name, failure, code) in cases {
            let status = to_status(failure);
            assert_eq!(status.code(), code, "{name}: {status:?}");
            if code == Code::Internal {
                assert!(!status.message().contains("disk"), "{name}: no internal detail leaks: {status:?}");
            }
        }
    }
}
