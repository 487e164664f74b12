//! Gateway configuration: a serde tree with defaults in one place and a
//! `validate()` step before start.

use std::net::SocketAddr;
use std::path::PathBuf;

use postmesh_schema::Limits;
use serde::{Deserialize, Serialize};

/// Gateway settings. Every limit is bounded and named here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address for WebSocket (`/ws`) and HTTP (`/v1/...`).
    pub listen: SocketAddr,
    /// HS256 secret for tokens. Without one, access is anonymous and only a
    /// loopback address may be bound (unless `insecure`).
    pub secret: Option<String>,
    /// Allow a non-loopback listen address without a secret.
    pub insecure: bool,
    /// TLS on the listener (`[gateway.tls]`): `wss://` and `https://`
    /// instead of `ws://` and `http://`, on the same address. Without it
    /// the listener speaks plain TCP. It changes nothing about who may
    /// connect: without a secret the listener is still loopback only.
    pub tls: Option<TlsConfig>,
    /// Largest WebSocket message or HTTP request body a client may send.
    /// 64 KiB: messages are events, not files. Larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Subscriptions one connection may hold (login-sync ones included).
    pub max_subscriptions: usize,
    /// Frames waiting for one connection before it is closed as a slow
    /// consumer (close code 4000).
    pub outbound_queue: usize,
    /// Bytes of frames waiting for one connection, or drained and not yet
    /// written, before it is closed as a slow consumer (close code 4000).
    /// A frame shared by many connections counts fully for each. With the
    /// frame bound alone, one stalled device could pin `outbound_queue`
    /// messages of any size (up to 256 MiB). A single frame larger than
    /// this passes when nothing else waits. A burst larger than this closes
    /// the devices that cannot take it as fast as it comes, so it must be
    /// at least twice `max_body_bytes`: one publish request's fan-out (its
    /// messages as frames, with their paths, UUIDs and cursors) then fits
    /// however slowly the connection is drained.
    pub outbound_bytes: usize,
    /// Largest HTTP request body (a batch publish of up to
    /// `max_publish_batch` messages). Larger is refused with 413.
    pub max_body_bytes: usize,
    /// Seconds one write to a connection may take before it is closed as a
    /// slow consumer.
    pub write_timeout_secs: u64,
    /// WebSocket read buffer per connection, allocated eagerly: the main
    /// term of idle memory per connection. Devices send small frames; a
    /// larger one is read in several chunks. Measured at 19 000 idle
    /// connections: 4 KiB gave 8.4 KB per connection, 1 KiB 5.2 KB, 256 B
    /// 4.5 KB (bench/RESULTS.md).
    pub read_buffer_bytes: usize,
    /// Bytes buffered per connection before writing to the socket; a batch
    /// of frames is flushed once per wake-up anyway.
    pub write_buffer_bytes: usize,
    /// Messages read from the store per page of a resume (`sub` with
    /// `since`, a reread): a resume reads page after page until it has
    /// caught up, holding live frames meanwhile.
    pub resume_limit: usize,
    /// Most messages one resume replays. Beyond it the subscription is not
    /// made live and the reply says `"more":true`: the device subscribes
    /// again from the cursor of the last message it got.
    pub max_replay: usize,
    /// How far before the device's position a resume starts, in
    /// milliseconds, so that messages stamped by another core's clock (a
    /// skew) or distributed late are not skipped; the device drops what it
    /// already had by UUID. Unset: 0 on the embedded postoffice (one core:
    /// resume is exact), 5000 on RabbitMQ (`postmesh up` decides).
    pub resume_overlap_ms: Option<u64>,
    /// After a `sub` with `since` has caught up, the gateway reads once
    /// more this many milliseconds later, and sends what it finds that the
    /// device has not had. It is for a message another core stored before
    /// the subscription was live, that the core the resume read had not
    /// yet received as a replica (from another core of the region, or
    /// from another region across the hub), and that therefore came
    /// neither in the replay nor live. While the core answers that a peer
    /// has gone quiet (replicas may wait on a link that is down), the read
    /// is made again, each time twice as late, five times in all; then
    /// the device is told its resume may have a gap. At most 5000. Unset:
    /// 0 on the embedded postoffice (one core, nothing on its way), 2000
    /// on RabbitMQ (`postmesh up` decides).
    pub resume_settle_ms: Option<u64>,
    /// Latest messages replayed per pattern at login sync.
    pub sync_latest_limit: usize,
    /// Message ids remembered to drop duplicate deliveries.
    pub dedupe_window: usize,
    /// Most messages in one HTTP batch publish.
    pub max_publish_batch: usize,
    /// Publishes one WebSocket connection may have waiting for the core.
    /// Publishes that arrive while one is being stored go to the core
    /// together as the next batch, so one connection's publish rate is not
    /// one message per store round trip; beyond this, the connection is not
    /// read until the batch in flight is done.
    pub publish_window: usize,
    /// Path and pattern limits.
    pub limits: Limits,
    /// The largest message accepted (body plus meta): set from the root
    /// `max_message_bytes` of the process's configuration, which the core
    /// shares, so it is not a key of `[gateway]`.
    #[serde(skip, default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// The shutdown deadline, in seconds from the first signal. Until it,
    /// connections are asked to finish (HTTP requests in progress complete,
    /// devices are closed with 1001) and background tasks to stop (the hub
    /// deletes its queue); at it, whatever is still open is cut and the
    /// store is closed. A second signal cuts at once. Without a deadline one
    /// half-sent request would keep a stopping process alive for ever.
    pub drain_secs: u64,
    /// Seconds a client has to send an HTTP request's headers, counted from
    /// when the server starts waiting for them (on a kept-alive connection,
    /// from the end of the previous response). A connection that has not
    /// sent them by then is dropped, so a client trickling bytes
    /// (slowloris) cannot hold a socket; a real client sends a few hundred
    /// bytes at once.
    pub header_timeout_secs: u64,
    /// Seconds a client has to send an HTTP request's whole body, from the
    /// end of its headers. A body sent slower is refused with 408
    /// (`timeout`), so a client trickling a large body cannot hold a
    /// connection and its handler.
    pub body_timeout_secs: u64,
    /// Whose cores a gateway without a core of its own asks (on a shared
    /// postoffice): unset, its own region's; a region's name; or `-`, any
    /// region's that answers first (regions joined by federation).
    pub core_region: Option<String>,
    /// Seconds between keepalive pings to each device; a device silent for
    /// two intervals is closed with 4002. 0 turns keepalive off.
    pub keepalive_secs: u64,
    /// Origins whose browser pages may connect devices, over `/ws` and
    /// `/sockjs` alike, as `scheme://host[:port]`, or `"*"` for any. Empty
    /// (the default): only the gateway's own pages (their `Origin` names
    /// the `Host` they ask), so another site's page cannot drive a device
    /// connection through a visitor's browser. Others are refused with
    /// 403. Requests without `Origin` (not from a browser) are always
    /// served.
    pub origins: Vec<String>,
    /// SockJS under `/sockjs` (`[gateway.sockjs]`).
    pub sockjs: SockjsConfig,
}

/// SockJS 0.3 (PROTOCOL.md, "SockJS"): the same client protocol as `/ws`
/// for devices behind proxies that block WebSocket.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct SockjsConfig {
    /// Serve `/sockjs` at all. Which pages may use it is
    /// `gateway.origins`, as for `/ws`.
    pub enabled: bool,
    /// Mount the SockJS protocol suite's test services (`echo`, `close`,
    /// `disabled_websocket_echo`, `cookie_needed_echo`) under
    /// `/sockjs-test`. Off: they are for running the suite, not for
    /// devices.
    pub test_services: bool,
    /// Seconds between `h` frames on a receiving request with nothing else
    /// to send (the protocol's 25).
    pub heartbeat_secs: u64,
    /// Seconds an HTTP session may go without a receiving request before
    /// it is closed, with its subscriptions (the protocol's 5).
    pub disconnect_delay_secs: u64,
    /// Bytes a streaming response carries before it ends, so the browser
    /// can free what it buffered; the client opens the next one.
    pub response_limit: usize,
    /// Bytes of frames a session holds for its next receiving request;
    /// past it, writes wait, and a device that does not come for them
    /// within `write_timeout_secs` is closed as a slow consumer (4000).
    pub buffer_bytes: usize,
    /// Where the iframe page loads `sockjs-client` from (the iframe-based
    /// transports of old browsers).
    pub client_url: String,
}

impl Default for SockjsConfig {
    fn default() -> Self {
        SockjsConfig {
            enabled: true,
            test_services: false,
            heartbeat_secs: 25,
            disconnect_delay_secs: 5,
            response_limit: 128 * 1024,
            buffer_bytes: 256 * 1024,
            client_url: "https://cdn.jsdelivr.net/npm/sockjs-client@1/dist/sockjs.min.js".into(),
        }
    }
}

/// The listener's certificate and key, as PEM files. Both are read at
/// start (a missing or bad file stops the start) and again on each reload
/// (SIGHUP for `postmesh`), so a renewed certificate is taken without a
/// restart. Relative paths are from the process's working directory.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain: the gateway's own certificate first, then
    /// the intermediates that lead to a root clients trust.
    pub cert: PathBuf,
    /// The private key of the first certificate, unencrypted (PKCS#8,
    /// PKCS#1 or SEC1).
    pub key: PathBuf,
}

/// The default bound of one connection's outbound bytes: 16 MiB, twice the
/// default HTTP body limit (one largest batch publish fans out whole),
/// about sixty thousand 256-byte messages. Frames are shared between the
/// connections of a path, so stalled devices on one path cost far less
/// than this each.
pub const DEFAULT_OUTBOUND_BYTES: usize = 16 * 1024 * 1024;

/// The default HTTP body limit: 8 MiB, a batch of several messages of the
/// largest size, or a thousand of a few KiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;

/// The default listen address: loopback, so a fresh `postmesh up` without a
/// secret is not reachable from other machines.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            secret: None,
            insecure: false,
            tls: None,
            max_frame_bytes: 64 * 1024,
            max_subscriptions: 256,
            outbound_queue: 4096,
            outbound_bytes: DEFAULT_OUTBOUND_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            write_timeout_secs: 10,
            read_buffer_bytes: 1024,
            write_buffer_bytes: 16 * 1024,
            resume_limit: 1000,
            max_replay: 100_000,
            resume_overlap_ms: None,
            resume_settle_ms: None,
            sync_latest_limit: 100,
            dedupe_window: 65_536,
            max_publish_batch: 1000,
            publish_window: 256,
            limits: Limits::default(),
            max_message_bytes: default_max_message_bytes(),
            drain_secs: 5,
            header_timeout_secs: 10,
            body_timeout_secs: 30,
            keepalive_secs: 30,
            core_region: None,
            origins: Vec::new(),
            sockjs: SockjsConfig::default(),
        }
    }
}

/// A configuration that must not start.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    #[error(
        "refusing to listen on {0} without a secret: anyone could read and publish. \
         Set a secret (--secret / POSTMESH_SECRET) or pass --insecure"
    )]
    ExposedWithoutSecret(SocketAddr),
    #[error("{0} must be at least {1}")]
    TooSmall(&'static str, usize),
    #[error("the secret must not be empty")]
    EmptySecret,
    #[error("core_region: {0}")]
    CoreRegion(#[from] postmesh_schema::AddressError),
    #[error(
        "outbound_bytes ({outbound}) must be at least twice max_body_bytes ({body}): \
         one batch publish would otherwise close every device of its path"
    )]
    BurstOverBound { outbound: usize, body: usize },
    #[error(
        "origins: {0:?} is not an origin; write \"*\" or scheme://host[:port], \
         as a browser sends it (no path, no trailing /)"
    )]
    Origin(String),
    #[error("{0} must be at most {1}")]
    TooLarge(&'static str, u64),
}

/// The longest `resume_settle_ms`: the late read is for replicas that
/// follow within milliseconds; longer waits are its retries' (and the
/// merge remembers what the resume sent until the last is due).
pub const MAX_RESUME_SETTLE_MS: u64 = 5_000;

impl GatewayConfig {
    /// Checks the configuration before anything starts.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.secret.as_deref() == Some("") {
            return Err(ConfigError::EmptySecret);
        }
        if self.secret.is_none() && !self.insecure && !self.listen.ip().is_loopback() {
            return Err(ConfigError::ExposedWithoutSecret(self.listen));
        }
        for (name, value, min) in [
            ("max_frame_bytes", self.max_frame_bytes, 256),
            ("max_subscriptions", self.max_subscriptions, 1),
            ("outbound_queue", self.outbound_queue, 1),
            ("outbound_bytes", self.outbound_bytes, 64 * 1024),
            ("max_body_bytes", self.max_body_bytes, 1024),
            ("read_buffer_bytes", self.read_buffer_bytes, 256),
            ("resume_limit", self.resume_limit, 1),
            ("max_replay", self.max_replay, 1),
            ("dedupe_window", self.dedupe_window, 1),
            ("max_publish_batch", self.max_publish_batch, 1),
            ("publish_window", self.publish_window, 1),
            (
                "body_timeout_secs",
                usize::try_from(self.body_timeout_secs).unwrap_or(usize::MAX),
                1,
            ),
            (
                "header_timeout_secs",
                usize::try_from(self.header_timeout_secs).unwrap_or(usize::MAX),
                1,
            ),
        ] {
            if value < min {
                return Err(ConfigError::TooSmall(name, min));
            }
        }
        if let Some(ms) = self.resume_settle_ms
            && ms > MAX_RESUME_SETTLE_MS
        {
            return Err(ConfigError::TooLarge(
                "resume_settle_ms",
                MAX_RESUME_SETTLE_MS,
            ));
        }
        if let Some(r) = &self.core_region {
            postmesh_schema::RegionTarget::parse(r)?;
        }
        if let Some(bad) = self.origins.iter().find(|o| !crate::origin::valid_entry(o)) {
            return Err(ConfigError::Origin(bad.clone()));
        }
        if self.outbound_bytes < self.max_body_bytes.saturating_mul(2) {
            return Err(ConfigError::BurstOverBound {
                outbound: self.outbound_bytes,
                body: self.max_body_bytes,
            });
        }
        Ok(())
    }
}

fn default_max_message_bytes() -> usize {
    postmesh_schema::protocol::DEFAULT_MAX_MESSAGE_BYTES
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposure_needs_a_secret_or_insecure() {
        let mut c = GatewayConfig::default();
        assert!(c.validate().is_ok());
        c.listen = "0.0.0.0:7400".parse().unwrap();
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ExposedWithoutSecret(_))
        ));
        c.insecure = true;
        assert!(c.validate().is_ok());
        c.insecure = false;
        c.secret = Some("s".into());
        assert!(c.validate().is_ok());
        c.secret = Some(String::new());
        assert_eq!(c.validate(), Err(ConfigError::EmptySecret));
    }

    /// TLS encrypts; it does not authenticate devices. An exposed listener
    /// still needs a secret.
    #[test]
    fn tls_does_not_lift_the_loopback_rule() {
        let c = GatewayConfig {
            listen: "0.0.0.0:7400".parse().unwrap(),
            tls: Some(TlsConfig {
                cert: "cert.pem".into(),
                key: "key.pem".into(),
            }),
            ..GatewayConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::ExposedWithoutSecret(_))
        ));
    }

    #[test]
    fn origins_are_checked_before_start() {
        let mut c = GatewayConfig {
            origins: vec!["https://app.example".into(), "*".into()],
            ..GatewayConfig::default()
        };
        assert!(c.validate().is_ok());
        c.origins.push("app.example/".into());
        assert_eq!(
            c.validate(),
            Err(ConfigError::Origin("app.example/".into()))
        );
    }

    #[test]
    fn outbound_bytes_has_a_floor() {
        let mut c = GatewayConfig {
            outbound_bytes: 1000,
            ..GatewayConfig::default()
        };
        assert_eq!(
            c.validate(),
            Err(ConfigError::TooSmall("outbound_bytes", 64 * 1024))
        );
        c.outbound_bytes = 64 * 1024;
        assert_eq!(
            c.validate(),
            Err(ConfigError::BurstOverBound {
                outbound: 64 * 1024,
                body: DEFAULT_MAX_BODY_BYTES
            }),
            "one largest batch publish must fit"
        );
        c.max_body_bytes = 32 * 1024;
        assert!(c.validate().is_ok());
    }
}
