//! Why a core call failed: the error of the core's boundary, shared by the
//! service, its pipeline and its remote client.

use postmesh_router::PostofficeError;

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
    #[error("core: {message}")]
    Remote { message: String, retryable: bool },
}

impl CoreError {
    /// Whether retrying later can succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            CoreError::Store(e) => e.is_retryable(),
            CoreError::Postoffice(e) => e.is_retryable(),
            CoreError::Timeout | CoreError::Undistributed => true,
            CoreError::Remote { retryable, .. } => *retryable,
        }
    }
}
