//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as Postgres runs it, against stored verifiers.
//!
//! A password is kept only as Postgres' verifier, `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:
//! <ServerKey>`: enough to check a proof or a password, not enough to log in. pgwire's own SCRAM
//! wants the salted password instead, which whoever reads the catalog could log in with, so the
//! exchange is ours: [`Verifier`] and [`Exchange`]. Channel binding is `tls-server-end-point`
//! (RFC 5929), the one Postgres offers as SCRAM-SHA-256-PLUS over TLS.

use std::fmt;

use aws_lc_rs::{constant_time, digest, hmac};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use pgwire::api::auth::sasl::scram::{SCRAM_ITERATIONS, gen_salted_password};
use x509_certificate::{CapturedX509Certificate, SignatureAlgorithm};

/// The SASL mechanisms' names.
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";
pub const SCRAM_SHA_256_PLUS: &str = "SCRAM-SHA-256-PLUS";

const KEY_LEN: usize = 32;

/// What Postgres stores for a SCRAM password (`pg_authid.rolpassword`).
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    iterations: u32,
    salt: Vec<u8>,
    stored_key: [u8; KEY_LEN],
    server_key: [u8; KEY_LEN],
}

impl Verifier {
    /// The verifier of `password` with a fresh random salt.
    pub fn new(password: &str) -> Self {
        Self::derive(
            password,
            rand::random::<[u8; 16]>().to_vec(),
            SCRAM_ITERATIONS as u32,
        )
    }

    /// A verifier no password matches: an unknown user's exchange runs to its end and fails
    /// exactly as a wrong password does, so a client cannot tell which names exist.
    pub fn unguessable() -> Self {
        Verifier {
            iterations: SCRAM_ITERATIONS as u32,
            salt: rand::random::<[u8; 16]>().to_vec(),
            stored_key: rand::random(),
            server_key: rand::random(),
        }
    }

    fn derive(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = gen_salted_password(password, &salt, iterations as usize);
        let client_key = hmac_sha256(&salted, b"Client Key");
        Verifier {
            iterations,
            salt,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted, b"Server Key"),
        }
    }

    /// Reads Postgres' text form; `None` if `text` is not one.
    pub fn parse(text: &str) -> Option<Self> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (iterations, rest) = rest.split_once(':')?;
        let (salt, keys) = rest.split_once('$')?;
        let (stored_key, server_key) = keys.split_once(':')?;
        let key = |text: &str| STANDARD.decode(text).ok()?.try_into().ok();
        Some(Verifier {
            iterations: iterations.parse().ok().filter(|&i| i > 0)?,
            salt: STANDARD.decode(salt).ok()?,
            stored_key: key(stored_key)?,
            server_key: key(server_key)?,
        })
    }

    /// Whether `password` is the one this verifier was made from (HTTP Basic credentials).
    pub fn matches(&self, password: &str) -> bool {
        let candidate = Self::derive(password, self.salt.clone(), self.iterations);
        constant_time::verify_slices_are_equal(&candidate.stored_key, &self.stored_key).is_ok()
    }
}

impl fmt::Display for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            STANDARD.encode(&self.salt),
            STANDARD.encode(self.stored_key),
            STANDARD.encode(self.server_key)
        )
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(..)")
    }
}

/// Why an exchange failed.
#[derive(Debug, PartialEq, Eq)]
pub enum Failure {
    /// Not a SCRAM message, or one out of place (08P01).
    Malformed(&'static str),
    /// Channel binding refused or not matching (28000).
    ChannelBinding(&'static str),
    /// A wrong password, or an unknown user (28P01).
    WrongPassword,
}

/// One exchange after the client's first message: what the final message must match.
pub struct Exchange {
    verifier: Verifier,
    /// `c=` as the client must send it: the GS2 header and, with binding, the certificate hash.
    channel_binding: String,
    nonce: String,
    /// client-first-bare "," server-first, the start of the signed message.
    signed_so_far: String,
}

impl Exchange {
    /// Answers the client's first message (`mechanism` is the one it chose) with the server's
    /// first. `certificate_hash` is the TLS certificate's `tls-server-end-point` hash when the
    /// connection is over TLS and SCRAM-SHA-256-PLUS was offered.
    pub fn start(
        mechanism: &str,
        message: &[u8],
        verifier: Verifier,
        certificate_hash: Option<&[u8]>,
    ) -> Result<(Self, String), Failure> {
        let message = std::str::from_utf8(message).map_err(|_| Failure::Malformed("not UTF-8"))?;
        let plus = match mechanism {
            SCRAM_SHA_256 => false,
            SCRAM_SHA_256_PLUS if certificate_hash.is_some() => true,
            _ => return Err(Failure::Malformed("unsupported SASL mechanism")),
        };
        let (flag, rest) = message
            .split_once(',')
            .ok_or(Failure::Malformed("no GS2 header"))?;
        let (authzid, bare) = rest
            .split_once(',')
            .ok_or(Failure::Malformed("no GS2 header"))?;
        if !authzid.is_empty() {
            return Err(Failure::Malformed(
                "client uses authorization identity, but it is not supported",
            ));
        }
        let binding_data: &[u8] = match (flag, plus) {
            ("p=tls-server-end-point", true) => certificate_hash.unwrap_or_default(),
            (flag, true) if flag.starts_with("p=") => {
                return Err(Failure::Malformed("unsupported SCRAM channel-binding type"));
            }
            (_, true) => {
                return Err(Failure::ChannelBinding(
                    "client selected SCRAM-SHA-256-PLUS but sent no channel binding",
                ));
            }
            // The client could bind but believes the server cannot: a downgrade, when the
            // server offered binding.
            ("y", false) if certificate_hash.is_some() => {
                return Err(Failure::ChannelBinding(
                    "SCRAM channel binding negotiation error",
                ));
            }
            ("n" | "y", false) => &[],
            (flag, false) if flag.starts_with("p=") => {
                return Err(Failure::ChannelBinding(
                    "client requires SCRAM channel binding, but it was not selected",
                ));
            }
            _ => return Err(Failure::Malformed("unexpected channel-binding flag")),
        };
        let mut attributes = bare.split(',');
        if !attributes.next().is_some_and(|a| a.starts_with("n=")) {
            return Err(Failure::Malformed("no user name attribute"));
        }
        let client_nonce = attributes
            .next()
            .and_then(|a| a.strip_prefix("r="))
            .filter(|nonce| !nonce.is_empty())
            .ok_or(Failure::Malformed("no nonce attribute"))?;
        let nonce = format!(
            "{client_nonce}{}",
            STANDARD.encode(rand::random::<[u8; 18]>())
        );
        let server_first = format!(
            "r={nonce},s={},i={}",
            STANDARD.encode(&verifier.salt),
            verifier.iterations
        );
        let header = &message[..flag.len() + authzid.len() + 2];
        let mut binding = header.as_bytes().to_vec();
        binding.extend_from_slice(binding_data);
        let exchange = Exchange {
            verifier,
            channel_binding: STANDARD.encode(binding),
            nonce,
            signed_so_far: format!("{bare},{server_first}"),
        };
        Ok((exchange, server_first))
    }

    /// Checks the client's final message and returns the server's final one.
    pub fn finish(&self, message: &[u8]) -> Result<String, Failure> {
        let message = std::str::from_utf8(message).map_err(|_| Failure::Malformed("not UTF-8"))?;
        let (without_proof, proof) = message
            .rsplit_once(",p=")
            .ok_or(Failure::Malformed("no proof attribute"))?;
        let mut attributes = without_proof.split(',');
        let binding = attributes
            .next()
            .and_then(|a| a.strip_prefix("c="))
            .ok_or(Failure::Malformed("no channel-binding attribute"))?;
        if binding != self.channel_binding {
            return Err(Failure::ChannelBinding(
                "SCRAM channel binding check failed",
            ));
        }
        if attributes.next().and_then(|a| a.strip_prefix("r=")) != Some(self.nonce.as_str()) {
            return Err(Failure::Malformed("nonce does not match"));
        }
        let proof: [u8; KEY_LEN] = STANDARD
            .decode(proof)
            .ok()
            .and_then(|p| p.try_into().ok())
            .ok_or(Failure::Malformed("malformed proof"))?;
        let signed = format!("{},{without_proof}", self.signed_so_far);
        let client_signature = hmac_sha256(&self.verifier.stored_key, signed.as_bytes());
        let client_key: Vec<u8> = proof
            .iter()
            .zip(client_signature)
            .map(|(p, s)| p ^ s)
            .collect();
        constant_time::verify_slices_are_equal(&sha256(&client_key), &self.verifier.stored_key)
            .map_err(|_| Failure::WrongPassword)?;
        let server_signature = hmac_sha256(&self.verifier.server_key, signed.as_bytes());
        Ok(format!("v={}", STANDARD.encode(server_signature)))
    }
}

/// The `tls-server-end-point` hash of the first certificate of a PEM chain: SHA-256 unless the
/// certificate is signed with SHA-384 or SHA-512 (RFC 5929 §4.1). `None` for an algorithm that
/// rule does not cover; SCRAM-SHA-256-PLUS is then not offered.
pub fn certificate_hash(pem: &[u8]) -> Option<Vec<u8>> {
    let certificates = CapturedX509Certificate::from_pem_multiple(pem).ok()?;
    let first = certificates.first()?;
    let algorithm = match first.signature_algorithm()? {
        SignatureAlgorithm::RsaSha1
        | SignatureAlgorithm::RsaSha256
        | SignatureAlgorithm::EcdsaSha256 => &digest::SHA256,
        SignatureAlgorithm::RsaSha384 | SignatureAlgorithm::EcdsaSha384 => &digest::SHA384,
        SignatureAlgorithm::RsaSha512 => &digest::SHA512,
        _ => return None,
    };
    Some(
        digest::digest(algorithm, first.constructed_data())
            .as_ref()
            .to_vec(),
    )
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; KEY_LEN] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    hmac::sign(&key, message)
        .as_ref()
        .try_into()
        .expect("HMAC-SHA-256 is 32 bytes")
}

fn sha256(data: &[u8]) -> [u8; KEY_LEN] {
    digest::digest(&digest::SHA256, data)
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's side of RFC 5802, written from the RFC, to drive the server's.
    fn client_final(
        password: &str,
        client_first_bare: &str,
        server_first: &str,
        c: &str,
    ) -> String {
        let attributes: Vec<&str> = server_first.split(',').collect();
        let nonce = attributes[0].strip_prefix("r=").unwrap();
        let salt = STANDARD
            .decode(attributes[1].strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: usize = attributes[2].strip_prefix("i=").unwrap().parse().unwrap();
        let salted = gen_salted_password(password, &salt, iterations);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let without_proof = format!("c={c},r={nonce}");
        let signed = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac_sha256(&sha256(&client_key), signed.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(signature)
            .map(|(k, s)| k ^ s)
            .collect();
        format!("{without_proof},p={}", STANDARD.encode(proof))
    }

    fn exchange(stored: &str, typed: &str) -> Result<String, Failure> {
        let bare = "n=,r=fyko+d2lbbFgONRv9qkxdawL";
        let (exchange, server_first) = Exchange::start(
            SCRAM_SHA_256,
            format!("n,,{bare}").as_bytes(),
            Verifier::new(stored),
            None,
        )?;
        exchange.finish(client_final(typed, bare, &server_first, "biws").as_bytes())
    }

    #[test]
    fn the_right_password_logs_in_and_a_wrong_one_does_not() {
        assert!(exchange("pencil", "pencil").unwrap().starts_with("v="));
        assert_eq!(exchange("pencil", "pencil!"), Err(Failure::WrongPassword));
    }

    #[test]
    fn verifiers_read_back_as_written_and_check_passwords() {
        let verifier = Verifier::new("s3cret");
        let text = verifier.to_string();
        assert!(text.starts_with("SCRAM-SHA-256$4096:"), "{text}");
        let parsed = Verifier::parse(&text).unwrap();
        assert!(parsed == verifier);
        assert!(parsed.matches("s3cret"));
        assert!(!parsed.matches("s3cret "));
        assert!(Verifier::parse("md5abc").is_none());
        assert!(Verifier::parse("SCRAM-SHA-256$0:AA==$AA==:AA==").is_none());
    }

    #[test]
    fn a_downgrade_and_a_missing_binding_are_refused() {
        let start = |mechanism: &str, first: &str, hash: Option<&[u8]>| {
            Exchange::start(mechanism, first.as_bytes(), Verifier::new("x"), hash).map(|_| ())
        };
        let hash: &[u8] = b"certificate hash";
        assert!(matches!(
            start(SCRAM_SHA_256, "y,,n=,r=abc", Some(hash)),
            Err(Failure::ChannelBinding(_))
        ));
        assert!(start(SCRAM_SHA_256, "y,,n=,r=abc", None).is_ok());
        assert!(matches!(
            start(SCRAM_SHA_256_PLUS, "n,,n=,r=abc", Some(hash)),
            Err(Failure::ChannelBinding(_))
        ));
        assert!(
            start(
                SCRAM_SHA_256_PLUS,
                "p=tls-server-end-point,,n=,r=abc",
                Some(hash)
            )
            .is_ok()
        );
        assert!(matches!(
            start(SCRAM_SHA_256_PLUS, "p=tls-server-end-point,,n=,r=abc", None),
            Err(Failure::Malformed(_))
        ));
        for garbage in ["", "n", "n,,", "n,a=x,n=,r=abc", "n,,r=abc", "n,,n=,r="] {
            assert!(
                matches!(
                    start(SCRAM_SHA_256, garbage, None),
                    Err(Failure::Malformed(_))
                ),
                "{garbage}"
            );
        }
    }
}
