//! How RTP media travels from a camera: interleaved in the RTSP connection (TCP), as UDP
//! unicast, or multicast. Cameras differ: most take TCP, some (VLC, a few encoders) only UDP, so
//! the default tries TCP first and falls back to UDP, remembering what worked per source.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// TCP interleaved first; UDP when the camera refuses TCP or sends nothing over it.
    #[default]
    Auto,
    Tcp,
    Udp,
    Multicast,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Auto => "auto",
            Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Multicast => "multicast",
        }
    }

    pub fn parse(s: &str) -> Option<Transport> {
        match s {
            "auto" => Some(Transport::Auto),
            "tcp" => Some(Transport::Tcp),
            "udp" => Some(Transport::Udp),
            "multicast" => Some(Transport::Multicast),
            _ => None,
        }
    }

    /// The value of rtspsrc's `protocols` property for one attempt over a concrete transport.
    pub fn rtspsrc_protocols(self) -> &'static str {
        match self {
            Transport::Auto | Transport::Tcp => "tcp",
            Transport::Udp => "udp",
            Transport::Multicast => "udp-mcast",
        }
    }

    /// The concrete transports to try, in order, given what worked last time for this source.
    pub fn attempts(self, learned: Option<Transport>) -> Vec<Transport> {
        match self {
            Transport::Auto => match learned {
                Some(Transport::Udp) => vec![Transport::Udp, Transport::Tcp],
                _ => vec![Transport::Tcp, Transport::Udp],
            },
            fixed => vec![fixed],
        }
    }
}

/// Whether an attempt's failure says the camera will not do this transport, so the next one
/// should be tried at once rather than after a backoff: RTSP 461 (Unsupported Transport),
/// rtspsrc's "allow more transport protocols", or nothing received at all.
pub fn refused_transport(reason: &str) -> bool {
    let r = reason.to_ascii_lowercase();
    r.contains("461")
        || r.contains("unsupported transport")
        || r.contains("transport protocols")
        || r.contains("could not receive any udp packets")
        || r.contains("no media for")
        || r.contains("no supported stream")
}

/// Splits the legacy URL schemes into the camera's `rtsp://` URL and a transport:
/// `rtspu://` (RFC 2326's RTSP over UDP, once used here to mean UDP media) is an alias for
/// `rtsp://` with UDP media, `rtspt://` for `rtsp://` with TCP.
pub fn normalize_url(url: &str) -> (String, Option<Transport>) {
    for (scheme, t) in [("rtspu://", Transport::Udp), ("rtspt://", Transport::Tcp)] {
        // `get`: a URL is untrusted text, and may have a multi-byte character at any byte.
        if let (Some(head), Some(rest)) = (url.get(..scheme.len()), url.get(scheme.len()..))
            && head.eq_ignore_ascii_case(scheme)
        {
            return (format!("rtsp://{rest}"), Some(t));
        }
    }
    (url.to_string(), None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_tries_tcp_then_udp_unless_udp_worked() {
        assert_eq!(
            Transport::Auto.attempts(None),
            [Transport::Tcp, Transport::Udp]
        );
        assert_eq!(
            Transport::Auto.attempts(Some(Transport::Udp)),
            [Transport::Udp, Transport::Tcp]
        );
        assert_eq!(Transport::Udp.attempts(None), [Transport::Udp]);
    }

    #[test]
    fn legacy_schemes_are_aliases() {
        assert_eq!(
            normalize_url("rtspu://h:1/a"),
            ("rtsp://h:1/a".into(), Some(Transport::Udp))
        );
        assert_eq!(
            normalize_url("RTSPT://h/a"),
            ("rtsp://h/a".into(), Some(Transport::Tcp))
        );
        assert_eq!(normalize_url("rtsps://h/a"), ("rtsps://h/a".into(), None));
        // Multi-byte text where the scheme would end: no panic, no alias.
        assert_eq!(normalize_url("项目项目"), ("项目项目".into(), None));
    }

    #[test]
    fn refusals() {
        assert!(refused_transport(
            "source: No supported stream was found. You might need to allow more transport protocols or may otherwise be missing the right GStreamer RTSP extension plugin."
        ));
        assert!(refused_transport(
            "Unhandled error: 461 Unsupported transport"
        ));
        assert!(!refused_transport("Could not connect to server"));
    }
}
