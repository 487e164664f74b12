//! TLS on the gateway's listener, with rustls: `wss://` and `https://` on
//! the same port, so browsers on the open internet need no proxy in front.
//!
//! The certificate can be replaced while the gateway runs
//! ([`TlsReloader::reload`], SIGHUP for `postmesh`). Connections are never
//! touched by a reload: the certificate only matters during a handshake,
//! and each handshake asks the resolver for the current one. A reload that
//! fails leaves the current certificate in place, so a renewal that went
//! wrong (a truncated file, a key that does not fit) never takes a serving
//! gateway down.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use prometheus_client::metrics::counter::Counter;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{InconsistentKeys, ServerConfig};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use crate::config::TlsConfig;
use crate::metrics::GatewayMetrics;

/// Why a certificate and key could not be loaded (at start, or on a
/// reload). Each names the file, for the operator who must fix it, and
/// says the underlying error in its own message (as `StartError::Bind`
/// does), so a one-line report or a log field is complete.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    #[error("cannot read the TLS {what} file {}: {error}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("the TLS {what} file {} is not valid PEM: {error}", path.display())]
    Pem {
        what: &'static str,
        path: PathBuf,
        error: pem::Error,
    },
    #[error(
        "the TLS certificate file {} holds no certificate \
         (a PEM `BEGIN CERTIFICATE` block)", .0.display()
    )]
    NoCertificate(PathBuf),
    #[error(
        "the TLS key file {} holds no private key \
         (an unencrypted PEM PKCS#8, PKCS#1 or SEC1 block)", .0.display()
    )]
    NoKey(PathBuf),
    #[error("the TLS key file {} holds no key we can use: {error}", path.display())]
    BadKey { path: PathBuf, error: rustls::Error },
    #[error(
        "the TLS certificate file {} holds a certificate that cannot be read: {error}",
        path.display()
    )]
    BadCertificate { path: PathBuf, error: rustls::Error },
    #[error(
        "the TLS key {} does not go with the certificate {} \
         (its public key is not the certificate's)",
        key.display(), cert.display()
    )]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS settings: {0}")]
    Settings(rustls::Error),
}

/// The certificate every new handshake presents, swapped whole by a
/// reload. A lock rather than a rebuilt `ServerConfig`: the acceptor, its
/// session cache and its settings stay as they are, and a handshake holds
/// the read lock only to clone an `Arc`.
#[derive(Debug)]
struct Current(RwLock<Arc<CertifiedKey>>);

impl ResolvesServerCert for Current {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.read().clone())
    }
}

/// The listener's TLS: the acceptor every connection goes through and the
/// means to reload its certificate.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    reloader: TlsReloader,
    handshake_failures: Counter,
}

impl Tls {
    /// Reads the certificate chain and key named by `files`. Only HTTP/1.1
    /// is offered (ALPN), the one protocol the listener speaks.
    pub(crate) fn load(files: &TlsConfig, metrics: &GatewayMetrics) -> Result<Tls, TlsError> {
        // The provider is named, not taken from the process default: the
        // gateway's TLS does not depend on what another crate installed.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = Arc::new(Current(RwLock::new(Arc::new(certified_key(
            files, &provider,
        )?))));
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(TlsError::Settings)?
            .with_no_client_auth()
            .with_cert_resolver(current.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            reloader: TlsReloader {
                files: files.clone(),
                provider,
                current,
                reloads: metrics.tls_reloads.clone(),
                reload_failures: metrics.tls_reload_failures.clone(),
            },
            handshake_failures: metrics.tls_handshake_failures.clone(),
        })
    }

    /// The handle that reloads the certificate.
    pub(crate) fn reloader(&self) -> TlsReloader {
        self.reloader.clone()
    }

    /// Completes the server side of a handshake within `timeout`, or gives
    /// up: `None` when the client failed it (it spoke plain HTTP, offered
    /// nothing we accept, hung up) or did not finish in time. The time is
    /// the header timeout: a client that opens a socket and never completes
    /// a handshake must not hold it longer than one that never sends its
    /// headers.
    pub(crate) async fn accept(
        &self,
        stream: TcpStream,
        timeout: Duration,
    ) -> Option<TlsStream<TcpStream>> {
        match tokio::time::timeout(timeout, self.acceptor.accept(stream)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                self.handshake_failures.inc();
                tracing::debug!(error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                self.handshake_failures.inc();
                tracing::debug!("TLS handshake not completed within the header timeout");
                None
            }
        }
    }
}

/// Reloads the listener's certificate and key from their files. Cheap to
/// clone; every clone reloads the same listener.
#[derive(Clone)]
pub struct TlsReloader {
    files: TlsConfig,
    provider: Arc<CryptoProvider>,
    current: Arc<Current>,
    reloads: Counter,
    reload_failures: Counter,
}

impl TlsReloader {
    /// Reads the files again. On success, every handshake from now on
    /// presents the new certificate; connections already open keep theirs
    /// (they are not renegotiated). On failure the current certificate
    /// stays, the error is logged and counted
    /// (`postmesh_gateway_tls_reload_failures`), and returned.
    ///
    /// It reads files: call it where blocking is allowed
    /// (`tokio::task::spawn_blocking`).
    pub fn reload(&self) -> Result<(), TlsError> {
        match certified_key(&self.files, &self.provider) {
            Ok(key) => {
                *self.current.0.write() = Arc::new(key);
                self.reloads.inc();
                tracing::info!(
                    cert = %self.files.cert.display(),
                    "reloaded the TLS certificate; new handshakes present it"
                );
                Ok(())
            }
            Err(e) => {
                self.reload_failures.inc();
                tracing::error!(
                    error = %e,
                    "TLS reload failed; still serving the previous certificate"
                );
                Err(e)
            }
        }
    }
}

/// The chain and key from `files`, checked to belong together.
fn certified_key(files: &TlsConfig, provider: &CryptoProvider) -> Result<CertifiedKey, TlsError> {
    let cert_pem = read("certificate", &files.cert)?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| TlsError::Pem {
            what: "certificate",
            path: files.cert.clone(),
            error,
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate(files.cert.clone()));
    }
    let key_pem = read("key", &files.key)?;
    let key = match PrivateKeyDer::from_pem_slice(&key_pem) {
        Ok(k) => k,
        Err(pem::Error::NoItemsFound) => return Err(TlsError::NoKey(files.key.clone())),
        Err(error) => {
            return Err(TlsError::Pem {
                what: "key",
                path: files.key.clone(),
                error,
            });
        }
    };
    let key = provider
        .key_provider
        .load_private_key(key)
        .map_err(|error| TlsError::BadKey {
            path: files.key.clone(),
            error,
        })?;
    // The key against the certificate's public key: a certificate renewed
    // without its key is refused here, not at each client's handshake.
    let certified = CertifiedKey::new(chain, key);
    match certified.keys_match() {
        // A key that cannot tell its public key is taken on trust, as
        // rustls itself does (ring's keys all can).
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => Ok(certified),
        Err(rustls::Error::InconsistentKeys(_)) => Err(TlsError::Mismatch {
            cert: files.cert.clone(),
            key: files.key.clone(),
        }),
        Err(error) => Err(TlsError::BadCertificate {
            path: files.cert.clone(),
            error,
        }),
    }
}

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        what,
        path: path.to_path_buf(),
        error,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `localhost` and its key, as PEM.
    fn pair() -> (String, String) {
        let c = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (c.cert.pem(), c.signing_key.serialize_pem())
    }

    /// Writes `cert` and `key` into `dir`; returns the files' config.
    fn files(dir: &Path, cert: &str, key: &str) -> TlsConfig {
        let files = TlsConfig {
            cert: dir.join("chain.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).unwrap();
        std::fs::write(&files.key, key).unwrap();
        files
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("postmesh-tls-{name}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn load(files: &TlsConfig) -> Result<Tls, TlsError> {
        Tls::load(files, &GatewayMetrics::default())
    }

    fn serving(tls: &Tls) -> CertificateDer<'static> {
        tls.reloader.current.0.read().cert[0].clone()
    }

    #[test]
    fn a_matching_chain_and_key_load() {
        let dir = temp_dir("ok");
        let (cert, key) = pair();
        let tls = load(&files(&dir, &cert, &key)).expect("loads");
        assert_eq!(
            serving(&tls),
            CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()
        );
    }

    /// Every bad file is refused with an error that names it; none panics.
    #[test]
    fn bad_files_are_refused_with_their_name() {
        let dir = temp_dir("bad");
        let (cert, key) = pair();
        let (_, other_key) = pair();

        let missing = TlsConfig {
            cert: dir.join("absent.pem"),
            key: dir.join("key.pem"),
        };
        let e = load(&missing).err().expect("refused");
        assert!(
            matches!(
                e,
                TlsError::Read {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("absent.pem"), "{e}");

        let e = load(&files(&dir, "not a certificate", &key))
            .err()
            .expect("refused");
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e}");
        assert!(e.to_string().contains("chain.pem"), "{e}");

        // The key where the certificate should be, and the other way round.
        let e = load(&files(&dir, &key, &key)).err().expect("refused");
        assert!(matches!(e, TlsError::NoCertificate(_)), "{e}");
        let e = load(&files(&dir, &cert, &cert)).err().expect("refused");
        assert!(matches!(e, TlsError::NoKey(_)), "{e}");
        assert!(e.to_string().contains("key.pem"), "{e}");

        // A PEM block whose base64 is broken.
        let broken = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let e = load(&files(&dir, broken, &key)).err().expect("refused");
        assert!(
            matches!(
                e,
                TlsError::Pem {
                    what: "certificate",
                    ..
                }
            ),
            "{e}"
        );

        // A block that is base64 but no certificate.
        let junk = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let e = load(&files(&dir, junk, &key)).err().expect("refused");
        assert!(matches!(e, TlsError::BadCertificate { .. }), "{e}");

        // A key block that is base64 but no key.
        let junk_key = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = load(&files(&dir, &cert, junk_key)).err().expect("refused");
        assert!(matches!(e, TlsError::BadKey { .. }), "{e}");

        // A key from another certificate.
        let e = load(&files(&dir, &cert, &other_key))
            .err()
            .expect("refused");
        assert!(matches!(e, TlsError::Mismatch { .. }), "{e}");
        assert!(e.to_string().contains("does not go with"), "{e}");
    }

    #[test]
    fn a_reload_swaps_the_certificate_and_a_failed_one_keeps_it() {
        let dir = temp_dir("reload");
        let (first, first_key) = pair();
        let metrics = GatewayMetrics::default();
        let tls = Tls::load(&files(&dir, &first, &first_key), &metrics).unwrap();
        let reloader = tls.reloader();

        let (second, second_key) = pair();
        files(&dir, &second, &second_key);
        reloader.reload().expect("reloads");
        let second_der = CertificateDer::from_pem_slice(second.as_bytes()).unwrap();
        assert_eq!(serving(&tls), second_der);
        assert_eq!(metrics.tls_reloads.get(), 1);

        // Renewed certificate, old key: refused, the second one stays.
        let (third, _) = pair();
        files(&dir, &third, &second_key);
        assert!(matches!(reloader.reload(), Err(TlsError::Mismatch { .. })));
        assert_eq!(serving(&tls), second_der);
        std::fs::remove_file(dir.join("key.pem")).unwrap();
        assert!(matches!(reloader.reload(), Err(TlsError::Read { .. })));
        assert_eq!(serving(&tls), second_der);
        assert_eq!(metrics.tls_reloads.get(), 1);
        assert_eq!(metrics.tls_reload_failures.get(), 2);
    }
}
