//! HMAC-SHA256 frame signing (`--secret`), byte-compatible with the reference:
//! `sig = hex(HMAC-SHA256(secret, "<message_id>:<ts>"))`, plus the replay window on `ts`.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::node::ids::{now_unix, parse_iso};

type HmacSha256 = Hmac<Sha256>;

/// What checking an inbound frame's signature concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Signature present and valid, within the window.
    Valid,
    /// Not checked (no signature, lenient mode).
    Unchecked,
    /// Wrong signature accepted in lenient mode; the frame is marked `_sig_invalid` as the
    /// reference does.
    Flagged,
    /// The frame should be refused, with the reason.
    Rejected(String),
}

/// The shared secret and the rules for inbound frames.
#[derive(Clone)]
pub struct Signer {
    secret: Vec<u8>,
    window_secs: u64,
    lenient: bool,
}

impl Signer {
    /// A signer for `secret`; `lenient` keeps the reference's warn-only mode for bad sigs.
    pub fn new(secret: &str, window_secs: u64, lenient: bool) -> Signer {
        Signer {
            secret: secret.as_bytes().to_vec(),
            window_secs,
            lenient,
        }
    }

    /// The hex signature of one frame.
    pub fn sign(&self, message_id: &str, ts: &str) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message_id.as_bytes());
        mac.update(b":");
        mac.update(ts.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// Checks an inbound frame's `sig` and `ts`.
    pub fn verify(&self, message_id: &str, ts: Option<&str>, sig: Option<&str>) -> Verdict {
        let Some(ts) = ts else {
            return Verdict::Rejected("missing ts field".into());
        };
        let Some(sent) = parse_iso(ts) else {
            return Verdict::Rejected(format!("unparseable ts {ts:?}"));
        };
        let skew = (now_unix() - sent).abs();
        if skew > self.window_secs as f64 {
            return Verdict::Rejected(format!(
                "ts outside replay window ({skew:.0}s > {}s)",
                self.window_secs
            ));
        }
        let Some(sig) = sig else {
            return if self.lenient {
                Verdict::Unchecked
            } else {
                Verdict::Rejected("missing sig while a secret is configured".into())
            };
        };
        let Ok(sig_bytes) = hex::decode(sig) else {
            return self.mismatch();
        };
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(message_id.as_bytes());
        mac.update(b":");
        mac.update(ts.as_bytes());
        if mac.verify_slice(&sig_bytes).is_ok() {
            Verdict::Valid
        } else {
            self.mismatch()
        }
    }

    fn mismatch(&self) -> Verdict {
        if self.lenient {
            tracing::warn!("HMAC signature mismatch accepted (lenient mode)");
            Verdict::Flagged
        } else {
            Verdict::Rejected("HMAC signature mismatch".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ids::now_iso;

    #[test]
    fn matches_reference_vector() {
        // python3 -c "import hmac,hashlib;print(hmac.new(b's3cret',b'msg_1:2026-01-01T00:00:00Z',hashlib.sha256).hexdigest())"
        let s = Signer::new("s3cret", 300, false);
        assert_eq!(
            s.sign("msg_1", "2026-01-01T00:00:00Z"),
            "1a111ca7b52105e6ebdbe21d48e94c1d7eeeb6a916174c2053ab228be15a36b0"
        );
    }

    #[test]
    fn verifies_and_rejects() {
        let s = Signer::new("s3cret", 300, false);
        let ts = now_iso();
        let sig = s.sign("msg_1", &ts);
        assert_eq!(s.verify("msg_1", Some(&ts), Some(&sig)), Verdict::Valid);
        assert!(matches!(
            s.verify("msg_2", Some(&ts), Some(&sig)),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            s.verify("msg_1", Some("2001-01-01T00:00:00Z"), Some(&sig)),
            Verdict::Rejected(_)
        ));
        assert!(matches!(
            s.verify("msg_1", Some(&ts), None),
            Verdict::Rejected(_)
        ));
        let lenient = Signer::new("s3cret", 300, true);
        assert_eq!(
            lenient.verify("msg_2", Some(&ts), Some(&sig)),
            Verdict::Flagged
        );
        assert_eq!(lenient.verify("msg_1", Some(&ts), None), Verdict::Unchecked);
    }
}
