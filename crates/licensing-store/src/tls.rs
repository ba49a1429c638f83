//! TLS to PostgreSQL with rustls, following libpq's `sslmode` (ADR 0009):
//!
//! | `sslmode`            | TLS                         | certificate                                   |
//! |----------------------|-----------------------------|-----------------------------------------------|
//! | `disable`            | never                       | —                                             |
//! | `prefer` (default)   | when the server offers it   | not verified (libpq's meaning)                |
//! | `require`            | always                      | as `verify-ca`                                |
//! | `verify-ca`          | always                      | chain leads to `LICENSING_DATABASE_CA`        |
//! | `verify-full`        | always                      | chain leads to the trusted roots, name checked |
//!
//! The trusted roots are the certificates of `LICENSING_DATABASE_CA` alone when it is set, as
//! libpq's `sslrootcert`. Without it, they are the system's public roots, and then the host name is
//! always checked, whatever the mode (as libpq's `sslrootcert=system`, which forces
//! `verify-full`): a chain from a public root proves only that its holder owns *some* name, so a
//! check of the chain alone would let any publicly trusted certificate pass. `require` verifies as
//! `verify-ca` (libpq does so only when it has a root certificate): a deployment that asks for TLS
//! gets an authenticated server.

use std::path::Path;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientConfig, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::config::SslMode as WireMode;
use tokio_postgres::tls::MakeTlsConnect;

use crate::error::StoreError;

/// libpq's `sslmode` values this store honours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, StoreError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(StoreError::Database(format!(
                    "invalid database URL: sslmode {other:?} is not one of disable, prefer, \
                     require, verify-ca, verify-full"
                )));
            }
        })
    }

    /// What tokio-postgres negotiates on the wire (it knows no `verify-*`; verifying is ours).
    pub(crate) fn wire(self) -> WireMode {
        match self {
            Self::Disable => WireMode::Disable,
            Self::Prefer => WireMode::Prefer,
            Self::Require | Self::VerifyCa | Self::VerifyFull => WireMode::Require,
        }
    }
}

/// Reads `sslmode` from a `postgres://` URL or a key=value string and rewrites its value to one
/// tokio-postgres knows (it has no `verify-*`; verifying is ours), leaving the rest untouched.
/// The mode is `prefer` when absent, as in libpq; [`Sslmode::named`] says whether it was given.
pub(crate) fn split_sslmode(url: &str) -> Result<(String, Sslmode), StoreError> {
    const KEY: &str = "sslmode=";
    let mut mode = SslMode::Prefer;
    let mut named = false;
    let mut rest = String::with_capacity(url.len());
    let mut from = 0;
    for (at, _) in url.match_indices(KEY) {
        let boundary = url[..at]
            .chars()
            .next_back()
            .is_none_or(|c| c == '?' || c == '&' || c.is_whitespace());
        let quoted = url[..at].matches('\'').count() % 2 == 1;
        if !boundary || quoted || at < from {
            continue;
        }
        let value_start = at + KEY.len();
        let value_end = url[value_start..]
            .find(|c: char| c == '&' || c.is_whitespace())
            .map_or(url.len(), |n| value_start + n);
        mode = SslMode::parse(url[value_start..value_end].trim_matches('\''))?;
        named = true;
        rest.push_str(&url[from..value_start]);
        rest.push_str(match mode.wire() {
            WireMode::Disable => "disable",
            WireMode::Prefer => "prefer",
            _ => "require",
        });
        from = value_end;
    }
    rest.push_str(&url[from..]);
    Ok((rest, Sslmode { mode, named }))
}

/// The `sslmode` of a database URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sslmode {
    pub(crate) mode: SslMode,
    /// Whether the URL names it (else it is libpq's default, `prefer`).
    pub(crate) named: bool,
}

/// Makes TLS connections for tokio-postgres with one shared rustls configuration, through
/// `tokio-postgres-rustls`, which also gives the server's certificate for channel binding
/// (SCRAM-SHA-256-PLUS, `channel_binding=require` in the URL to insist on it).
#[derive(Clone)]
pub(crate) struct MakeRustls(tokio_postgres_rustls::MakeRustlsConnect);

impl std::fmt::Debug for MakeRustls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MakeRustls").finish_non_exhaustive()
    }
}

impl MakeRustls {
    /// The connector for `mode`, trusting the system's roots and the certificates in `ca_file`.
    pub(crate) fn new(mode: SslMode, ca_file: Option<&Path>) -> Result<Self, StoreError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| StoreError::Database(format!("TLS: {e}")))?;
        let verifier: Arc<dyn ServerCertVerifier> = match mode {
            SslMode::Disable | SslMode::Prefer => Arc::new(Unverified(provider)),
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                let roots = trusted_roots(ca_file)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| StoreError::Database(format!("TLS: {e}")))?;
                // The name goes unchecked only under roots of the deployment's own choosing.
                if mode == SslMode::VerifyFull || ca_file.is_none() {
                    webpki
                } else {
                    Arc::new(ChainOnly(webpki))
                }
            }
        };
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(Self(tokio_postgres_rustls::MakeRustlsConnect::new(config)))
    }
}

/// Every certificate of the PEM file `ca_file` when given, else the system's roots (those that
/// load): never both.
fn trusted_roots(ca_file: Option<&Path>) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    if ca_file.is_none() {
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    if let Some(path) = ca_file {
        let invalid = |e: &dyn std::fmt::Display| {
            StoreError::Database(format!("LICENSING_DATABASE_CA {}: {e}", path.display()))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| invalid(&e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(&e))?;
        if certs.is_empty() {
            return Err(invalid(&"holds no PEM certificate"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| invalid(&e))?;
        }
    }
    Ok(roots)
}

/// `require` and `verify-ca` with `LICENSING_DATABASE_CA`: the chain must lead to one of its
/// certificates; the name is not checked.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer`: encryption when the server offers it, any certificate (libpq's meaning); the
/// handshake's signatures are still checked.
#[derive(Debug)]
struct Unverified(Arc<CryptoProvider>);

impl ServerCertVerifier for Unverified {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

impl<S> MakeTlsConnect<S> for MakeRustls
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::TlsConnect;
    type Error = <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        MakeTlsConnect::<S>::make_tls_connect(&mut self.0, domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_of_both_url_forms() {
        let (rest, mode) =
            split_sslmode("postgres://u:p@db:5432/x?application_name=a&sslmode=verify-full")
                .unwrap();
        assert_eq!(
            (rest.as_str(), mode.mode),
            (
                "postgres://u:p@db:5432/x?application_name=a&sslmode=require",
                SslMode::VerifyFull
            )
        );
        let (rest, mode) = split_sslmode("postgres://db/x?sslmode=disable&user=u").unwrap();
        assert_eq!(
            (rest.as_str(), mode.mode),
            ("postgres://db/x?sslmode=disable&user=u", SslMode::Disable)
        );
        let (rest, mode) =
            split_sslmode("host=db sslmode=verify-ca password='a sslmode=b' user=u").unwrap();
        assert_eq!(
            (rest.as_str(), mode.mode),
            (
                "host=db sslmode=require password='a sslmode=b' user=u",
                SslMode::VerifyCa
            )
        );
        let (_, mode) = split_sslmode("postgres://db/x").unwrap();
        assert_eq!(
            mode,
            Sslmode {
                mode: SslMode::Prefer,
                named: false
            }
        );
        let error = split_sslmode("postgres://db/x?sslmode=maybe").unwrap_err();
        assert!(error.to_string().contains("sslmode \"maybe\""), "{error}");
    }

    #[test]
    fn an_unreadable_ca_file_is_refused_by_name() {
        let error = MakeRustls::new(SslMode::VerifyFull, Some(Path::new("/nonexistent/ca.pem")))
            .unwrap_err();
        assert!(
            error.to_string().contains("LICENSING_DATABASE_CA"),
            "{error}"
        );
    }
}
