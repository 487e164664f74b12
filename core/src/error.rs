//! Why a core call failed: the error of the core's boundary, shared by the
//! service, its pipeline and its remote client.

use postmesh_router::PostofficeError;
use postmesh_schema::protocol::ErrorCode;

use crate::store::StoreError;

/// Why a core call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Postoffice(#[from] PostofficeError),
    #[error("no core answered in time")]
    Timeout,
    #[error(
        "stored, but not yet distributed: the postoffice is unavailable; the core distributes it when it is back, and a resend is safe"
    )]
    Undistributed,
    #[error("message {index} is {size} bytes; the mesh accepts at most {max} (body plus meta)")]
    TooLarge {
        index: usize,
        size: usize,
        max: usize,
    },
    #[error("core: {message}")]
    Remote { message: String, retryable: bool },
}

impl CoreError {
    /// The error code a device or an HTTP client gets for it.
    pub fn code(&self) -> ErrorCode {
        match self {
            CoreError::TooLarge { .. } => ErrorCode::TooLarge,
            CoreError::Store(StoreError::TooBroad(_)) => ErrorCode::BadPattern,
            e if e.is_retryable() => ErrorCode::Unavailable,
            _ => ErrorCode::Internal,
        }
    }

    /// Whether retrying later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CoreError::Store(e) => e.is_retryable(),
            CoreError::Postoffice(e) => e.is_retryable(),
            CoreError::Timeout | CoreError::Undistributed => true,
            CoreError::Remote { retryable, .. } => *retryable,
            CoreError::TooLarge { .. } => false,
        }
    }
}
