//! Why a request got no token, in the words its caller is answered with: the status and the
//! error body. Made by the pipeline (a refused JWT, an access policy that names someone else)
//! and by the control-plane calls (their answers), and remembered by [`crate::denials`].

use credmgr_common::error::codes;
use credmgr_common::jwt::JwtError;
use credmgr_common::ErrorBody;

/// Why no token could be had, as answered to the caller.
#[derive(Debug, Clone)]
pub struct Failure {
    pub status: u16,
    pub body: ErrorBody,
}

impl Failure {
    pub fn unavailable(message: String) -> Failure {
        Failure {
            status: 503,
            body: ErrorBody::new(codes::CONTROL_PLANE_UNAVAILABLE, message),
        }
    }

    /// The caller's JWT is refused.
    pub fn unauthenticated(e: &JwtError) -> Failure {
        Failure {
            status: 401,
            body: ErrorBody::new(e.code(), format!("the caller's JWT is refused: {e}")),
        }
    }

    /// A failure that only the control plane could fix (the gateway holds no usable
    /// token): a cached token that is still valid may stand in for the answer.
    pub fn is_unavailable(&self) -> bool {
        self.status == 503
    }
}
