//! Who may ask: local peers by uid and group, CI runners by HMAC signature or OIDC token, and the secrets both use;
//! and which pack decides for whom (pins).

pub mod oidc;
pub mod peer;
pub mod pins;
mod replay;
pub mod runner;
pub mod secret;

pub use peer::{Peer, PeerPolicy, PeerPolicyError};
pub use pins::{PackPins, PinError};
pub use runner::{HmacRunners, RunnerAuthError, RunnerAuthenticator, RunnerSigner};
pub use secret::{Secret, SecretError};
