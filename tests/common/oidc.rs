//! Real RS256 keys and tokens for the runner-auth tests, made with the openssl command-line tool.

use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

pub const GITHUB_ISSUER: &str = "https://token.actions.githubusercontent.com";
pub const AUDIENCE: &str = "cavra-release-governance";

/// An RSA key pair on disk, with its public half as a JWK.
pub struct SigningKey {
    pub kid: String,
    private: PathBuf,
    pub jwk: Value,
}

impl SigningKey {
    pub fn generate(dir: &Path, kid: &str) -> SigningKey {
        let private = dir.join(format!("{kid}.pem"));
        let status = Command::new("openssl")
            .args(["genrsa", "-out"])
            .arg(&private)
            .arg("2048")
            .stderr(Stdio::null())
            .status()
            .expect("openssl runs");
        assert!(status.success(), "openssl genrsa failed");
        let modulus = Command::new("openssl")
            .args(["rsa", "-noout", "-modulus", "-in"])
            .arg(&private)
            .output()
            .expect("openssl rsa runs");
        let text = String::from_utf8(modulus.stdout).unwrap();
        let hex_modulus = text.trim().strip_prefix("Modulus=").expect("openssl prints Modulus=");
        let n = hex::decode(hex_modulus).unwrap();
        let jwk = json!({"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                         "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode([1u8, 0, 1])});
        SigningKey {
            kid: kid.to_owned(),
            private,
            jwk,
        }
    }

    /// A compact RS256 JWT over `claims`, with `kid` in its header.
    pub fn token(&self, kid: &str, claims: &Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(json!({"alg": "RS256", "kid": kid, "typ": "JWT"}).to_string());
        let body = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signed = format!("{header}.{body}");
        let mut openssl = Command::new("openssl")
            .args(["dgst", "-sha256", "-sign"])
            .arg(&self.private)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("openssl dgst runs");
        openssl.stdin.take().unwrap().write_all(signed.as_bytes()).unwrap();
        let signature = openssl.wait_with_output().unwrap().stdout;
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}

pub fn jwks(keys: &[&SigningKey]) -> Value {
    json!({"keys": keys.iter().map(|key| key.jwk.clone()).collect::<Vec<_>>()})
}

pub fn write_jwks(dir: &Path, keys: &[&SigningKey]) -> PathBuf {
    let path = dir.join("jwks.json");
    fs::write(&path, jwks(keys).to_string()).unwrap();
    path
}

/// Claims a GitHub Actions token for `repository` would carry, valid from a minute ago for an hour.
pub fn claims(repository: &str) -> Value {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    json!({"iss": GITHUB_ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 60, "exp": now + 3600,
           "repository": repository, "workflow": "release", "run_id": "42", "run_attempt": "2",
           "ref": "refs/heads/main", "sha": "4f1c2e9d", "actor": "release-bot"})
}

pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}
